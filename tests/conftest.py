"""Real parts for every integration test: Apache Kafka (KRaft), a GStreamer RTSP camera,
producer.py / consumer.py as subprocesses in a sealed environment, each log checked for secrets
when its test ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from playwright.sync_api import Page, sync_playwright

from harness import procs
from harness.kafka_broker import KafkaBroker
from harness.log_leaks import KNOWN_TEST_SECRETS, leaks, secrets_given
from harness.mjpeg_client import MjpegViewer, Part
from harness.ports import free_port, port_open
from harness.rtsp_camera import RtspCamera
from harness.sealed_env import changes_app_behaviour, sealed_environ
from rtsp_kafka_mjpeg.settings import KAFKA_CLIENTS

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / "artifacts" / "logs"
CAMERA_W, CAMERA_H, CAMERA_FPS = 640, 360, 20
SESSION_STARTED = time.time()  # conftest is imported as the test session starts


@pytest.fixture(scope="session", autouse=True)
def sealed_shell() -> Iterator[None]:
    """This process's environment without what changes the apps' behaviour, so every child (even
    one a test starts without app_env, like `producer.py --help`) runs as it would in CI."""
    patch = pytest.MonkeyPatch()
    for key in [k for k in os.environ if changes_app_behaviour(k)]:
        patch.delenv(key)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def log_dir() -> Path:
    """Every subprocess log of the session lands here; old ones are removed at session start."""
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




@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request: pytest.FixtureRequest) -> str:
    """KAFKA_CLIENT for a producer test that exercises the Kafka client: it runs once per client.
    A producer subprocess gets it through app_env(..., KAFKA_CLIENT=kafka_client)."""
    return request.param


class App:
    """A producer.py or consumer.py subprocess with its log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, port: int | None = None,
                 secrets: frozenset[str] = frozenset()) -> None:
        self.proc = proc
        self.log_path = log_path
        self.port = port
        self.secrets = secrets  # what it was handed that must never appear in its log
        # Read through our own handle: another pytest session in this checkout clears the log
        # directory when it starts, and a removed file stays readable through an open handle.
        self._log = log_path.open("rb")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        return procs.terminate(self.proc)

    def close(self) -> None:
        self._log.close()


def app_env(kafka_bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    """The apps' environment: the shell sealed (harness.sealed_env), our broker, topic and config.env."""
    env = sealed_environ()
    env.update(CONFIG_FILE=str(ROOT / "config.env"), KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=topic,
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@pytest.fixture
def crash_broker() -> Iterator[KafkaBroker]:
    """A broker of this test alone; it keeps its port across a restart, so clients find it again."""
    broker = KafkaBroker()
    broker.start()
    yield broker
    broker.close()


def topic_records(kafka: KafkaBroker, topic: str, timeout_s: float = 20.0) -> list[Any]:
    """Every record in the topic up to its end when called (a producer may keep publishing)."""
    consumer = KafkaConsumer(**kafka.client_config(), auto_offset_reset="earliest",
                             max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                got += [r for r in batch if r.offset < ends[tp]]
        return got
    finally:
        consumer.close()


@pytest.fixture
def start_app(log_dir: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., App]]:
    """start_app("producer.py" | "consumer.py", env, *args) -> App; stopped at teardown by PID.

    At teardown each app's log must hold none of the secrets handed to any app of the test (and
    no unmasked URL password): a leak fails the test that caused it, as an error at teardown.
    """
    started: list[App] = []

    def start(script: str, env: dict[str, str], *args: str, wait_http: bool = True) -> App:
        name = f"{request.node.name}-{script.removesuffix('.py')}-{len(started)}"
        log_path = log_dir / f"{name.replace('/', '_')}.log"
        port = None
        argv = [sys.executable, script, *args]
        if script == "consumer.py" and "--port" not in args:
            port = free_port()
            argv += ["--port", str(port)]
        with log_path.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.track(proc)
        app = App(proc, log_path, port, frozenset(secrets_given(env, args)))
        started.append(app)
        if port and wait_http:
            deadline = time.monotonic() + 30
            while not port_open("127.0.0.1", port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"consumer did not start:\n{app.log()}")
                time.sleep(0.1)
        return app

    yield start
    try:
        for app in started:
            app.stop()
        assert_no_secrets_in_logs(started)
    finally:
        for app in started:
            app.close()


def assert_no_secrets_in_logs(apps: list[App]) -> None:
    """No app's log holds a secret handed to any of `apps` (or a known test secret) or an
    unmasked URL password."""
    secrets = set(KNOWN_TEST_SECRETS).union(*(app.secrets for app in apps))
    found = {app.log_path.name: leaks(app.log(), secrets) for app in apps}
    found = {name: where for name, where in found.items() if where}
    assert not found, f"secrets leaked into app logs: {found}"


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


def next_chunk(chunks: Iterator[bytes], timeout: float = 2.0) -> bytes:
    """The stream's next write, or a failure after `timeout` (a stuck stream must not hang the test)."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(next, chunks).result(timeout)
    finally:
        pool.shutdown(wait=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Each phase's report on the item (item.rep_call ...), for fixtures that act on a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The failover figures of this run, one line per event, and what the processes said in a
    failed failover test, at the end of the output where a CI log's tail keeps them: they tell a
    bound missed by a little from a stall at once."""
    failures = ROOT / "artifacts" / "cluster-failures.txt"
    if failures.exists() and failures.stat().st_mtime >= SESSION_STARTED:
        terminalreporter.section("failover tests that failed: what the processes said")
        for line in failures.read_text().splitlines():
            terminalreporter.write_line(line)
    figures = ROOT / "artifacts" / "cluster.json"
    if not figures.exists() or figures.stat().st_mtime < SESSION_STARTED:
        return
    import json

    terminalreporter.section("failover figures (artifacts/cluster.json)")
    for name, values in json.loads(figures.read_text()).items():
        gaps = values.get("gaps_s", {}).get("viewers")
        shown = {k: v for k, v in values.items() if k not in ("gaps_s", "recorded_at", "session_timeout_s")}
        terminalreporter.write_line(f"{name}: viewers' gaps {gaps} {shown}" if gaps else f"{name}: {shown}")
