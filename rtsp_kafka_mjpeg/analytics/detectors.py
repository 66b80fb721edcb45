"""Built-in object detectors that need no download: `people` (OpenCV's HOG + linear SVM people
detector) and `faces` (OpenCV's cascade face detector, with the cascade file Debian/Ubuntu's
opencv-data package or an older OpenCV wheel ships).

Both answer in the detection schema the page draws (see `detections`): boxes normalised to the
frame, a label and a score per box, best first. Each works on a downscaled grey frame: HOG's cost
grows with the pixels it scans, and a person or face still spans enough pixels at `WIDTH`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..results import FrameInfo

MAX_BOXES = 32
NMS_IOU = 0.4  # two boxes overlapping more than this are one object: the better scored one stays
NESTED = 0.6  # ... and so is a box this much inside a better one


class DetectorLoadError(ValueError):
    """A detector cannot be built here; the message is one line for the user."""


def detections(boxes: Sequence[Sequence[float]], labels: Sequence[str], scores: Sequence[float],
               width: int, height: int) -> dict[str, Any]:
    """The result schema of every detector: {"count", "boxes": [[x, y, w, h]] normalised 0..1,
    "labels", "scores" 0..1}, aligned, best score first, at most MAX_BOXES. `boxes` are in pixels
    of a `width` x `height` image, clipped to it."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])[:MAX_BOXES]
    out_boxes, out_labels, out_scores = [], [], []
    for i in order:
        x, y, w, h = (float(v) for v in boxes[i])
        x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if x1 <= x0 or y1 <= y0:
            continue
        out_boxes.append([round(x0 / width, 4), round(y0 / height, 4),
                          round((x1 - x0) / width, 4), round((y1 - y0) / height, 4)])
        out_labels.append(str(labels[i]))
        out_scores.append(round(min(max(float(scores[i]), 0.0), 1.0), 3))
    return {"count": len(out_boxes), "boxes": out_boxes, "labels": out_labels, "scores": out_scores}


def suppress(boxes: list[list[int]], scores: list[float], iou: float = NMS_IOU,
             nested: float = NESTED) -> list[int]:
    """Indices kept, best first: OpenCV's non-maximum suppression (NMSBoxes), then a box that
    holds, or lies in, a better kept one (their overlap is `nested` of the smaller) goes too: a
    multi-scale detector's larger window around the same person overlaps it by less than `iou`."""
    if not boxes:
        return []
    kept = cv2.dnn.NMSBoxes([[int(v) for v in b] for b in boxes], [float(s) for s in scores], 0.0, iou)
    out: list[int] = []
    for i in (int(i) for i in np.asarray(kept).ravel()):
        area = boxes[i][2] * boxes[i][3]
        if not any(_overlap(boxes[i], boxes[j]) >= nested * min(area, boxes[j][2] * boxes[j][3]) for j in out):
            out.append(i)
    return out


def _overlap(a: list[int], b: list[int]) -> float:
    return (max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
            * max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])))


