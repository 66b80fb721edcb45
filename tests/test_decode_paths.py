"""The producer's cheaper decode paths on real cameras: an MJPEG camera's own JPEGs published
unchanged, and key-frame-only decoding of an H.264 camera for low-rate thumbnails."""

from __future__ import annotations

import itertools
import time

import cv2
import numpy as np
import pytest
from conftest import CAMERA_FPS, CAMERA_H, CAMERA_W, app_env, topic_records, wait_for
from kafka import KafkaConsumer

from harness.rtsp_camera import RtspCamera
from rtsp_kafka_mjpeg.capture.encoder import JpegEncoder
from rtsp_kafka_mjpeg.capture.source import FrameSource, jpeg_size

CAMERA_QUALITY = 60  # the MJPEG camera's own encoder; the producer's JPEG_QUALITY is 80


@pytest.fixture(scope="module")
def mjpeg_camera():
    cam = RtspCamera(width=CAMERA_W, height=CAMERA_H, fps=CAMERA_FPS, mjpeg=True, jpeg_quality=CAMERA_QUALITY)
    cam.start()
    yield cam
    cam.stop()


def quant_tables(jpeg: bytes) -> dict[int, bytes]:
    """The JPEG's quantization tables by id: they tell which encoder settings made it."""
    tables: dict[int, bytes] = {}
    i = 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF and jpeg[i + 1] != 0xDA:
        length = int.from_bytes(jpeg[i + 2:i + 4], "big")
        if jpeg[i + 1] == 0xDB:
            seg, j = jpeg[i + 4:i + 2 + length], 0
            while j < len(seg):
                precision, table_id = seg[j] >> 4, seg[j] & 15
                size = 128 if precision else 64
                tables[table_id] = seg[j + 1:j + 1 + size]
                j += 1 + size
        i += 2 + length
    return tables


def encoded_at(quality: int) -> dict[int, bytes]:
    image = np.full((16, 16, 3), 128, np.uint8)
    return quant_tables(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())


def camera_packets(url: str, seconds: float) -> set[bytes]:
    """Every JPEG our own raw-mode client received from the camera during `seconds`."""
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000])
    assert cap.set(cv2.CAP_PROP_FORMAT, -1)
    packets: set[bytes] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ok, packet = cap.read()
        if ok:
            packets.add(packet.tobytes())
    cap.release()
    return packets


def wait_for_record(kafka, topic: str, timeout_ms: int = 30000):
    consumer = KafkaConsumer(topic, **kafka.client_config(), auto_offset_reset="earliest",
                             consumer_timeout_ms=timeout_ms)
    try:
        return next(iter(consumer))
    finally:
        consumer.close()


# -- MJPEG passthrough ---------------------------------------------------------------------------


def test_mjpeg_camera_records_are_the_cameras_own_jpegs_byte_for_byte(kafka, mjpeg_camera, topic, start_app) -> None:
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic), "--source", mjpeg_camera.url,
                         "--camera-id", "door")
    assert wait_for_record(kafka, topic) is not None, producer.log()
    sent = camera_packets(mjpeg_camera.url, 4.0)  # the shared camera sends us the same frames
    published = topic_records(kafka, topic)
    same = [r for r in published if r.value in sent]
    assert len(same) >= CAMERA_FPS * 2, f"{len(same)} of {len(published)} records match the camera's JPEGs"
    camera_tables, ours = encoded_at(CAMERA_QUALITY), encoded_at(80)
    assert camera_tables != ours
    for record in published:
        headers = dict(record.headers)
        assert jpeg_size(record.value) == (CAMERA_W, CAMERA_H)
        assert (int(headers["width"]), int(headers["height"])) == (CAMERA_W, CAMERA_H)
        assert quant_tables(record.value) == camera_tables, "record was re-encoded"
    assert "passing the camera's JPEGs through" in producer.log()


