"""Real services for the benchmark: one Kafka broker, RTSP cameras looping cached clips, and the
project's and the tutorial's producer/consumer as subprocesses whose CPU and memory we sample.

Why subprocesses measured from outside (psutil): the figures are about the processes a user
runs, exactly as ``tests/conftest.py`` launches them, so nothing the benchmark does changes them.
Every process is stopped by its own PID (``harness.procs``), never by name.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Self

import psutil
from kafka import KafkaConsumer, TopicPartition

from harness import procs
from harness.clips import make_clip
from harness.kafka_broker import KafkaBroker
from harness.ports import free_port, port_open
from harness.rtsp_camera import RtspCamera
from harness.sealed_env import sealed_environ

from .plan import Resolution

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
# The tutorial's producer and consumer, copied byte for byte from ../shared/baseline so the
# benchmark runs on any clone (tests/test_bench_smoke.py checks the copy is still identical).
# Stored as .py.txt: it is the tutorial's text, run as-is by the benchmark, not project code.
BASELINE_DIR = ROOT / "bench" / "tutorial_baseline"
RESULTS_DIR = ROOT / "bench" / "results"
CLIP_SECONDS = 10  # the harness's cached clips; the camera loops them


class ServiceError(RuntimeError):
    """A service did not start or died; the message carries its log tail."""


class ProcTree:
    """CPU and RSS of a process and its children (consumer.py forks a gunicorn worker)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def members(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) per live PID: deltas of these are a window's CPU."""
        out: dict[int, float] = {}
        for proc in self.members():
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return out

    def threads(self) -> dict[int, float]:
        """CPU seconds per thread id of the root process (where a process's CPU goes, by thread)."""
        try:
            return {th.id: th.user_time + th.system_time for th in self.root.threads()}
        except psutil.Error:
            return {}

    def rss(self) -> int:
        """Resident bytes of the whole tree."""
        total = 0
        for proc in self.members():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def leaf_pid(self) -> int:
        """The youngest descendant (gunicorn's worker), or the root: the one worth profiling."""
        members = self.members()
        return members[-1].pid if members else self.root.pid


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``ProcTree.cpu()`` snapshots (new PIDs count from zero)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


class Service:
    """A subprocess with its own log file, stopped by PID."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 cwd: Path = ROOT, port: int | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        procs.track(self.proc)
        log.info("started %s (pid %d)", self.name, self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tree(self) -> ProcTree:
        return ProcTree(self.pid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def fail(self, what: str) -> ServiceError:
        return ServiceError(f"{self.name} {what}:\n{procs.log_tail(self.log_path, 3000)}")

    def wait_http(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.port is not None
        while not port_open("127.0.0.1", self.port):
            if not self.alive():
                raise self.fail("exited before listening")
            if time.monotonic() > deadline:
                raise self.fail(f"not listening after {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> int | None:
        code = procs.terminate(self.proc, timeout)
        if self.proc is not None:
            log.info("stopped %s (exit %s)", self.name, code)
        return code


def project_env(bootstrap: str, topic: str) -> dict[str, str]:
    """The environment tests/conftest.py gives producer.py / consumer.py: the shell sealed
    (harness.sealed_env), so a developer's exported settings never change the figures."""
    env = sealed_environ()
    env.update(CONFIG_FILE=str(ROOT / "config.env"), KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TOPIC=topic,
               PYTHONUNBUFFERED="1")
    return env


