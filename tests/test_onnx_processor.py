"""`--processor onnx --model PATH`: small ONNX models built here with the onnx package's helpers run
in the real onnxruntime; each common output layout maps to boxes, labels and scores, the input's
size, layout and scaling are read from the model, and a model that fits no layout is one line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT
from onnx import TensorProto, helper, numpy_helper

from rtsp_kafka_mjpeg.analytics.processors import ProcessorLoadError, load_processor
from rtsp_kafka_mjpeg.results import FrameInfo


def info() -> FrameInfo:
    return FrameInfo("cam", 1, time.time_ns(), 640, 360, "t", 0, 1)


def save(tmp_path: Path, name: str, nodes: list, inputs: list, outputs: list,
         initializers: list | None = None, metadata: dict[str, str] | None = None) -> str:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return str(path)


def constant_model(tmp_path: Path, name: str, values: list[np.ndarray], shape: list = (1, 3, 64, 64),
                   **kwargs: object) -> str:
    """A model whose outputs are `values` whatever the image (zero times the image's sum is added,
    so every output depends on the input as a real model's do)."""
    nodes = [helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
             helper.make_node("Mul", ["total", "zero"], ["nothing"])]
    outputs = []
    inits = [numpy_helper.from_array(np.array(0, np.float32), "zero")]
    for i, value in enumerate(values):
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"c{i}"))
        nodes.append(helper.make_node("Add", [f"c{i}", "nothing"], [f"out{i}"]))
        outputs.append(helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, list(value.shape)))
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, list(shape))
    return save(tmp_path, name, nodes, [image], outputs, inits, **kwargs)


def frame() -> np.ndarray:
    return np.full((360, 640, 3), 128, np.uint8)


def test_a_yolov8_output_maps_to_boxes_with_the_models_class_names(tmp_path: Path) -> None:
    # [1, 4 + 2 classes, 3 candidates]: cx, cy, w, h in input pixels (64x64), then class scores
    raw = np.array([[[32, 16, 10], [32, 16, 10], [32, 8, 4], [16, 8, 4],
                     [0.9, 0.1, 0.05], [0.05, 0.8, 0.1]]], np.float32)
    path = constant_model(tmp_path, "v8", [raw], metadata={"names": "{0: 'person', 1: 'car'}"})
    name, model = load_processor("onnx", path)
    assert name == "onnx" and model.layout == "yolov8" and (model.width, model.height) == (64, 64)
    out = model(info(), frame())
    assert out == {"count": 2, "boxes": [[0.25, 0.375, 0.5, 0.25], [0.1875, 0.1875, 0.125, 0.125]],
                   "labels": ["person", "car"], "scores": [0.9, 0.8]}  # the 0.1 candidate is below 0.25


def test_a_yolov5_output_multiplies_objectness_and_overlapping_boxes_of_a_class_are_one(tmp_path: Path) -> None:
    # [1, 3, 5 + 2]: two near-identical "person" boxes (NMS keeps the better) and a "class 1"
    raw = np.array([[[32, 32, 20, 40, 0.9, 1.0, 0.0],
                     [33, 32, 20, 40, 0.8, 1.0, 0.0],
                     [10, 10, 8, 8, 0.5, 0.2, 0.9]]], np.float32)
    _, model = load_processor("onnx", constant_model(tmp_path, "v5", [raw]))
    out = model(info(), frame())
    assert model.layout == "yolov5" and out["labels"] == ["class 0", "class 1"]
    assert out["scores"] == [0.9, 0.45]
    assert out["boxes"] == [pytest.approx([22 / 64, 12 / 64, 20 / 64, 40 / 64], abs=1e-4),
                            pytest.approx([6 / 64, 6 / 64, 8 / 64, 8 / 64], abs=1e-4)]


def test_ssd_boxes_scores_and_classes_map_and_labels_come_from_the_metadata(tmp_path: Path) -> None:
    boxes = np.array([[[0.1, 0.2, 0.3, 0.6], [0.5, 0.5, 0.9, 0.9]]], np.float32)  # x1, y1, x2, y2
    scores = np.array([[0.7, 0.1]], np.float32)
    classes = np.array([[2, 0]], np.float32)
    _, model = load_processor("onnx", constant_model(tmp_path, "ssd", [boxes, scores, classes],
                                                     metadata={"labels": "cat, dog, person"}))
    assert model.layout == "ssd"
    assert model(info(), frame()) == {"count": 1, "boxes": [[0.1, 0.2, 0.2, 0.4]], "labels": ["person"],
                                      "scores": [0.7]}


def test_a_classifier_sees_rgb_scaled_to_0_1_at_the_models_own_size(tmp_path: Path) -> None:
    # The class scores are the image's mean R, G, B: a red frame (BGR 0, 0, 255) must come out "red".
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[2, 3], keepdims=0)]
    inits: list = []
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "h", "w"])
    out = helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1, 3])
    path = save(tmp_path, "rgb", nodes, [image], [out], inits, metadata={"names": "['red', 'green', 'blue']"})
    _, model = load_processor("onnx", path)
    assert model.layout == "classes" and (model.width, model.height) == (640, 640)  # free dims: 640
    red = np.zeros((360, 640, 3), np.uint8)
    red[..., 2] = 255
    result = model(info(), red)
    assert result["label"] == "red" and result["score"] > 0.5
    assert result["top"][0]["label"] == "red" and len(result["top"]) == 3


def test_an_nhwc_uint8_model_gets_raw_rgb(tmp_path: Path) -> None:
    nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["mean"], axes=[1, 2], keepdims=0)]
    inits: list = []
    image = helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 32, 48, 3])
    out = helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1, 3])
    _, model = load_processor("onnx", save(tmp_path, "nhwc", nodes, [image], [out], inits))
    assert (model.width, model.height) == (48, 32)
    blue = np.zeros((360, 640, 3), np.uint8)
    blue[..., 0] = 200
    result = model(info(), blue)
    assert result["label"] == "class 2" and result["score"] > 0.99  # softmax of (0, 0, 200)


def test_a_model_whose_outputs_fit_no_layout_is_refused_in_one_line(tmp_path: Path) -> None:
    path = constant_model(tmp_path, "odd", [np.zeros((2, 3, 4, 5), np.float32)])
    with pytest.raises(ProcessorLoadError, match=r"cannot map outputs out0 \[2, 3, 4, 5\] to boxes or classes"):
        load_processor("onnx", path)
    with pytest.raises(ProcessorLoadError, match=r"^onnx needs a model: --model PATH.onnx$"):
        load_processor("onnx", "")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ProcessorLoadError, match=r"^cannot load ONNX model"):
        load_processor("onnx", str(junk))


def test_worker_cli_refuses_a_bad_model_with_one_line_and_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    proc = subprocess.run([sys.executable, "worker.py", "--processor", "onnx", "--model", str(junk),
                           "--bootstrap-servers", "127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "cannot load ONNX model" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
