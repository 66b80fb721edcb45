"""``python -m bench --rewind``: rewind's goals (issue 18) measured on one broker, one consumer.py.

- request -> first replayed frame at the client, p50/p99, 10 s, 10 min and an hour back, on a
  topic holding an hour of 4 cameras (10 fps, small frames: the seek, not the bytes, is measured);
- replay pace against the recorded pace over a window, at speeds 0.5, 1 and 4;
- clip export of 60 s of 720p30 (real JPEGs: the H.264 test clip's frames at q80): ``mjpeg`` and
  ``mp4`` against real time, the consumer's CPU meanwhile, and a live camera's viewers' fps ratio
  and p99 latency side by side without and with an export running;
- 16 cameras on the index page in headless Chromium: each tile's fps against its camera's.
Figures are ratios and percentiles from this one run; the JSON goes to bench/results/rewind.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from harness import procs
from harness.clips import make_mjpeg_clip
from harness.kafka_broker import KafkaBroker
from harness.mjpeg_client import MjpegViewer
from harness.ports import free_port, port_open
from rtsp_kafka_mjpeg.frame import Frame

from . import stats
from .app_env import project_env
from .paths import RESULTS_DIR, ROOT

log = logging.getLogger("bench.rewind")
NS, MS = 1_000_000_000, 1_000_000
HISTORY_CAMERAS = [f"hist{i}" for i in range(4)]
HISTORY_FPS = 10
LIVE_FPS = 15
PAGE_CAMERAS = [f"page{i:02d}" for i in range(16)]
PAGE_FPS = 8


def small_jpegs(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        image = np.full((180, 320, 3), (i * 9) % 255, np.uint8)
        cv2.putText(image, str(i), (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 4)
        out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])[1].tobytes())
    return out


def hd_jpegs() -> list[bytes]:
    return [p.read_bytes() for p in sorted(make_mjpeg_clip(1280, 720, 30, 10).glob("*.jpg"))]


class Writer:
    """Frames onto the topic with the capture times we choose (CreateTime = capture time)."""

    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        self.topic = topic
        self.producer = KafkaProducer(**broker.client_config(), linger_ms=20, acks=1, batch_size=1 << 20,
                                      max_request_size=8 << 20)

    def send(self, camera: str, ts_ns: int, seq: int, jpeg: bytes, w: int, h: int) -> None:
        frame = Frame(camera, ts_ns, seq, w, h, jpeg)
        self.producer.send(self.topic, jpeg, key=frame.kafka_key(), headers=frame.kafka_headers(),
                           timestamp_ms=ts_ns // MS)


def live_camera(writer: Writer, camera: str, jpegs: list[bytes], fps: int, stop: threading.Event,
                size: tuple[int, int]) -> threading.Thread:
    def run() -> None:
        seq, next_at = 1, time.monotonic()
        while not stop.is_set():
            writer.send(camera, time.time_ns(), seq, jpegs[seq % len(jpegs)], *size)
            writer.producer.flush()
            seq += 1
            next_at += 1 / fps
            stop.wait(max(0.0, next_at - time.monotonic()))
    thread = threading.Thread(target=run, daemon=True, name=f"live-{camera}")
    thread.start()
    return thread


def disk_cost(broker: KafkaBroker, writer: Writer, width: int, height: int) -> dict[str, float]:
    """What retention costs on disk for one camera at this size: real JPEGs (the test clip's
    frames at q80, 30 fps) written as the producer writes them, the partition's log files measured."""
    topic = f"disk-{width}x{height}-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(**broker.client_config())
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(4 << 20)})])
    admin.close()
    jpegs = [p.read_bytes() for p in sorted(make_mjpeg_clip(width, height, 30, 10).glob("*.jpg"))]
    start = time.time_ns() - 60 * NS
    frames = 3 * len(jpegs)
    for i in range(frames):
        frame = Frame("disk", start + i * NS // 30, i + 1, width, height, jpegs[i % len(jpegs)])
        writer.producer.send(topic, frame.jpeg, key=frame.kafka_key(), headers=frame.kafka_headers(),
                             timestamp_ms=frame.capture_ts_ns // MS)
    writer.producer.flush()
    time.sleep(1)
    on_disk = sum(f.stat().st_size for f in (broker.data_dir / "logs" / f"{topic}-0").glob("*.log"))
    per_frame = on_disk / frames
    return {"bytes_per_frame": round(per_frame), "jpeg_bytes_per_frame": round(sum(map(len, jpegs)) / len(jpegs)),
            "gb_per_hour_30fps": round(per_frame * 30 * 3600 / 1e9, 2),
            "gb_per_hour_15fps": round(per_frame * 15 * 3600 / 1e9, 2),
            "gb_per_day_15fps": round(per_frame * 15 * 86400 / 1e9, 1)}


def first_frame_ms(url: str) -> float:
    started = time.perf_counter()
    viewer = MjpegViewer(url)
    try:
        parts = viewer.read_parts(1, 10)
    finally:
        viewer.close()
    if not parts:
        raise RuntimeError(f"no frame from {url}")
    return (time.perf_counter() - started) * 1000


def pace_ratio(url: str, speed: float, window_s: float) -> float:
    viewer = MjpegViewer(url)
    try:
        parts = viewer.read_parts(10**6, window_s)
    finally:
        viewer.close()
    first, last = parts[1], parts[-1]  # the first part goes out at once, before pacing starts
    recorded = (last.capture_ts_ns - first.capture_ts_ns) / NS
    played = (last.received_ns - first.received_ns) / NS
    return recorded / played / speed


class Viewers:
    """n viewers of a live camera: received fps and capture -> receive latency."""

    def __init__(self, url: str, n: int) -> None:
        self.viewers = [MjpegViewer(url) for _ in range(n)]
        self.parts: list[list[Any]] = [[] for _ in range(n)]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        while not self.stop.is_set():
            self.parts[i].extend(self.viewers[i].read_parts(5, 1.0))

    def window(self, seconds: float) -> dict[str, float]:
        t0 = time.time_ns()
        time.sleep(seconds)
        t1 = time.time_ns()
        counts, latencies = [], []
        for parts in self.parts:
            inside = [p for p in list(parts) if t0 <= p.received_ns < t1]
            counts.append(len(inside) / seconds / LIVE_FPS)
            latencies += [(p.received_ns - p.capture_ts_ns) / MS for p in inside]
        return {"fps_ratio_min": round(min(counts), 3), "latency_p50_ms": round(stats.pct(latencies, 50) or 0, 1),
                "latency_p99_ms": round(stats.pct(latencies, 99) or 0, 1)}

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(3)
        for v in self.viewers:
            v.close()


def cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of consumer.py and its gunicorn worker (where the requests are served)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def export(url: str, proc: psutil.Process) -> dict[str, float]:
    cpu0, t0 = cpu_s(proc), time.perf_counter()
    first_byte = None
    size = 0
    with urllib.request.urlopen(url, timeout=300) as res:
        while chunk := res.read(1 << 16):
            if first_byte is None:
                first_byte = time.perf_counter() - t0
            size += len(chunk)
    wall = time.perf_counter() - t0
    cpu = cpu_s(proc) - cpu0
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "bytes": size,
            "first_byte_ms": round((first_byte or wall) * 1000, 1)}


def page_fps(consumer_url: str, seconds: float) -> dict[str, float]:
    import tempfile

    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, viewport={"width": 1600, "height": 1400},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"])
        page = ctx.new_page()
        page.goto(consumer_url + "/", wait_until="commit")
        page.wait_for_function(f"() => [...document.querySelectorAll('.tile')].filter(t => t.shown && "
                               f"t.dataset.camera.startsWith('page')).length === {len(PAGE_CAMERAS)}", timeout=60000)
        page.evaluate("""() => { document.querySelectorAll('.tile').forEach(t => { t.counted = 0; t.mark = t.shown; });
            window.__c = setInterval(() => document.querySelectorAll('.tile').forEach(t => {
                if (t.shown !== t.mark) { t.counted += 1; t.mark = t.shown; } }), 5); }""")
        time.sleep(seconds)
        counts = page.evaluate("""() => { clearInterval(window.__c); return Object.fromEntries(
            [...document.querySelectorAll('.tile')].map(t => [t.dataset.camera, t.counted])); }""")
        ctx.close()
    return {cam: round(n / seconds / PAGE_FPS, 3) for cam, n in counts.items() if cam in PAGE_CAMERAS}


def run(history_s: int, window_s: float, requests: int) -> dict[str, Any]:
    results: dict[str, Any] = {"history_s": history_s, "window_s": window_s}
    broker = KafkaBroker()
    broker.start()
    stop = threading.Event()
    consumer = None
    writer: Writer | None = None
    try:
        topic = f"rewind-bench-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(**broker.client_config())
        admin.create_topics([NewTopic(topic, 6, 1, topic_configs={
            "retention.ms": str(4 * 3600 * 1000), "max.message.bytes": str(4 << 20)})])
        admin.close()
        writer = Writer(broker, topic)
        results["disk"] = {f"{w}x{h}": disk_cost(broker, writer, w, h) for w, h in ((1280, 720), (1920, 1080))}
        small, hd = small_jpegs(30), hd_jpegs()
        now = time.time_ns()
        t0 = now - history_s * NS
        history_end_ns = now
        log.info("writing %d s of %d cameras at %d fps", history_s, len(HISTORY_CAMERAS), HISTORY_FPS)
        for i in range(history_s * HISTORY_FPS):
            for cam in HISTORY_CAMERAS:
                writer.send(cam, t0 + i * NS // HISTORY_FPS, i + 1, small[i % len(small)], 320, 180)
        hd_start = now - 75 * NS
        for i in range(60 * 30):
            writer.send("hd", hd_start + i * NS // 30, i + 1, hd[i % len(hd)], 1280, 720)
        writer.producer.flush()
        results["hd_bytes_per_frame"] = round(sum(len(j) for j in hd) / len(hd))
        live_camera(writer, "live", hd, LIVE_FPS, stop, (1280, 720))
        for cam in PAGE_CAMERAS:
            live_camera(writer, cam, small, PAGE_FPS, stop, (320, 180))

        port = free_port()
        log_path = RESULTS_DIR / "logs" / "rewind-consumer.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as out:
            consumer = subprocess.Popen([sys.executable, "consumer.py", "--port", str(port)], cwd=ROOT, stdout=out,
                                        stderr=subprocess.STDOUT, env=project_env(broker.bootstrap, topic))
        procs.track(consumer)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)
        proc = psutil.Process(consumer.pid)

        log.info("request -> first replayed frame")
        first: dict[str, Any] = {}
        for label, back_s in (("10s", 10), ("10min", 600), ("1h", history_s - 30)):
            if back_s > history_s:
                continue
            at = (history_end_ns - back_s * NS) / NS  # the history's own end, not now (writing it took a while)
            times = [first_frame_ms(f"{base}/video_feed?camera={HISTORY_CAMERAS[k % 4]}&start={at + k * 0.01:.3f}")
                     for k in range(requests)]
            first[label] = {"p50_ms": round(stats.pct(times, 50) or 0, 1),
                            "p99_ms": round(stats.pct(times, 99) or 0, 1)}
        results["first_frame"] = first

        log.info("/list of an hour")
        listed = {}
        for call in ("first", "second"):
            t = time.perf_counter()
            with urllib.request.urlopen(f"{base}/list?camera=hist1", timeout=120) as res:
                spans = json.loads(res.read())
            listed[f"{call}_ms"] = round((time.perf_counter() - t) * 1000, 1)
        listed["spans"] = len(spans)
        results["list"] = listed

        log.info("replay pace")
        pace = {}
        for speed in (0.5, 1.0, 4.0):
            at = (history_end_ns - int((window_s * speed + 20) * NS)) / NS
            pace[str(speed)] = round(pace_ratio(f"{base}/video_feed?camera=hist0&start={at:.3f}&speed={speed}",
                                                speed, window_s), 4)
        results["pace_ratio"] = pace

        log.info("clip export and live viewers")
        viewers = Viewers(f"{base}/video_feed?camera=live", 3)
        time.sleep(3)
        quiet = viewers.window(15)
        clips = {}
        start = (hd_start + NS // 100) / NS
        for fmt in ("mjpeg", "mp4"):
            clips[fmt] = export(f"{base}/get?camera=hd&start={start:.3f}&duration=60&format={fmt}", proc)
            clips[fmt]["x_real_time"] = round(60 / clips[fmt]["wall_s"], 1)
            clips[fmt]["x_real_time_per_cpu_s"] = round(60 / max(clips[fmt]["cpu_s"], 0.01), 1)
        busy: dict[str, Any] = {}
        exporting = threading.Event()

        def keep_exporting() -> None:
            while not exporting.is_set():
                export(f"{base}/get?camera=hd&start={start:.3f}&duration=60&format=mp4", proc)
        exporter = threading.Thread(target=keep_exporting, daemon=True)
        exporter.start()
        time.sleep(2)
        busy = viewers.window(15)
        exporting.set()
        viewers.close()
        results["clips"] = clips
        results["live_viewers"] = {"without_export": quiet, "with_mp4_export": busy}

        log.info("16 cameras on the page")
        page = page_fps(base, 10)
        results["page_fps_ratio"] = {"min": min(page.values()), "p50": stats.pct(list(page.values()), 50),
                                     "tiles": len(page)}
    finally:
        stop.set()
        if consumer is not None:
            procs.terminate(consumer)
        if writer is not None:
            time.sleep(0.5)  # the live cameras' threads see `stop`
            writer.producer.close(timeout=5)
        broker.close()
    return results


def summary(r: dict[str, Any]) -> str:
    lines = [f"rewind ({r['history_s']} s of {len(HISTORY_CAMERAS)} cameras retained)"]
    for label, f in r["first_frame"].items():
        lines.append(f"request -> first replayed frame, {label} back: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms "
                     f"(goal 150 / 400)")
    if "list" in r:
        lines.append(f"/list of the hour: first call {r['list']['first_ms']} ms (probes the time index), then "
                     f"{r['list']['second_ms']} ms (cached, extended), {r['list']['spans']} span(s)")
    lines.append("replay pace / recorded pace: " + ", ".join(f"x{k}: {v}" for k, v in r["pace_ratio"].items())
                 + " (goal within 0.02 of 1)")
    for fmt, c in r["clips"].items():
        lines.append(f"clip 60 s 720p30 {fmt}: {c['x_real_time']}x real time, consumer CPU {c['cpu_s']} s "
                     f"({c['x_real_time_per_cpu_s']}x real time per CPU second), first byte {c['first_byte_ms']} ms")
    q, b = r["live_viewers"]["without_export"], r["live_viewers"]["with_mp4_export"]
    lines.append(f"live viewers (3 x 720p{LIVE_FPS}): fps ratio min {q['fps_ratio_min']} -> {b['fps_ratio_min']}, "
                 f"latency p99 {q['latency_p99_ms']} -> {b['latency_p99_ms']} ms (without -> with an mp4 export)")
    for size, d in r["disk"].items():
        lines.append(f"retention on disk, one {size} camera (q80 JPEG ~{d['jpeg_bytes_per_frame'] // 1000} KB): "
                     f"{d['gb_per_hour_15fps']} GB/h at 15 fps, {d['gb_per_hour_30fps']} GB/h at 30 fps, "
                     f"{d['gb_per_day_15fps']} GB/day at 15 fps (x replication factor)")
    p = r["page_fps_ratio"]
    lines.append(f"16 cameras on the page: tile fps / camera fps min {p['min']}, p50 {p['p50']} (goal >= 0.9)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench --rewind", description=__doc__.splitlines()[0])
    parser.add_argument("--history-s", type=int, default=3600, help="seconds of history to write (default 3600)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per pace measurement (default 60)")
    parser.add_argument("--requests", type=int, default=40, help="first-frame requests per offset (default 40)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "rewind.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    results = run(args.history_s, args.window, args.requests)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
