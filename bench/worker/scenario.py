"""The worker scenario itself (``worker_bench``): one camera, the floor, then four cameras.

Only the order of the run and the figures it adds up lives here; starting the worker, reading
it, collecting results and the child measurements are the sibling modules' jobs.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from rtsp_kafka_mjpeg.settings import KAFKA_CLIENTS

from ..measure import Context, hub_latency
from ..plan import Resolution
from ..process import Service
from ..stack import Stack
from ..topic_counter import TopicCounter
from .cli import child
from .collectors import ResultCollector, SseClient, latency_ms
from .common import CAMERA_ID, PROCESSOR, worker_cpu
from .detectors import detectors
from .frames import record
from .launch import create_topic, start_worker
from .probe import WorkerProbe, window_figures

CLIENTS_JOIN_S = 8.0  # the clients child: start, group join and its warm-up before its window

log = logging.getLogger("bench.worker")  # the name its log lines carried before worker.py became a package


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


def four_cameras(ctx: Context, res: Resolution, frames_dir: Path, size: dict[str, int],
                 client: str = "kafka-python") -> dict[str, Any]:
    """One pinned worker with Kafka client `client`, `plan.worker_cameras` cameras of recorded
    JPEGs at the source fps each."""
    plan = ctx.plan
    bootstrap = ctx.services.bootstrap
    n = plan.worker_cameras
    frames_topic = f"bench-worker{n}-{uuid.uuid4().hex[:8]}"
    results_topic = f"bench-results{n}-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, frames_topic, n)
    create_topic(bootstrap, results_topic, 1)
    cpu = worker_cpu()
    worker = start_worker(ctx, f"worker-{n}cams-{client}", bootstrap, frames_topic, results_topic, pin=cpu,
                          client=client)
    counter = TopicCounter(bootstrap, frames_topic)
    clients_s = min(10.0, plan.worker_s)
    # the clients' window follows the worker's on the same live frames: its group join and warm-up
    # take a few seconds, so the publisher goes on that much longer
    seconds = plan.settle_s + plan.worker_s + 2.0 + clients_s + CLIENTS_JOIN_S
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
        worker.stop()
        alone = child(["clients", "--bootstrap", bootstrap, "--topic", frames_topic, "--results-topic",
                       results_topic, "--client", client, "--seconds", str(clients_s), "--cpu", str(cpu)],
                      timeout=clients_s + 120)
        publisher.join(seconds + 60)
    finally:
        counter.close()
        worker.stop()
    fig = window_figures(before, after)
    published = count_after - count_before
    fig.update(client=client, cameras=n, pinned_cpu=cpu, published=published,
               published_fps_per_camera=published / n / fig["window_s"],
               processed_share=fig["processed"] / published if published else None,
               publisher=out, source="recorded JPEGs from a publisher process (not producer.py)",
               clients_alone=alone, clients_cpu_s_per_frame=alone["cpu_s_per_frame"])
    return fig


def worker_bench(ctx: Context, res: Resolution) -> dict[str, Any]:
    """The three worker figures at one resolution (720p30); see the package docstring."""
    ctx.services.release_stack(res.name)  # a pipeline producer left running would share the CPU
    frames_dir = ctx.services.log_dir.parent / "worker-frames" / res.name
    result: dict[str, Any] = {"resolution": res.name, "processor": PROCESSOR, "lag_policy": "every",
                              "window_s": ctx.plan.worker_s}
    ctx.results["worker"] = result
    try:
        result["one_camera"] = one_camera(ctx, res, frames_dir)
    finally:
        ctx.services.release(res.name)  # the camera too: nothing below needs it
    floor = child(["floor", str(frames_dir), "--processor", PROCESSOR, "--fps", str(res.fps), "--pace-fps",
                   str(ctx.plan.worker_cameras * res.fps)], timeout=300)
    result["floor"] = floor
    per_frame = result["one_camera"]["worker_cpu_s_per_frame"]
    result["cpu_vs_floor"] = per_frame / floor["cpu_s_per_frame"] if per_frame else None
    # the same frames through each Kafka client, one after the other (kafka-python first: the default)
    by_client = {}
    for client in KAFKA_CLIENTS:
        fig = four_cameras(ctx, res, frames_dir, result["one_camera"]["recorded"], client)
        pinned = fig["worker_cpu_s_per_frame"]
        fig["cpu_vs_floor"] = pinned / floor["cpu_s_per_frame"] if pinned else None
        alone, paced = fig["clients_cpu_s_per_frame"], floor.get("paced_cpu_s_per_frame")
        fig["floor_and_clients_vs_floor"] = 1 + alone / floor["cpu_s_per_frame"] if alone else None
        # the least a live worker on this client can cost: the work at the live pace + the client alone
        fig["paced_floor_and_clients_vs_floor"] = ((paced + alone) / floor["cpu_s_per_frame"]
                                                   if alone and paced else None)
        by_client[client] = fig
    result["four_cameras"] = by_client[KAFKA_CLIENTS[0]]
    result["four_cameras_by_client"] = by_client
    for client, fig in by_client.items():
        log.info("worker %s, %d cams, %s: %.2fx floor (%.2f ms a frame), %.3f processed; the client alone "
                 "%.2f ms a frame (floor + client = %.2fx; floor paced at the live rate + client = %.2fx)", res.name,
                 fig["cameras"], client, fig["cpu_vs_floor"] or 0, (fig["worker_cpu_s_per_frame"] or 0) * 1e3,
                 fig["processed_share"] or 0, (fig["clients_cpu_s_per_frame"] or 0) * 1e3,
                 fig["floor_and_clients_vs_floor"] or 0, fig["paced_floor_and_clients_vs_floor"] or 0)
    if ctx.plan.worker_detectors:
        result["detectors"] = detectors(ctx, res, frames_dir)
    one, four = result["one_camera"], result["four_cameras"]
    log.info("worker %s: %.2fx floor (%.2f vs %.2f ms); %d cams on cpu %d: %.3f processed; capture->result "
             "p50 %.1f p99 %.1f ms, ->/api/events p50 %.1f p99 %.1f ms", res.name, result["cpu_vs_floor"] or 0,
             (per_frame or 0) * 1e3, floor["cpu_s_per_frame"] * 1e3, four["cameras"], four["pinned_cpu"],
             four["processed_share"] or 0, one["results_topic_ms"]["p50"] or 0, one["results_topic_ms"]["p99"] or 0,
             one["events_ms"]["p50"] or 0, one["events_ms"]["p99"] or 0)
    return result
