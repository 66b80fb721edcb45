"""The built-in detectors find what is there and nothing else, on real pictures.

People come from OpenCV's pedestrian video (vtest.avi, Debian's opencv-doc) and a face from a
portrait (grace_hopper.jpg, Debian's matplotlib data): cut out at hand-marked boxes and pasted at
known places into an empty scene (the video's per-pixel median over time: the walkers vanish).
A detection counts when its box overlaps the pasted one by IoU >= 0.5; the empty scene gets none.
Then worker.py runs `people` on such frames through the real broker.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from conftest import ROOT, App, app_env, wait_for
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from harness.kafka_broker import KafkaBroker
from harness.media import media_path
from rtsp_kafka_mjpeg.analytics.detectors import FaceDetector, PeopleDetector, detections, suppress
from rtsp_kafka_mjpeg.analytics.processors import load_processor
from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.results import FrameInfo, parse_result

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
W, H = 1280, 720
# Hand-marked in vtest.avi's first frame (x, y, w, h: head to feet) and in the portrait (brow to chin).
WALKERS = ((252, 219, 32, 90), (638, 238, 48, 86))
FACE = (158, 118, 212, 206)
PERSON_SCALE = 2.0  # pasted people are ~180 px tall in 720p, as a camera over a path sees them
FACE_SCALE = 0.6


def iou(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...]) -> float:
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def info(seq: int = 1) -> FrameInfo:
    return FrameInfo("cam", seq, time.time_ns(), W, H, "t", 0, seq)


@pytest.fixture(scope="module")
def vtest() -> tuple[np.ndarray, np.ndarray]:
    """(vtest.avi's first frame, its empty scene: the median of 40 frames 20 apart)."""
    cap = cv2.VideoCapture(str(media_path("vtest.avi")))
    frames = []
    for i in range(800):
        ok, frame = cap.read()
        if not ok:
            break
        if i % 20 == 0:
            frames.append(frame)
    cap.release()
    assert len(frames) >= 30
    return frames[0], np.median(np.stack(frames), axis=0).astype(np.uint8)


@pytest.fixture(scope="module")
def empty_scene(vtest: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return cv2.resize(vtest[1], (W, H), interpolation=cv2.INTER_CUBIC)


def paste(scene: np.ndarray, source: np.ndarray, box: tuple[int, int, int, int], scale: float,
          at: tuple[int, int], margin: float = 0.5) -> tuple[float, float, float, float]:
    """Paste `box` of `source` (with `margin` of its size around it, for context) scaled by `scale`
    with the box's top-left at `at`; returns where the box landed (x, y, w, h) in `scene`."""
    x, y, w, h = box
    mx, my = int(w * margin), int(h * margin)
    crop = source[max(0, y - my):y + h + my, max(0, x - mx):x + w + mx]
    ox, oy = x - max(0, x - mx), y - max(0, y - my)  # the box inside the crop
    crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    left, top = int(at[0] - ox * scale), int(at[1] - oy * scale)
    ch, cw = crop.shape[:2]
    scene[top:top + ch, left:left + cw] = crop
    return at[0], at[1], w * scale, h * scale


def people_scene(empty: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    scene = empty.copy()
    truth = [paste(scene, first, WALKERS[0], PERSON_SCALE, (180, 300)),
             paste(scene, first, WALKERS[1], PERSON_SCALE, (620, 260)),
             paste(scene, first, WALKERS[0], PERSON_SCALE, (1040, 380))]
    return scene, truth


def in_pixels(box: list[float]) -> tuple[float, ...]:
    return box[0] * W, box[1] * H, box[2] * W, box[3] * H


def matched(found: list[list[float]], truth: list[tuple[float, ...]]) -> list[float]:
    """Each pasted box's best IoU among the detections."""
    return [max((iou(in_pixels(b), t) for b in found), default=0.0) for t in truth]


def test_people_are_boxed_where_they_were_pasted_and_the_empty_scene_has_none(vtest, empty_scene) -> None:
    detector = PeopleDetector()
    gray = cv2.cvtColor(empty_scene, cv2.COLOR_BGR2GRAY)
    assert detector(info(), gray) == {"count": 0, "boxes": [], "labels": [], "scores": []}
    scene, truth = people_scene(empty_scene, vtest[0])
    out = detector(info(), cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY))
    assert out["count"] == 3 and out["labels"] == ["person"] * 3, out
    assert all(v >= 0.5 for v in matched(out["boxes"], truth)), (matched(out["boxes"], truth), out)
    assert all(0.5 < s <= 1 for s in out["scores"]) and out["scores"] == sorted(out["scores"], reverse=True)


def test_a_face_is_boxed_where_it_was_pasted_and_the_empty_scene_has_none(empty_scene) -> None:
    detector = FaceDetector()
    portrait = cv2.imread(str(media_path("grace_hopper.jpg")))
    gray = cv2.cvtColor(empty_scene, cv2.COLOR_BGR2GRAY)
    assert detector(info(), gray)["count"] == 0
    scene = empty_scene.copy()
    truth = [paste(scene, portrait, FACE, FACE_SCALE, (300, 200), margin=0.3),
             paste(scene, portrait, FACE, FACE_SCALE * 1.5, (800, 300), margin=0.3)]
    out = detector(info(), cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY))
    assert out["count"] == 2 and out["labels"] == ["face", "face"], out
    assert all(v >= 0.5 for v in matched(out["boxes"], truth)), (matched(out["boxes"], truth), out)


def test_detections_are_normalised_clipped_and_best_first() -> None:
    out = detections([[-10, 10, 50, 50], [600, 300, 100, 100], [10, 10, 0, 5]], ["a", "b", "c"],
                     [0.4, 0.9, 0.99], 640, 360)
    assert out == {"count": 2, "boxes": [[0.9375, 0.8333, 0.0625, 0.1667], [0.0, 0.0278, 0.0625, 0.1389]],
                   "labels": ["b", "a"], "scores": [0.9, 0.4]}
    # a box nested in a better one is the same object
    assert suppress([[0, 0, 100, 200], [5, 5, 95, 190], [300, 0, 50, 50]], [0.9, 0.8, 0.7]) == [0, 2]


def test_a_face_cascade_that_is_not_there_is_one_line() -> None:
    from rtsp_kafka_mjpeg.analytics.processors import ProcessorLoadError

    with pytest.raises(ProcessorLoadError, match=r"^face cascade '/nowhere.xml' is not a file$"):
        load_processor("faces", "/nowhere.xml")


# --- worker.py --processor people on the real broker ---------------------------------------------


def test_worker_boxes_the_people_in_frames_from_kafka_and_nothing_in_the_empty_ones(
        kafka: KafkaBroker, start_app: Callable[..., App], vtest, empty_scene) -> None:
    frames_topic, results_topic = f"frames-{uuid.uuid4().hex[:8]}", f"events-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(**kafka.client_config())
    admin.create_topics([NewTopic(frames_topic, 1, 1), NewTopic(results_topic, 1, 1)])
    admin.close()
    scene, truth = people_scene(empty_scene, vtest[0])
    jpegs = [cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
             for image in (empty_scene, scene)]
    worker = start_app("worker.py", app_env(kafka.bootstrap, frames_topic, KAFKA_RESULTS_TOPIC=results_topic),
                       "--processor", "people", "--group-id", f"g-{uuid.uuid4().hex[:6]}")
    assert wait_for(lambda: " from offsets " in worker.log(), 60), worker.log()
    producer = KafkaProducer(**kafka.client_config(), acks=1)
    for seq in range(1, 7):  # empty, people, empty, people, ...
        frame = Frame("path", time.time_ns(), seq, W, H, jpegs[(seq + 1) % 2])
        producer.send(frames_topic, value=frame.jpeg, key=frame.kafka_key(), headers=frame.kafka_headers())
    producer.flush()
    producer.close()

    results: dict[int, dict] = {}
    consumer = KafkaConsumer(**kafka.client_config())
    consumer.assign([TopicPartition(results_topic, 0)])
    consumer.seek_to_beginning()
    deadline = time.monotonic() + 60
    while len(results) < 6 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                result = parse_result(r.value)
                results[result["seq"]] = result
    consumer.close()
    assert sorted(results) == [1, 2, 3, 4, 5, 6], worker.log()
    for seq, result in results.items():
        assert result["processor"] == "people"
        out = result["output"]
        if seq % 2:
            assert out["count"] == 0, (seq, out)
        else:
            assert out["count"] == 3 and all(v >= 0.5 for v in matched(out["boxes"], truth)), (seq, out)


def test_the_page_draws_each_person_with_its_label_and_score(kafka: KafkaBroker, start_app: Callable[..., App],
                                                             browser_page, vtest, empty_scene) -> None:
    frames_topic, results_topic = f"frames-{uuid.uuid4().hex[:8]}", f"events-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(**kafka.client_config())
    admin.create_topics([NewTopic(frames_topic, 1, 1), NewTopic(results_topic, 1, 1)])
    admin.close()
    env = app_env(kafka.bootstrap, frames_topic, KAFKA_RESULTS_TOPIC=results_topic)
    worker = start_app("worker.py", env, "--processor", "people", "--lag-policy", "newest")
    consumer = start_app("consumer.py", env)
    assert wait_for(lambda: " from offsets " in worker.log(), 60), worker.log()
    scene, truth = people_scene(empty_scene, vtest[0])
    jpeg = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    producer = KafkaProducer(**kafka.client_config(), acks=1)
    stop = threading.Event()

    def feed() -> None:  # a camera over a path at 4 fps
        seq = 0
        while not stop.wait(0.25):
            seq += 1
            frame = Frame("path", time.time_ns(), seq, W, H, jpeg)
            producer.send(frames_topic, value=frame.jpeg, key=frame.kafka_key(), headers=frame.kafka_headers())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        page = browser_page
        page.goto(f"{consumer.url}/", wait_until="commit")
        page.wait_for_function("""() => { const t = document.querySelector('[data-camera="path"]');
            return t && t.querySelectorAll('svg.boxes rect').length === 3
                && t.querySelector('.analytics').textContent === 'people: 3' }""", timeout=60000)
        drawn = page.eval_on_selector('[data-camera="path"] svg.boxes', """s => ({
            rects: [...s.querySelectorAll('rect')].map(r => ['x', 'y', 'width', 'height']
                .map(a => Number(r.getAttribute(a)))),
            texts: [...s.querySelectorAll('text')].map(t => [t.textContent, Number(t.getAttribute('x')),
                Number(t.getAttribute('y'))])})""")
        # each box is on a pasted person, its label on the box's top edge
        assert all(max(iou(r, t) for r in drawn["rects"]) >= 0.5 for t in truth), drawn
        assert len(drawn["texts"]) == 3 and all(re.fullmatch(r"person \d{2,3}%", t[0]) for t in drawn["texts"])
        for (_, tx, ty), (x, y, _w, _h) in zip(drawn["texts"], drawn["rects"], strict=True):
            assert abs(tx - x) <= 3 and y - 40 <= ty <= y
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "index-people.png"))
    finally:
        stop.set()
        feeder.join(5)
        producer.close()
