"""The recorded frames: a topic's next N frames written as frame-NNNN.jpg, and read back.

Its own module because the recording (in the parent) and its two readers (the floor and the
publisher, each a child process) meet only through this folder of files.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from ..process import ServiceError


def load_jpegs(frames_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(frames_dir.glob("frame-*.jpg"))]


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
