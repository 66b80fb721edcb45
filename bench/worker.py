"""The analytics worker's figures (issue 11), in one run side by side:

1. worker.py's CPU per processed frame against its own floor: JPEG decode with the flag the
   processor asks for (gray/4 for motion) + the processor alone, timed in a child pinned to one
   CPU over JPEGs recorded from the 720p30 topic (the same frames the worker got).
2. One worker (motion, lag policy `every`) pinned to one CPU, four 720p30 cameras: frames
   processed / frames published over a window. The four cameras are the recorded 720p JPEGs
   published at 30 fps each by a small publisher process (``publish`` below, pinned to the other
   CPUs): four producer.py with four RTSP cameras would need more than the 2-core box has.
3. Capture -> result at 720p30: a plain KafkaConsumer on the results topic (arrival - the
   result's capture_ts_ns), the worker's own histogram (capture -> result acknowledged), and an
   SSE client of consumer.py's /api/events (arrival of the `data:` line - capture_ts_ns).

Run alone: ``python -m bench.worker floor DIR`` / ``python -m bench.worker publish DIR ...``
print one JSON object each; the scenario runs them as children.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from . import stats
from .measure import Context, hub_latency, machine_times
from .plan import Resolution
from .services import (
    ROOT,
    ProcTree,
    Service,
    ServiceError,
    Stack,
    TopicCounter,
    cpu_delta,
    histogram_buckets,
    histogram_quantile,
    http_text,
    metric_sum,
    project_env,
)

log = logging.getLogger(__name__)

PROCESSOR = "motion"
WARMUP_FRAMES = 5  # first decodes and allocations are not per-frame costs
CAMERA_ID = "cam1"  # Stack's producer publishes as cam1


def worker_cpu() -> int:
    """The CPU the worker (and the floor) run on: the last one, as bench.floor pins to."""
    return sorted(os.sched_getaffinity(0))[-1]


# --- children: floor and publisher ---------------------------------------------------------------


def load_jpegs(frames_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(frames_dir.glob("frame-*.jpg"))]


def measure_floor(frames_dir: Path, processor_spec: str, fps: int, rounds: int) -> dict[str, Any]:
    """Decode (the processor's flag) + the processor over the recorded JPEGs, on one CPU."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cpu = worker_cpu()
    os.sched_setaffinity(0, {cpu})  # before cv2 loads, so its thread pools see one CPU
    import cv2
    import numpy as np

    from rtsp_kafka_mjpeg.processors import DECODE_FLAGS, load_processor, wanted_image
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
    }


def publish(frames_dir: Path, bootstrap: str, topic: str, cameras: int, fps: int, seconds: float,
            width: int, height: int) -> dict[str, Any]:
    """The recorded JPEGs as `cameras` live cameras at `fps` each, stamped with the time of sending.

    Paced like a camera: a tick every 1/fps; a tick more than a frame late is dropped, not sent
    in a burst afterwards (counted as `late_ticks`)."""
    others = sorted(os.sched_getaffinity(0) - {worker_cpu()})
    if others:
        os.sched_setaffinity(0, set(others))  # leave the worker's CPU to the worker
    from kafka import KafkaProducer

    from rtsp_kafka_mjpeg.frame import Frame

    jpegs = load_jpegs(frames_dir)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0, max_request_size=16 * 1024 * 1024,
                             client_id="bench-publisher", metrics_enabled=False)
    interval = 1.0 / fps
    sent = late = 0
    start = time.monotonic()
    tick = 0
    while True:
        due = start + tick * interval
        now = time.monotonic()
        if due - start >= seconds:
            break
        if now < due:
            time.sleep(due - now)
        elif now - due > interval:
            late += 1
            tick += 1
            continue
        for c in range(cameras):
            frame = Frame(f"cam{c + 1}", time.time_ns(), tick, width, height, jpegs[(tick + 7 * c) % len(jpegs)])
            producer.send(topic, value=frame.jpeg, key=frame.kafka_key(), headers=frame.kafka_headers())
            sent += 1
        tick += 1
    producer.flush(30)
    producer.close(10)
    return {"sent": sent, "ticks": tick, "late_ticks": late, "seconds": time.monotonic() - start,
            "cameras": cameras, "fps": fps}


