"""The detectors' figures (issue 19), after the worker's:

1. Each built-in detector's floor at 720p: JPEG decode with the flag it asks for + the detector,
   in a child pinned to one CPU (``floor``), over 720p frames of a real scene with people in it
   (vtest.avi's walkers from harness.media, resized to 1280x720; the recorded test-pattern frames
   when the media are missing). fps per core = 1 / CPU per frame.
2. `people` with 1 and then 2 worker processes (``--processes``) on this box: four cameras of
   those frames published at the source fps (far more than one core detects), every frame asked
   for; results per second over a window, read from the results topic's end offsets.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..measure import Context
from ..plan import Resolution
from ..proctree import ProcTree, cpu_delta
from ..topic_counter import TopicCounter
from .cli import child
from .launch import create_topic, start_worker

log = logging.getLogger("bench.worker")

DETECTORS = ("people", "faces")
SCENE_FRAMES = 60  # every 10th frame of vtest.avi: walkers in different places
PROCESS_COUNTS = (1, 2)


def scene_frames(fallback: Path, out_dir: Path, size: tuple[int, int]) -> tuple[Path, str]:
    """A folder of frame-NNNN.jpg of vtest.avi at `size`, or `fallback` without the media."""
    import cv2

    from harness.media import media_path

    try:
        video = media_path("vtest.avi")
    except FileNotFoundError:
        return fallback, "recorded test pattern (no people: run make setup for vtest.avi)"
    out_dir.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    written = i = 0
    while written < SCENE_FRAMES:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 10 == 0:
            jpeg = cv2.imencode(".jpg", cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC),
                                [cv2.IMWRITE_JPEG_QUALITY, 80])[1]
            (out_dir / f"frame-{written:04d}.jpg").write_bytes(jpeg.tobytes())
            written += 1
        i += 1
    cap.release()
    return out_dir, f"vtest.avi (OpenCV's pedestrians), {written} frames resized to {size[0]}x{size[1]}"


def processes_window(ctx: Context, res: Resolution, frames_dir: Path, processes: int) -> dict[str, Any]:
    """`people` with `processes` worker processes, four cameras at the source fps: results/s."""
    plan = ctx.plan
    bootstrap = ctx.services.bootstrap
    frames_topic = f"bench-people{processes}-{uuid.uuid4().hex[:8]}"
    results_topic = f"bench-people-results{processes}-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, frames_topic, plan.worker_cameras)
    create_topic(bootstrap, results_topic, 1)
    worker = start_worker(ctx, f"worker-people-x{processes}", bootstrap, frames_topic, results_topic,
                          processor="people", processes=processes)
    counter = TopicCounter(bootstrap, results_topic)
    tree = ProcTree(worker.pid)
    seconds = plan.settle_s + plan.worker_s + 2.0
    out: dict[str, Any] = {}
    publisher = threading.Thread(target=lambda: out.update(child(
        ["publish", str(frames_dir), "--bootstrap", bootstrap, "--topic", frames_topic,
         "--cameras", str(plan.worker_cameras), "--fps", str(res.fps), "--seconds", str(seconds),
         "--width", str(res.width), "--height", str(res.height)], timeout=seconds + 60)), daemon=True)
    try:
        publisher.start()
        time.sleep(plan.settle_s)
        t0, r0, c0 = time.monotonic(), counter.count(), tree.cpu()
        time.sleep(plan.worker_s)  # the measurement window
        t1, r1, c1 = time.monotonic(), counter.count(), tree.cpu()
        publisher.join(seconds + 60)
    finally:
        counter.close()
        worker.stop()
    results = r1 - r0
    cpu = cpu_delta(c0, c1)
    return {"processes": processes, "window_s": t1 - t0, "results": results, "results_per_s": results / (t1 - t0),
            "worker_cpu_pct": 100.0 * cpu / (t1 - t0), "cpu_s_per_result": cpu / results if results else None,
            "publisher": out}


def detectors(ctx: Context, res: Resolution, frames_dir: Path) -> dict[str, Any]:
    scenes, source = scene_frames(frames_dir, frames_dir.parent / f"scene-{res.name}", (res.width, res.height))
    out: dict[str, Any] = {"frames": source, "floors": {}, "processes": []}
    for name in DETECTORS:
        try:
            floor = child(["floor", str(scenes), "--processor", name, "--fps", str(res.fps), "--rounds", "1"],
                          timeout=600)
        except RuntimeError as err:
            out["floors"][name] = {"error": str(err).splitlines()[-1][:300]}
            continue
        floor["fps_per_core"] = 1 / floor["cpu_s_per_frame"]
        out["floors"][name] = floor
        log.info("%s at %s: %.1f ms CPU a frame (decode %s %.1f ms): %.1f fps per core", name, res.name,
                 floor["cpu_s_per_frame"] * 1e3, floor["decode_flag"], floor["decode_cpu_s_per_frame"] * 1e3,
                 floor["fps_per_core"])
    for n in PROCESS_COUNTS:
        fig = processes_window(ctx, res, scenes, n)
        out["processes"].append(fig)
        log.info("people with %d worker process(es): %.1f results/s, worker CPU %.0f %%", n, fig["results_per_s"],
                 fig["worker_cpu_pct"])
    one, two = out["processes"][0]["results_per_s"], out["processes"][-1]["results_per_s"]
    out["two_vs_one"] = two / one if one else None
    return out
