"""HWACCEL (hardware video decode) on the parts this machine has: the NV12 pictures a GPU hands
back, made from real decoded H.264 frames, written as the same JPEG as the software planes; `auto`
decoding in software with one line when no device opens; a named device that cannot open is one
line and exit 1; a camera the device cannot decode falls back under `auto` and fails when named.
The GPU itself is measured by `python -m bench.hwaccel` on a machine that has one."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import urllib.request

import av
import cv2
import numpy as np
import pytest
from conftest import ROOT, app_env, topic_records, wait_for

from harness.clips import make_clip
from harness.ports import free_port
from rtsp_kafka_mjpeg.capture.encoder import JpegEncoder
from rtsp_kafka_mjpeg.capture.hwaccel import HwDecoder, available_kinds
from rtsp_kafka_mjpeg.capture.pyav_reader import picture
from rtsp_kafka_mjpeg.capture.source import Captured, FrameSource, SourceError

# JPEG at quality 80 leaves a mean absolute difference of ~1.6 levels (test_pyav_decoder.py)
SAME_COLOURS = 3.0


@pytest.fixture(scope="module")
def decoded_frames() -> list[av.VideoFrame]:
    """Real H.264 frames (libx264 720p, colourful and moving), decoded by FFmpeg in software."""
    with av.open(str(make_clip(1280, 720, 30))) as container:
        return [frame for _, frame in zip(range(5), container.decode(video=0), strict=False)]


def captured(pic) -> Captured:
    return Captured(pic.image, 1, 1, None, pic.width, pic.height, pic.yuv, pic.full_range, pic.chroma)


def test_nv12_pictures_carry_the_decoders_planes_byte_for_byte_and_encode_to_the_same_jpeg(decoded_frames) -> None:
    encoder = JpegEncoder(quality=80)
    for frame in decoded_frames:
        software = picture(frame, yuv=True)
        gpu_like = picture(frame.reformat(format="nv12"), yuv=True)  # what hwdownload hands back
        assert software.chroma == "i420" and gpu_like.chroma == "nv12"
        assert gpu_like.yuv.shape == (720 * 3 // 2, 1280) and gpu_like.image is None
        for ours, theirs in zip(captured(gpu_like).planes(), captured(software).planes(), strict=True):
            assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
        jpeg, width, height = encoder.encode_captured(captured(gpu_like))
        assert (width, height) == (1280, 720)
        assert jpeg == encoder.encode_captured(captured(software))[0]
        shown = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        reference = frame.to_ndarray(format="bgr24")
        assert np.abs(shown.astype(np.int16) - reference).mean() < SAME_COLOURS
    assert encoder.from_yuv == 2 * len(decoded_frames)


def test_nv12_pictures_resize_convert_and_fit_the_size_limit(decoded_frames) -> None:
    frame = decoded_frames[-1]
    nv12, i420 = captured(picture(frame.reformat(format="nv12"), yuv=True)), captured(picture(frame, yuv=True))
    assert np.array_equal(nv12.picture(), i420.picture())  # BGR for processors and fallbacks
    small = JpegEncoder(quality=80, width=640)
    assert small.encode_captured(nv12) == small.encode_captured(i420)
    full, _, _ = JpegEncoder(quality=80).encode_captured(nv12)
    limited = JpegEncoder(quality=80, max_bytes=len(full) // 2)
    jpeg, _, _ = limited.encode_captured(nv12)
    assert len(jpeg) <= len(full) // 2 and limited.shrunk == 1


def run_producer(kafka, topic: str, source: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "producer.py", "--source", source],
                          env=app_env(kafka.bootstrap, topic, **env), cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(("env", "line"), [
    ({"SOURCE_DECODER": "pyav", "HWACCEL": "cuda", "HWACCEL_DEVICE": "99"},
     r"^producer.py: error: HWACCEL=cuda: cannot open the cuda device 99: .+; check HWACCEL / --hwaccel$"),
    ({"SOURCE_DECODER": "pyav", "HWACCEL": "vaapi"},
     r"^producer.py: error: HWACCEL=vaapi: the FFmpeg in this PyAV has no vaapi \(it has: .+\)"),
    ({"HWACCEL": "cuda"}, r"^producer.py: error: HWACCEL=cuda needs SOURCE_DECODER=pyav"),
], ids=["cuda-no-such-gpu", "vaapi-not-in-ffmpeg", "cuda-without-pyav"])
def test_a_named_device_that_cannot_decode_is_one_line_and_exit_1(kafka, camera, topic, env, line) -> None:
    if env.get("HWACCEL") == "vaapi" and "vaapi" in available_kinds():
        env = {**env, "HWACCEL_DEVICE": "/dev/dri/no-such-node"}
        line = r"^producer.py: error: HWACCEL=vaapi: cannot open the vaapi device /dev/dri/no-such-node: "
    out = run_producer(kafka, topic, camera.url, **env)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert re.search(line, lines[0]) and "Traceback" not in out.stderr
    assert topic_records(kafka, topic, timeout_s=2) == []  # it stopped before any camera opened


def test_auto_without_a_usable_device_decodes_in_software_says_so_once_and_metrics_tell(
        kafka, camera, topic, start_app) -> None:
    port = free_port()
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic, SOURCE_DECODER="pyav", HWACCEL="auto",
                                                PRODUCER_METRICS_PORT=str(port)), "--source", camera.url)
    assert wait_for(lambda: len(topic_records(kafka, topic, timeout_s=1)) >= 10, 30), producer.log()
    log = producer.log()
    said = [ln for ln in log.splitlines() if "HWACCEL=auto" in ln]
    assert len(said) == 1, log
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    device = re.search(r'producer_camera_decoder\{camera="cam1",device="([^"]+)",mode="pyav"\} 1\.0', metrics)
    assert device, metrics
    if "no hardware decoder here" in said[0]:  # this machine (and CI): no GPU
        assert device.group(1) == "software" and "decoding in software" in said[0]
    else:  # a machine with a GPU: the device named in the line decodes the camera
        assert device.group(1) in said[0] and f"on {device.group(1)}" in log
    assert "Traceback" not in log


def test_a_camera_the_device_cannot_decode_falls_back_under_auto_and_fails_when_named(camera, caplog) -> None:
    # FFmpeg's own H.264 decoder has no qsv path (qsv needs the h264_qsv decoder): a real
    # "this device cannot decode this stream", whatever hardware the machine has
    source = FrameSource(camera.url, decoder="pyav", hw=HwDecoder("qsv", explicit=False))
    with caplog.at_level(logging.WARNING):
        source.start()
        try:
            assert source.newest(after=0, timeout=10) is not None
        finally:
            source.stop()
    assert source.mode == "pyav" and source.decoded_on == "software"
    assert "cannot be decoded on qsv: decoding it in software (HWACCEL=auto)" in caplog.text
    named = FrameSource(camera.url, decoder="pyav", hw=HwDecoder("qsv"))
    with pytest.raises(SourceError, match=r"cannot be decoded on qsv \(HWACCEL=qsv; HWACCEL=auto would"):
        named.open()


def test_the_gpu_bench_runs_here_and_reports_software_and_why_no_device_opened(tmp_path) -> None:
    out = tmp_path / "hwaccel.json"
    run = subprocess.run([sys.executable, "-m", "bench.hwaccel", "--sizes", "720p", "--seconds", "1", "--cameras",
                          "2", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    figures = json.loads(out.read_text())
    software = figures["sizes"]["720p"]["software"]
    assert software["one"]["frames"] > 0 and software["one"]["cpu_ms_per_frame"] > 0
    assert software["many"]["decoders"] == 2 and software["many"]["cameras_at_30fps"] > 0
    for kind, reason in figures["not_opened"].items():  # each device tried either ran or says why not
        assert kind not in figures["sizes"]["720p"] and reason and f"{kind}: not used ({reason})" in run.stdout
    assert "| 720p | software |" in run.stdout