def drain(bootstrap: str, topic: str, seconds: float) -> dict[str, Any]:
    """kafka-python alone: a KafkaConsumer fetching the frames topic as the worker does (records of
    up to 50 per poll, 100 ms fetch wait), nothing done with them; CPU of the process per record.
    The part of the worker's CPU that is the Kafka client's, before any decode."""
    from kafka import KafkaConsumer as Consumer

    consumer = Consumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="bench-drain",
                        max_poll_records=50, fetch_max_wait_ms=100, max_partition_fetch_bytes=16 * 1024 * 1024,
                        metrics_enabled=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [0])]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    warm_until = time.monotonic() + 1.0
    start_cpu = start = 0.0
    records = 0
    while True:
        got = sum(len(r) for r in consumer.poll(timeout_ms=200).values())
        now = time.monotonic()
        if not start and now >= warm_until:
            start_cpu, start, records = time.process_time(), now, 0
        elif start:
            records += got
            if now - start >= seconds:
                break
    cpu = time.process_time() - start_cpu
    consumer.close()
    return {"records": records, "seconds": time.monotonic() - start,
            "cpu_s_per_record": cpu / records if records else None}


def child(argv: list[str], timeout: float) -> dict[str, Any]:
    from harness.sealed_env import sealed_environ

    out = subprocess.run([sys.executable, "-m", "bench.worker", *argv], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT, env=sealed_environ(), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench.worker {argv[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- collectors in the bench process -------------------------------------------------------------


class ResultCollector(threading.Thread):
    """A plain KafkaConsumer on the results topic: (arrival ns, capture ts ns) per result record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="results-collector", daemon=True)
        self.samples: list[tuple[int, int]] = []
        self._stop_event = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       client_id="bench-results", fetch_max_wait_ms=100)
        tps = [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic) or [0])]
        self._consumer.assign(tps)
        self._consumer.seek_to_end(*tps)
        for tp in tps:
            self._consumer.position(tp)  # resolve the end now, not at the first poll

    def run(self) -> None:
        while not self._stop_event.is_set():
            batches = self._consumer.poll(timeout_ms=100)
            now = time.time_ns()
            for records in batches.values():
                for record in records:
                    try:
                        self.samples.append((now, int(json.loads(record.value)["capture_ts_ns"])))
                    except (ValueError, KeyError, TypeError):
                        continue
        self._consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


class SseClient(threading.Thread):
    """An /api/events client: (arrival ns, capture ts ns) per `data:` line it reads."""

    def __init__(self, url: str) -> None:
        super().__init__(name="sse-client", daemon=True)
        self.url = url
        self.samples: list[tuple[int, int]] = []
        self.error: str | None = None
        self.connected = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as resp:
                self.connected.set()
                while not self._stop_event.is_set():
                    line = resp.readline()
                    if not line:
                        break
                    if line.startswith(b"data:"):
                        now = time.time_ns()
                        try:
                            self.samples.append((now, int(json.loads(line[5:])["capture_ts_ns"])))
                        except (ValueError, KeyError, TypeError):
                            continue
        except OSError as err:
            if not self._stop_event.is_set():
                self.error = f"{type(err).__name__}: {err}"
        finally:
            self.connected.set()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=7)


def latency_ms(samples: list[tuple[int, int]], start_ns: int, end_ns: int) -> dict[str, Any]:
    return stats.summary([(a - c) / 1e6 for a, c in samples if start_ns <= a <= end_ns and c > 0])


# --- services --------------------------------------------------------------------------------------


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1,
                                     "configs": {"max.message.bytes": str(16 * 1024 * 1024)}}})
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def start_worker(ctx: Context, name: str, bootstrap: str, frames_topic: str, results_topic: str,
                 pin: int | None = None) -> Service:
    """worker.py (motion, every, after-processing) in a fresh group, ready once it knows its offsets."""
    from harness.ports import free_port

    port = free_port()
    env = {**project_env(bootstrap, frames_topic), "KAFKA_RESULTS_TOPIC": results_topic,
           "WORKER_GROUP_ID": f"bench-{uuid.uuid4().hex[:8]}", "WORKER_PROCESSOR": PROCESSOR,
           "WORKER_LAG_POLICY": "every", "WORKER_METRICS_PORT": str(port)}
    argv = [sys.executable, "worker.py"]
    if pin is not None:  # taskset execs python: same PID, every thread on that CPU from the start
        argv = ["taskset", "-c", str(pin), *argv]
    service = Service(name, argv, env, ctx.services.log_dir, port=port).start()
    service.wait_http()
    deadline = time.monotonic() + 40
    while " from offsets " not in service.log_text():
        if not service.alive():
            raise service.fail("exited")
        if time.monotonic() > deadline:
            service.stop()
            raise service.fail("never reported its start offsets")
        time.sleep(0.2)
    return service


def record(bootstrap: str, topic: str, frames: int, frames_dir: Path, timeout: float = 60.0) -> dict[str, int]:
    """The next `frames` frames of the topic as frame-NNNN.jpg (the floor's and the publisher's input)."""
    from rtsp_kafka_mjpeg.frame import BadRecord, frame_from_record

    shutil.rmtree(frames_dir, ignore_errors=True)
    frames_dir.mkdir(parents=True)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="bench-recorder",
                             max_partition_fetch_bytes=16 * 1024 * 1024)
    size = {"width": 0, "height": 0}
    got = 0
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [0])]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        deadline = time.monotonic() + timeout
        while got < frames:
            if time.monotonic() > deadline:
                raise ServiceError(f"recorded only {got} of {frames} frames of {topic} in {timeout:.0f}s")
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    try:
                        frame = frame_from_record(r.key, r.value, r.headers, 64 * 1024 * 1024)
                    except BadRecord:
                        continue
                    if got < frames:
                        (frames_dir / f"frame-{got:04d}.jpg").write_bytes(frame.jpeg)
                        size = {"width": frame.width, "height": frame.height}
                        got += 1
    finally:
        consumer.close()
    return {"frames": got, **size}


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's threads have spent runnable but waiting for a CPU (schedstat field 2):
    the share of a window a worker wanted its core and another process had it."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


class WorkerProbe:
    """What the parent reads of a worker at a window's edges: CPU of its tree and its /metrics."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.tree = ProcTree(service.pid)

    def snap(self) -> dict[str, Any]:
        return {"t_ns": time.time_ns(), "cpu": self.tree.cpu(), "metrics": http_text(f"{self.service.url}/metrics"),
                "machine": machine_times(), "waited_s": runqueue_wait_s(self.service.pid)}


def window_figures(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    seconds = (after["t_ns"] - before["t_ns"]) / 1e9
    processed = (metric_sum(after["metrics"], "worker_frames_processed")
                 - metric_sum(before["metrics"], "worker_frames_processed"))
    cpu = cpu_delta(before["cpu"], after["cpu"])
    busy = after["machine"][0] - before["machine"][0]
    total = after["machine"][1] - before["machine"][1]
    name = "worker_capture_to_result_seconds"
    hb, ha = histogram_buckets(before["metrics"], name), histogram_buckets(after["metrics"], name)
    hist = {label: (None if (v := histogram_quantile(hb, ha, q)) is None else v * 1e3)
            for label, q in (("p50", 0.5), ("p99", 0.99))}
    return {
        "window_s": seconds,
        "processed": processed,
        "worker_cpu_s": cpu,
        "worker_cpu_pct": 100.0 * cpu / seconds if seconds else None,
        "worker_cpu_s_per_frame": cpu / processed if processed else None,
        "failed": metric_sum(after["metrics"], "worker_frames_failed") - metric_sum(before["metrics"],
                                                                                    "worker_frames_failed"),
        "lag_end": metric_sum(after["metrics"], "worker_consumer_lag_records"),
        "worker_capture_to_ack_ms": hist,
        "machine_busy_pct": 100.0 * busy / total if total > 0 else 0.0,
        "waited_for_cpu_pct": 100.0 * (after["waited_s"] - before["waited_s"]) / seconds if seconds else None,
    }


# --- the scenario ----------------------------------------------------------------------------------


def one_camera(ctx: Context, res: Resolution, frames_dir: Path) -> dict[str, Any]:
    """producer.py on the RTSP camera -> worker.py -> results topic -> consumer.py's /api/events."""
    plan = ctx.plan
    bootstrap = ctx.services.bootstrap
    results_topic = f"bench-results-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, results_topic, 1)  # consumer.py never creates it; it must exist when it starts
    stack = Stack(ctx.services, res, ctx.services.camera(res), KAFKA_RESULTS_TOPIC=results_topic)
    worker: Service | None = None
    collectors: list[Any] = []
    try:
        stack.start()
        assert stack.counter is not None
        worker = start_worker(ctx, f"worker-{res.name}", bootstrap, stack.topic, results_topic)
        recorded = record(bootstrap, stack.topic, plan.worker_frames, frames_dir)  # also the worker's warm-up
        results = ResultCollector(bootstrap, results_topic)
        sse = SseClient(f"{stack.consumer.url}/api/events?{urllib.parse.urlencode({'camera': CAMERA_ID})}")
        collectors = [results, sse]
        results.start()
        sse.start()
        sse.connected.wait(10)
        time.sleep(plan.warmup_s)  # the SSE backlog of recent results arrives before the window
        probe = WorkerProbe(worker)
        before, count_before, hub_before = probe.snap(), stack.counter.count(), stack.consumer_metrics()
        time.sleep(plan.worker_s)  # the measurement window
        after, count_after, hub_after = probe.snap(), stack.counter.count(), stack.consumer_metrics()
        for c in collectors:
            c.stop()
        worker.stop()
        worker = None
        # the Kafka client's share: the same topic fetched by a bare KafkaConsumer, worker stopped
        kafka_only = child(["drain", "--bootstrap", bootstrap, "--topic", stack.topic, "--seconds",
                            str(min(10.0, plan.worker_s))], timeout=plan.worker_s + 60)
    finally:
        for c in collectors:
            c.stop()
        if worker is not None:
            worker.stop()
        stack.stop()
    fig = window_figures(before, after)
    published = count_after - count_before
    fig.update(
        recorded=recorded,
        published=published,
        processed_share=fig["processed"] / published if published else None,
        results_topic_ms=latency_ms(results.samples, before["t_ns"], after["t_ns"]),
        events_ms=latency_ms(sse.samples, before["t_ns"], after["t_ns"]),
        events_error=sse.error,
        kafka_consumer_cpu_s_per_frame=kafka_only["cpu_s_per_record"],
        # the frame's own way there: capture -> consumer.py's hub (producer + Kafka + its poll)
        capture_to_hub_ms=hub_latency(hub_before, hub_after),
    )
    return fig


def four_cameras(ctx: Context, res: Resolution, frames_dir: Path, size: dict[str, int]) -> dict[str, Any]:
    """One pinned worker, `plan.worker_cameras` cameras of recorded JPEGs at the source fps each."""
    plan = ctx.plan
    bootstrap = ctx.services.bootstrap
    n = plan.worker_cameras
    frames_topic = f"bench-worker{n}-{uuid.uuid4().hex[:8]}"
    results_topic = f"bench-results{n}-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, frames_topic, n)
    create_topic(bootstrap, results_topic, 1)
    cpu = worker_cpu()
    worker = start_worker(ctx, f"worker-{n}cams", bootstrap, frames_topic, results_topic, pin=cpu)
    counter = TopicCounter(bootstrap, frames_topic)
    seconds = plan.settle_s + plan.worker_s + 2.0
    out: dict[str, Any] = {}
    publisher = threading.Thread(target=lambda: out.update(child(
        ["publish", str(frames_dir), "--bootstrap", bootstrap, "--topic", frames_topic, "--cameras", str(n),
         "--fps", str(res.fps), "--seconds", str(seconds), "--width", str(size["width"]),
         "--height", str(size["height"])], timeout=seconds + 60)), daemon=True)
    try:
        publisher.start()
        time.sleep(plan.settle_s)
        probe = WorkerProbe(worker)
        before, count_before = probe.snap(), counter.count()
        time.sleep(plan.worker_s)  # the measurement window
        after, count_after = probe.snap(), counter.count()
        publisher.join(seconds + 60)
    finally:
        counter.close()
        worker.stop()
    fig = window_figures(before, after)
    published = count_after - count_before
    fig.update(cameras=n, pinned_cpu=cpu, published=published,
               published_fps_per_camera=published / n / fig["window_s"],
               processed_share=fig["processed"] / published if published else None,
               publisher=out, source="recorded JPEGs from a publisher process (not producer.py)")
    return fig


def worker_bench(ctx: Context, res: Resolution) -> dict[str, Any]:
    """The three worker figures at one resolution (720p30); see the module docstring."""
    ctx.services.release_stack(res.name)  # a pipeline producer left running would share the CPU
    frames_dir = ctx.services.log_dir.parent / "worker-frames" / res.name
    result: dict[str, Any] = {"resolution": res.name, "processor": PROCESSOR, "lag_policy": "every",
                              "window_s": ctx.plan.worker_s}
    ctx.results["worker"] = result
    try:
        result["one_camera"] = one_camera(ctx, res, frames_dir)
    finally:
        ctx.services.release(res.name)  # the camera too: nothing below needs it
    floor = child(["floor", str(frames_dir), "--processor", PROCESSOR, "--fps", str(res.fps)], timeout=300)
    result["floor"] = floor
    per_frame = result["one_camera"]["worker_cpu_s_per_frame"]
    result["cpu_vs_floor"] = per_frame / floor["cpu_s_per_frame"] if per_frame else None
    result["four_cameras"] = four_cameras(ctx, res, frames_dir, result["one_camera"]["recorded"])
    pinned = result["four_cameras"]["worker_cpu_s_per_frame"]
    result["four_cameras"]["cpu_vs_floor"] = pinned / floor["cpu_s_per_frame"] if pinned else None
    one, four = result["one_camera"], result["four_cameras"]
    log.info("worker %s: %.2fx floor (%.2f vs %.2f ms); %d cams on cpu %d: %.3f processed; capture->result "
             "p50 %.1f p99 %.1f ms, ->/api/events p50 %.1f p99 %.1f ms", res.name, result["cpu_vs_floor"] or 0,
             (per_frame or 0) * 1e3, floor["cpu_s_per_frame"] * 1e3, four["cameras"], four["pinned_cpu"],
             four["processed_share"] or 0, one["results_topic_ms"]["p50"] or 0, one["results_topic_ms"]["p99"] or 0,
             one["events_ms"]["p50"] or 0, one["events_ms"]["p99"] or 0)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    fl = sub.add_parser("floor", help="decode + processor CPU per frame over recorded JPEGs, on one CPU")
    fl.add_argument("frames_dir", type=Path)
    fl.add_argument("--processor", default=PROCESSOR)
    fl.add_argument("--fps", type=int, default=30)
    fl.add_argument("--rounds", type=int, default=2)
    dr = sub.add_parser("drain", help="kafka-python's CPU per record fetched, nothing else")
    dr.add_argument("--bootstrap", required=True)
    dr.add_argument("--topic", required=True)
    dr.add_argument("--seconds", type=float, default=10.0)
    pub = sub.add_parser("publish", help="recorded JPEGs as N live cameras")
    pub.add_argument("frames_dir", type=Path)
    pub.add_argument("--bootstrap", required=True)
    pub.add_argument("--topic", required=True)
    pub.add_argument("--cameras", type=int, default=4)
    pub.add_argument("--fps", type=int, default=30)
    pub.add_argument("--seconds", type=float, default=30.0)
    pub.add_argument("--width", type=int, default=1280)
    pub.add_argument("--height", type=int, default=720)
    args = parser.parse_args(argv)
    if args.cmd == "floor":
        out = measure_floor(args.frames_dir, args.processor, args.fps, args.rounds)
    elif args.cmd == "drain":
        out = drain(args.bootstrap, args.topic, args.seconds)
    else:
        out = publish(args.frames_dir, args.bootstrap, args.topic, args.cameras, args.fps, args.seconds,
                      args.width, args.height)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
