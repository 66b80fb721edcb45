"""Camera capture in its own thread (OpenCV or PyAV), keeping only the newest frame.

A slow encoder or broker therefore skips frames instead of letting latency grow, and a lost
camera is reopened with capped exponential backoff and jitter (tenacity) until stopped.

Cheaper paths, chosen after each open (``FrameSource.mode``):
  ``mjpeg``      an MJPEG network camera: OpenCV's raw mode (CAP_PROP_FORMAT -1) hands over each
                 frame as the camera's own JPEG, which `Captured.jpeg` carries undecoded (0.2-0.4 ms
                 CPU a frame instead of ~2 ms decode + ~1.6 ms re-encode at 720p). A packet that is
                 not one complete JPEG (SOI .. SOF .. EOI) is decoded instead.
  ``keyframes``  a live H.264/HEVC camera published at ``max_fps`` well below its rate: PyAV decodes
                 key frames only (`pyav_reader.PyavReader`). Used when ``max_fps > 0``, the camera
                 announces at least 3x that rate, PyAV is installed and ``keyframes="auto"``; the
                 reader itself falls back to decoding every frame while key frames come less often
                 than ``1/max_fps``, so MAX_FPS=1 needs a key frame at least every ~1.1 s.
  ``pyav``       ``decoder="pyav"`` (SOURCE_DECODER): PyAV decodes every frame and hands out the
                 decoder's YUV 4:2:0 planes (`Captured.yuv`), which the encoder writes as JPEG without
                 the colour conversions through BGR (~0.6 ms less a 720p frame to decode, the encode
                 about as costly: ~0-5% less CPU a frame in all, bench/decode_paths.py). Pictures in
                 another pixel format or of odd size come as BGR instead; a device index (``0``) and,
                 with passthrough on, an MJPEG camera are read by OpenCV as above. With the key-frame
                 rule met this is ``keyframes`` (YUV too).
  ``decode``     every other case: OpenCV decodes every frame (the pipeline drops what MAX_FPS skips).
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

from ..redact import redact_url
from . import pyav_reader
from .hwaccel import HwDecoder

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The video source could not be opened or stopped delivering frames."""


@dataclasses.dataclass(frozen=True, slots=True)
class Captured:
    """One captured frame, its wall-clock capture time and its capture number.

    Exactly one of: `image` (decoded BGR); `jpeg`, from an MJPEG camera: the camera's own complete
    JPEG of `width` x `height`, published as it is unless it must be resized or shrunk; `yuv`, from
    the pyav decoder: the 4:2:0 planes stacked, shape (height*3/2, width), Y then U then V
    (`chroma` "i420") or Y then U and V interleaved (`chroma` "nv12", from a hardware decoder), with
    `full_range` telling 0-255 samples (JPEG's) from video's 16-235/240.
    """

    image: np.ndarray | None
    ts_ns: int
    number: int
    jpeg: bytes | None = None
    width: int = 0
    height: int = 0
    yuv: np.ndarray | None = None
    full_range: bool = False
    chroma: str = "i420"

    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Y, U and V planes of `yuv`: views for I420; for NV12 the interleaved U and V split
        into planes of their own (one pass, ~0.1 ms at 720p)."""
        assert self.yuv is not None
        h, w = self.height, self.width
        if self.chroma == "nv12":
            u, v = cv2.split(self.yuv[h:].reshape(h // 2, w // 2, 2))
            return self.yuv[:h], u, v
        quarter = h // 4
        return (self.yuv[:h], self.yuv[h:h + quarter].reshape(h // 2, w // 2),
                self.yuv[h + quarter:].reshape(h // 2, w // 2))

    def picture(self) -> np.ndarray:
        """The decoded BGR picture (converting the YUV planes or decoding the JPEG if that is what
        was captured)."""
        if self.image is not None:
            return self.image
        if self.yuv is not None:
            return yuv_to_bgr(self.yuv, self.full_range, self.chroma)
        image = cv2.imdecode(np.frombuffer(self.jpeg or b"", np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError("captured JPEG does not decode")
        return image


def yuv_to_bgr(yuv: np.ndarray, full_range: bool, chroma: str = "i420") -> np.ndarray:
    """BGR from stacked I420 (or NV12) planes. OpenCV's conversion is BT.601 video range (like the
    BGR that OpenCV's capture hands out); full-range samples are brought to video range first."""
    if full_range:
        h = yuv.shape[0] * 2 // 3
        yuv = np.concatenate([cv2.addWeighted(yuv[:h], 219 / 255, yuv[:h], 0.0, 16.0),
                              cv2.addWeighted(yuv[h:], 224 / 255, yuv[h:], 0.0, 128 - 128 * 224 / 255)])
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_NV12 if chroma == "nv12" else cv2.COLOR_YUV2BGR_I420)


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT/JPG/DAC)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a complete, self-contained JPEG: SOI first, EOI last, and a frame header
    and Huffman tables before the scan (Motion-JPEG from some devices omits the tables, which not
    every decoder supplies). None for anything else, such as a truncated or partial packet."""
    if len(data) < 8 or data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return None
    i, n = 2, len(data)
    size, tables = None, False
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the header is complete
            return size if tables else None
        if marker == 0xC4:
            tables = True
        elif marker in _SOF and i + 9 <= n:
            h, w = int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
            size = (w, h) if w and h else None
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def fourcc(cap: cv2.VideoCapture) -> str:
    """The opened stream's codec as a four-character code ('MJPG', 'H264', 'hevc', ...)."""
    code = int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
    return code.to_bytes(4, "little").decode("latin-1").strip("\0 ")


