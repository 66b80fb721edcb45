"""Analytics on the viewer side, in-process: the results board, the results subscriber's handling of
records (a stand-in consumer: pure logic) and /api/events through Flask's test client.

The same route under gunicorn, fed by a real broker, is in test_browser_analytics.py.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import next_chunk
from flask.testing import FlaskClient
from kafka.errors import KafkaConnectionError
from kafka.structs import TopicPartition

from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.metrics import ConsumerMetrics
from rtsp_kafka_mjpeg.results import FrameInfo, parse_result, result_record
from rtsp_kafka_mjpeg.settings import ConsumerSettings
from rtsp_kafka_mjpeg.web.app import create_app
from rtsp_kafka_mjpeg.web.hub import FrameHub
from rtsp_kafka_mjpeg.web.results_board import ResultBoard
from rtsp_kafka_mjpeg.web.results_subscriber import ResultSubscriber

TOKEN, USER, PASSWORD = "tok-3x4mpl3", "ann", "pw-3x4mpl3"
AUTH = ConsumerSettings(viewer_token=TOKEN, viewer_username=USER, viewer_password=PASSWORD)
TP = TopicPartition("camera-events", 0)


def result(camera: str = "door", seq: int = 1, processor: str = "motion", **output: Any) -> dict[str, Any]:
    info = FrameInfo(camera, seq, time.time_ns(), 640, 360, "frames", 0, seq)
    out = output or {"level": 0.1, "moving": True, "boxes": [[0.1, 0.2, 0.3, 0.4]]}
    return parse_result(result_record(info, processor, 1.5, "test:1", out))


@pytest.fixture
def board() -> Iterator[ResultBoard]:
    board = ResultBoard()
    yield board
    board.close()


@pytest.fixture
def hub() -> Iterator[FrameHub]:
    hub = FrameHub()
    hub.publish(Frame("door", time.time_ns(), 1, 4, 3, b"\xff\xd8\xff\xd9"))
    hub.publish(Frame("yard", time.time_ns(), 1, 4, 3, b"\xff\xd8\xff\xd9"))
    yield hub
    hub.close()


def client(hub: FrameHub, board: ResultBoard, settings: ConsumerSettings | None = None,
           metrics: ConsumerMetrics | None = None, heartbeat_s: float = 15.0) -> FlaskClient:
    app = create_app(settings or ConsumerSettings(), hub, metrics or ConsumerMetrics(hub.viewer_counts),
                     board=board, events_heartbeat_s=heartbeat_s)
    return app.test_client()


def sse_results(chunk: bytes) -> list[dict[str, Any]]:
    """The `result` events of one write, each checked to be `event: result` + one data line."""
    found = []
    for event in chunk.decode().split("\n\n"):
        if event:
            lines = event.split("\n")
            assert lines[0] == "event: result" and lines[1].startswith("data: ") and len(lines) == 2
            found.append(json.loads(lines[1][6:]))
    return found


# --- the board ------------------------------------------------------------------------------


def test_a_watcher_gets_each_newer_result_once_and_skips_what_it_was_too_slow_for(board: ResultBoard) -> None:
    with board.watch(["door"]) as watcher:
        assert watcher.next(0.01) == []
        for seq in (1, 2, 3):
            board.post(result(seq=seq))
        got = watcher.next(1)
        assert [json.loads(p.data)["seq"] for p in got] == [3]  # newest only, no queue
        assert watcher.next(0.01) == []


def test_a_watcher_keeps_the_newest_of_each_processor_and_only_its_cameras(board: ResultBoard) -> None:
    with board.watch(["door"]) as watcher:
        board.post(result(seq=1, processor="motion"))
        board.post(result(seq=2, processor="brightness", brightness=120.5))
        board.post(result("yard", seq=3))
        got = watcher.next(1)
    assert [(p.camera, p.processor) for p in got] == [("door", "motion"), ("door", "brightness")]


def test_a_new_watcher_first_gets_the_recent_results_but_not_old_ones(board: ResultBoard) -> None:
    board.post(result(seq=1))
    with board.watch(["door"]) as watcher:
        assert [json.loads(p.data)["seq"] for p in watcher.next(0.01)] == [1]
    with board.watch(["door"], recent_s=0.0) as watcher:
        assert watcher.next(0.01) == []


def test_a_waiting_watcher_is_woken_by_a_post_and_released_by_close(board: ResultBoard) -> None:
    with board.watch(["door"]) as watcher:
        threading.Timer(0.05, board.post, [result()]).start()
        started = time.monotonic()
        assert len(watcher.next(5)) == 1 and time.monotonic() - started < 1
        threading.Timer(0.05, board.close).start()
        started = time.monotonic()
        assert watcher.next(5) == [] and time.monotonic() - started < 1
    assert board.watchers == 0


# --- the results subscriber (stand-in consumer) ---------------------------------------------


class ScriptedConsumer:
    """Answers each poll from a script: a batch dict, or an exception to raise; then empty polls."""

    def __init__(self, *script: object) -> None:
        self._script = list(script)

    def poll(self, timeout_ms: int) -> object:
        outcome = self._script.pop(0) if self._script else {}
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def records(*values: bytes | None) -> dict[TopicPartition, list[SimpleNamespace]]:
    return {TP: [SimpleNamespace(topic=TP.topic, partition=0, offset=i, key=b"door", value=v)
                 for i, v in enumerate(values)]}


def test_the_subscriber_posts_valid_results_and_counts_bad_ones_by_reason(caplog: pytest.LogCaptureFixture) -> None:
    info = FrameInfo("door", 1, time.time_ns(), 640, 360, "frames", 0, 1)
    good = result_record(info, "motion", 1.0, "w", {"level": 0.5, "boxes": []})
    newer = result_record(dataclasses.replace(info, seq=2), "motion", 1.0, "w", {"level": 0.6, "boxes": []})
    nan = good.replace(b'"level":0.5', b'"level":NaN')
    consumer = ScriptedConsumer(KafkaConnectionError("gone"),
                                records(b"junk", None, b"[1]", b'{"camera":"door"}', nan, good, newer, b"junk"))
    metrics, posted = ConsumerMetrics(), []
    sub = ResultSubscriber(ConsumerSettings(), posted.append, metrics, consumer_factory=lambda: consumer)
    assert not sub.poll_once()  # a broker error: the loop waits and retries, nothing raised
    assert sub.poll_once()
    assert [r["seq"] for r in posted] == [2]  # only the newest of the poll reaches the board
    skipped = {s.labels["reason"]: s.value for s in metrics.results_skipped.collect()[0].samples
               if s.name.endswith("_total")}
    assert skipped == {"not_json": 2, "empty_record": 1, "not_a_json_object": 1, "no_capture_ts_ns": 1}
    assert metrics.results_in.labels("door")._value.get() == 3  # every valid record is counted
    assert sum(1 for r in caplog.records if "not JSON" in r.getMessage()) == 1  # rate-limited


def test_a_result_json_cannot_carry_is_counted_and_skipped() -> None:
    metrics, board = ConsumerMetrics(), ResultBoard()
    info = FrameInfo("door", 1, time.time_ns(), 640, 360, "frames", 0, 1)
    nan = result_record(info, "motion", 1.0, "w", {"level": 0.5}).replace(b"0.5", b"NaN")
    sub = ResultSubscriber(ConsumerSettings(), board.post, metrics, consumer_factory=lambda: ScriptedConsumer(
        records(nan)))
    assert sub.poll_once() and not board.has_camera("door")
    assert metrics.results_skipped.labels("unserializable")._value.get() == 1


# --- /api/events ----------------------------------------------------------------------------


def test_events_stream_each_new_result_as_sse_with_the_recent_one_first(hub: FrameHub, board: ResultBoard) -> None:
    board.post(result(seq=1))
    metrics = ConsumerMetrics(hub.viewer_counts)
    res = client(hub, board, metrics=metrics).get("/api/events?camera=door", buffered=False)
    assert res.status_code == 200 and res.mimetype == "text/event-stream"
    assert res.headers["Cache-Control"] == "no-cache" and res.headers["X-Accel-Buffering"] == "no"
    chunks = iter(res.response)
    assert next_chunk(chunks) == b"retry: 1000\n\n"
    assert [r["seq"] for r in sse_results(next_chunk(chunks))] == [1]
    assert board.watchers == 1
    board.post(result("yard", seq=2))  # another camera: not this stream's
    board.post(result(seq=3, processor="brightness", brightness=99.5))
    got = sse_results(next_chunk(chunks))
    assert [(r["seq"], r["processor"], r["output"]) for r in got] == [(3, "brightness", {"brightness": 99.5})]
    res.close()
    assert board.watchers == 0
    assert metrics.events_out._value.get() == 2


def test_one_stream_can_follow_several_cameras(hub: FrameHub, board: ResultBoard) -> None:
    res = client(hub, board).get("/api/events?camera=door&camera=yard", buffered=False)
    chunks = iter(res.response)
    next_chunk(chunks)
    board.post(result("yard", seq=1))
    assert [r["camera"] for r in sse_results(next_chunk(chunks))] == ["yard"]
    board.post(result("door", seq=2))
    assert [r["camera"] for r in sse_results(next_chunk(chunks))] == ["door"]
    res.close()


def test_a_quiet_stream_sends_a_comment_heartbeat_and_ends_when_the_board_closes(hub: FrameHub,
                                                                                 board: ResultBoard) -> None:
    res = client(hub, board, heartbeat_s=0.05).get("/api/events?camera=door", buffered=False)
    chunks = iter(res.response)
    next_chunk(chunks)
    assert next_chunk(chunks) == b": keepalive\n\n"
    board.close()
    with pytest.raises(StopIteration):
        while True:
            next_chunk(chunks)


@pytest.mark.parametrize(("query", "status"), [("", 400), ("?camera=", 400), ("?camera=nope", 404),
                                               ("?camera=door&camera=nope", 404)])
def test_a_missing_camera_is_400_and_an_unknown_one_404(hub: FrameHub, board: ResultBoard, query: str,
                                                        status: int) -> None:
    res = client(hub, board).get(f"/api/events{query}")
    assert res.status_code == status and b"Traceback" not in res.data


def test_a_camera_known_only_from_its_results_can_be_followed(hub: FrameHub, board: ResultBoard) -> None:
    board.post(result("porch"))
    res = client(hub, board).get("/api/events?camera=porch", buffered=False)
    assert res.status_code == 200
    res.close()


@pytest.mark.parametrize(("query", "headers", "status"), [
    ("", {}, 401),
    (f"&token={TOKEN}", {}, 200),
    ("&token=wrong", {}, 401),
    ("", {"Authorization": f"Bearer {TOKEN}"}, 200),
    ("", {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}, 200),
    ("", {"Authorization": "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()}, 401),
])
def test_events_need_the_same_viewer_credentials_as_video(hub: FrameHub, board: ResultBoard, query: str,
                                                          headers: dict[str, str], status: int) -> None:
    app = client(hub, board, AUTH)
    res = app.get(f"/api/events?camera=door{query}", headers=headers, buffered=False)
    video = app.get(f"/video_feed?camera=door{query}", headers=headers, buffered=False)
    assert res.status_code == video.status_code == status
    res.close()
    video.close()


def test_metrics_name_the_analytics_counters(hub: FrameHub, board: ResultBoard) -> None:
    text = client(hub, board).get("/metrics").get_data(as_text=True)
    for name in ("mjpeg_events_out_total", "mjpeg_results_in", "mjpeg_results_skipped",
                 "mjpeg_capture_to_result_seconds"):
        assert name in text
