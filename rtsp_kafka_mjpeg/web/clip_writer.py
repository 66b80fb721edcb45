"""A span of a camera's frames as a video file, written as it is read (no whole clip in memory).

Two formats, both muxed by PyAV (FFmpeg's own muxers, so players accept them):
- ``mjpeg``: the camera's own JPEGs, not re-encoded, in Matroska (``.mkv``): what the camera sent,
  at ~20x+ real time, plays in VLC and ffmpeg.
- ``mp4``: H.264 (the libx264 PyAV's wheel bundles, ``ultrafast``/``zerolatency``, one thread, for a
  short first chunk) in a fragmented MP4 (``empty_moov`` + a fragment per key frame), so a
  browser or player starts playing before the download ends: the complaint MediaMTX's users
  file about its exports (#3565, #4644). yuv420p and even sizes, which Safari and Chromium need.

Timestamps come from the frames' capture times (milliseconds), so a clip plays at the recorded
pace however irregular the camera was. The caller feeds frames in capture order; ``add`` and
``finish`` return whatever bytes the muxer wrote meanwhile.
"""

from __future__ import annotations

import fractions
import io
from typing import Any

import av
import cv2
import numpy as np

from ..frame import Frame

FORMATS = {"mp4": ("video/mp4", "mp4"), "mjpeg": ("video/x-matroska", "mkv")}
TIME_BASE = fractions.Fraction(1, 1000)  # milliseconds
GOP_FRAMES = 30  # a key frame (and an MP4 fragment) at least this often


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file for the muxer: what it writes is taken by ``take``."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self._chunks = b"".join(self._chunks), []
        return out


class ClipWriter:
    """Frames in, file bytes out. Not thread-safe; one per export."""

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.fmt = fmt
        self.frames = 0
        self._sink = _Sink()
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"} if fmt == "mp4" else {}
        self._container = av.open(self._sink, "w", format="mp4" if fmt == "mp4" else "matroska", options=options)
        self._stream: Any = None
        self._t0_ms: int | None = None
        self._last_pts = -1

    def _open_stream(self, frame: Frame, width: int, height: int) -> None:
        if self.fmt == "mjpeg":
            stream = self._container.add_stream("mjpeg")
            stream.pix_fmt = "yuvj420p"
        else:
            stream = self._container.add_stream("libx264", rate=30)
            stream.pix_fmt = "yuv420p"
            # One thread: an export takes one core at most, the live viewers keep the others.
            stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(GOP_FRAMES), "threads": "1"}
            stream.codec_context.thread_count = 1
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        self._stream = stream

    def _pts(self, frame: Frame) -> int:
        ms = frame.capture_ts_ns // 1_000_000
        if self._t0_ms is None:
            self._t0_ms = ms
        pts = max(ms - self._t0_ms, self._last_pts + 1)  # strictly increasing, as muxers require
        self._last_pts = pts
        return pts

    def add(self, frame: Frame) -> bytes:
        """Mux one frame (the JPEG as is, or decoded and H.264-encoded); the bytes written so far."""
        if self.fmt == "mjpeg":
            if self._stream is None:
                self._open_stream(frame, frame.width or 2, frame.height or 2)
            packet = av.Packet(frame.jpeg)
            packet.pts = packet.dts = self._pts(frame)
            packet.time_base = TIME_BASE
            packet.stream = self._stream
            self._container.mux(packet)
        else:
            image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                return self._sink.take()  # a JPEG that does not decode is left out, not fatal
            if self._stream is None:
                self._open_stream(frame, image.shape[1], image.shape[0])
            w, h = self._stream.width, self._stream.height
            video = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="bgr24")
            video.pts = self._pts(frame)
            video.time_base = TIME_BASE
            for packet in self._stream.encode(video):
                self._container.mux(packet)
        self.frames += 1
        return self._sink.take()

    def finish(self) -> bytes:
        """Flush the encoder and close the file; the last bytes."""
        if self._stream is not None and self.fmt == "mp4":
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        self._container.close()
        return self._sink.take()