def is_live(source: str) -> bool:
    """Network streams and devices are live; a file is replayed at its own frame rate, looping."""
    return source.isdigit() or ("://" in source and not source.startswith("file://"))


_MODES = {
    "decode": "decoding every frame",
    "mjpeg": "passing the camera's JPEGs through undecoded",
    "keyframes": "decoding key frames only where they keep up with MAX_FPS (PyAV)",
    "pyav": "decoding every frame to YUV (PyAV)",
}
DECODERS = ("opencv", "pyav")


class FrameSource:
    """Reads a camera in a background thread; `newest()` hands out the latest frame only.

    `mjpeg_passthrough` hands an MJPEG camera's own JPEGs through undecoded; `max_fps` (the rate
    the pipeline publishes at, 0: every frame) with `keyframes="auto"` lets a live H.264/HEVC
    camera be decoded at key frames only (see the module docstring for the rule). `decoder="pyav"`
    reads network streams and files through PyAV and hands out YUV planes (mode ``pyav``), decoded
    on `hw` (HWACCEL) where given: a stream the device cannot decode is decoded in software when
    `hw` came from HWACCEL=auto, and fails the camera when the user named the device.
    """

    def __init__(self, source: str, rtsp_transport: str = "tcp", open_timeout_s: float = 10.0,
                 read_timeout_s: float = 5.0, stop: threading.Event | None = None, decode_threads: int = 1,
                 mjpeg_passthrough: bool = True, max_fps: float = 0.0, keyframes: str = "auto",
                 decoder: str = "opencv", hw: HwDecoder | None = None) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, not {decoder!r}")
        self.source = source
        self.display = redact_url(source)
        self._transport = rtsp_transport
        self._open_ms = int(open_timeout_s * 1000)
        self._read_ms = int(read_timeout_s * 1000)
        # A read that took nearly the read timeout means a hung camera (see `_run`, and PyavReader).
        self._stall_s = 0.9 * read_timeout_s
        self._decode_threads = decode_threads
        self._passthrough = mjpeg_passthrough
        self._max_fps = max_fps
        self._keyframes = keyframes
        self._decoder = decoder
        self._hw = hw if decoder == "pyav" else None
        self.decoded_on = "software"  # or the hardware device (HWACCEL) decoding this camera
        self._reader: pyav_reader.PyavReader | None = None
        self.mode = "decode"  # or "mjpeg" (camera's JPEGs passed through), "keyframes" or "pyav"
        self.codec = ""
        self.bad_packets = 0  # MJPEG packets that were not one complete JPEG and were decoded instead
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
        self._warned_no_pyav = False

    # -- opening -------------------------------------------------------------------------------

    def _open_once(self) -> cv2.VideoCapture | None:
        if self._pyav_first():
            reader = self._new_reader(yuv=True)
            self.fps_hint, self.codec = reader.fps, reader.codec
            if reader.codec != "mjpeg" or not self._passthrough:
                keys = self._key_frames_apply(is_live(self.source))
                reader.max_fps = self._max_fps if keys else 0.0
                self._reader = reader
                self._announce("keyframes" if keys else "pyav")
                return None
            reader.release()  # an MJPEG camera: OpenCV's raw mode passes its JPEGs through (below)
        # OpenCV's FFmpeg backend opens one stream at a time (a lock of its own): N cameras start
        # (and a producer restarts) in N opens, so each analyses one second of stream, not FFmpeg's
        # default (at 10 fps: 4 cameras streaming after 5.0 s instead of 11.8 s)
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = (f"rtsp_transport;{self._transport}"
                                                       f"|analyzeduration;{pyav_reader.ANALYZE_US}")
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
        self.codec = fourcc(cap)
        mode = self._choose_mode(backend)
        if mode == "mjpeg" and not cap.set(cv2.CAP_PROP_FORMAT, -1):
            mode = "decode"
        if mode == "keyframes":
            cap.release()
            self._reader = self._new_reader(yuv=False)
            self._reader.max_fps = self._max_fps
            cap = None
        self._announce(mode)
        return cap

    def _pyav_first(self) -> bool:
        """The pyav decoder reads network streams and files; a device index stays with OpenCV, and
        so does a camera already found to be MJPEG (passthrough needs OpenCV's raw mode)."""
        if self._decoder != "pyav" or self.source.isdigit() or self.mode == "mjpeg":
            return False
        if not pyav_reader.available():
            if not self._warned_no_pyav:
                self._warned_no_pyav = True
                log.warning("camera %s: SOURCE_DECODER=pyav but PyAV is not installed: OpenCV decodes", self.display)
            return False
        return True

    def _new_reader(self, yuv: bool) -> pyav_reader.PyavReader:
        """A PyAV reader; every-frame YUV on the HWACCEL device when there is one."""
        hw = self._hw if yuv else None
        try:
            reader = pyav_reader.PyavReader(self.source, self.display, self._transport, self._open_ms / 1000,
                                            self._read_ms / 1000, self._decode_threads, self._stop, yuv=yuv, hw=hw,
                                            stall_s=self._stall_s if is_live(self.source) else 0.0)
        except pyav_reader.HwDecodeError as err:
            self._hw_cannot(err)
            return self._new_reader(yuv)
        except pyav_reader.PyavError as err:
            raise SourceError(str(err)) from None
        self.decoded_on = hw.name if hw else "software"
        return reader

    def _hw_cannot(self, err: pyav_reader.HwDecodeError) -> None:
        """The device cannot decode this camera: software from now on under HWACCEL=auto; under an
        explicit HWACCEL a SourceError saying so (never a silent fallback)."""
        assert self._hw is not None
        if self._hw.explicit:
            raise SourceError(f"{err} (HWACCEL={self._hw.kind}; HWACCEL=auto would decode it in software)")
        log.warning("%s: decoding it in software (HWACCEL=auto)", err)
        self._hw = None

    def _announce(self, mode: str) -> None:
        if mode != self.mode:
            on = f" on {self.decoded_on}" if mode == "pyav" and self.decoded_on != "software" else ""
            log.info("camera %s: %s, %s%s", self.display, self.codec or "unknown codec", _MODES[mode], on)
        self.mode = mode

    def _key_frames_apply(self, network: bool) -> bool:
        """The thumbnail rule: a live stream published well below its own rate (module docstring)."""
        return (network and self._keyframes == "auto" and self._max_fps > 0 and bool(self.codec)
                and self.fps_hint >= 3 * self._max_fps and pyav_reader.available())

    def _choose_mode(self, backend: int) -> str:
        network = backend == cv2.CAP_FFMPEG and is_live(self.source)
        if self.codec == "MJPG" and self._passthrough and backend == cv2.CAP_FFMPEG:
            return "mjpeg"
        if self._key_frames_apply(network):
            return "keyframes"
        return "decode"

    def open(self) -> None:
        """Open the source once, raising SourceError: a wrong URL at start-up fails fast."""
        self._set_state("connecting")
        self._cap = self._open_once()
        self._set_state("streaming")

    @property
    def _opened(self) -> bool:
        return self._cap is not None or self._reader is not None

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
        if self._opened:
            self.reconnects += 1
            self._set_state("streaming")

    # -- running -------------------------------------------------------------------------------

    def start(self, open_first: bool = True) -> None:
        """Capture in the background. With `open_first` False a source that could not be opened
        starts out reconnecting (one of many cameras being down must not stop the others)."""
        if not self._opened and open_first:
            self.open()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        live = is_live(self.source)
        period = 1.0 / self.fps_hint if not live and self.fps_hint > 0 else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            cap = self._cap
            if self._reader is not None:
                self._read_pyav(live)
                if period:
                    next_at += period
                    self._stop.wait(max(0.0, next_at - time.monotonic()))
                continue
            started = time.monotonic()
            ok, image = cap.read() if cap is not None else (False, None)
            if live and ok and time.monotonic() - started >= self._stall_s:
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
            if self.mode == "mjpeg":
                self._store_packet(image)
            else:
                self._store(image)
        self._release()
        self._set_state("stopped")

    def _read_pyav(self, live: bool) -> None:
        """One picture from the PyAV reader; on a live stream the reader itself judges a hang, by
        the wait for each packet (in key-frame mode pictures come ~1/max_fps apart by design, but
        packets still come at the camera's rate)."""
        assert self._reader is not None
        try:
            pic = self._reader.read()
        except pyav_reader.HwDecodeError as err:
            try:
                self._hw_cannot(err)
            except SourceError as failed:
                log.error("%s", failed)
            pic = None
            live = True  # reopen (in software under auto), never loop a file on a failed device
        if pic is not None:
            self._store(pic.image, 0, None, pic.width, pic.height, pic.yuv, pic.full_range, pic.chroma)
        elif not live and self.captured and not self._stop.is_set():
            self._reader.release()  # a file loops: read it again from the start
            self._reader = None
            try:
                self._reader = self._new_reader(yuv=True)
            except SourceError:
                self._lost()
        else:
            self._lost()

    def _store_packet(self, packet: np.ndarray) -> None:
        """Keep an MJPEG packet as the camera's JPEG if it is one complete JPEG, else decode it."""
        ts_ns = time.time_ns()
        data = packet.tobytes()
        size = jpeg_size(data)
        if size is not None:
            self._store(None, ts_ns, data, *size)
            return
        self.bad_packets += 1
        image = cv2.imdecode(packet.reshape(-1), cv2.IMREAD_COLOR)
        if self.bad_packets == 1:
            log.warning("camera %s: an MJPEG packet was not one complete JPEG (%d bytes): %s (said once)",
                        self.display, len(data), "decoded it instead" if image is not None else "skipped it")
        if image is not None:
            self._store(image, ts_ns)

    def _store(self, image: np.ndarray | None, ts_ns: int = 0, jpeg: bytes | None = None,
               width: int = 0, height: int = 0, yuv: np.ndarray | None = None, full_range: bool = False,
               chroma: str = "i420") -> None:
        with self._cond:
            self.captured += 1
            if self._latest is not None and self._latest.number > self._taken:
                self.skipped += 1
            self._latest = Captured(image, ts_ns or time.time_ns(), self.captured, jpeg, width, height, yuv,
                                    full_range, chroma)
            self._cond.notify_all()

    def _lost(self) -> None:
        # Said before the release: closing a hung session can itself wait on the camera.
        if not self._stop.is_set():
            self._set_state("reconnecting")
        self._release()
        if self._stop.is_set():
            return
        self._reopen()

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._reader is not None:
            self._reader.release()
            self._reader = None

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
