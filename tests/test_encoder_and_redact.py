"""JPEG encoding limits and secret masking."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from rtsp_kafka_mjpeg.encoder import FrameTooLarge, JpegEncoder
from rtsp_kafka_mjpeg.redact import SecretFilter, redact_url


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
