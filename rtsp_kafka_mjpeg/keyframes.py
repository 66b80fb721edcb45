"""Key-frame-only decoding for low-rate thumbnails (PyAV: FFmpeg's ``skip_frame``).

Why: OpenCV's FFmpeg backend decodes every frame inside ``grab()``, so publishing 1 frame/s of a
30 fps H.264 camera still pays for 30 decodes and drops 29. FFmpeg's decoder can skip non-key
frames (``AVCodecContext.skip_frame = NONKEY``); OpenCV does not expose that, PyAV does. Measured
on this machine (720p30 H.264): ~16% of a core to decode every frame, ~3% for key frames only
(bench/decode_paths.py).

The reader checks that the stream keeps the promise that makes this correct: it decodes every
frame until two key frames show the key-frame interval, skips non-key frames only while that
interval is at most ``1/max_fps`` (10% slack), and goes back to decoding every frame, from the next
key frame, if the camera's key frames grow sparser. Key frames that come faster than ``max_fps``
are skipped undecoded, so decoded pictures stay about ``1/max_fps`` apart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import numpy as np

log = logging.getLogger(__name__)

try:
    import av
except ImportError:  # optional: without PyAV every frame is decoded by OpenCV, as before
    av = None

# Key frames may come up to this much sparser than 1/max_fps and still count as "often enough".
_SLACK = 1.1
# A key frame is decoded only once this fraction of 1/max_fps has passed since the last one.
_DUE = 0.9


def available() -> bool:
    """PyAV is installed: key-frame-only decoding is possible."""
    return av is not None


class KeyframeError(RuntimeError):
    """The stream could not be opened or read (the message never holds the URL's credentials)."""


class KeyframeReader:
    """Reads a network stream with PyAV, decoding key frames only while that keeps up with
    `max_fps`; `read()` returns the next decoded BGR picture."""

    def __init__(self, url: str, display: str, rtsp_transport: str, open_timeout_s: float,
                 read_timeout_s: float, max_fps: float, threads: int, stop: threading.Event) -> None:
        if av is None:
            raise KeyframeError("PyAV (the av package) is not installed")
        self.display = display
        self.max_fps = max_fps
        self._stop = stop
        try:
            # analyzeduration: the stream info is known within a second; the 5 s default only delays.
            self._container = av.open(
                url, container_options={"rtsp_transport": rtsp_transport, "analyzeduration": "1000000"},
                timeout=(open_timeout_s, read_timeout_s))
        except (av.FFmpegError, OSError) as err:
            raise KeyframeError(f"cannot open video source {display}: {type(err).__name__}") from None
        self._stream = self._container.streams.video[0]
        self._codec = self._stream.codec_context
        self._codec.thread_count = threads
        self._packets: Iterator[av.Packet] = self._container.demux(self._stream)
        self.skipping = False  # only key frames are decoded
        self.key_interval_s = 0.0  # between the last two key frames, stream time
        self.decoded = 0
        self.demuxed = 0
        self._last_key: float | None = None
        self._last_decoded: float | None = None

    @property
    def codec(self) -> str:
        return self._codec.name

    def read(self) -> np.ndarray | None:
        """The next decoded picture; None when the stream ended or failed, or on stop."""
        while not self._stop.is_set():
            try:
                packet = next(self._packets)
            except (StopIteration, av.FFmpegError, OSError) as err:
                log.info("camera %s: key-frame reader ended (%s)", self.display, type(err).__name__)
                return None
            if packet.size == 0:
                continue  # a flush packet
            self.demuxed += 1
            at = float(packet.pts * packet.time_base) if packet.pts is not None else time.monotonic()
            if packet.is_keyframe:
                self._on_key_frame(at)
            if self.skipping and not self._due(packet.is_keyframe, at):
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue  # a damaged packet: the next key frame recovers
            if frames:
                self._last_decoded = at
                self.decoded += 1
                return frames[-1].to_ndarray(format="bgr24")
        return None

    def _due(self, key: bool, at: float) -> bool:
        """While skipping: decode only key frames at least ~1/max_fps after the last decoded one."""
        if not key:
            return False
        return self._last_decoded is None or at - self._last_decoded >= _DUE / self.max_fps

    def _on_key_frame(self, at: float) -> None:
        if self._last_key is not None:
            self.key_interval_s = at - self._last_key
            often_enough = 0 < self.key_interval_s <= _SLACK / self.max_fps
            if often_enough != self.skipping:
                # Switching at a key frame: decoding every frame from here on needs nothing earlier.
                self.skipping = often_enough
                self._codec.skip_frame = "NONKEY" if often_enough else "DEFAULT"
                log.info("camera %s: key frames every %.2f s: %s", self.display, self.key_interval_s,
                         "decoding key frames only" if often_enough
                         else f"decoding every frame (key frames too sparse for {self.max_fps:g} fps)")
        self._last_key = at

    def release(self) -> None:
        self._container.close()
