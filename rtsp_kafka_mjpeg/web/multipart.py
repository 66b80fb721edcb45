"""Frames as parts of a multipart/x-mixed-replace response (MJPEG over HTTP), each part built once.

A part carries the JPEG plus its capture time and sequence in headers, so a client can measure
latency and gaps without decoding. Building one copies the whole JPEG, so the web layer asks
`PartCache` instead: the first viewer to send a frame builds its part, every other viewer of
that frame reuses the same bytes.
"""

from __future__ import annotations

import threading

from ..frame import Frame
from .hub import Published

BOUNDARY = "frame"
MIMETYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"


def multipart_part(frame: Frame) -> bytes:
    """One part of the stream: boundary, headers, JPEG, CRLF."""
    head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
            f"X-Camera-Id: {frame.camera_id}\r\nX-Capture-Timestamp-Ns: {frame.capture_ts_ns}\r\n"
            f"X-Sequence: {frame.seq}\r\n\r\n").encode()
    return b"".join((head, frame.jpeg, b"\r\n"))


class PartCache:
    """The part of each camera's newest frame, keyed by the hub's frame number: one build per frame
    however many viewers send it, and one part held per camera."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[str, tuple[int, bytes]] = {}

    def part(self, published: Published) -> bytes:
        camera, number = published.frame.camera_id, published.number
        cached = self._parts.get(camera)
        if cached is not None and cached[0] == number:
            return cached[1]
        with self._lock:
            cached = self._parts.get(camera)
            if cached is not None and cached[0] == number:
                return cached[1]
            part = multipart_part(published.frame)
            # A slow viewer still sending an older frame must not evict the newer one.
            if cached is None or cached[0] < number:
                self._parts[camera] = (number, part)
            return part
