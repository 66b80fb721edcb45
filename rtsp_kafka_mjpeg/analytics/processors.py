"""Frame processors for worker.py: the built-ins (`brightness`, `motion`; the detectors `people`,
`faces` and `onnx` live in detectors.py and onnx_model.py) and the loader for yours.

A processor is any callable::

    def my_processor(info: FrameInfo, image: numpy.ndarray) -> dict | None

`info` (rtsp_kafka_mjpeg.results.FrameInfo) is the frame's metadata: camera id, seq, capture
timestamp, full width/height, and where the record came from (topic, partition, offset). `image`
is the decoded JPEG, BGR uint8 at full size. Return a JSON-able dict (it becomes the `output` of
the result record) or None (no result for this frame). Raising, or returning anything else, is
counted and logged by the worker, which goes on with the next frame.

Decoding is the worker's job, once per frame, so a processor can ask for a cheaper image with a
`wants` attribute (a function attribute or a class attribute): "bgr" (the default), "gray", or
either with "/2", "/4", "/8". The reduced forms use libjpeg's DCT scaling
(cv2.IMREAD_REDUCED_GRAYSCALE_4 and friends): a 1280x720 frame decoded as "gray/4" is 320x180 and
costs about a quarter of a full colour decode, which is how `motion` stays within 1.3x of the
bare decode. `info.width`/`info.height` are always the frame's full size.

A processor keeps its own state between frames (motion keeps the previous frame per camera); the
worker calls it from a single thread, frames of one camera in capture order.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from ..results import FrameInfo
from .detectors import DetectorLoadError, FaceDetector, PeopleDetector

Processor = Callable[[FrameInfo, np.ndarray], "dict[str, Any] | None"]

# what a processor may ask for -> cv2.imdecode flag
DECODE_FLAGS = {
    "bgr": cv2.IMREAD_COLOR,
    "bgr/2": cv2.IMREAD_REDUCED_COLOR_2,
    "bgr/4": cv2.IMREAD_REDUCED_COLOR_4,
    "bgr/8": cv2.IMREAD_REDUCED_COLOR_8,
    "gray": cv2.IMREAD_GRAYSCALE,
    "gray/2": cv2.IMREAD_REDUCED_GRAYSCALE_2,
    "gray/4": cv2.IMREAD_REDUCED_GRAYSCALE_4,
    "gray/8": cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
BUILT_IN = ("brightness", "motion", "people", "faces", "onnx")


class ProcessorLoadError(ValueError):
    """--processor names nothing we can call; the message is one line for the user."""


def wanted_image(processor: Processor) -> str:
    """The image form the processor declared (`wants`), "bgr" if none."""
    return str(getattr(processor, "wants", "bgr"))


def brightness(info: FrameInfo, image: np.ndarray) -> dict[str, Any]:
    """Mean grey value 0..255. An 1/8-scale decode averages 8x8 blocks, so its mean is the full
    frame's mean (to within rounding) at a fraction of the cost."""
    return {"brightness": round(float(image.mean()), 2)}


brightness.wants = "gray/8"  # type: ignore[attr-defined]


