"""The Frame record and its Kafka form: value = JPEG bytes, key = camera id, metadata in headers.

Headers are plain ASCII so any Kafka tool (kcat, kafka-console-consumer) can read them.
"""

from __future__ import annotations

import dataclasses

CONTENT_TYPE = "image/jpeg"
RECORD_OVERHEAD = 4096  # key, headers and batch framing around the JPEG in a Kafka record
H_CAMERA, H_TS, H_SEQ, H_WIDTH, H_HEIGHT, H_TYPE = (
    "camera-id", "capture-ts-ns", "seq", "width", "height", "content-type")


class BadRecord(ValueError):
    """A record that is not a frame we can show; `reason` is a short label for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One encoded picture of one camera."""

    camera_id: str
    capture_ts_ns: int
    seq: int
    width: int
    height: int
    jpeg: bytes

    def kafka_key(self) -> bytes:
        return self.camera_id.encode()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [
            (H_CAMERA, self.camera_id.encode()),
            (H_TS, str(self.capture_ts_ns).encode()),
            (H_SEQ, str(self.seq).encode()),
            (H_WIDTH, str(self.width).encode()),
            (H_HEIGHT, str(self.height).encode()),
            (H_TYPE, CONTENT_TYPE.encode()),
        ]


def looks_like_jpeg(data: bytes) -> bool:
    """SOI at the start and EOI at the end: catches junk and truncated frames without decoding."""
    return len(data) >= 4 and data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"


def _header_int(headers: dict[str, bytes], name: str, low: int, high: int) -> int:
    raw = headers.get(name)
    if raw is None:
        raise BadRecord("missing_header", f"header {name!r} missing")
    try:
        value = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BadRecord("bad_header", f"header {name!r} is not an integer") from None
    if not low <= value <= high:
        raise BadRecord("bad_header", f"header {name!r} out of range")
    return value


def frame_from_record(key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, bytes]] | None, max_bytes: int) -> Frame:
    """Turn a consumed record into a Frame, or raise BadRecord saying why it is not one."""
    if not value:
        raise BadRecord("empty", "empty value")
    if len(value) > max_bytes:
        raise BadRecord("oversized", f"{len(value)} bytes > limit {max_bytes}")
    if not looks_like_jpeg(value):
        raise BadRecord("not_jpeg", "value is not a complete JPEG")
    hdrs = {k: v for k, v in (headers or []) if isinstance(v, bytes)}
    camera = hdrs.get(H_CAMERA) or key
    if not camera:
        raise BadRecord("missing_header", "no camera id (key or header)")
    try:
        camera_id = camera.decode("ascii")
    except UnicodeDecodeError:
        raise BadRecord("bad_header", "camera id is not ASCII") from None
    if key is not None and key != camera:
        raise BadRecord("bad_header", "key and camera-id header disagree")
    if not camera_id.isprintable() or len(camera_id) > 64:
        raise BadRecord("bad_header", "camera id is not a short printable name")
    return Frame(
        camera_id=camera_id,
        capture_ts_ns=_header_int(hdrs, H_TS, 0, 2**63 - 1),
        seq=_header_int(hdrs, H_SEQ, 0, 2**63 - 1),
        width=_header_int(hdrs, H_WIDTH, 1, 65535),
        height=_header_int(hdrs, H_HEIGHT, 1, 65535),
        jpeg=bytes(value),
    )
