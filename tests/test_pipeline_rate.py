"""MAX_FPS keeps the camera's cadence: the pipeline's pacing on its own (pure logic, no camera)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rtsp_kafka_mjpeg.capture.pipeline import ProducerPipeline
from rtsp_kafka_mjpeg.capture.source import Captured
from rtsp_kafka_mjpeg.frame import Frame

PIXEL = np.zeros((2, 2, 3), np.uint8)


class ScriptedSource:
    """Hands out frames captured at the given times, then stops the pipeline."""

    def __init__(self, times_s: list[float], stop: threading.Event) -> None:
        self._frames = [Captured(PIXEL, int(t * 1e9), n + 1) for n, t in enumerate(times_s)]
        self._stop = stop
        self.skipped = 0

    def newest(self, after: int, timeout: float) -> Captured | None:
        if after >= len(self._frames):
            self._stop.set()
            return None
        return self._frames[after]


class Encoder:
    def encode_captured(self, captured: Captured) -> tuple[bytes, int, int]:
        return b"\xff\xd8\xff\xd9", 2, 2


class Publisher:
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def publish(self, frame: Frame) -> bool:
        self.frames.append(frame)
        return True


def published_times(times_s: list[float], max_fps: float) -> list[float]:
    stop = threading.Event()
    publisher = Publisher()
    ProducerPipeline("cam", ScriptedSource(times_s, stop), Encoder(), publisher, stop, max_fps).run()  # type: ignore[arg-type]
    return [f.capture_ts_ns / 1e9 for f in publisher.frames]


@pytest.mark.parametrize(("camera_fps", "max_fps"), [(30, 15), (30, 10), (25, 5), (30, 1)])
def test_max_fps_publishes_that_rate_from_a_faster_camera(camera_fps: int, max_fps: float) -> None:
    jitter = [0.002 * ((i * 7) % 5 - 2) for i in range(camera_fps * 10)]  # +-4 ms capture jitter
    times = [i / camera_fps + jitter[i] for i in range(camera_fps * 10)]
    out = published_times(times, max_fps)
    assert len(out) == pytest.approx(10 * max_fps, abs=1)
    gaps = np.diff(out)
    assert gaps.min() > 0.5 / max_fps, "frames bunched after a late one"


def test_one_key_frame_a_second_at_max_fps_1_is_published_even_when_a_few_ms_early() -> None:
    times = [i + (-0.004 if i % 2 else 0.003) for i in range(10)]
    assert len(published_times(times, 1.0)) == 10
