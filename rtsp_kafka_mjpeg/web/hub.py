"""The newest frame per camera, a Condition per camera that wakes its viewers, and the viewers.

No per-viewer queue exists: a viewer that is slow simply finds a newer frame when it comes
back, so it skips frames and can never hold memory or slow anyone else down. The hub deals in
Frames only; how a frame goes over the wire (multipart, JPEG) is the web layer's business.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator

from ..frame import Frame

VIEWER_WAIT_S = 5.0


class UnknownCamera(KeyError):
    """No frame of this camera has reached the hub."""


@dataclasses.dataclass(frozen=True, slots=True)
class Published:
    """A frame as the hub hands it out: the frame, its number in the camera's order, arrival time."""

    frame: Frame
    number: int
    received_monotonic: float


class CameraSlot:
    """One camera's newest frame and the viewers waiting for the next one."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.cond = threading.Condition()
        self.latest: Published | None = None
        self.viewers = 0


class Viewer:
    """One attached viewer of one camera: each newer frame at most once, skipping what it was too
    slow for. Made by `FrameHub.viewer`, which also counts it."""

    def __init__(self, hub: FrameHub, slot: CameraSlot, wait_s: float) -> None:
        self._hub = hub
        self._slot = slot
        self._wait_s = wait_s
        self._after = 0
        self.camera_id = slot.camera_id

    def next(self, timeout: float) -> Published | None:
        """The newest frame this viewer has not had yet, or None after `timeout` s or on close."""
        slot = self._slot
        with slot.cond:
            slot.cond.wait_for(lambda: self._hub.closed or (slot.latest is not None
                                                            and slot.latest.number > self._after), timeout)
            latest = slot.latest
            if self._hub.closed or latest is None or latest.number <= self._after:
                return None
        self._after = latest.number
        return latest

    def __iter__(self) -> Iterator[Published]:
        """Newer frames until the hub closes; a quiet camera just means waiting again (each wait
        bounded, so a missed wake-up can never hang a viewer)."""
        while not self._hub.closed:
            published = self.next(self._wait_s)
            if published is not None:
                yield published


class FrameHub:
    """Holds the newest frame of each camera; viewers attach, wait on it, never queue, detach."""

    def __init__(self) -> None:
        self._cameras_changed = threading.Condition()
        self._slots: dict[str, CameraSlot] = {}
        self._closed = False

    def _slot(self, camera_id: str) -> CameraSlot:
        with self._cameras_changed:
            slot = self._slots.get(camera_id)
        if slot is None:
            raise UnknownCamera(camera_id)
        return slot

    def publish(self, frame: Frame) -> None:
        """Replace the camera's newest frame and wake everyone waiting on it (or on any camera)."""
        with self._cameras_changed:
            slot = self._slots.get(frame.camera_id)
            if slot is None:
                slot = self._slots[frame.camera_id] = CameraSlot(frame.camera_id)
                self._cameras_changed.notify_all()
        with slot.cond:
            number = 1 if slot.latest is None else slot.latest.number + 1
            slot.latest = Published(frame, number, time.monotonic())
            slot.cond.notify_all()

    def cameras(self) -> list[str]:
        with self._cameras_changed:
            return sorted(self._slots)

    def has_camera(self, camera_id: str) -> bool:
        with self._cameras_changed:
            return camera_id in self._slots

    def first_camera(self, timeout: float) -> str | None:
        """The first camera by name, waiting up to `timeout` s for one to appear; None on timeout
        or close. Woken by the first frame, not polled."""
        with self._cameras_changed:
            self._cameras_changed.wait_for(lambda: self._closed or bool(self._slots), timeout)
            if self._closed or not self._slots:
                return None
            return min(self._slots)

    def latest(self, camera_id: str) -> Published | None:
        with self._cameras_changed:
            slot = self._slots.get(camera_id)
        return slot.latest if slot else None

    @contextlib.contextmanager
    def viewer(self, camera_id: str, wait_s: float = VIEWER_WAIT_S) -> Iterator[Viewer]:
        """Attach a viewer to a camera for the `with` block: counted while inside, uncounted on any
        exit (client gone, generator closed, hub closed). Raises UnknownCamera."""
        slot = self._slot(camera_id)
        with slot.cond:
            slot.viewers += 1
        try:
            yield Viewer(self, slot, wait_s)
        finally:
            with slot.cond:
                slot.viewers -= 1

    def viewer_counts(self) -> dict[str, int]:
        """Attached viewers per camera."""
        with self._cameras_changed:
            slots = list(self._slots.values())
        return {slot.camera_id: slot.viewers for slot in slots}

    def close(self) -> None:
        """Release every waiting viewer and waiter for a first camera (shutdown)."""
        with self._cameras_changed:
            self._closed = True
            self._cameras_changed.notify_all()
            slots = list(self._slots.values())
        for slot in slots:
            with slot.cond:
                slot.cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
