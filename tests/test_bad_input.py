"""Junk on the topic, oversized frames and vanishing clients: skipped, counted, never fatal."""

from __future__ import annotations

import gc
import json
import socket
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
from conftest import CAMERA_FPS, app_env, read_parts, wait_for
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from harness.mjpeg_client import MjpegViewer
from harness.ports import tcp_send_queue

GOOD_HEADERS = [("camera-id", b"door"), ("capture-ts-ns", b"1"), ("seq", b"1"), ("width", b"8"), ("height", b"8")]


def metric_samples(url: str) -> dict[tuple[str, str | None], float]:
    body = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return {(s.name, s.labels.get("reason") or s.labels.get("camera")): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def test_junk_records_are_skipped_counted_and_never_reach_viewers(kafka, camera, topic, start_app) -> None:
    env = app_env(kafka.bootstrap, topic)
    start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", {**env, "KAFKA_MAX_MESSAGE_BYTES": "200000"})
    assert wait_for(lambda: len(read_parts(f"{consumer.url}/video_feed", 1, 5)) == 1, 30)

    viewer = MjpegViewer(f"{consumer.url}/video_feed?camera=door")
    viewer.read_parts(1, 10)
    junk = KafkaProducer(**kafka.client_config(), max_request_size=1024 * 1024)
    big_jpeg = b"\xff\xd8" + bytes(300_000) + b"\xff\xd9"
    records = [
        (b"door", b"not a jpeg at all", GOOD_HEADERS),          # non-JPEG bytes
        (b"door", b"\xff\xd8\xff\xe0" + bytes(500), GOOD_HEADERS),  # truncated JPEG (no EOI)
        (b"door", b"", GOOD_HEADERS),                            # empty value
        (b"door", b"\xff\xd8" + bytes(50) + b"\xff\xd9", []),    # missing headers
        (b"door", b"\xff\xd8" + bytes(50) + b"\xff\xd9",         # malformed headers
         [("camera-id", b"door"), ("capture-ts-ns", b"yesterday"), ("seq", b"-"), ("width", b"x"), ("height", b"")]),
        (None, b"\xff\xd8" + bytes(50) + b"\xff\xd9", None),     # a plain producer's record: no key, no headers
        (b"door", big_jpeg, GOOD_HEADERS),                       # over the consumer's limit
    ]
    for _ in range(20):
        for key, value, headers in records:
            junk.send(topic, key=key, value=value, headers=headers)
    junk.flush()
    junk.close()

    parts = viewer.read_parts(CAMERA_FPS * 3, 10)
    viewer.close()
    assert len(parts) >= CAMERA_FPS * 2, "the stream stalled after junk arrived"
    for part in parts:
        assert cv2.imdecode(np.frombuffer(part.body, np.uint8), cv2.IMREAD_COLOR) is not None
        assert int(part.headers["content-length"]) < 200_000

    samples = metric_samples(consumer.url)
    for reason in ("not_jpeg", "empty", "missing_header", "bad_header", "oversized"):
        assert samples.get(("mjpeg_records_skipped_total", reason), 0) >= 20, reason
    log = consumer.log()
    assert log.count("skipping record") <= 6, "bad records must be logged at most once per reason and interval"
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def noise_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 720p video of pure noise: its JPEGs are as large as JPEGs get."""
    path = tmp_path_factory.mktemp("noise") / "noise.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8))
    writer.release()
    return path


def record_sizes(kafka, topic: str, count: int) -> list[int]:
    consumer = KafkaConsumer(topic, **kafka.client_config(), auto_offset_reset="earliest", consumer_timeout_ms=20000,
                             max_partition_fetch_bytes=4 * 1024 * 1024)
    sizes = []
    for record in consumer:
        sizes.append(len(record.value))
        if len(sizes) >= count:
            break
    consumer.close()
    return sizes


def test_frames_over_the_record_limit_are_shrunk_and_said_once(kafka, topic, start_app, noise_video,
                                                               kafka_client) -> None:
    limit = 256 * 1024
    env = app_env(kafka.bootstrap, topic, KAFKA_MAX_MESSAGE_BYTES=str(limit), KAFKA_CLIENT=kafka_client)
    producer = start_app("producer.py", env,
                         "--source", str(noise_video), "--jpeg-quality", "100", "--camera-id", "noise")
    sizes = record_sizes(kafka, topic, 10)
    assert len(sizes) >= 10 and max(sizes) <= limit
    assert producer.log().count("exceeds the") == 1


def test_an_existing_topic_with_a_smaller_limit_is_respected(kafka, topic, start_app, noise_video,
                                                             kafka_client) -> None:
    admin = KafkaAdminClient(**kafka.client_config())
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"max.message.bytes": "150000"}}})
    admin.close()
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic, KAFKA_CLIENT=kafka_client),
                         "--source", str(noise_video), "--jpeg-quality", "95", "--camera-id", "noise")
    sizes = record_sizes(kafka, topic, 10)
    assert len(sizes) >= 10 and max(sizes) <= 150000 - 4096
    assert "accepts records up to 150000 bytes" in producer.log()
    assert "send_failed" not in producer.log() and "delivery failing" not in producer.log()


@pytest.fixture
def consumer_worker(kafka, camera, topic, start_app):
    env = app_env(kafka.bootstrap, topic)
    start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    assert wait_for(lambda: len(read_parts(f"{consumer.url}/video_feed", 1, 5)) == 1, 30)
    master = psutil.Process(consumer.proc.pid)
    return consumer, master.children()[0]


def viewer_count(url: str) -> int:
    """Stream viewers the consumer counts right now (its /healthz)."""
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as res:
        return int(json.loads(res.read())["viewers"])


def test_clients_that_vanish_mid_stream_leave_nothing_behind(consumer_worker) -> None:
    consumer, worker = consumer_worker
    read_parts(f"{consumer.url}/video_feed", 5, 10)  # warm up
    assert wait_for(lambda: viewer_count(consumer.url) == 0, 10), "the warm-up viewer was never released"
    before = (worker.num_fds(), worker.num_threads(), worker.memory_info().rss)
    for _ in range(4):
        viewers = [MjpegViewer(f"{consumer.url}/video_feed") for _ in range(50)]
        for viewer in viewers:
            viewer.read_parts(1, 5)
        for viewer in viewers:  # vanish: reset, no goodbye
            viewer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            viewer.close()
        del viewers
        gc.collect()
    assert wait_for(lambda: worker.num_fds() <= before[0] + 2, 15), (before, worker.num_fds())
    after = (worker.num_fds(), worker.num_threads(), worker.memory_info().rss)
    print(f"200 vanished clients: fds {before[0]}->{after[0]}, threads {before[1]}->{after[1]}, "
          f"rss {before[2] / 1e6:.1f}->{after[2] / 1e6:.1f} MB")
    assert after[1] <= before[1]
    assert after[2] - before[2] < 30e6
    assert wait_for(lambda: viewer_count(consumer.url) == 0, 10), viewer_count(consumer.url)


class SendQueue:
    """The server's send queue on one connection, sampled: stalled when it holds bytes and two
    samples in a row are equal. A 20 fps stream adds a frame every 50 ms, so a queue that does
    not move between samples 0.2 s apart is one the server can no longer write into."""

    def __init__(self, server_port: int, client_port: int) -> None:
        self.ports = (server_port, client_port)
        self.seen: list[int | None] = []

    def stalled(self) -> bool:
        self.seen.append(tcp_send_queue(*self.ports))
        return len(self.seen) >= 2 and bool(self.seen[-1]) and self.seen[-1] == self.seen[-2]


def test_a_client_that_never_reads_blocks_nobody(consumer_worker) -> None:
    consumer, _ = consumer_worker
    stuck = socket.create_connection(("127.0.0.1", consumer.port), timeout=5)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(f"GET /video_feed HTTP/1.1\r\nHost: 127.0.0.1:{consumer.port}\r\n\r\n".encode())
    queue = SendQueue(consumer.port, stuck.getsockname()[1])
    assert wait_for(queue.stalled, 15, 0.2), f"the server's writes to the stuck client never stalled: {queue.seen}"
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(len(read_parts(f"{consumer.url}/video_feed", CAMERA_FPS * 3, 5))))
    t.start()
    t.join(10)
    stuck.close()
    assert got and got[0] >= CAMERA_FPS * 3 * 0.9, got
