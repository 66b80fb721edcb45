"""The newest frame per camera, and a Condition per camera that wakes its viewers.

No per-viewer queue exists: a viewer that is slow simply finds a newer frame when it comes
back, so it skips frames and can never hold memory or slow anyone else down. Each frame's
multipart part (boundary, headers, JPEG) is built once here and shared by every viewer.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from .frame import Frame

BOUNDARY = "frame"


def multipart_part(frame: Frame) -> bytes:
    """One part of a multipart/x-mixed-replace stream, capture time and sequence in its headers."""
    head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
            f"X-Camera-Id: {frame.camera_id}\r\nX-Capture-Timestamp-Ns: {frame.capture_ts_ns}\r\n"
            f"X-Sequence: {frame.seq}\r\n\r\n").encode()
    return b"".join((head, frame.jpeg, b"\r\n"))


@dataclasses.dataclass(frozen=True, slots=True)
class Published:
    """A frame as the hub hands it out: the frame, its prepared part, hub order, arrival time."""

    frame: Frame
    part: bytes
    number: int
    received_monotonic: float


class CameraSlot:
    """One camera's newest frame and the viewers waiting for the next one."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.cond = threading.Condition()
        self.latest: Published | None = None
        self.frames_in = 0
        self.viewers = 0
        self._rate_window: list[float] = []

    def note_arrival(self, now: float) -> None:
        self._rate_window.append(now)
        if now - self._rate_window[0] > 5.0:
            self._rate_window = [t for t in self._rate_window if now - t <= 5.0]

    def fps(self, now: float | None = None) -> float:
        """Receive rate over the last 5 s (0 once the camera has been quiet for a second)."""
        now = time.monotonic() if now is None else now
        recent = [t for t in self._rate_window if now - t <= 5.0]
        if len(recent) < 2 or now - recent[-1] > 1.0:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-3)


class FrameHub:
    """Holds the newest frame of each camera; viewers wait on it and never queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, CameraSlot] = {}
        self._closed = False

    def slot(self, camera_id: str, create: bool = False) -> CameraSlot | None:
        with self._lock:
            slot = self._slots.get(camera_id)
            if slot is None and create:
                slot = self._slots[camera_id] = CameraSlot(camera_id)
            return slot

    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._slots)

    def publish(self, frame: Frame) -> None:
        """Replace the camera's newest frame and wake everyone waiting on it."""
        slot = self.slot(frame.camera_id, create=True)
        assert slot is not None
        part = multipart_part(frame)
        now = time.monotonic()
        with slot.cond:
            slot.frames_in += 1
            slot.latest = Published(frame, part, slot.frames_in, now)
            slot.note_arrival(now)
            slot.cond.notify_all()

    def latest(self, camera_id: str) -> Published | None:
        slot = self.slot(camera_id)
        return slot.latest if slot else None

    def wait_newer(self, slot: CameraSlot, after: int, timeout: float) -> Published | None:
        """The newest frame numbered above `after`, or None after `timeout` s or on close."""
        with slot.cond:
            slot.cond.wait_for(lambda: self._closed or (slot.latest is not None and slot.latest.number > after),
                               timeout)
            latest = slot.latest
            if self._closed or latest is None or latest.number <= after:
                return None
            return latest

    def close(self) -> None:
        """Release every waiting viewer (shutdown)."""
        with self._lock:
            self._closed = True
            slots = list(self._slots.values())
        for slot in slots:
            with slot.cond:
                slot.cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