def test_mjpeg_camera_with_a_width_set_is_reencoded_at_that_width(kafka, mjpeg_camera, topic, start_app) -> None:
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic), "--source", mjpeg_camera.url,
                         "--width", "320", "--jpeg-quality", "80")
    record = wait_for_record(kafka, topic)
    assert record is not None, producer.log()
    image = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (CAMERA_H * 320 // CAMERA_W, 320, 3)
    assert quant_tables(record.value) == encoded_at(80)


def test_an_oversized_camera_jpeg_is_reencoded_to_fit(mjpeg_camera) -> None:
    source = FrameSource(mjpeg_camera.url)
    source.start()
    try:
        captured = source.newest(after=0, timeout=15)
        assert captured is not None and captured.jpeg is not None and captured.image is None
        limit = len(captured.jpeg) - 1
        encoder = JpegEncoder(quality=80, max_bytes=limit)
        jpeg, width, height = encoder.encode_captured(captured)
        assert len(jpeg) <= limit and encoder.reencoded == 1 and encoder.passed_through == 0
        assert jpeg_size(jpeg) == (width, height)
    finally:
        source.stop()


def test_only_complete_jpegs_count_as_the_cameras_own() -> None:
    jpeg = cv2.imencode(".jpg", np.zeros((24, 40, 3), np.uint8))[1].tobytes()
    assert jpeg_size(jpeg) == (40, 24)
    assert jpeg_size(jpeg[:-2]) is None  # no end of image: truncated
    assert jpeg_size(b"\x00\x00\x00\x01" + jpeg[4:]) is None  # not a JPEG (an H.264 start code)
    assert jpeg_size(b"\xff\xd8\xff\xda\x00\x02\xff\xd9") is None  # scan before any frame header
    sos = jpeg.index(b"\xff\xda")
    no_tables, i = bytearray(jpeg[:2]), 2
    while i < sos:  # the same JPEG without its Huffman tables (as some MJPEG devices send it)
        length = int.from_bytes(jpeg[i + 2:i + 4], "big")
        if jpeg[i + 1] != 0xC4:
            no_tables += jpeg[i:i + 2 + length]
        i += 2 + length
    assert jpeg_size(bytes(no_tables) + jpeg[sos:]) is None


def test_h264_camera_is_decoded_as_before(camera) -> None:
    source = FrameSource(camera.url)
    source.start()
    try:
        captured = source.newest(after=0, timeout=15)
        assert captured is not None and captured.image is not None and captured.jpeg is None
        assert source.mode == "decode"
    finally:
        source.stop()


# -- key frames only -----------------------------------------------------------------------------


def collect(source: FrameSource, seconds: float) -> list:
    got, last = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        captured = source.newest(after=last, timeout=3)
        if captured is not None:
            got.append(captured)
            last = captured.number
    return got


def test_low_max_fps_decodes_key_frames_only_about_max_fps_apart(camera) -> None:
    source = FrameSource(camera.url, max_fps=1.0)
    source.start()
    try:
        collect(source, 3.0)  # the opening burst and the first key-frame interval decode everything
        assert source.mode == "keyframes"
        got = collect(source, 6.0)
        gaps = [(b.ts_ns - a.ts_ns) / 1e9 for a, b in itertools.pairwise(got)]
        assert 4 <= len(got) <= 8, gaps
        assert all(0.6 < g < 1.6 for g in gaps), gaps
        for captured in got:
            assert captured.image.shape == (CAMERA_H, CAMERA_W, 3)
    finally:
        source.stop()


def test_key_frames_too_sparse_for_max_fps_means_every_frame_is_decoded(camera) -> None:
    source = FrameSource(camera.url, max_fps=5.0)  # the camera sends a key frame each second
    source.start()
    try:
        got = collect(source, 4.0)
        assert source.mode == "keyframes" and not source._reader.skipping
        assert len(got) >= CAMERA_FPS * 2.5  # every frame reached the pipeline, which paces at 5 fps
    finally:
        source.stop()


def test_keyframes_off_keeps_decoding_every_frame(camera) -> None:
    source = FrameSource(camera.url, max_fps=1.0, keyframes="off")
    source.start()
    try:
        assert len(collect(source, 3.0)) >= CAMERA_FPS * 2
        assert source.mode == "decode"
    finally:
        source.stop()


def test_producer_at_one_fps_publishes_about_one_valid_jpeg_a_second(kafka, camera, topic, start_app) -> None:
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic, MAX_FPS="1"), "--source", camera.url)
    first = wait_for_record(kafka, topic)
    assert first is not None, producer.log()
    time.sleep(10)
    published = [r for r in topic_records(kafka, topic) if r.timestamp >= first.timestamp + 1000]
    stamps = [int(dict(r.headers)["capture-ts-ns"]) / 1e9 for r in published]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 0.8 <= rate <= 1.1, (rate, producer.log())
    for record in published:
        image = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (CAMERA_H, CAMERA_W, 3)


def test_producer_at_one_fps_decodes_key_frames_only(kafka, camera, topic, start_app) -> None:
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic, MAX_FPS="1"), "--source", camera.url)
    assert wait_for_record(kafka, topic) is not None, producer.log()
    assert wait_for(lambda: "decoding key frames only" in producer.log(), 5)


def test_key_frames_only_from_a_camera_that_needs_credentials() -> None:
    with RtspCamera(width=CAMERA_W, height=CAMERA_H, fps=CAMERA_FPS, username="viewer", password="s3cret pw") as cam:
        source = FrameSource(cam.url, max_fps=1.0)
        source.start()
        try:
            got = collect(source, 4.0)
            assert source.mode == "keyframes" and got and got[-1].image.shape == (CAMERA_H, CAMERA_W, 3)
        finally:
            source.stop()
