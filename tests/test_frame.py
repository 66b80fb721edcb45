"""The Kafka form of a frame, and how the consumer rejects records that are not frames."""

from __future__ import annotations

import pytest

from rtsp_kafka_mjpeg.frame import BadRecord, Frame, frame_from_record

JPEG = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"


def a_frame() -> Frame:
    return Frame("door", 1_700_000_000_000_000_000, 7, 640, 360, JPEG)


def test_a_frame_round_trips_through_key_headers_and_value() -> None:
    f = a_frame()
    assert frame_from_record(f.kafka_key(), f.jpeg, f.kafka_headers(), 10_000) == f


def test_headers_carry_camera_timestamp_sequence_size_and_type() -> None:
    headers = dict(a_frame().kafka_headers())
    assert headers == {"camera-id": b"door", "capture-ts-ns": b"1700000000000000000", "seq": b"7",
                       "width": b"640", "height": b"360", "content-type": b"image/jpeg"}


@pytest.mark.parametrize(("value", "headers", "reason"), [
    (b"", None, "empty"),
    (b"hello world", None, "not_jpeg"),
    (JPEG[:-10], None, "not_jpeg"),
    (JPEG, None, "missing_header"),
    (JPEG, [("camera-id", b"door"), ("capture-ts-ns", b"x"), ("seq", b"1"), ("width", b"1"), ("height", b"1")],
     "bad_header"),
    (b"\xff\xd8" + b"\x00" * 20000 + b"\xff\xd9", None, "oversized"),
])
def test_records_that_are_not_frames_are_rejected_with_a_reason(value: bytes, headers: list | None,
                                                                reason: str) -> None:
    with pytest.raises(BadRecord) as err:
        frame_from_record(b"door", value, headers, 10_000)
    assert err.value.reason == reason


def test_key_and_camera_header_must_agree() -> None:
    f = a_frame()
    with pytest.raises(BadRecord):
        frame_from_record(b"other", f.jpeg, f.kafka_headers(), 10_000)
