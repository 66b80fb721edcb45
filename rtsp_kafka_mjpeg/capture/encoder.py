"""JPEG encoding: optional resize, a quality setting, and a hard size limit per frame.

A JPEG that would exceed the record limit is re-encoded at lower quality, then smaller scale,
so the broker never has to reject a frame; if nothing fits, the frame is dropped and counted.

A camera's own JPEG (MJPEG passthrough, `Captured.jpeg`) is published byte for byte: re-encoding
would cost CPU and lose quality for nothing. It is decoded and encoded as above only when a resize
is configured or it is over the size limit.

YUV planes from the pyav decoder (`Captured.yuv`) are written by libjpeg-turbo as they are
(simplejpeg's ``encode_jpeg_yuv_planes``): no conversion to BGR and back, though libjpeg-turbo's
own RGB -> YCbCr step is cheap: measured at 720p q80 it costs about what cv2.imencode of the BGR
picture costs, the saving is on the decode side (pyav_reader). JPEG means full-range
(0-255) YCbCr, while video's samples are 16-235 (luma) / 16-240 (chroma): those are stretched to
full range first (cv2.addWeighted, saturating, ~0.4 ms at 720p), or blacks would show as dark grey.
The colour matrix is BT.601, as for OpenCV's own conversion. A resize scales each plane (INTER_AREA)
to an even size (an odd target goes through BGR); a frame over the size limit falls back through a
BGR conversion to the quality/scale steps below (rare, so kept to one code path).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import simplejpeg

from .source import Captured

log = logging.getLogger(__name__)

# Fallback steps tried in order when a frame is over the limit: (quality factor, scale).
_FALLBACKS = ((0.75, 1.0), (0.5, 1.0), (0.5, 0.75), (0.4, 0.5), (0.3, 0.25))
# Video range -> JPEG's full range: y' = (y - 16) * 255/219, c' = (c - 128) * 255/224 + 128.
_Y_GAIN, _C_GAIN = 255 / 219, 255 / 224


class FrameRejected(ValueError):
    """The frame cannot be published (the pipeline counts and skips it)."""


class FrameTooLarge(FrameRejected):
    """No fallback brought the JPEG under the size limit."""


class UndecodableFrame(FrameRejected):
    """A camera's JPEG had to be re-encoded but does not decode."""


class JpegEncoder:
    """Turns BGR images (or YUV planes) into JPEG bytes no larger than `max_bytes`."""

    def __init__(self, quality: int = 80, width: int = 0, height: int = 0, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.quality = quality
        self.width = width
        self.height = height
        self.max_bytes = max_bytes
        self.shrunk = 0  # frames re-encoded smaller to fit the limit
        self.passed_through = 0  # camera JPEGs published unchanged
        self.reencoded = 0  # camera JPEGs decoded and encoded again (resize or size limit)
        self.from_yuv = 0  # frames encoded straight from YUV planes
        self._warned = False

    def target_size(self, w: int, h: int) -> tuple[int, int]:
        """The output size: as configured, keeping the aspect ratio when one side is 0."""
        if self.width and self.height:
            return self.width, self.height
        if self.width:
            return self.width, max(1, round(h * self.width / w))
        if self.height:
            return max(1, round(w * self.height / h)), self.height
        return w, h

    def encode_captured(self, captured: Captured) -> tuple[bytes, int, int]:
        """JPEG bytes, width and height for one captured frame: the camera's own JPEG unchanged
        when it needs no resize and fits the limit, else a fresh encode."""
        if captured.yuv is not None:
            return self.encode_yuv(captured)
        jpeg = captured.jpeg
        if jpeg is None:
            assert captured.image is not None
            return self.encode(captured.image)
        w, h = captured.width, captured.height
        if self.target_size(w, h) == (w, h) and len(jpeg) <= self.max_bytes:
            self.passed_through += 1
            return jpeg, w, h
        try:
            image = captured.picture()
        except ValueError:
            raise UndecodableFrame(f"camera JPEG of {len(jpeg)} bytes does not decode") from None
        self.reencoded += 1
        return self.encode(image)

    def encode_yuv(self, captured: Captured) -> tuple[bytes, int, int]:
        """JPEG bytes, width and height from a frame's YUV 4:2:0 planes (module docstring)."""
        w, h = captured.width, captured.height
        tw, th = self.target_size(w, h)
        if tw % 2 or th % 2:
            return self.encode(captured.picture())
        y, u, v = captured.planes()
        if (tw, th) != (w, h):
            y = cv2.resize(y, (tw, th), interpolation=cv2.INTER_AREA)
            u = cv2.resize(u, (tw // 2, th // 2), interpolation=cv2.INTER_AREA)
            v = cv2.resize(v, (tw // 2, th // 2), interpolation=cv2.INTER_AREA)
        if not captured.full_range:
            y = cv2.addWeighted(y, _Y_GAIN, y, 0.0, -16 * _Y_GAIN)
            u = cv2.addWeighted(u, _C_GAIN, u, 0.0, 128 - 128 * _C_GAIN)
            v = cv2.addWeighted(v, _C_GAIN, v, 0.0, 128 - 128 * _C_GAIN)
        data = simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=self.quality)
        self.from_yuv += 1
        if len(data) <= self.max_bytes:
            return data, tw, th
        image = captured.picture()
        if (tw, th) != (w, h):
            image = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
        return self._fit(image, len(data))

    def encode(self, image: np.ndarray) -> tuple[bytes, int, int]:
        """JPEG bytes plus the encoded width and height."""
        h, w = image.shape[:2]
        tw, th = self.target_size(w, h)
        if (tw, th) != (w, h):
            image = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
        data = self._imencode(image, self.quality)
        if len(data) <= self.max_bytes:
            return data, tw, th
        return self._fit(image, len(data))

    def _fit(self, image: np.ndarray, first_size: int) -> tuple[bytes, int, int]:
        h, w = image.shape[:2]
        for factor, scale in _FALLBACKS:
            scaled = image if scale == 1.0 else cv2.resize(
                image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
            data = self._imencode(scaled, max(1, int(self.quality * factor)))
            if len(data) <= self.max_bytes:
                self.shrunk += 1
                if not self._warned:
                    self._warned = True
                    log.warning("frame JPEG of %d bytes exceeds the %d-byte record limit: re-encoding such "
                                "frames at lower quality/scale (said once)", first_size, self.max_bytes)
                return data, scaled.shape[1], scaled.shape[0]
        raise FrameTooLarge(f"JPEG of {first_size} bytes cannot fit {self.max_bytes} bytes")

    @staticmethod
    def _imencode(image: np.ndarray, quality: int) -> bytes:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("cv2.imencode failed")
        return buf.tobytes()
