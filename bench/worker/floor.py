"""The worker's floor (a child process): decode with the processor's flag + the processor, one CPU.

A child of its own because it pins itself to the worker's CPU before OpenCV loads (so OpenCV's
thread pools see one CPU), which the bench process itself must never do.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .common import CAMERA_ID, worker_cpu
from .frames import load_jpegs

WARMUP_FRAMES = 5  # first decodes and allocations are not per-frame costs


def measure_floor(frames_dir: Path, processor_spec: str, fps: int, rounds: int,
                  pace_fps: int = 0) -> dict[str, Any]:
    """Decode (the processor's flag) + the processor over the recorded JPEGs, on one CPU; with
    `pace_fps`, also paced at that many frames a second (see _paced)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cpu = worker_cpu()
    os.sched_setaffinity(0, {cpu})  # before cv2 loads, so its thread pools see one CPU
    import cv2
    import numpy as np

    from rtsp_kafka_mjpeg.analytics.processors import DECODE_FLAGS, load_processor, wanted_image
    from rtsp_kafka_mjpeg.results import FrameInfo

    name, processor = load_processor(processor_spec)
    wants = wanted_image(processor)
    flag = DECODE_FLAGS[wants]
    jpegs = [np.frombuffer(j, np.uint8) for j in load_jpegs(frames_dir)]
    if not jpegs:
        raise SystemExit(f"no frame-*.jpg in {frames_dir}")
    first = cv2.imdecode(jpegs[0], cv2.IMREAD_COLOR)
    height, width = first.shape[:2]
    decode_s = process_s = 0.0
    done = 0
    start_cpu = 0.0
    order = [*range(WARMUP_FRAMES), *(i for _ in range(rounds) for i in range(len(jpegs)))]
    for n, i in enumerate(order):
        if n == WARMUP_FRAMES:
            start_cpu, decode_s, process_s, done = time.process_time(), 0.0, 0.0, 0
        ts = n * 1_000_000_000 // fps  # consecutive capture times: motion compares, never resets
        info = FrameInfo(CAMERA_ID, n, ts, width, height, "floor", 0, n)
        t0 = time.thread_time()
        image = cv2.imdecode(jpegs[i % len(jpegs)], flag)
        t1 = time.thread_time()
        processor(info, image)
        t2 = time.thread_time()
        decode_s += t1 - t0
        process_s += t2 - t1
        done += 1
    total = time.process_time() - start_cpu
    paced = _paced(jpegs, flag, load_processor(processor_spec)[1], width, height, pace_fps) if pace_fps else None
    return {
        "processor": name,
        "decode_flag": wants,
        "frames": done,
        "distinct_frames": len(jpegs),
        "jpeg_kb": sum(len(j) for j in jpegs) / len(jpegs) / 1024,
        "cpu_s_per_frame": total / done,
        "decode_cpu_s_per_frame": decode_s / done,
        "processor_cpu_s_per_frame": process_s / done,
        "cpu": cpu,
        "pace_fps": pace_fps,
        "paced_cpu_s_per_frame": paced,
    }


def _paced(jpegs: list[Any], flag: int, processor: Any, width: int, height: int, fps: int) -> float:
    """The same decode + processor, one frame every 1/fps s with nothing else running: CPU per frame.

    Why: a live worker sits idle between frames (4 x 720p30 keep it ~12% busy), and on this VM work
    that follows an idle spell runs slower (a pure-Python loop too, so not one library's caches);
    the hot loop above never idles. The difference is what any live worker pays, whatever its Kafka
    client and its own code."""
    import cv2

    from rtsp_kafka_mjpeg.results import FrameInfo

    period = 1 / fps
    frames = len(jpegs) * 2
    start_cpu, next_at = time.process_time(), time.monotonic()
    for n in range(frames):
        next_at += period
        info = FrameInfo(CAMERA_ID, n, n * 1_000_000_000 // fps, width, height, "floor", 0, n)
        processor(info, cv2.imdecode(jpegs[n % len(jpegs)], flag))
        time.sleep(max(0.0, next_at - time.monotonic()))
    return (time.process_time() - start_cpu) / frames
