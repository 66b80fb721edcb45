"""`--processor onnx --model PATH.onnx`: a user's detection or classification model, run with
onnxruntime (CPU by default, CUDA where onnxruntime-gpu and a GPU are present).

What is read from the model, so nothing needs configuring for the common exports:
- input: one image tensor, NCHW or NHWC with 3 channels (from its shape); a fixed height/width is
  used as is, a free one is 640. float inputs get RGB scaled to 0..1, uint8 inputs raw RGB.
- class names: the model's metadata "names" (Ultralytics: "{0: 'person', ...}") or "labels"
  (comma-separated), else "class N".
- outputs, mapped by shape (the first layout that fits wins):
  * YOLOv8-style, one output [1, 4 + C, N]: cx, cy, w, h in input pixels, then C class scores;
  * YOLOv5-style, one output [1, N, 5 + C]: cx, cy, w, h, objectness, C class scores;
  * SSD-style boxes [1, N, 4] (x1, y1, x2, y2, normalised 0..1 or input pixels) with scores
    [1, N, C] or [1, N] and then classes [1, N];
  * classification, one output [1, C]: the best class and its probability (softmax applied
    when the values are not already probabilities); no boxes.
A model whose outputs fit none of these is refused at start with one line naming its shapes.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..results import FrameInfo
from .detectors import DetectorLoadError, detections, suppress

log = logging.getLogger(__name__)

DEFAULT_SIZE = 640
MIN_SCORE = 0.25


def _labels(metadata: dict[str, str]) -> dict[int, str]:
    raw = metadata.get("names") or ""
    if raw:
        try:
            names = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            names = None
        if isinstance(names, dict):
            return {int(k): str(v) for k, v in names.items()}
        if isinstance(names, list | tuple):
            return dict(enumerate(map(str, names)))
    if metadata.get("labels"):
        return dict(enumerate(s.strip() for s in metadata["labels"].split(",")))
    return {}


class OnnxModel:
    """One onnxruntime session; called from the worker's single thread, one frame at a time."""

    wants = "bgr"

    def __init__(self, model: str, min_score: float = MIN_SCORE, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise DetectorLoadError("onnx needs onnxruntime: pip install onnxruntime") from None
        if not model:
            raise DetectorLoadError("onnx needs a model: --model PATH.onnx")
        if not Path(model).is_file():
            raise DetectorLoadError(f"model {model!r} is not a file")
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's warnings go to stderr, not our log
        if threads:
            options.intra_op_num_threads = threads  # WORKER_THREADS: its share of the cores
        try:
            self._session = ort.InferenceSession(model, sess_options=options, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            raise DetectorLoadError(f"cannot load ONNX model {model!r}: {str(err).splitlines()[0]}") from None
        self.provider = self._session.get_providers()[0]
        self.min_score = min_score
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise DetectorLoadError(f"{model}: expected one image input, found {len(inputs)}")
        self._input = inputs[0]
        shape = list(self._input.shape)
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise DetectorLoadError(f"{model}: input {self._input.name} {shape} is not an image "
                                    "(N, 3, H, W or N, H, W, 3)")
        self._nchw = shape[1] == 3
        hw = shape[2:4] if self._nchw else shape[1:3]
        self.height, self.width = (d if isinstance(d, int) and d > 0 else DEFAULT_SIZE for d in hw)
        self._float = "float" in self._input.type
        self._dtype = np.float16 if "float16" in self._input.type else np.float32
        self.labels = _labels(self._session.get_modelmeta().custom_metadata_map)
        # The outputs' shapes decide the layout; free dimensions are only known after a run.
        blank = np.zeros((self.height, self.width, 3), np.uint8)
        outputs = self._session.run(None, {self._input.name: self._blob(blank)})
        self.layout = self._layout([np.asarray(o) for o in outputs])
        if self.layout is None:
            shapes = ", ".join(f"{o.name} {list(np.asarray(v).shape)}"
                               for o, v in zip(self._session.get_outputs(), outputs, strict=True))
            raise DetectorLoadError(f"{model}: cannot map outputs {shapes} to boxes or classes "
                                    "(expected YOLOv8 [1,4+C,N], YOLOv5 [1,N,5+C], SSD boxes [1,N,4] + scores, "
                                    "or classes [1,C])")
        log.info("ONNX model %s: input %s %dx%d %s, %s outputs, %d class names, on %s", model,
                 self._input.name, self.width, self.height, "NCHW" if self._nchw else "NHWC", self.layout,
                 len(self.labels), self.provider)

    def _blob(self, bgr: np.ndarray) -> np.ndarray:
        image = cv2.resize(bgr, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        blob = image.astype(self._dtype) / 255.0 if self._float else image
        if self._nchw:
            blob = blob.transpose(2, 0, 1)
        return np.ascontiguousarray(blob[None])

    @staticmethod
    def _layout(outputs: list[np.ndarray]) -> str | None:
        first = outputs[0]
        if len(outputs) == 1 and first.ndim == 2 and first.shape[0] == 1:
            return "classes"
        if len(outputs) == 1 and first.ndim == 3 and first.shape[0] == 1:
            # attributes x candidates (v8) or candidates x attributes (v5): candidates outnumber
            # attributes in real models (8400 x 84); a side too short for v5's 5 + C decides too
            if first.shape[1] >= 5 and (first.shape[1] < first.shape[2] or first.shape[2] < 6):
                return "yolov8"
            if first.shape[2] >= 6:
                return "yolov5"
        if len(outputs) >= 2 and first.ndim == 3 and first.shape[2] == 4:
            scores = outputs[1]
            if scores.ndim in (2, 3) and scores.shape[1] == first.shape[1]:
                return "ssd"
        return None

    def _name(self, cls: int) -> str:
        return self.labels.get(cls, f"class {cls}")

    def __call__(self, info: FrameInfo, image: np.ndarray) -> dict[str, Any]:
        outputs = [np.asarray(o, dtype=np.float32)
                   for o in self._session.run(None, {self._input.name: self._blob(image)})]
        if self.layout == "classes":
            return self._classes(outputs[0][0])
        boxes, scores, classes = getattr(self, f"_{self.layout}")(outputs)
        keep = scores >= self.min_score
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        # boxes are x1, y1, x2, y2 normalised 0..1 here; NMS per class in model pixels
        pixel = [[int(x1 * self.width), int(y1 * self.height), int((x2 - x1) * self.width),
                  int((y2 - y1) * self.height)] for x1, y1, x2, y2 in boxes]
        kept: list[int] = []
        for c in np.unique(classes):
            idx = np.flatnonzero(classes == c)
            kept += [int(idx[j]) for j in suppress([pixel[i] for i in idx], [float(scores[i]) for i in idx])]
        xywh = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in (boxes[i] for i in kept)]
        return detections(xywh, [self._name(int(classes[i])) for i in kept], [float(scores[i]) for i in kept], 1, 1)

    def _classes(self, values: np.ndarray) -> dict[str, Any]:
        probs = values
        if values.min() < 0 or values.max() > 1 or abs(float(values.sum()) - 1) > 0.01:
            exp = np.exp(values - values.max())
            probs = exp / exp.sum()
        best = int(np.argmax(probs))
        top = np.argsort(-probs)[:5]
        return {"label": self._name(best), "score": round(float(probs[best]), 4),
                "top": [{"label": self._name(int(i)), "score": round(float(probs[i]), 4)} for i in top]}

    def _centre_boxes(self, xywh: np.ndarray) -> np.ndarray:
        cx, cy, w, h = xywh.T
        return np.stack([(cx - w / 2) / self.width, (cy - h / 2) / self.height,
                         (cx + w / 2) / self.width, (cy + h / 2) / self.height], axis=1)

    def _yolov8(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = outputs[0][0].T  # N x (4 + C)
        class_scores = rows[:, 4:]
        classes = class_scores.argmax(axis=1)
        return self._centre_boxes(rows[:, :4]), class_scores.max(axis=1), classes

    def _yolov5(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = outputs[0][0]  # N x (5 + C)
        class_scores = rows[:, 5:]
        classes = class_scores.argmax(axis=1)
        return self._centre_boxes(rows[:, :4]), rows[:, 4] * class_scores.max(axis=1), classes

    def _ssd(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes = outputs[0][0].copy()
        if boxes.size and boxes.max() > 1.5:  # input pixels, not normalised
            boxes /= np.array([self.width, self.height, self.width, self.height], np.float32)
        scores = outputs[1][0]
        if scores.ndim == 2:  # N x C
            return boxes, scores.max(axis=1), scores.argmax(axis=1)
        classes = np.zeros(len(scores), int)
        if len(outputs) > 2 and outputs[2].size == len(scores):
            classes = outputs[2].reshape(-1).astype(int)
        return boxes, scores, classes
