"""OpenCV capture in its own thread, keeping only the newest frame.

A slow encoder or broker therefore skips frames instead of letting latency grow, and a lost
camera is reopened with capped exponential backoff and jitter (tenacity) until stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

import cv2
import numpy as np
import tenacity

from .redact import redact_url

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The video source could not be opened or stopped delivering frames."""


@dataclasses.dataclass(frozen=True, slots=True)
class Captured:
    """A decoded picture, its wall-clock capture time and its capture number."""

    image: np.ndarray
    ts_ns: int
    number: int


def is_live(source: str) -> bool:
    """Network streams and devices are live; a file is replayed at its own frame rate, looping."""
    return source.isdigit() or ("://" in source and not source.startswith("file://"))


class FrameSource:
    """Reads a camera in a background thread; `newest()` hands out the latest frame only."""

    def __init__(self, source: str, rtsp_transport: str = "tcp", open_timeout_s: float = 10.0,
                 read_timeout_s: float = 5.0, stop: threading.Event | None = None, decode_threads: int = 1) -> None:
        self.source = source
        self.display = redact_url(source)
        self._transport = rtsp_transport
        self._open_ms = int(open_timeout_s * 1000)
        self._read_ms = int(read_timeout_s * 1000)
        self._decode_threads = decode_threads
        self._stop = stop or threading.Event()
        self._cond = threading.Condition()
        self._latest: Captured | None = None
        self._taken = 0
        self._cap: cv2.VideoCapture | None = None
        self._thread: threading.Thread | None = None
        self.state = "idle"
        self.captured = 0
        self.skipped = 0  # captured frames replaced by a newer one before anyone took them
        self.reconnects = 0
        self.fps_hint = 0.0

    # -- opening -------------------------------------------------------------------------------

    def _open_once(self) -> cv2.VideoCapture:
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{self._transport}"
        target: str | int = int(self.source) if self.source.isdigit() else self.source
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._open_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._read_ms]
        if self._decode_threads:
            params += [cv2.CAP_PROP_N_THREADS, self._decode_threads]
        backend = cv2.CAP_ANY if isinstance(target, int) else cv2.CAP_FFMPEG
        cap = cv2.VideoCapture(target, backend, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video source {self.display}")
        self.fps_hint = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        return cap

    def open(self) -> None:
        """Open the source once, raising SourceError: a wrong URL at start-up fails fast."""
        self._set_state("connecting")
        self._cap = self._open_once()
        self._set_state("streaming")

    def _reopen(self) -> None:
        retry = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(SourceError),
            # Capped low: a refused connection costs nothing, and video should return within
            # seconds of the camera.
            wait=tenacity.wait_random_exponential(multiplier=0.5, max=3),
            stop=tenacity.stop_when_event_set(self._stop),
            sleep=self._stop.wait,
            retry_error_callback=lambda _state: None,
            reraise=False,
        )
        self._cap = retry(self._open_once)
        if self._cap is not None:
            self.reconnects += 1
            self._set_state("streaming")

    # -- running -------------------------------------------------------------------------------

    def start(self, open_first: bool = True) -> None:
        """Capture in the background. With `open_first` False a source that could not be opened
        starts out reconnecting (one of many cameras being down must not stop the others)."""
        if self._cap is None and open_first:
            self.open()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        live = is_live(self.source)
        period = 1.0 / self.fps_hint if not live and self.fps_hint > 0 else 0.0
        next_at = time.monotonic()
        stall_s = 0.9 * self._read_ms / 1000
        while not self._stop.is_set():
            cap = self._cap
            started = time.monotonic()
            ok, image = cap.read() if cap is not None else (False, None)
            if live and ok and time.monotonic() - started >= stall_s:
                # A hung camera makes FFmpeg hand out frames it still held, one per read
                # timeout: old pictures that would get fresh timestamps. Treat it as lost.
                ok = False
            if not ok or image is None:
                if not live and cap is not None and self.captured:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # a file loops
                    continue
                self._lost()
                continue
            if period:
                next_at += period
                self._stop.wait(max(0.0, next_at - time.monotonic()))
            self._store(image)
        self._release()
        self._set_state("stopped")

    def _store(self, image: np.ndarray) -> None:
        with self._cond:
            self.captured += 1
            if self._latest is not None and self._latest.number > self._taken:
                self.skipped += 1
            self._latest = Captured(image, time.time_ns(), self.captured)
            self._cond.notify_all()

    def _lost(self) -> None:
        self._release()
        if self._stop.is_set():
            return
        self._set_state("reconnecting")
        self._reopen()

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def newest(self, after: int, timeout: float) -> Captured | None:
        """The newest frame numbered above `after`, waiting up to `timeout` s; None if none came."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._latest is not None and self._latest.number > after, timeout)
            if not ok:
                return None
            assert self._latest is not None
            self._taken = self._latest.number
            return self._latest

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self._read_ms / 1000 + 2)
        else:
            self._release()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            log.info("camera %s: %s", self.display, state)
