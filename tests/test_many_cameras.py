"""One producer process, many cameras: each camera keyed by its id, none slowed by a dead one."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest
from conftest import CAMERA_FPS, ROOT, app_env, wait_for
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from harness.ports import free_port, free_ports
from harness.rtsp_camera import RtspCamera


@pytest.fixture
def hung_camera() -> Iterator[RtspCamera]:
    """A camera that accepts the connection and never answers."""
    cam = RtspCamera(hang=True)
    cam.start()
    yield cam
    cam.stop()


def records_by_camera(bootstrap: str, topic: str, seconds: float) -> dict[str, list[tuple[bytes, dict[str, bytes]]]]:
    """Every record on the topic (from the start) and those arriving within `seconds`, by key."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=500)
    out: dict[str, list[tuple[bytes, dict[str, bytes]]]] = defaultdict(list)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for rec in consumer.poll(timeout_ms=200).values():
                for r in rec:
                    out[r.key.decode()].append((r.value, dict(r.headers)))
    finally:
        consumer.close()
    return out


def metric_samples(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as res:
        text = res.read().decode()
    return {(s.name, s.labels.get("camera", "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_one_producer_publishes_each_camera_under_its_own_key_while_a_hung_camera_retries(
        kafka, camera, hung_camera, topic, start_app) -> None:
    port = free_port()
    producer = start_app("producer.py", app_env(kafka.bootstrap, topic), "--camera", f"door={camera.url}",
                         "--camera", f"yard={camera.url}", "--camera", f"gate={hung_camera.url}",
                         "--open-timeout", "2", "--metrics-port", str(port))
    assert wait_for(lambda: "camera gate: cannot open video source" in producer.log(), 20), producer.log()

    def streaming() -> bool:
        try:
            samples = metric_samples(port)
        except OSError:
            return False
        return (samples.get(("producer_camera_streaming", "door")) == 1
                and samples.get(("producer_camera_streaming", "yard")) == 1)

    assert wait_for(streaming, 30), producer.log()
    before = metric_samples(port)
    time.sleep(4)
    after = metric_samples(port)
    for cam in ("door", "yard"):
        rate = (after[("producer_frames_published_total", cam)] - before[("producer_frames_published_total", cam)]) / 4
        assert rate >= 0.75 * CAMERA_FPS, f"{cam} published {rate:.1f} fps of {CAMERA_FPS} beside a hung camera"
    assert after[("producer_camera_streaming", "gate")] == 0
    assert after[("producer_frames_published_total", "gate")] == 0
    assert producer.proc.poll() is None, "a hung camera must not stop the producer"

    records = records_by_camera(kafka.bootstrap, topic, 3)
    assert set(records) == {"door", "yard"}
    for cam, recs in records.items():
        assert all(headers["camera-id"] == cam.encode() for _, headers in recs)
        assert all(value[:2] == b"\xff\xd8" for value, _ in recs)
        seqs = [int(headers["seq"]) for _, headers in recs]
        assert seqs == list(range(1, len(seqs) + 1)), f"{cam}: each camera numbers its own frames from 1"

    assert producer.stop() == 0
    acked = dict(re.findall(r"camera (\w+): Kafka acknowledged (\d+) frames", producer.log()))
    assert set(acked) == {"door", "yard", "gate"}, producer.log()[-2000:]
    assert int(acked["door"]) > 0 and int(acked["yard"]) > 0 and acked["gate"] == "0"


def test_a_producer_whose_cameras_all_fail_to_open_exits_with_one_line(kafka, topic) -> None:
    dead = [f"rtsp://127.0.0.1:{port}/cam" for port in free_ports(2)]
    out = subprocess.run([sys.executable, "producer.py", "--camera", f"a={dead[0]}", "--camera", f"b={dead[1]}",
                          "--open-timeout", "2"], cwd=ROOT, env=app_env(kafka.bootstrap, topic),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "cannot open video source" in errors[0] and "CAMERAS / --camera" in errors[0]
    assert "Traceback" not in out.stderr


def test_the_terminal_status_shows_one_line_per_camera(kafka, camera, topic) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "producer.py", "--camera", f"door={camera.url}",
                             "--camera", f"yard={camera.url}"], cwd=ROOT, env=app_env(kafka.bootstrap, topic),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    out = b""
    deadline = time.monotonic() + 25
    try:
        while out.count(b"kbit/s") < 6 and (left := deadline - time.monotonic()) > 0:
            if select.select([controller], [], [], left)[0]:
                try:
                    out += os.read(controller, 65536)
                except OSError:
                    break
    finally:
        proc.terminate()
        proc.wait(10)
        os.close(controller)
    text = re.sub(r"\x1b\[\d*[A-Za-z]", "", out.decode(errors="replace"))
    status = [line.strip("\r") for line in text.splitlines() if "kbit/s" in line]
    last_two = status[-2:]
    assert [line.split(":")[0].strip() for line in last_two] == ["door", "yard"], status
    assert all("streaming" in line for line in last_two), last_two
    # Each refresh rewrites the same two lines in place (cursor up), never scrolling new ones.
    assert out.count(b"\x1b[1F") >= 2, out[-500:]
    assert Counter(line.split(":")[0].strip() for line in status)["door"] >= 3


@pytest.fixture
def slow_camera() -> Iterator[RtspCamera]:
    """10 fps: FFmpeg's stream analysis of it takes ~3 s of its frames unless told otherwise."""
    with RtspCamera(width=320, height=240, fps=10) as cam:
        yield cam


def test_four_cameras_of_one_producer_all_stream_within_seconds_of_its_start(kafka, slow_camera, topic) -> None:
    # OpenCV's FFmpeg backend opens one stream at a time (a lock of its own), so a producer's start
    # (and every restart) costs the sum of its cameras' opens: each open must take ~1 s of stream
    # analysis, not FFmpeg's default (measured at 10 fps: 4 opens 11.8 s before, 5.0 s after)
    args = [a for i in range(4) for a in ("--camera", f"cam{i}={slow_camera.url}")]
    proc = subprocess.Popen([sys.executable, "producer.py", *args], cwd=ROOT, env=app_env(kafka.bootstrap, topic),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    try:
        assert proc.stdout is not None
        while sum(": streaming" in line for _, line in lines) < 4 and time.monotonic() - started < 40:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append((time.monotonic(), line))
    finally:
        proc.terminate()
        proc.wait(30)
    streaming = [t for t, line in lines if ": streaming" in line]
    assert len(streaming) == 4, "".join(line for _, line in lines)
    connecting = next(t for t, line in lines if ": connecting" in line)
    assert streaming[-1] - connecting <= 8.0, [round(t - connecting, 2) for t in streaming]