class MotionDetector:
    """Frame differencing per camera: the previous frame (grey, ~320 px wide, blurred) against this
    one; pixels that changed by more than `THRESHOLD` grey levels count as motion, and dilated
    regions of at least `MIN_AREA` of the frame become boxes.

    Output: {"level": fraction of pixels changed 0..1, "moving": true when any region is big
    enough for a box, "boxes": [[x, y, w, h], ...] normalised 0..1, at most 16, largest first}.
    A camera's first frame (or the first after a gap of `RESET_AFTER_NS`, e.g. when its partition
    comes back to this worker, or after a size change) has nothing to compare: level 0, no boxes.
    """

    wants = "gray/4"
    WIDTH = 320  # work width: a 1/4 decode of 720p is this already; bigger frames are resized to it
    THRESHOLD = 25
    MIN_AREA = 0.002
    MAX_BOXES = 16
    RESET_AFTER_NS = 2_000_000_000

    def __init__(self) -> None:
        self._previous: dict[str, tuple[int, np.ndarray]] = {}  # camera -> (capture ts, prepared frame)
        self._kernel = np.ones((3, 3), np.uint8)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = image.shape[:2]
        if width > self.WIDTH * 1.25:
            image = cv2.resize(image, (self.WIDTH, max(1, round(height * self.WIDTH / width))),
                               interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(image, (5, 5), 0)

    def __call__(self, info: FrameInfo, image: np.ndarray) -> dict[str, Any]:
        current = self._prepare(image)
        previous = self._previous.get(info.camera_id)
        self._previous[info.camera_id] = (info.capture_ts_ns, current)
        if (previous is None or previous[1].shape != current.shape
                or abs(info.capture_ts_ns - previous[0]) > self.RESET_AFTER_NS):
            return {"level": 0.0, "moving": False, "boxes": []}
        changed = cv2.threshold(cv2.absdiff(previous[1], current), self.THRESHOLD, 255, cv2.THRESH_BINARY)[1]
        height, width = changed.shape
        level = cv2.countNonZero(changed) / float(width * height)
        boxes: list[list[float]] = []
        if level > 0:
            regions = cv2.dilate(changed, self._kernel, iterations=2)
            contours = cv2.findContours(regions, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
            min_area = self.MIN_AREA * width * height
            rects = [cv2.boundingRect(c) for c in contours]
            rects = sorted((r for r in rects if r[2] * r[3] >= min_area), key=lambda r: r[2] * r[3], reverse=True)
            boxes = [[round(x / width, 4), round(y / height, 4), round(w / width, 4), round(h / height, 4)]
                     for x, y, w, h in rects[: self.MAX_BOXES]]
        return {"level": round(level, 5), "moving": bool(boxes), "boxes": boxes}


def built_in(spec: str, model: str = "", threads: int = 0) -> Processor | None:
    """The built-in processor named `spec` (None if it names none); `model` is the file of
    `onnx` (required) or `faces` (optional: another cascade); `threads` sizes onnxruntime's pool."""
    try:
        if spec == "brightness":
            return brightness
        if spec == "motion":
            return MotionDetector()
        if spec == "people":
            return PeopleDetector()
        if spec == "faces":
            return FaceDetector(model)
        if spec == "onnx":
            from .onnx_model import OnnxModel  # onnxruntime loads only for this processor

            return OnnxModel(model, threads=threads)
    except DetectorLoadError as err:
        raise ProcessorLoadError(str(err)) from None
    return None


def load_processor(spec: str, model: str = "", threads: int = 0) -> tuple[str, Processor]:
    """(name for the results, callable) for a built-in (BUILT_IN) or "package.module:function".

    The current directory is importable, as with `python -m`. `threads` (0: OpenCV's default)
    sizes OpenCV's pool first, before any processor sizes its work to it. Raises ProcessorLoadError."""
    if threads:
        cv2.setNumThreads(threads)
    spec = spec.strip()
    processor = built_in(spec, model, threads)
    if processor is not None:
        return spec, processor
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ProcessorLoadError(f"unknown processor {spec!r}: use {', '.join(BUILT_IN)} or module:function")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ProcessorLoadError(f"cannot import {module_name!r} for processor {spec!r}: {err}") from None
    except Exception as err:  # noqa: BLE001 - whatever the user's module raises on import, say it in one line
        raise ProcessorLoadError(f"importing {module_name!r} for processor {spec!r} failed: "
                                 f"{type(err).__name__}: {err}") from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ProcessorLoadError(f"module {module_name!r} has no {attr!r} (processor {spec!r})")
    if isinstance(target, type):  # a class: one instance keeps its state between frames
        try:
            target = target()
        except Exception as err:  # noqa: BLE001
            raise ProcessorLoadError(f"creating {spec!r} failed: {type(err).__name__}: {err}") from None
    if not callable(target):
        raise ProcessorLoadError(f"{spec!r} is not callable")
    if wanted_image(target) not in DECODE_FLAGS:
        raise ProcessorLoadError(f"{spec!r} wants image {wanted_image(target)!r}: use one of "
                                 f"{', '.join(DECODE_FLAGS)}")
    return spec, target
