"""SOURCE_DECODER=pyav on real parts: H.264 decoded by PyAV to YUV planes and JPEG-encoded from
them (no BGR in between), with the colours OpenCV's own decode shows, at the camera's size and
rate, through a camera crash or hang, never logging the camera's credentials."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from urllib.parse import quote

import cv2
import numpy as np
import pytest
from conftest import CAMERA_FPS, CAMERA_H, CAMERA_W, app_env, topic_records, wait_for

from harness.clips import make_clip
from harness.ports import free_port
from harness.rtsp_camera import RtspCamera
from harness.rtsp_stall import StallingRelay
from rtsp_kafka_mjpeg.capture.encoder import JpegEncoder
from rtsp_kafka_mjpeg.capture.source import FrameSource

PASSWORD = "s3cret pw"
# JPEG at quality 80 alone leaves a mean absolute difference of ~1.6 levels from the picture it
# encoded (cv2.imencode of OpenCV's own BGR); a range or colour-matrix mistake leaves ~15.
SAME_COLOURS = 3.0


@pytest.fixture(scope="module")
def clip() -> str:
    return str(make_clip(1280, 720, 30))


@pytest.fixture(scope="module")
def secured_camera() -> Iterator[RtspCamera]:
    """A live H.264 camera that needs credentials, restartable on its port."""
    cam = RtspCamera(port=free_port(), width=CAMERA_W, height=CAMERA_H, fps=CAMERA_FPS, username="viewer",
                     password=PASSWORD)
    cam.start()
    yield cam
    cam.close()


def decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a standard JPEG"
    return image


def opencv_frames(path: str, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        return [cap.read()[1] for _ in range(count)]
    finally:
        cap.release()


def first_frames(source: FrameSource, count: int) -> list:
    got, last = [], 0
    source.start()
    try:
        while len(got) < count:
            captured = source.newest(after=last, timeout=10)
            assert captured is not None
            got.append(captured)
            last = captured.number
    finally:
        source.stop()
    return got


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# -- in process, on a colourful clip: frame n of PyAV is frame n of OpenCV ---------------------------


def test_pyav_frames_are_yuv_planes_and_encode_to_the_colours_opencv_decodes(clip) -> None:
    source = FrameSource(clip, decoder="pyav")
    got = first_frames(source, 4)
    assert source.mode == "pyav"
    reference = opencv_frames(clip, got[-1].number)
    encoder = JpegEncoder(quality=80)
    for captured in got:
        assert captured.image is None and captured.jpeg is None
        assert captured.yuv.shape == (720 * 3 // 2, 1280) and not captured.full_range
        jpeg, width, height = encoder.encode_captured(captured)
        image = decoded(jpeg)
        assert (width, height) == (1280, 720) and image.shape == (720, 1280, 3)
        assert mean_diff(image, reference[captured.number - 1]) < SAME_COLOURS
        assert mean_diff(captured.picture(), reference[captured.number - 1]) < 1.0
    assert encoder.from_yuv == len(got)


def test_pyav_frames_resize_plane_by_plane_and_fit_the_size_limit(clip) -> None:
    captured = first_frames(FrameSource(clip, decoder="pyav"), 1)[0]
    reference = opencv_frames(clip, captured.number)[-1]
    jpeg, width, height = JpegEncoder(quality=80, width=640).encode_captured(captured)
    assert (width, height) == (640, 360)
    small = cv2.resize(reference, (640, 360), interpolation=cv2.INTER_AREA)
    assert mean_diff(decoded(jpeg), small) < 2 * SAME_COLOURS
    full, _, _ = JpegEncoder(quality=80).encode_captured(captured)
    limited = JpegEncoder(quality=80, max_bytes=len(full) // 2)
    jpeg, width, height = limited.encode_captured(captured)
    assert len(jpeg) <= len(full) // 2 and limited.shrunk == 1
    assert decoded(jpeg).shape == (height, width, 3)


def test_pyav_at_low_max_fps_decodes_key_frames_only_as_yuv(camera) -> None:
    source = FrameSource(camera.url, max_fps=1.0, decoder="pyav")
    got = first_frames(source, 3)
    assert source.mode == "keyframes"
    assert got[-1].yuv.shape == (CAMERA_H * 3 // 2, CAMERA_W)


def test_an_mjpeg_camera_keeps_passthrough_with_the_pyav_decoder() -> None:
    with RtspCamera(width=CAMERA_W, height=CAMERA_H, fps=CAMERA_FPS, mjpeg=True) as cam:
        source = FrameSource(cam.url, decoder="pyav")
        captured = first_frames(source, 1)[0]
    assert source.mode == "mjpeg" and captured.jpeg is not None and captured.yuv is None


# -- producer.py --decoder pyav against the live camera --------------------------------------------


def captured_after(kafka, topic: str, after_ns: int, count: int, timeout_s: float) -> list:
    """Records captured after `after_ns`, once there are at least `count` of them (or the timeout)."""
    def newer() -> list:
        return [r for r in topic_records(kafka, topic) if int(dict(r.headers)["capture-ts-ns"]) > after_ns]
    wait_for(lambda: len(newer()) >= count, timeout_s, 0.5)
    return newer()


def test_producer_with_pyav_publishes_camera_size_jpegs_at_the_camera_rate_in_opencvs_colours(
        kafka, secured_camera, topic, start_app) -> None:
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic), "--decoder", "pyav",
                         "--source", secured_camera.url)
    started = time.time_ns()
    assert captured_after(kafka, topic, 0, 1, 30), producer.log()
    time.sleep(6)
    records = [r for r in topic_records(kafka, topic) if int(dict(r.headers)["capture-ts-ns"]) > started + 1e9]
    stamps = sorted(int(dict(r.headers)["capture-ts-ns"]) / 1e9 for r in records)
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert rate >= 0.9 * CAMERA_FPS, (rate, producer.log())
    for record in records:
        headers = dict(record.headers)
        assert (int(headers["width"]), int(headers["height"])) == (CAMERA_W, CAMERA_H)
        assert decoded(record.value).shape == (CAMERA_H, CAMERA_W, 3)
    # The live pattern moves, so compare what does not: a black field with a white ball.
    cap = cv2.VideoCapture(secured_camera.url, cv2.CAP_FFMPEG)
    ok, ours = cap.read()
    cap.release()
    assert ok
    theirs = decoded(records[-1].value)
    assert abs(float(np.median(theirs)) - float(np.median(ours))) <= 2, "black is not black: a range mistake"
    assert np.allclose(theirs.mean(axis=(0, 1)), ours.mean(axis=(0, 1)), atol=SAME_COLOURS)
    log = producer.log()
    assert "decoding every frame to YUV (PyAV)" in log
    assert PASSWORD not in log and quote(PASSWORD) not in log and "viewer:***@" in log


def test_producer_with_pyav_rides_out_a_camera_crash(kafka, secured_camera, topic, start_app) -> None:
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic), "--decoder", "pyav",
                         "--source", secured_camera.url)
    assert captured_after(kafka, topic, 0, 1, 30), producer.log()
    secured_camera.kill()
    assert wait_for(lambda: ": reconnecting" in producer.log(), 15), producer.log()
    restart_ns = time.time_ns()
    secured_camera.start()
    back = captured_after(kafka, topic, restart_ns, CAMERA_FPS, 25)
    assert len(back) >= CAMERA_FPS, producer.log()
    log = producer.log()
    assert producer.proc.poll() is None and "Traceback" not in log
    assert log.count(": streaming") == 2
    assert PASSWORD not in log and quote(PASSWORD) not in log


def test_a_hung_camera_is_lost_within_the_read_timeout_and_read_again_when_it_resumes(secured_camera) -> None:
    source = FrameSource(secured_camera.url, read_timeout_s=2.0, decoder="pyav")
    source.start()
    try:
        assert source.newest(after=0, timeout=10) is not None
        os.kill(secured_camera.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        # The read timeout counts from the last picture read: a reader that was behind (a busy
        # process: up to 1.7 s behind, measured with two CPU-bound threads beside it) first reads the
        # pictures already in its socket, then waits the timeout.
        last = {"count": source.captured, "at": frozen}

        def lost() -> bool:
            if source.captured != last["count"]:
                last.update(count=source.captured, at=time.monotonic())
            return source.state == "reconnecting"
        try:
            assert wait_for(lost, 8, 0.02)
            now = time.monotonic()
        finally:
            os.kill(secured_camera.pid, signal.SIGCONT)
        lost_after_s, behind_s = now - last["at"], last["at"] - frozen
        assert lost_after_s < 3.0, (lost_after_s, behind_s)
        count = source.captured
        assert wait_for(lambda: source.captured > count + CAMERA_FPS, 15), source.state
        assert source.state == "streaming" and source.reconnects == 1
    finally:
        source.stop()


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_a_camera_that_hangs_in_the_middle_of_a_frame_is_lost_within_one_read_timeout(secured_camera,
                                                                                      decoder: str) -> None:
    # FFmpeg hands out the half frame it held when its read times out; waiting for a picture from
    # it took a second read timeout (4.0 s, seen under the suite's load as a SIGSTOP landing
    # mid-frame). The relay makes the mid-frame hang happen every time.
    relay = StallingRelay(secured_camera.port)
    source = FrameSource(relay.url(secured_camera.url), read_timeout_s=2.0, decoder=decoder)
    source.start()
    try:
        assert source.newest(after=0, timeout=10) is not None
        relay.stall_mid_frame()
        assert relay.stalled.wait(5)
        frozen = time.monotonic()
        assert wait_for(lambda: source.state == "reconnecting", 8, 0.02)
        assert time.monotonic() - frozen < 3.0
        count = source.captured
        assert wait_for(lambda: source.captured > count + CAMERA_FPS, 15), source.state
        assert source.state == "streaming" and source.reconnects == 1
    finally:
        source.stop()
        relay.close()
