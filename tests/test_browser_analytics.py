"""Analytics results on the real broker, through the real consumer.py, in real Chromium.

The test publishes result records exactly as worker.py does (results.result_record, key = camera
id, on the results topic) through a plain KafkaProducer: the viewer side is proved on its own.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from conftest import ROOT, app_env, wait_for
from kafka import KafkaProducer

from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.results import FrameInfo, result_record

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
BOXES = [[0.1, 0.1, 0.3, 0.4], [0.6, 0.5, 0.2, 0.2]]


@pytest.fixture
def producer(kafka) -> Iterator[KafkaProducer]:
    p = KafkaProducer(**kafka.client_config(), acks=1, linger_ms=0, enable_idempotence=False)
    yield p
    p.close(timeout=5)


def publish_result(producer: KafkaProducer, topic: str, camera: str, seq: int, processor: str,
                   output: dict[str, object]) -> None:
    info = FrameInfo(camera, seq, time.time_ns(), 640, 360, "frames", 0, seq)
    producer.send(topic, key=camera.encode(), value=result_record(info, processor, 2.0, "test:1", output))


class Feeder:
    """A thread publishing, every 0.1 s, a still frame of `still_camera` and (while `results` is set)
    a motion and a brightness result of `analysed_camera`: a worker that runs, then stops."""

    def __init__(self, producer: KafkaProducer, frames_topic: str, results_topic: str, still_camera: str,
                 analysed_camera: str) -> None:
        self.results = threading.Event()
        self._stop = threading.Event()
        ok, jpeg = cv2.imencode(".jpg", np.full((180, 320, 3), 90, np.uint8))
        assert ok
        self._jpeg = jpeg.tobytes()
        self._args = producer, frames_topic, results_topic, still_camera, analysed_camera
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        producer, frames_topic, results_topic, still, analysed = self._args
        seq = 0
        while not self._stop.wait(0.1):
            seq += 1
            frame = Frame(still, time.time_ns(), seq, 320, 180, self._jpeg)
            producer.send(frames_topic, key=frame.kafka_key(), value=frame.jpeg, headers=frame.kafka_headers())
            if self.results.is_set():
                publish_result(producer, results_topic, analysed, seq, "motion",
                               {"level": 0.25, "moving": True, "boxes": BOXES})
                publish_result(producer, results_topic, analysed, seq, "brightness", {"brightness": 123.4})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


TILE_STATE = """tile => ({analytics: tile.dataset.analytics, text: tile.querySelector('.analytics').textContent,
    boxes: tile.querySelector('svg.boxes').dataset.boxes, rects: [...tile.querySelectorAll('svg.boxes rect')]
    .map(r => ['x', 'y', 'width', 'height'].map(a => Number(r.getAttribute(a))))})"""


def test_motion_boxes_and_numbers_show_on_the_analysed_camera_only(kafka, camera, topic, start_app, browser_page,
                                                                   producer) -> None:
    results_topic = f"events-{uuid.uuid4().hex[:10]}"
    env = app_env(kafka.bootstrap, topic, KAFKA_RESULTS_TOPIC=results_topic)
    start_app("producer.py", env, "--source", camera.url, "--camera-id", "moving")
    consumer = start_app("consumer.py", env)
    feeder = Feeder(producer, topic, results_topic, still_camera="still", analysed_camera="moving")
    try:
        page = browser_page
        page.goto(f"{consumer.url}/", wait_until="commit")
        page.wait_for_function("() => [...document.querySelectorAll('.tile img')].filter(i => i.naturalWidth > 0)"
                               ".length === 2", timeout=30000)
        assert page.eval_on_selector('[data-camera="moving"]', TILE_STATE)["text"] == "no analytics"

        feeder.results.set()
        page.wait_for_function("""() => { const t = document.querySelector('[data-camera="moving"]');
            return t.dataset.analytics === 'live' && /brightness/.test(t.textContent)
                && t.querySelector('svg.boxes').dataset.boxes === '2' }""", timeout=15000)
        moving = page.eval_on_selector('[data-camera="moving"]', TILE_STATE)
        still = page.eval_on_selector('[data-camera="still"]', TILE_STATE)
        assert moving["text"] == "motion 25.0% \u00b7 brightness 123.4"
        # normalised boxes scaled to the frame (640x360), in the SVG laid over the image
        assert [[round(v) for v in r] for r in moving["rects"]] == [[64, 36, 192, 144], [384, 180, 128, 72]]
        assert still == {"analytics": "none", "text": "no analytics", "boxes": "0", "rects": []}
        overlay = page.eval_on_selector('[data-camera="moving"] svg.boxes', """s => {
            const a = s.getBoundingClientRect(), b = s.parentElement.querySelector('img').getBoundingClientRect();
            return [a.left === b.left, a.top === b.top, a.width === b.width, a.height === b.height] }""")
        assert overlay == [True, True, True, True]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "index-analytics.png"))

        feeder.results.clear()  # the worker stops: the tile says so within ~3 s
        page.wait_for_function("() => document.querySelector('[data-camera=\"moving\"]').dataset.analytics"
                               " === 'none'", timeout=6000)
        assert page.eval_on_selector('[data-camera="moving"]', TILE_STATE) == \
            {"analytics": "none", "text": "no analytics", "boxes": "0", "rects": []}
    finally:
        feeder.close()


def sse_status(port: int, camera: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", f"/api/events?camera={camera}")
        return conn.getresponse().status
    finally:
        conn.close()


class SseReader:
    """A raw socket client of /api/events (HTTP/1.0: the body is the bare event stream) noting when
    each result, by seq, arrives."""

    def __init__(self, port: int, path: str) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._sock.sendall(f"GET {path} HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n".encode())
        self._file = self._sock.makefile("rb")
        self.status = int(self._file.readline().split()[1])
        self.headers = {}
        while (line := self._file.readline().strip()):
            name, _, value = line.decode().partition(":")
            self.headers[name.lower()] = value.strip()
        self.arrived: dict[int, int] = {}  # seq -> time.time_ns() at arrival
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for line in self._file:
                if line.startswith(b"data: "):
                    seq, now = json.loads(line[6:])["seq"], time.time_ns()
                    with self._cond:
                        self.arrived.setdefault(seq, now)
                        self._cond.notify_all()
        except OSError:
            pass  # shut down by close()

    def wait_seq(self, seq: int, timeout: float) -> int | None:
        with self._cond:
            self._cond.wait_for(lambda: seq in self.arrived, timeout)
            return self.arrived.get(seq)

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)  # ends the reader's read at once
        self._thread.join(5)
        self._file.close()
        self._sock.close()


def test_events_reach_an_sse_client_within_a_second(kafka, topic, start_app, producer) -> None:
    results_topic = f"events-{uuid.uuid4().hex[:10]}"
    consumer = start_app("consumer.py", app_env(kafka.bootstrap, topic, KAFKA_RESULTS_TOPIC=results_topic))
    # No worker has run: the results topic does not exist, and that is no fault of the viewer.
    assert wait_for(lambda: http_get(consumer.port, "/healthz")[0] == 200, 15)
    warm = iter(range(1_000_000, 2_000_000))

    def camera_known() -> bool:
        # The viewer reads from the newest record on: publish until one gets through.
        publish_result(producer, results_topic, "A", next(warm), "motion", {"level": 0.0, "boxes": []})
        producer.flush(5)
        return sse_status(consumer.port, "A") == 200  # 404 until a result of A has arrived

    assert wait_for(camera_known, 30, 0.1)
    reader = SseReader(consumer.port, "/api/events?camera=A")
    try:
        assert reader.status == 200 and reader.headers["content-type"].startswith("text/event-stream")
        assert reader.headers["cache-control"] == "no-cache" and reader.headers["x-accel-buffering"] == "no"
        latencies_ms = []
        for seq in range(1, 51):
            sent = time.time_ns()
            publish_result(producer, results_topic, "A", seq, "motion", {"level": seq / 100, "boxes": BOXES})
            arrived = reader.wait_seq(seq, 1.0)
            assert arrived is not None, f"result {seq} did not reach the SSE client within 1 s"
            latencies_ms.append((arrived - sent) / 1e6)
    finally:
        reader.close()
    p50, p99 = statistics.median(latencies_ms), sorted(latencies_ms)[int(0.99 * (len(latencies_ms) - 1))]
    print(f"\npublish -> SSE latency over {len(latencies_ms)} results: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {max(latencies_ms):.1f} ms")
    assert p99 < 1000
    metrics = http_get(consumer.port, "/metrics")[1]
    received = next(line for line in metrics.splitlines() if line.startswith('mjpeg_results_in_total{camera="A"}'))
    assert float(received.split()[-1]) >= 51


def http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read().decode()
    finally:
        conn.close()



def test_a_real_motion_worker_boxes_the_moving_camera_and_not_the_still_one(kafka, camera, topic, start_app,
                                                                          browser_page, producer) -> None:
    """End to end: producer.py on the live test pattern (a moving ball and a running clock), a
    camera whose picture never changes, worker.py --processor motion in its own group, consumer.py
    and Chromium."""
    results_topic = f"events-{uuid.uuid4().hex[:10]}"
    env = app_env(kafka.bootstrap, topic, KAFKA_RESULTS_TOPIC=results_topic)
    start_app("producer.py", env, "--source", camera.url, "--camera-id", "moving")
    still = Feeder(producer, topic, results_topic, still_camera="still", analysed_camera="unused")  # frames only
    try:
        start_app("worker.py", {**env, "WORKER_GROUP_ID": f"motion-{uuid.uuid4().hex[:8]}"}, "--processor", "motion")
        consumer = start_app("consumer.py", env)
        page = browser_page
        page.goto(f"{consumer.url}/", wait_until="commit")
        page.wait_for_function("""() => {
            const m = document.querySelector('[data-camera="moving"]');
            const s = document.querySelector('[data-camera="still"]');
            return m && s && m.dataset.analytics === 'live' && s.dataset.analytics === 'live'
                && Number(m.querySelector('svg.boxes').dataset.boxes) > 0 }""", timeout=40000)
        moving = page.eval_on_selector('[data-camera="moving"]', TILE_STATE)
        still_tile = page.eval_on_selector('[data-camera="still"]', TILE_STATE)
        assert moving["rects"] and moving["text"].startswith("motion ") and moving["text"] != "motion 0.0%", moving
        assert still_tile == {"analytics": "live", "text": "motion 0.0%", "boxes": "0", "rects": []}, still_tile
        page.screenshot(path=str(SCREENSHOTS / "index-motion-worker.png"))
    finally:
        still.close()
