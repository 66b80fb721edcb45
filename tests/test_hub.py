"""The hub: newest frame per camera, viewers attached and counted, woken, never queued; and the
camera status / health built from it at a given moment."""

from __future__ import annotations

import threading

import pytest

from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.kafka.health import KafkaHealth
from rtsp_kafka_mjpeg.metrics import ReceiveRates
from rtsp_kafka_mjpeg.web.hub import FrameHub, UnknownCamera
from rtsp_kafka_mjpeg.web.status import Health, camera_statuses

JPEG = b"\xff\xd8" + b"\x01" * 10 + b"\xff\xd9"


def frame(seq: int, camera: str = "c") -> Frame:
    return Frame(camera, seq * 1000, seq, 4, 3, JPEG)


def run(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_viewer_is_counted_only_inside_its_with_block() -> None:
    hub = FrameHub()
    hub.publish(frame(1))
    with hub.viewer("c"), hub.viewer("c"):
        assert hub.viewer_counts() == {"c": 2}
    assert hub.viewer_counts() == {"c": 0}


def test_a_viewer_is_detached_when_its_block_ends_by_an_error() -> None:
    hub = FrameHub()
    hub.publish(frame(1))
    with pytest.raises(ConnectionResetError), hub.viewer("c"):
        raise ConnectionResetError
    assert hub.viewer_counts() == {"c": 0}


def test_attaching_to_an_unknown_camera_raises() -> None:
    with pytest.raises(UnknownCamera), FrameHub().viewer("nope"):
        pass


def test_a_slow_viewer_gets_the_newest_frame_not_a_backlog() -> None:
    hub = FrameHub()
    for seq in range(1, 6):
        hub.publish(frame(seq))
    with hub.viewer("c") as viewer:
        assert viewer.next(timeout=0.1).frame.seq == 5
        assert viewer.next(timeout=0.05) is None
        hub.publish(frame(6))
        assert viewer.next(timeout=0.1).frame.seq == 6


def test_every_waiting_viewer_is_woken_by_each_frame() -> None:
    hub = FrameHub()
    hub.publish(frame(1))
    received: list[int] = []
    ready = threading.Barrier(4)

    def watch() -> None:
        with hub.viewer("c") as viewer:
            viewer.next(timeout=1)  # the frame already there
            ready.wait(5)
            received.append(viewer.next(timeout=5).frame.seq)

    threads = [run(watch) for _ in range(3)]
    ready.wait(5)
    hub.publish(frame(2))
    for t in threads:
        t.join(5)
    assert received == [2, 2, 2]


def test_iterating_a_viewer_ends_when_the_hub_closes() -> None:
    hub = FrameHub()
    hub.publish(frame(1))
    seen: list[int] = []
    first = threading.Event()

    def watch() -> None:
        with hub.viewer("c", wait_s=30) as viewer:
            for published in viewer:
                seen.append(published.frame.seq)
                first.set()

    t = run(watch)
    assert first.wait(2)
    hub.close()
    t.join(2)
    assert not t.is_alive() and seen == [1]
    assert hub.viewer_counts() == {"c": 0}


def test_waiting_for_a_first_camera_is_woken_by_its_first_frame() -> None:
    hub = FrameHub()
    found: list[str | None] = []
    t = run(lambda: found.append(hub.first_camera(timeout=30)))
    hub.publish(frame(1, "door"))
    t.join(2)
    assert found == ["door"]


def test_waiting_for_a_first_camera_ends_on_timeout_or_close() -> None:
    hub = FrameHub()
    assert hub.first_camera(timeout=0.01) is None
    found: list[str | None] = ["unset"]
    t = run(lambda: found.__setitem__(0, hub.first_camera(timeout=30)))
    hub.close()
    t.join(2)
    assert not t.is_alive() and found == [None]


def test_cameras_are_discovered_from_frames_and_the_first_is_by_name() -> None:
    hub = FrameHub()
    hub.publish(frame(1, "b"))
    hub.publish(frame(1, "a"))
    assert hub.cameras() == ["a", "b"] and hub.first_camera(timeout=0) == "a"


def test_receive_rate_is_the_recent_rate_and_zero_once_quiet() -> None:
    rates = ReceiveRates()
    for i in range(21):  # 20 fps for one second
        rates.note("c", 100.0 + i / 20)
    assert abs(rates.fps("c", now=101.0) - 20.0) < 0.01
    assert rates.fps("c", now=103.0) == 0.0 and rates.fps("other", now=101.0) == 0.0


def test_camera_status_says_size_rate_age_liveness_and_viewers() -> None:
    hub = FrameHub()
    hub.publish(frame(1, "door"))
    arrived = hub.latest("door").received_monotonic
    with hub.viewer("door"):
        fresh, = camera_statuses(hub, lambda camera, now: 12.34, now=arrived + 1.0, stale_after_s=5.0)
    stale, = camera_statuses(hub, lambda camera, now: 0.0, now=arrived + 6.0, stale_after_s=5.0)
    assert (fresh.id, fresh.width, fresh.height, fresh.fps, fresh.age_s) == ("door", 4, 3, 12.3, 1.0)
    assert fresh.live and fresh.viewers == 1
    assert not stale.live and stale.viewers == 0


def test_health_is_decided_by_kafka_not_by_a_quiet_camera() -> None:
    hub = FrameHub()
    hub.publish(frame(1, "door"))
    rows = camera_statuses(hub, lambda camera, now: 0.0, now=hub.latest("door").received_monotonic + 60,
                           stale_after_s=5.0)
    quiet_camera = Health(KafkaHealth(connected=True), rows)
    assert quiet_camera.http_status == 200 and quiet_camera.as_json()["cameras"]["door"]["live"] is False
    broker_down = Health(KafkaHealth(connected=False), rows)
    assert broker_down.http_status == 503 and "brokers" in broker_down.as_json()["reason"]
    failing = Health(KafkaHealth(connected=True, error="RuntimeError", failures=3), rows)
    assert failing.http_status == 503 and failing.as_json()["kafka"]["error"] == "RuntimeError"
