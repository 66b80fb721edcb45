"""Reading a stream through PyAV (FFmpeg): every frame, or key frames only for low-rate thumbnails.

Why PyAV beside OpenCV's capture:
  * key frames only: OpenCV's FFmpeg backend decodes every frame inside ``grab()``, so publishing
    1 frame/s of a 30 fps H.264 camera still pays for 30 decodes. FFmpeg's decoder can skip
    non-key frames (``AVCodecContext.skip_frame = NONKEY``); OpenCV does not expose that, PyAV
    does. Measured here (720p30 H.264): ~16% of a core to decode every frame, ~3% for key frames.
  * YUV out (``yuv=True``, SOURCE_DECODER=pyav): OpenCV always converts the decoded YUV 4:2:0
    picture to BGR, and the JPEG encoder converts it back. Handing out the decoder's own planes
    skips FFmpeg's BGR conversion (measured at 720p: ~0.6 ms less a frame to decode); the encoder
    writes the planes (``encoder.JpegEncoder``) at about cv2.imencode's cost once video range is
    stretched to JPEG's, so a whole frame costs only ~0-5% less (bench/decode_paths.py).

Key frames only (``max_fps > 0``): the reader checks that the stream keeps the promise that makes
this correct: it decodes every frame until two key frames show the key-frame interval, skips
non-key frames only while that interval is at most ``1/max_fps`` (10% slack), and goes back to
decoding every frame, from the next key frame, if the camera's key frames grow sparser. Key frames
that come faster than ``max_fps`` are skipped undecoded, so pictures stay about ``1/max_fps`` apart.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .hwaccel import HwDecoder

log = logging.getLogger(__name__)

try:
    import av
except ImportError:  # optional: without PyAV every frame is decoded by OpenCV, as before
    av = None

# Key frames may come up to this much sparser than 1/max_fps and still count as "often enough".
_SLACK = 1.1
# A key frame is decoded only once this fraction of 1/max_fps has passed since the last one.
_DUE = 0.9
# Pixel formats handed out as planes: 4:2:0, 8 bits, three planes (yuvj420p is the same, full range).
_YUV420 = {"yuv420p": False, "yuvj420p": True}
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
# FFmpeg's stream analysis at open, microseconds of stream: a second tells codec, size and rate; the
# default (up to 5 s) only delays every open, and OpenCV's backend opens one stream at a time.
ANALYZE_US = 1_000_000
# Packets a hardware decoder may fail in a row before any picture, before the camera counts as
# one the device cannot decode (a stream joined mid-GOP fails a few until its first key frame).
HW_FAILURES = 60


def available() -> bool:
    """PyAV is installed: key-frame-only decoding and the pyav decoder are possible."""
    return av is not None


class PyavError(RuntimeError):
    """The stream could not be opened or read (the message never holds the URL's credentials)."""


class HwDecodeError(PyavError):
    """The hardware decoder cannot decode this camera's stream (its codec, profile or size)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Picture:
    """One decoded picture: `yuv` (4:2:0 planes stacked, shape (H*3/2, W)) when asked for and the
    picture is 8-bit 4:2:0 of even size, else `image` (BGR). `chroma`: "i420" (U plane, then V)
    from a software decoder, "nv12" (U and V interleaved) as hardware decoders hand them back.
    `full_range`: the YUV samples use 0-255 (JPEG's range) rather than video's 16-235/240."""

    image: np.ndarray | None
    yuv: np.ndarray | None
    width: int
    height: int
    full_range: bool = False
    chroma: str = "i420"


def picture(frame: av.VideoFrame, yuv: bool) -> Picture:
    """The frame's pixels: its YUV planes when `yuv` and they are plain 4:2:0 (planar, or NV12 from
    a GPU), else BGR (any other pixel format or an odd size goes through FFmpeg's converter, as
    OpenCV would)."""
    w, h = frame.width, frame.height
    fmt = frame.format.name
    if yuv and w % 2 == 0 and h % 2 == 0:
        if fmt in _YUV420:
            full = _YUV420[fmt] or frame.color_range == _FULL_RANGE
            return Picture(None, frame.to_ndarray(format=fmt), w, h, full)
        if fmt == "nv12":
            return Picture(None, frame.to_ndarray(format="nv12"), w, h, frame.color_range == _FULL_RANGE, "nv12")
    return Picture(frame.to_ndarray(format="bgr24"), None, w, h)


class PyavReader:
    """Reads a stream with PyAV; `read()` returns the next decoded `Picture`.

    `max_fps > 0` decodes key frames only while they keep up with it (module docstring); `yuv`
    asks for YUV planes instead of BGR; `threads` is FFmpeg's decoder thread count (0: auto);
    `hw` (hwaccel.HwDecoder) decodes on that device or raises
    HwDecodeError, at open or from read(), never decoding in software behind the caller's back.
    `stall_s > 0` (live streams): a packet that took that long to come means the camera hung, and
    read() says so (None) at once rather than decode it (why: `_hung`).
    """

    def __init__(self, url: str, display: str, rtsp_transport: str, open_timeout_s: float,
                 read_timeout_s: float, threads: int, stop: threading.Event, max_fps: float = 0.0,
                 yuv: bool = False, hw: HwDecoder | None = None, stall_s: float = 0.0) -> None:
        if av is None:
            raise PyavError("PyAV (the av package) is not installed")
        self.display = display
        self.max_fps = max_fps
        self._yuv = yuv
        self._stop = stop
        self._stall_s = stall_s
        options = {"analyzeduration": str(ANALYZE_US)}
        if url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = rtsp_transport
            options["timeout"] = str(int(read_timeout_s * 1e6))  # socket I/O, microseconds
        self._hw = hw
        self._hw_failures = 0
        try:
            self._container = av.open(url, container_options=options, timeout=(open_timeout_s, read_timeout_s),
                                      hwaccel=hw.hwaccel() if hw else None)
        except (av.FFmpegError, OSError) as err:
            raise PyavError(f"cannot open video source {display}: {type(err).__name__}") from None
        except RuntimeError:  # PyAV: hardware decode requested but no stream is compatible
            raise HwDecodeError(f"camera {display}: its video codec cannot be decoded on "
                                f"{hw.name if hw else '?'}") from None
        if not self._container.streams.video:
            self._container.close()
            raise PyavError(f"cannot open video source {display}: no video stream")
        self._stream = self._container.streams.video[0]
        self._codec = self._stream.codec_context
        self._codec.thread_count = threads
        rate = self._stream.guessed_rate or self._stream.average_rate
        self.fps = float(rate) if rate else 0.0
        self._packets: Iterator[av.Packet] = self._container.demux(self._stream)
        self.skipping = False  # only key frames are decoded
        self.key_interval_s = 0.0  # between the last two key frames, stream time
        self.decoded = 0
        self.demuxed = 0
        self._last_key: float | None = None
        self._last_decoded: float | None = None

    @property
    def codec(self) -> str:
        """FFmpeg's codec name: 'h264', 'hevc', 'mjpeg', ..."""
        return self._codec.name

    def read(self) -> Picture | None:
        """The next decoded picture; None when the stream ended or failed, or on stop."""
        while not self._stop.is_set():
            waited = time.monotonic()
            try:
                packet = next(self._packets)
            except (StopIteration, av.FFmpegError, OSError) as err:
                log.info("camera %s: PyAV reader ended (%s)", self.display, type(err).__name__)
                return None
            if self._hung(time.monotonic() - waited):
                return None
            if packet.size == 0:
                continue  # a flush packet
            self.demuxed += 1
            at = 0.0
            if self.max_fps > 0:
                at = float(packet.pts * packet.time_base) if packet.pts is not None else time.monotonic()
                if packet.is_keyframe:
                    self._on_key_frame(at)
                if self.skipping and not self._due(packet.is_keyframe, at):
                    continue
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                self._hw_failed(err)
                continue  # a damaged packet: the next key frame recovers
            if frames:
                self._last_decoded = at
                self.decoded += 1
                return picture(frames[-1], self._yuv)
        return None

    def _hung(self, waited_s: float) -> bool:
        """A packet that came only after ~the read timeout is what FFmpeg had left when its read
        timed out: its parser hands out the frame it held (an old picture, or the first fragment
        of one that never finished), and the next read would wait a whole timeout again. So the
        camera is lost one read timeout after its last packet, never two."""
        if not self._stall_s or waited_s < self._stall_s:
            return False
        log.info("camera %s: no packet for %.1f s: hung", self.display, waited_s)
        return True

    def _hw_failed(self, err: Exception) -> None:
        """On a device, HW_FAILURES failed packets before any picture: the device cannot decode
        this stream (say a profile NVDEC lacks); software never stands in silently."""
        if self._hw is None or self.decoded:
            return
        self._hw_failures += 1
        if self._hw_failures >= HW_FAILURES:
            raise HwDecodeError(f"camera {self.display}: {self.codec} does not decode on {self._hw.name} "
                                f"({type(err).__name__}: {err})")

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
