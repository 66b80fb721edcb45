"""Processors the worker tests load as module:function (tests.worker_processors:NAME)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rtsp_kafka_mjpeg.results import FrameInfo


def slow(info: FrameInfo, image: np.ndarray) -> dict[str, Any]:
    """100 ms per frame: a third of a 30 fps camera's pace."""
    time.sleep(0.1)
    return {"seq": info.seq}


slow.wants = "gray/8"  # type: ignore[attr-defined]


def picky(info: FrameInfo, image: np.ndarray) -> Any:
    """By seq % 5: 0 raises, 1 returns NaN (not JSON), 2 returns a string, 3 and 4 a good dict."""
    kind = info.seq % 5
    if kind == 0:
        raise ValueError(f"picky does not like seq {info.seq}")
    if kind == 1:
        return {"value": float("nan")}
    if kind == 2:
        return "not a dict"
    return {"seq": info.seq, "shape": list(image.shape)}


not_callable = 42
