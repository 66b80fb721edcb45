"""Real parts for every integration test: Apache Kafka (KRaft), a GStreamer RTSP camera,
producer.py / consumer.py as subprocesses, and a log collector the secrets test greps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from harness import procs
from harness.kafka_broker import KafkaBroker
from harness.mjpeg_client import MjpegViewer, Part
from harness.ports import free_port, port_open
from harness.rtsp_camera import RtspCamera

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / "artifacts" / "logs"
CAMERA_W, CAMERA_H, CAMERA_FPS = 640, 360, 20


@pytest.fixture(scope="session")
def log_dir() -> Path:
    """Every subprocess log of the session lands here (the secrets test reads them all)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.rglob("*.log"):
        old.unlink()
    return LOG_DIR


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


@pytest.fixture
def browser_page() -> Iterator[Page]:
    """A page in Debian's headless Chromium with a fresh profile (no downloaded browser)."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                        args=CHROMIUM_ARGS, viewport={"width": 1000, "height": 640})
        yield context.new_page()
        context.close()


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    broker = KafkaBroker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def camera() -> Iterator[RtspCamera]:
    cam = RtspCamera(width=CAMERA_W, height=CAMERA_H, fps=CAMERA_FPS)
    cam.start()
    yield cam
    cam.stop()


@pytest.fixture
def topic() -> str:
    return f"frames-{uuid.uuid4().hex[:10]}"


class App:
    """A producer.py or consumer.py subprocess with its log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, port: int | None = None) -> None:
        self.proc = proc
        self.log_path = log_path
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        return procs.terminate(self.proc)


def app_env(kafka_bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CAMERA_", "HTTP_"))}
    env.update(CONFIG_FILE=str(ROOT / "config.env"), KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=topic,
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@pytest.fixture
def start_app(log_dir: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., App]]:
    """start_app("producer.py" | "consumer.py", env, *args) -> App; stopped at teardown by PID."""
    started: list[App] = []

    def start(script: str, env: dict[str, str], *args: str, wait_http: bool = True) -> App:
        name = f"{request.node.name}-{script.removesuffix('.py')}-{len(started)}"
        log_path = log_dir / f"{name.replace('/', '_')}.log"
        port = None
        argv = [sys.executable, script, *args]
        if script == "consumer.py" and "--port" not in args:
            port = free_port()
            argv += ["--port", str(port)]
        out = log_path.open("wb")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.track(proc)
        app = App(proc, log_path, port)
        started.append(app)
        if port and wait_http:
            deadline = time.monotonic() + 30
            while not port_open("127.0.0.1", port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"consumer did not start:\n{app.log()}")
                time.sleep(0.1)
        return app

    yield start
    for app in started:
        app.stop()


def read_parts(url: str, count: int, timeout: float = 30.0) -> list[Part]:
    """Connect as a viewer and return the first `count` parts (fewer on timeout)."""
    viewer = MjpegViewer(url)
    try:
        return viewer.read_parts(count, timeout)
    finally:
        viewer.close()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
