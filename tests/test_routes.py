"""The HTTP surface in-process: Flask's test client around a real FrameHub fed real JPEGs.

Milliseconds each, beside the real-parts tests (test_endpoints.py) that run the same routes in
consumer.py under gunicorn. Settings are built here, never read from the shell or config.env.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import next_chunk
from flask.testing import FlaskClient
from kafka.structs import TopicPartition

from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.kafka.health import KafkaHealth
from rtsp_kafka_mjpeg.kafka.subscriber import FrameSubscriber
from rtsp_kafka_mjpeg.metrics import ConsumerMetrics
from rtsp_kafka_mjpeg.settings import ConsumerSettings
from rtsp_kafka_mjpeg.web.app import create_app
from rtsp_kafka_mjpeg.web.hub import FrameHub
from rtsp_kafka_mjpeg.web.multipart import PartCache

W, H = 32, 24
TOKEN, USER, PASSWORD = "tok-3x4mpl3", "ann", "pw-3x4mpl3"
AUTH = ConsumerSettings(viewer_token=TOKEN, viewer_username=USER, viewer_password=PASSWORD)
GUARDED = ("/", "/video_feed", "/api/stream.mjpeg", "/snapshot.jpg", "/api/frame.jpeg", "/metrics", "/api/cameras")


def jpeg(shade: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((H, W, 3), shade % 256, np.uint8))
    assert ok
    return buf.tobytes()


def frame(seq: int, camera: str = "door") -> Frame:
    return Frame(camera, time.time_ns(), seq, W, H, jpeg(seq))


@pytest.fixture
def hub() -> Iterator[FrameHub]:
    hub = FrameHub()
    yield hub
    hub.close()  # releases any stream a failed test left waiting


def client(hub: FrameHub, settings: ConsumerSettings | None = None,
           kafka_health: Callable[[], KafkaHealth] = lambda: KafkaHealth(connected=True)) -> FlaskClient:
    app = create_app(settings or ConsumerSettings(), hub, ConsumerMetrics(hub.viewer_counts), kafka_health,
                     first_camera_wait_s=0.05)
    return app.test_client()


@pytest.fixture
def feed(hub: FrameHub) -> Iterator[Callable[[str], None]]:
    """feed(camera): publish a new frame of `camera` every 5 ms from a thread until the test ends."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(camera: str) -> None:
        hub.publish(frame(1, camera))

        def run() -> None:
            seq = 2
            while not stop.wait(0.005):
                hub.publish(frame(seq, camera))
                seq += 1

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()

    yield start
    stop.set()
    for t in threads:
        t.join(2)


def split_part(part: bytes) -> tuple[dict[str, str], bytes]:
    assert part.startswith(b"--frame\r\n") and part.endswith(b"\r\n")
    head, body = part[len(b"--frame\r\n"):-2].split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
    return headers, body


def decoded_shape(data: bytes) -> tuple[int, ...]:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", GUARDED)
def test_every_route_but_healthz_asks_for_credentials(hub: FrameHub, path: str) -> None:
    res = client(hub, AUTH).get(path)
    assert res.status_code == 401 and res.headers["WWW-Authenticate"] == 'Basic realm="rtsp-kafka-mjpeg"'


def test_a_token_only_server_challenges_for_a_bearer_token(hub: FrameHub) -> None:
    res = client(hub, ConsumerSettings(viewer_token=TOKEN)).get("/api/cameras")
    assert res.status_code == 401 and res.headers["WWW-Authenticate"] == 'Bearer realm="rtsp-kafka-mjpeg"'


def test_healthz_is_never_behind_auth(hub: FrameHub) -> None:
    assert client(hub, AUTH).get("/healthz").status_code == 200


