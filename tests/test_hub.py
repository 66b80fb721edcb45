"""The hub: newest frame per camera, viewers woken, slow viewers skip instead of queueing."""

from __future__ import annotations

import threading

from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.hub import FrameHub

JPEG = b"\xff\xd8" + b"\x01" * 10 + b"\xff\xd9"


def frame(seq: int, camera: str = "c") -> Frame:
    return Frame(camera, seq * 1000, seq, 4, 3, JPEG)


def test_part_is_built_once_with_content_type_length_and_capture_time() -> None:
    hub = FrameHub()
    hub.publish(frame(1))
    part = hub.latest("c").part
    assert part.startswith(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 14\r\n")
    assert b"X-Capture-Timestamp-Ns: 1000\r\n" in part and part.endswith(JPEG + b"\r\n")


def test_a_slow_viewer_gets_the_newest_frame_not_a_backlog() -> None:
    hub = FrameHub()
    for seq in range(1, 6):
        hub.publish(frame(seq))
    slot = hub.slot("c")
    got = hub.wait_newer(slot, after=0, timeout=0.1)
    assert got.frame.seq == 5
    assert hub.wait_newer(slot, after=got.number, timeout=0.05) is None


def test_every_waiting_viewer_is_woken_by_each_frame() -> None:
    hub = FrameHub()
    hub.publish(frame(1))
    slot = hub.slot("c")
    received: list[int] = []
    ready = threading.Barrier(4)

    def viewer() -> None:
        ready.wait()
        got = hub.wait_newer(slot, after=1, timeout=5)
        received.append(got.frame.seq)

    threads = [threading.Thread(target=viewer) for _ in range(3)]
    for t in threads:
        t.start()
    ready.wait()
    hub.publish(frame(2))
    for t in threads:
        t.join(5)
    assert received == [2, 2, 2]


def test_close_releases_waiting_viewers() -> None:
    hub = FrameHub()
    hub.publish(frame(1))
    slot = hub.slot("c")
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(hub.wait_newer(slot, after=1, timeout=30)))
    t.start()
    hub.close()
    t.join(2)
    assert not t.is_alive() and result == [None]


def test_cameras_are_discovered_from_frames() -> None:
    hub = FrameHub()
    hub.publish(frame(1, "b"))
    hub.publish(frame(1, "a"))
    assert hub.cameras() == ["a", "b"]


def test_camera_fps_is_the_recent_receive_rate() -> None:
    hub = FrameHub()
    hub.publish(frame(1))
    slot = hub.slot("c")
    slot._rate_window.clear()
    for i in range(21):  # 20 fps for one second
        slot.note_arrival(100.0 + i / 20)
    assert abs(slot.fps(now=101.0) - 20.0) < 0.01
    assert slot.fps(now=103.0) == 0.0
