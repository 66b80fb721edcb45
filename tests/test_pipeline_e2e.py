"""End to end on real parts: RTSP camera -> producer.py -> Kafka -> consumer.py -> HTTP viewers."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import psutil
import pytest
from conftest import CAMERA_FPS, CAMERA_H, CAMERA_W, ROOT, App, app_env, read_parts, wait_for
from kafka import KafkaConsumer

from harness.mjpeg_client import MjpegViewer, Part
from harness.ports import free_port


def decode(part: Part) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(part.body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "part is not a decodable JPEG"
    return image


def start_pipeline(kafka, camera, topic, start_app, kafka_client: str = "kafka-python") -> tuple[App, App]:
    """A producer publishing the test camera with `kafka_client` and a consumer serving its topic."""
    env = app_env(kafka.bootstrap, topic)
    producer = start_app("producer.py", {**env, "KAFKA_CLIENT": kafka_client}, "--source", camera.url,
                         "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    assert wait_for(lambda: len(read_parts(f"{consumer.url}/video_feed", 1, 5)) == 1, 30), producer.log()
    return producer, consumer


@pytest.fixture
def pipeline(kafka, camera, topic, start_app) -> tuple[App, App]:
    """The viewer side's tests: the default client only (the client's own tests run with both)."""
    return start_pipeline(kafka, camera, topic, start_app)


@pytest.fixture
def client_pipeline(kafka, camera, topic, start_app, kafka_client) -> tuple[App, App]:
    """The pipeline once per KAFKA_CLIENT."""
    return start_pipeline(kafka, camera, topic, start_app, kafka_client)


def test_video_feed_streams_valid_changing_jpegs_of_the_camera_size(pipeline) -> None:
    _, consumer = pipeline
    parts = read_parts(f"{consumer.url}/video_feed", 40, timeout=30)
    assert len(parts) >= 30
    for part in parts:
        assert part.headers["content-type"] == "image/jpeg"
        assert int(part.headers["content-length"]) == len(part.body)
        assert decode(part).shape == (CAMERA_H, CAMERA_W, 3)
    first, last = decode(parts[0]).astype(int), decode(parts[-1]).astype(int)
    assert np.abs(first - last).mean() > 1.0, "the picture did not change over time"
    seqs = [int(p.headers["x-sequence"]) for p in parts]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_video_feed_selects_a_camera_and_404s_an_unknown_one(pipeline) -> None:
    _, consumer = pipeline
    assert len(read_parts(f"{consumer.url}/video_feed?camera=door", 3, 10)) == 3
    viewer = MjpegViewer(f"{consumer.url}/video_feed?camera=nosuchcam")
    viewer.read_parts(1, 5)
    assert viewer.status == 404
    viewer.close()


def test_records_carry_camera_key_and_metadata_headers(kafka, camera, topic, start_app, kafka_client) -> None:
    start_app("producer.py", app_env(kafka.bootstrap, topic, KAFKA_CLIENT=kafka_client), "--source", camera.url,
              "--camera-id", "door")
    consumer = KafkaConsumer(topic, **kafka.client_config(), auto_offset_reset="earliest",
                             consumer_timeout_ms=20000)
    record = next(iter(consumer))
    consumer.close()
    headers = dict(record.headers)
    assert record.key == b"door"
    assert headers["camera-id"] == b"door"
    assert headers["content-type"] == b"image/jpeg"
    assert (int(headers["width"]), int(headers["height"])) == (CAMERA_W, CAMERA_H)
    assert int(headers["seq"]) >= 1 and int(headers["capture-ts-ns"]) > 1_600_000_000 * 10**9
    image = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (CAMERA_H, CAMERA_W, 3), "value is not exactly a JPEG of the frame"


def test_two_simultaneous_viewers_each_get_nearly_every_frame(pipeline) -> None:
    _, consumer = pipeline
    results: list[list[Part]] = [[], []]

    def watch(i: int) -> None:
        results[i] = read_parts(f"{consumer.url}/video_feed", CAMERA_FPS * 6, timeout=8)

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    for parts in results:
        seqs = [int(p.headers["x-sequence"]) for p in parts[1:]]  # the first part is the cached newest frame
        span = seqs[-1] - seqs[0] + 1
        assert len(seqs) >= 0.9 * span, f"viewer got {len(seqs)} of {span} frames"
        assert span >= CAMERA_FPS * 3


def test_producer_exits_cleanly_on_sigterm(kafka, camera, topic, start_app, kafka_client) -> None:
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic, KAFKA_CLIENT=kafka_client),
                         "--source", camera.url)
    assert wait_for(lambda: "publishing camera" in producer.log(), 30)
    producer.proc.send_signal(signal.SIGTERM)
    assert producer.wait(15) == 0
    assert "stopped:" in producer.log() and "Traceback" not in producer.log()


def test_consumer_stops_on_ctrl_c_with_a_viewer_attached_and_no_traceback(kafka, camera, topic, start_app) -> None:
    env = app_env(kafka.bootstrap, topic)
    start_app("producer.py", env, "--source", camera.url)
    consumer = start_app("consumer.py", env)
    viewer = MjpegViewer(f"{consumer.url}/video_feed")
    try:
        assert len(viewer.read_parts(1, 30)) == 1
        # A terminal's Ctrl-C reaches the whole foreground group: gunicorn's master and its worker.
        for pid in [consumer.proc.pid, *(c.pid for c in psutil.Process(consumer.proc.pid).children())]:
            os.kill(pid, signal.SIGINT)
        assert consumer.wait(15) == 0
    finally:
        viewer.close()
    assert "Traceback" not in consumer.log() and "SystemExit" not in consumer.log(), consumer.log()


@pytest.mark.parametrize(("script", "kafka_client"),
                         [("producer.py", "kafka-python"), ("producer.py", "confluent-kafka"),
                          ("consumer.py", "kafka-python")],  # the consumer has one client
                         indirect=["kafka_client"])
def test_unreachable_broker_gives_one_line_and_non_zero_exit(script, kafka_client, topic, start_app) -> None:
    env = app_env(f"127.0.0.1:{free_port()}", topic, KAFKA_CONNECT_TIMEOUT_S="2", KAFKA_CLIENT=kafka_client)
    app = start_app(script, env, wait_http=False)
    assert app.wait(30) != 0
    lines = app.log().strip().splitlines()
    assert len(lines) == 1 and "cannot reach Kafka" in lines[0], lines


def test_bad_rtsp_url_gives_one_line_and_non_zero_exit(kafka, topic, start_app) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/nothing"
    app = start_app("producer.py", app_env(kafka.bootstrap, topic, SOURCE_OPEN_TIMEOUT_S="3"), "--source", url)
    assert app.wait(30) == 1
    errors = [line for line in app.log().splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "cannot open video source" in errors[0]
    assert "Traceback" not in app.log()


def test_rtsp_credentials_never_appear_in_logs(kafka, topic, start_app) -> None:
    from harness.rtsp_camera import RtspCamera

    cam = RtspCamera(width=320, height=180, fps=10, username="viewer", password="Sup3r-S3cret-pw")
    cam.start()
    try:
        producer = start_app("producer.py", app_env(kafka.bootstrap, topic, LOG_LEVEL="DEBUG"),
                             "--source", cam.url)
        assert wait_for(lambda: "publishing camera" in producer.log(), 30), producer.log()
        wrong = cam.url.replace("Sup3r-S3cret-pw", "Wr0ng-pa55word")
        bad = start_app("producer.py", app_env(kafka.bootstrap, topic, SOURCE_OPEN_TIMEOUT_S="3"),
                        "--source", wrong)
        assert bad.wait(30) == 1
        producer.stop()
    finally:
        cam.stop()
    for app in (producer, bad):
        text = app.log()
        assert "viewer:***@" in text
        assert "Sup3r-S3cret-pw" not in text and "Wr0ng-pa55word" not in text


def test_producer_shows_a_status_line_on_a_terminal(kafka, camera, topic) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "producer.py", "--source", camera.url], cwd=ROOT,
                            env=app_env(kafka.bootstrap, topic), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    out = b""
    deadline = time.monotonic() + 20
    try:
        while out.count(b"kbit/s") < 3 and (left := deadline - time.monotonic()) > 0:
            if select.select([controller], [], [], left)[0]:  # never block past the deadline
                try:
                    out += os.read(controller, 65536)
                except OSError:  # EIO: the producer closed its end of the terminal
                    break
    finally:
        proc.terminate()
        proc.wait(10)
        os.close(controller)
    status = out.decode(errors="replace").split("\r")[-1]
    assert "fps" in status and "kbit/s" in status and "dropped" in status and "streaming" in status, status


def test_producer_logs_state_changes_not_frames(client_pipeline) -> None:
    producer, consumer = client_pipeline
    frames = read_parts(f"{consumer.url}/video_feed", CAMERA_FPS * 3, 15)
    assert len(frames) == CAMERA_FPS * 3  # 3 s of video went through while the log was written
    lines = producer.log().strip().splitlines()
    assert 3 <= len(lines) <= 8, lines  # connecting, streaming, publishing (+ topic created)