@pytest.mark.parametrize(("query", "headers", "status"), [
    (f"?token={TOKEN}", {}, 200),
    ("?token=wrong", {}, 401),
    ("", {"Authorization": f"Bearer {TOKEN}"}, 200),
    ("", {"Authorization": "Bearer wrong"}, 401),
    ("", {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}, 200),
    ("", {"Authorization": "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()}, 401),
    ("", {"Authorization": "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode()}, 401),
])
def test_token_by_query_or_bearer_and_basic_auth_are_accepted(hub: FrameHub, query: str,
                                                              headers: dict[str, str], status: int) -> None:
    assert client(hub, AUTH).get(f"/api/cameras{query}", headers=headers).status_code == status


# --- odd requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/snapshot.jpg?camera=nope", "/api/frame.jpeg?src=nope",
                                  "/video_feed?camera=nope", "/api/stream.mjpeg?src=nope"])
def test_an_unknown_camera_is_404(hub: FrameHub, feed: Callable[[str], None], path: str) -> None:
    feed("door")
    res = client(hub).get(path)
    assert res.status_code == 404 and b"unknown camera 'nope'" in res.data


def test_a_long_query_is_414(hub: FrameHub) -> None:
    assert client(hub).get("/api/cameras?camera=" + "x" * 5000).status_code == 414


@pytest.mark.parametrize("path", ["/snapshot.jpg", "/api/frame.jpeg", "/video_feed", "/api/stream.mjpeg"])
def test_no_camera_yet_is_503(hub: FrameHub, path: str) -> None:
    res = client(hub).get(path)
    assert res.status_code == 503 and res.data == b"no camera has sent a frame yet\n"


def test_an_unknown_path_is_404_without_a_stack_trace(hub: FrameHub) -> None:
    res = client(hub).get("/nope")
    assert res.status_code == 404 and b"Traceback" not in res.data


# --- stills ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/snapshot.jpg?camera=door", "/api/frame.jpeg?src=door", "/snapshot.jpg"])
def test_a_still_is_the_newest_jpeg_with_its_capture_time(hub: FrameHub, path: str) -> None:
    hub.publish(frame(1, "door"))
    newest = frame(2, "door")
    hub.publish(newest)
    res = client(hub).get(path)
    assert res.status_code == 200 and res.mimetype == "image/jpeg" and res.data == newest.jpeg
    assert res.headers["X-Capture-Timestamp-Ns"] == str(newest.capture_ts_ns)
    assert res.headers["Cache-Control"] == "no-store" and decoded_shape(res.data) == (H, W, 3)


# --- streams --------------------------------------------------------------------------------


def test_video_feed_streams_multipart_jpeg_parts_and_detaches_on_close(hub: FrameHub,
                                                                       feed: Callable[[str], None]) -> None:
    feed("door")
    res = client(hub).get("/video_feed?camera=door", buffered=False)
    assert res.status_code == 200
    assert res.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
    assert res.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    chunks = iter(res.response)
    parts = [split_part(next_chunk(chunks)) for _ in range(3)]
    assert hub.viewer_counts() == {"door": 1}
    for headers, body in parts:
        assert headers["Content-Type"] == "image/jpeg" and int(headers["Content-Length"]) == len(body)
        assert headers["X-Camera-Id"] == "door" and int(headers["X-Capture-Timestamp-Ns"]) > 0
        assert decoded_shape(body) == (H, W, 3)
    seqs = [int(headers["X-Sequence"]) for headers, _ in parts]
    assert seqs == sorted(set(seqs))  # newer each time, never repeated
    res.close()
    assert hub.viewer_counts() == {"door": 0}


def test_go2rtc_stream_alias_serves_the_named_camera(hub: FrameHub, feed: Callable[[str], None]) -> None:
    feed("door")
    feed("yard")
    res = client(hub).get("/api/stream.mjpeg?src=yard", buffered=False)
    headers, _ = split_part(next_chunk(iter(res.response)))
    assert headers["X-Camera-Id"] == "yard" and hub.viewer_counts() == {"door": 0, "yard": 1}
    res.close()
    assert hub.viewer_counts() == {"door": 0, "yard": 0}


def test_an_unnamed_stream_gets_the_first_camera(hub: FrameHub, feed: Callable[[str], None]) -> None:
    feed("yard")
    feed("door")
    res = client(hub).get("/video_feed", buffered=False)
    headers, _ = split_part(next_chunk(iter(res.response)))
    res.close()
    assert headers["X-Camera-Id"] == "door"


def test_a_stream_ends_when_the_hub_closes(hub: FrameHub) -> None:
    hub.publish(frame(1))
    res = client(hub).get("/video_feed", buffered=False)
    chunks = iter(res.response)
    next_chunk(chunks)
    hub.close()
    with pytest.raises(StopIteration):
        next_chunk(chunks)
    assert hub.viewer_counts() == {"door": 0}


def test_each_frame_part_is_built_once_and_shared_by_every_viewer() -> None:
    hub = FrameHub()
    hub.publish(frame(1))
    parts = PartCache()
    with hub.viewer("door") as a, hub.viewer("door") as b:
        first_a, first_b = parts.part(a.next(1)), parts.part(b.next(1))
        hub.publish(frame(2))
        second_a, second_b = parts.part(a.next(1)), parts.part(b.next(1))
    assert first_a is first_b and second_a is second_b and first_a != second_a


# --- JSON and metrics -----------------------------------------------------------------------


def test_api_cameras_lists_each_camera_with_size_rate_age_liveness_and_viewers(hub: FrameHub) -> None:
    hub.publish(frame(1, "door"))
    body = client(hub).get("/api/cameras").get_json()
    assert body == {"cameras": [{"id": "door", "width": W, "height": H, "fps": 0.0,
                                 "age_s": body["cameras"][0]["age_s"], "live": True, "viewers": 0}]}
    assert 0 <= body["cameras"][0]["age_s"] < 5


def test_healthz_reports_kafka_cameras_and_viewers(hub: FrameHub) -> None:
    hub.publish(frame(1, "door"))
    with hub.viewer("door"):
        res = client(hub).get("/healthz")
    body = res.get_json()
    assert res.status_code == 200 and body["status"] == "ok" and body["reason"] is None
    assert body["kafka"] == {"connected": True, "error": None, "failures": 0}
    assert set(body["cameras"]["door"]) == {"age_s", "live"} and body["viewers"] == 1


def test_healthz_is_503_with_a_reason_when_the_brokers_are_gone(hub: FrameHub) -> None:
    res = client(hub, kafka_health=lambda: KafkaHealth(connected=False)).get("/healthz")
    assert res.status_code == 503 and res.get_json()["status"] == "unhealthy"
    assert res.get_json()["reason"] == "the Kafka brokers are not answering"


class BrokenConsumer:
    """Stands in for KafkaConsumer (unit test of the subscriber's error handling, no broker): the
    first poll works, every later one raises a bug's exception."""

    def __init__(self) -> None:
        self.polls = 0

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[SimpleNamespace]]:
        self.polls += 1
        if self.polls > 1:
            raise RuntimeError("a bug")
        return {}

    def assignment(self) -> set[TopicPartition]:
        return set()

    def topics(self) -> set[str]:
        return {"frames"}


def test_healthz_is_503_and_says_why_while_the_subscriber_keeps_failing(hub: FrameHub) -> None:
    metrics = ConsumerMetrics(hub.viewer_counts)
    subscriber = FrameSubscriber(ConsumerSettings(), hub.publish, metrics, consumer_factory=BrokenConsumer,
                                 probe_factory=BrokenConsumer)
    subscriber.probe.check()
    assert subscriber.poll_once()
    app = create_app(ConsumerSettings(), hub, metrics, kafka_health=subscriber.health).test_client()
    assert app.get("/healthz").status_code == 200
    assert not subscriber.poll_once() and not subscriber.poll_once()
    res = app.get("/healthz")
    body = res.get_json()
    assert res.status_code == 503 and body["status"] == "unhealthy"
    assert body["kafka"] == {"connected": True, "error": "RuntimeError", "failures": 2}
    assert body["reason"] == "the Kafka subscriber failed 2 time(s) in a row: RuntimeError"


def test_metrics_are_prometheus_text_with_viewers_and_frames_out(hub: FrameHub,
                                                                feed: Callable[[str], None]) -> None:
    feed("door")
    app = client(hub)
    res = app.get("/video_feed?camera=door", buffered=False)
    chunks = iter(res.response)
    next_chunk(chunks)
    next_chunk(chunks)  # a part counts as written once the server asks for the next one
    metrics = app.get("/metrics")
    res.close()
    text = metrics.get_data(as_text=True)
    assert metrics.status_code == 200 and metrics.mimetype == "text/plain"
    assert 'mjpeg_viewers{camera="door"} 1.0' in text
    assert 'mjpeg_frames_out_total{camera="door"} 1.0' in text


def test_the_index_page_is_html_that_polls_the_camera_list(hub: FrameHub) -> None:
    res = client(hub).get("/")
    assert res.status_code == 200 and res.mimetype == "text/html" and b"api/cameras" in res.data


@pytest.mark.parametrize("path", ["/list?camera=door", "/get?camera=door&start=-30s&duration=5",
                                  "/video_feed?camera=door&start=-30s", "/snapshot.jpg?camera=door&time=-30s",
                                  "/api/mux?camera=door"])
def test_rewind_and_the_page_stream_need_the_viewer_credentials_too(hub: FrameHub, path: str) -> None:
    res = client(hub, ConsumerSettings(viewer_token=TOKEN)).get(path)
    assert res.status_code == 401


@pytest.mark.parametrize(("path", "needle"), [
    ("/api/mux", "name 1 to 64 cameras"),
    ("/api/mux?camera=door&start=door", "CAMERA@VALUE"),
    ("/api/mux?camera=door&start=door@yesterday", "is not RFC 3339"),
    ("/api/mux?camera=door&start=door@-5s&speed=door@0", "speed"),
    ("/api/mux?camera=nobody", "unknown camera"),
])
def test_a_bad_mux_request_is_one_line(hub: FrameHub, path: str, needle: str) -> None:
    res = client(hub).get(path)
    body = res.get_data(as_text=True)
    assert res.status_code in (400, 404) and needle in body and body.count("\n") == 1


def test_the_mux_carries_each_camera_live_with_its_name(hub: FrameHub, feed: Callable[[str], None]) -> None:
    feed("door")
    feed("yard")
    res = client(hub).get("/api/mux?camera=door&camera=yard")
    assert res.status_code == 200 and res.mimetype == "multipart/x-mixed-replace"
    seen: set[str] = set()
    deadline = time.monotonic() + 5
    for chunk in res.response:
        seen.update(line.split(b": ")[1].decode() for line in chunk.split(b"\r\n") if line.startswith(b"X-Camera-Id"))
        if seen == {"door", "yard"} or time.monotonic() > deadline:
            break
    res.close()
    assert seen == {"door", "yard"}
