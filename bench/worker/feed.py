"""The publisher (a child process): the recorded JPEGs sent as N live cameras at the source fps.

A child of its own, kept off the worker's CPU, because four producer.py with four RTSP cameras
would need more than the 2-core box has: this feeds the four-camera window instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .common import worker_cpu
from .frames import load_jpegs


def camera_ids(count: int, partitions: int) -> list[str]:
    """`count` camera ids whose keys land on as many different partitions as there are (kafka-python's
    murmur2, as producer.py's records), so that workers of one group each get cameras: cam1..cam4
    would put three of four cameras on one partition of four, and a second worker process nothing."""
    from kafka.partitioner.default import murmur2

    chosen: dict[int, str] = {}
    extra: list[str] = []
    n = 1
    while len(chosen) + len(extra) < count:
        name = f"cam{n}"
        part = (murmur2(name.encode()) & 0x7FFFFFFF) % partitions
        if part not in chosen:
            chosen[part] = name
        elif len(chosen) == partitions:
            extra.append(name)
        n += 1
    return sorted(chosen.values()) + extra


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
    ids = camera_ids(cameras, len(producer.partitions_for(topic)))
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
            frame = Frame(ids[c], time.time_ns(), tick, width, height, jpegs[(tick + 7 * c) % len(jpegs)])
            producer.send(topic, value=frame.jpeg, key=frame.kafka_key(), headers=frame.kafka_headers())
            sent += 1
        tick += 1
    producer.flush(30)
    producer.close(10)
    return {"sent": sent, "ticks": tick, "late_ticks": late, "seconds": time.monotonic() - start,
            "cameras": cameras, "fps": fps}
