"""JPEG encoding limits and secret masking."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtsp_kafka_mjpeg.capture.encoder import FrameTooLarge, JpegEncoder
from rtsp_kafka_mjpeg.redact import SecretFilter, redact_url

ROOT = Path(__file__).resolve().parents[1]


def noise(w: int, h: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_encoder_resizes_keeping_aspect_ratio() -> None:
    data, w, h = JpegEncoder(quality=80, width=320).encode(noise(640, 360))
    assert (w, h) == (320, 180)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (180, 320, 3)


def test_an_oversized_frame_is_shrunk_to_fit_the_limit() -> None:
    enc = JpegEncoder(quality=95, max_bytes=150_000)
    data, _, _ = enc.encode(noise(640, 480))
    assert len(data) <= 150_000 and enc.shrunk == 1


def test_a_frame_that_cannot_fit_is_refused() -> None:
    with pytest.raises(FrameTooLarge):
        JpegEncoder(quality=95, max_bytes=200).encode(noise(640, 480))


def test_url_passwords_are_masked() -> None:
    assert redact_url("open rtsp://admin:s3cret@cam/stream failed") == "open rtsp://admin:***@cam/stream failed"


def test_secret_filter_masks_registered_values_in_log_records() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "login %s", ("pw=topsecret",), None)
    SecretFilter(["topsecret"]).filter(record)
    assert "topsecret" not in record.getMessage()


def test_a_verbose_ffmpeg_log_level_in_the_shell_is_overridden_before_cv2_loads() -> None:
    # FFmpeg's own messages name the camera URL, password included, and bypass our secret filter.
    code = ("import os, rtsp_kafka_mjpeg.capture.source; "
            "print(os.environ['OPENCV_FFMPEG_LOGLEVEL'], os.environ['OPENCV_LOG_LEVEL'])")
    env = {**os.environ, "OPENCV_FFMPEG_LOGLEVEL": "56", "OPENCV_LOG_LEVEL": "DEBUG"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["-8", "OFF"], out.stderr