def _work_image(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """The grey image to scan, at most `width` wide, and the factor back to full size."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = image.shape[:2]
    if w <= width:
        return image, 1.0
    scale = w / width
    return cv2.resize(image, (width, max(1, round(h / scale))), interpolation=cv2.INTER_AREA), scale


class PeopleDetector:
    """Upright people, with OpenCV's default HOG people detector (Dalal-Triggs, a 64x128 window):
    a person must be about 100 px tall at `WIDTH` to be found (smaller ones are missed, not
    upscaled: upscaling quadruples the cost). Scores are the SVM margin squashed to 0..1
    (margin 0 -> 0.5). HOG's grouping keeps windows that at least GROUP others confirm (single
    windows are mostly clutter); NMS then removes a box nested in a better one. A HOG window
    frames a person with a 16 px margin on each side of 64x128: boxes are trimmed to the person."""

    wants = "gray"
    WIDTH = 800
    SCALE = 1.05   # pyramid step: finer finds more sizes, coarser is faster
    STRIDE = (8, 8)
    MIN_MARGIN = 0.3  # SVM margin below which a window is not a person
    GROUP = 2
    TRIM_X, TRIM_Y = 16 / 64, 16 / 128

    def __init__(self) -> None:
        if not hasattr(cv2, "HOGDescriptor"):
            raise DetectorLoadError("people needs OpenCV's HOG detector, which this OpenCV build lacks "
                                    "(OpenCV 5 keeps it in opencv-contrib-python-headless)")
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, info: FrameInfo, image: np.ndarray) -> dict[str, Any]:
        work, scale = _work_image(image, self.WIDTH)
        rects, weights = self._hog.detectMultiScale(work, hitThreshold=self.MIN_MARGIN, winStride=self.STRIDE,
                                                    padding=(8, 8), scale=self.SCALE, groupThreshold=self.GROUP)
        boxes: list[list[int]] = []
        scores: list[float] = []
        for (x, y, w, h), margin in zip(rects, np.asarray(weights).ravel(), strict=True):
            boxes.append([int(x + self.TRIM_X * w), int(y + self.TRIM_Y * h),
                          int(w * (1 - 2 * self.TRIM_X)), int(h * (1 - 2 * self.TRIM_Y))])
            scores.append(1.0 / (1.0 + float(np.exp(-float(margin)))))
        kept = suppress(boxes, scores)
        ih, iw = image.shape[:2]
        return detections([[v * scale for v in boxes[i]] for i in kept], ["person"] * len(kept),
                          [scores[i] for i in kept], iw, ih)


# Where OpenCV's face cascade is found when FACE_CASCADE is not set: an OpenCV wheel that still
# ships its data (4.x), then Debian/Ubuntu's opencv-data package.
CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades",
                "/usr/local/share/opencv4/haarcascades")


def face_cascade_path(explicit: str = "") -> Path:
    """The cascade file to load: `explicit` (WORKER_MODEL), else the first one installed."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise DetectorLoadError(f"face cascade {explicit!r} is not a file")
        return path
    dirs = [getattr(getattr(cv2, "data", None), "haarcascades", "") or "", *CASCADE_DIRS]
    for folder in dirs:
        candidate = Path(folder) / CASCADE_NAME if folder else None
        if candidate and candidate.is_file():
            return candidate
    raise DetectorLoadError(f"faces needs OpenCV's {CASCADE_NAME}: install Debian/Ubuntu's opencv-data "
                            "(apt install opencv-data) or pass its path with --model")


class FaceDetector:
    """Frontal faces with OpenCV's cascade detector (Viola-Jones) on a grey frame at most `WIDTH`
    wide: faces from about MIN_SIZE px there. Scores are the cascade's last-stage confidence
    squashed to 0..1; overlapping hits go through the same NMS as the other detectors."""

    wants = "gray"
    WIDTH = 640  # 960 found no more faces at 720p and cost 4x (297 vs 73 ms a frame, bench --worker)
    SCALE = 1.2  # pyramid step: 1.1 costs 1.7x
    MIN_SIZE = 24
    NEIGHBOURS = 5

    def __init__(self, model: str = "") -> None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise DetectorLoadError("faces needs OpenCV's cascade detector, which this OpenCV build lacks "
                                    "(OpenCV 5 keeps it in opencv-contrib-python-headless)")
        path = face_cascade_path(model)
        self._cascade = cv2.CascadeClassifier(os.fspath(path))
        if self._cascade.empty():
            raise DetectorLoadError(f"{path} is not an OpenCV cascade")

    def __call__(self, info: FrameInfo, image: np.ndarray) -> dict[str, Any]:
        work, scale = _work_image(image, self.WIDTH)
        work = cv2.equalizeHist(work)
        rects, _levels, weights = self._cascade.detectMultiScale3(
            work, scaleFactor=self.SCALE, minNeighbors=self.NEIGHBOURS, minSize=(self.MIN_SIZE, self.MIN_SIZE),
            outputRejectLevels=True)
        boxes = [[int(v) for v in r] for r in rects]
        scores = [1.0 / (1.0 + float(np.exp(-float(w)))) for w in np.asarray(weights).ravel()]
        kept = suppress(boxes, scores)
        ih, iw = image.shape[:2]
        return detections([[v * scale for v in boxes[i]] for i in kept], ["face"] * len(kept),
                          [scores[i] for i in kept], iw, ih)