def baseline_env(bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    """The tutorial reads BOOTSTRAP, TOPIC, RTSP_URL and PORT; its OpenCV and Python are sealed
    like ours, so both sides of the comparison run in the same environment."""
    env = sealed_environ()
    env.update(BOOTSTRAP=bootstrap, TOPIC=topic, PYTHONUNBUFFERED="1", **extra)
    return env


class TopicCounter:
    """Records in a topic from its end offsets: counts published frames without fetching them.

    Used at the same instants as the CPU snapshots, so "frames published in the window" and
    "CPU spent in the window" cover the same interval. Listing offsets is one small request.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       client_id="bench-counter")
        self._tps: list[TopicPartition] = []

    def _partitions(self) -> list[TopicPartition]:
        if not self._tps:
            parts = self._consumer.partitions_for_topic(self.topic)
            if not parts:
                self._consumer.topics()  # refresh metadata: a topic created a moment ago
                parts = self._consumer.partitions_for_topic(self.topic)
            self._tps = [TopicPartition(self.topic, p) for p in sorted(parts or [])]
        return self._tps

    def count(self) -> int:
        return sum(self.partition_counts().values())

    def partition_counts(self) -> dict[int, int]:
        """End offset per partition: records per key when each key has a partition of its own."""
        tps = self._partitions()
        if not tps:
            return {}
        return {tp.partition: int(n) for tp, n in self._consumer.end_offsets(tps).items()}

    def wait_records(self, at_least: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.count() >= at_least:
                    return True
            except Exception as err:  # noqa: BLE001 - the topic may not exist yet
                log.debug("counting %s: %s", self.topic, err)
            time.sleep(0.3)
        return False

    def close(self) -> None:
        self._consumer.close()


def http_json(url: str, timeout: float = 2.0) -> object:
    import json

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_text(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode(errors="replace")


def metric_sum(metrics_text: str, name: str) -> float:
    """Sum of a Prometheus counter's samples over all labels (``name`` or ``name_total``)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        metric = line.split("{", 1)[0].split(" ", 1)[0]
        if metric in (name, f"{name}_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_buckets(metrics_text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count, summed over labels) of a Prometheus histogram."""
    out: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith(f"{name}_bucket{{"):
            continue
        le = line.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """Quantile of the observations made between two scrapes, interpolated inside its bucket."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = bound, count
    return None


def tcp_rx_queue(local_port: int, remote_port: int) -> int | None:
    """Bytes received by the kernel but not yet read by the process, for one loopback connection.

    From /proc/net/tcp (tx_queue:rx_queue column); None when the connection is not there.
    """
    want = (f"{local_port:04X}", f"{remote_port:04X}")
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[1].rsplit(":", 1)[1] == want[0] and cols[2].rsplit(":", 1)[1] == want[1]:
                return int(cols[4].split(":")[1], 16)
    return None


class RtspBacklog:
    """How far a producer's RTSP reading lags the camera: unread bytes in its camera socket.

    A producer that decodes slower than the camera sends leaves the stream queued in its
    kernel receive buffer (up to tcp_rmem's max, 32 MB here: seconds of video) before any
    capture timestamp is taken, so this is the part of latency the headers cannot show.
    Bytes / the clip's byte rate = seconds of video waiting.
    """

    def __init__(self, pid: int, camera_port: int, byte_rate: float) -> None:
        self.pid = pid
        self.camera_port = camera_port
        self.byte_rate = byte_rate
        self._local_port: int | None = None

    def _find_port(self) -> int | None:
        try:
            for conn in psutil.Process(self.pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == self.camera_port:
                    return int(conn.laddr.port)
        except psutil.Error:
            return None
        return None

    def seconds(self) -> float | None:
        """Seconds of video queued unread right now (None: no camera connection found)."""
        if self._local_port is None:
            self._local_port = self._find_port()
            if self._local_port is None:
                return None
        queued = tcp_rx_queue(self._local_port, self.camera_port)
        if queued is None:
            self._local_port = None  # reconnected on another port: look again next time
            return None
        return queued / self.byte_rate


STOPPED_LINE = re.compile(r"stopped: (\d+) frames published, (\d+) dropped")


class Stack:
    """One camera's system under test: producer.py -> topic -> consumer.py, started together."""

    def __init__(self, services: Services, res: Resolution, camera: RtspCamera, bootstrap: str | None = None,
                 producer_args: list[str] | None = None, label: str = "", **settings: str) -> None:
        """``producer_args`` replace the one-camera ``--source``/``--camera-id``; ``label`` names the
        log files (default: the resolution)."""
        self.res = res
        self.topic = f"bench-{res.name}-{uuid.uuid4().hex[:8]}"
        bootstrap = bootstrap or services.bootstrap
        env = {**project_env(bootstrap, self.topic), **settings}
        argv = producer_args if producer_args is not None else ["--source", camera.url, "--camera-id", "cam1"]
        label = label or res.name
        self.producer = Service(f"producer-{label}", [sys.executable, "producer.py", *argv], env, services.log_dir)
        port = free_port()
        self.consumer = Service(f"consumer-{label}", [sys.executable, "consumer.py", "--port", str(port)],
                                env, services.log_dir, port=port)
        self.counter: TopicCounter | None = None
        self._bootstrap = bootstrap
        self.lifetime: dict[str, int] = {}
        self.started_at = 0.0

    def settle(self, seconds: float) -> None:
        """Wait until the stack has run ``seconds`` since frames started flowing."""
        time.sleep(max(0.0, self.started_at + seconds - time.monotonic()))

    @property
    def feed_url(self) -> str:
        return f"{self.consumer.url}/video_feed"

    def start(self) -> None:
        self.producer.start()
        self.consumer.start()
        self.consumer.wait_http()
        deadline = time.monotonic() + 40
        while True:  # frames flow once the consumer's hub lists the camera with a rate
            if not self.producer.alive():
                raise self.producer.fail("exited")
            try:
                cams = http_json(f"{self.consumer.url}/api/cameras")
                if isinstance(cams, dict) and any(c.get("fps", 0) > 0 for c in cams.get("cameras", [])):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self.consumer.fail("never listed a live camera")
            time.sleep(0.3)
        self.counter = TopicCounter(self._bootstrap, self.topic)
        self.started_at = time.monotonic()
        log.info("stack %s up: topic %s, %s", self.res.name, self.topic, self.feed_url)

    def consumer_metrics(self) -> str:
        return http_text(f"{self.consumer.url}/metrics")

    def stop(self) -> None:
        """Stop both; the producer's last log line gives its lifetime published/dropped totals."""
        if self.counter is not None:
            self.counter.close()
        self.producer.stop()
        self.consumer.stop()
        match = STOPPED_LINE.search(self.producer.log_text())
        if match:
            self.lifetime = {"published": int(match[1]), "dropped": int(match[2])}


class Services:
    """The broker (ours, or one given with --bootstrap), cameras and stacks, one resolution at a time.

    Only one resolution's stack runs at once: a 720p producer left running would eat CPU while
    the 2160p one is measured.
    """

    def __init__(self, bootstrap: str | None, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._given_bootstrap = bootstrap
        self.broker: KafkaBroker | None = None
        self.cameras: dict[str, RtspCamera] = {}
        self.stacks: dict[str, Stack] = {}
        self.lifetimes: dict[str, dict[str, int]] = {}

    @property
    def bootstrap(self) -> str:
        if self._given_bootstrap:
            return self._given_bootstrap
        assert self.broker is not None
        return self.broker.bootstrap

    def __enter__(self) -> Self:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self._given_bootstrap:
            self.broker = KafkaBroker()
            self.broker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clip(self, res: Resolution) -> Path:
        return make_clip(res.width, res.height, res.fps, CLIP_SECONDS)

    def backlog(self, pid: int, res: Resolution) -> RtspBacklog:
        """An ``RtspBacklog`` for a producer reading this resolution's camera."""
        byte_rate = self.clip(res).stat().st_size / CLIP_SECONDS
        return RtspBacklog(pid, self.camera(res).port, byte_rate)

    def camera(self, res: Resolution) -> RtspCamera:
        cam = self.cameras.get(res.name)
        if cam is None:
            for other in list(self.cameras):
                if other != res.name:
                    self.release(other)
            cam = RtspCamera(width=res.width, height=res.height, fps=res.fps, clip=self.clip(res))
            cam.start()
            self.cameras[res.name] = cam
        return cam

    def stack(self, res: Resolution) -> Stack:
        stack = self.stacks.get(res.name)
        if stack is None:
            stack = Stack(self, res, self.camera(res))
            self.stacks[res.name] = stack
            try:
                stack.start()
            except BaseException:
                self.release(res.name)
                raise
        return stack

    def release_stack(self, name: str) -> None:
        """Stop our producer/consumer of one resolution, keeping its camera (the tutorial's turn)."""
        stack = self.stacks.pop(name, None)
        if stack is not None:
            stack.stop()
            if stack.lifetime:
                self.lifetimes[name] = stack.lifetime

    def release(self, name: str) -> None:
        """Stop the stack and camera of one resolution."""
        self.release_stack(name)
        cam = self.cameras.pop(name, None)
        if cam is not None:
            cam.close()

    def close(self) -> None:
        for name in list(self.stacks) + list(self.cameras):
            self.release(name)
        if self.broker is not None:
            self.broker.close()
            self.broker = None
