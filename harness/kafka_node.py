"""One Kafka KRaft node (combined broker+controller JVM): the lifecycle ``KafkaBroker`` (one node)
and ``KafkaCluster`` (n nodes) share.

Why one place: both run the same Maven jars (``harness.kafka_jars``) the same way: a
server.properties and a log4j2 config in the node's data dir, ``log.dirs`` formatted once with
``kafka-storage`` (StorageTool) so a restart keeps its data, the JVM in its own session, readiness
polled while watching the process, and stop/kill by PID with the log tail in every failure.
They differ only in their listeners, quorum and settings, which they pass in.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from harness import procs
from harness.kafka_jars import write_log4j2_config

JVM_OPTS = ["-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]

# Why each: video frames are up to ~16 MB; a single node needs replication factors of 1; no
# rebalance delay so a test's consumer gets its partition at once; bounded disk for long runs;
# a short broker session so a restart after SIGKILL is not held ~10 s waiting for the old
# registration to expire (measured: 11.7 s -> 4.8 s). A cluster overrides the replication ones.
VIDEO_CONFIG = {
    "message.max.bytes": "16777216",
    "replica.fetch.max.bytes": "16777216",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "1",
    "auto.create.topics.enable": "true",
    "log.retention.bytes": "1073741824",
    "log.segment.bytes": "134217728",
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
}


def _cluster_id() -> str:
    """A random Kafka Uuid in its base64 form (what ``kafka-storage random-uuid`` prints)."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _prop_escape(value: str) -> str:
    """Escape a value for a java .properties file (backslash is its escape character)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


class KafkaNode:
    """One combined broker+controller JVM on 127.0.0.1: its id, ports, data dir and process.

    The data dir (config, formatted ``logs``, log files) outlives the process, so a node that was
    killed or stopped starts again on the same data.
    """

    def __init__(self, node_id: int, port: int, controller_port: int, data_dir: Path) -> None:
        self.node_id = node_id
        self.port = port
        self.controller_port = controller_port
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_levels: dict[str, str] = {}  # logger -> level above the log's WARN (see write_log4j2_config)

    @property
    def title(self) -> str:
        """How failure messages name this node."""
        return f"Kafka node {self.node_id} ({self.bootstrap})"

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the client listener."""
        return f"127.0.0.1:{self.port}"

    @property
    def props(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_path(self) -> Path:
        """The node's log4j log (WARN and up, plus start/stop lines)."""
        return self.data_dir / "server.log"

    @property
    def stdout_path(self) -> Path:
        """The JVM's stdout/stderr (crashes before log4j is up end here)."""
        return self.data_dir / "broker.out"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.is_running() and self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kraft_config(self, voters: str, listeners: dict[str, tuple[str, int]]) -> dict[str, str]:
        """The KRaft settings of a combined node: ``listeners`` (name -> (security protocol, port))
        advertised on 127.0.0.1, the first one between brokers, plus a PLAINTEXT CONTROLLER."""
        advertised = ",".join(f"{name}://127.0.0.1:{port}" for name, (_, port) in listeners.items())
        protocols = ",".join(f"{name}:{protocol}" for name, (protocol, _) in listeners.items())
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"{advertised},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": advertised,
            "listener.security.protocol.map": f"{protocols},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": next(iter(listeners)),
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir / "logs"),
        }

    def java(self, libs: Path, main: str, *args: str) -> list[str]:
        return ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "-cp", f"{libs}/*", main, *args]

    def write_config(self, config: dict[str, str]) -> None:
        """Write server.properties and the log4j2 config (again on every start: ports may change)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.props.write_text("".join(f"{k}={_prop_escape(v)}\n" for k, v in config.items()))
        write_log4j2_config(self.data_dir / "log4j2.properties", self.log_path, self.log_levels)

    def begin_format(self, libs: Path, cluster_id: str, *extra: str) -> subprocess.Popen[str] | None:
        """Start formatting ``log.dirs`` with StorageTool, None if it was formatted before: a
        restart must keep its data and cluster id. Several nodes may format at once."""
        if (self.data_dir / "logs" / "meta.properties").exists():
            return None
        cmd = self.java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.props), *extra)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish_format(self, proc: subprocess.Popen[str] | None, timeout: float | None = None) -> None:
        """Wait for ``begin_format``'s StorageTool; raise RuntimeError with its output if it failed."""
        if proc is None:
            return
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.title}: kafka StorageTool format failed:\n{out}")

    def launch(self, libs: Path) -> None:
        """Start the JVM on the written config; tracked so an exiting test run kills it."""
        with open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.java(libs, "kafka.Kafka", str(self.props)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal goes to us, we stop it cleanly
            )
        procs.track(self.proc)

    def failure(self, what: str) -> str:
        """A failure message with the tails of both logs, which say why the JVM failed."""
        return (f"{self.title} {what}.\n--- {self.log_path} ---\n{procs.log_tail(self.log_path)}\n"
                f"--- {self.stdout_path} ---\n{procs.log_tail(self.stdout_path)}")

    def stop(self, timeout: float = 20.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after ``timeout`` s. The data dir is kept."""
        procs.terminate(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL at once, like a crash. The data dir is kept; a start recovers it."""
        procs.kill(self.proc)


def wait_for(nodes: Iterable[KafkaNode], ready: Callable[[], bool], what: str, timeout: float,
             since: float | None = None, interval: float = 0.2) -> None:
    """Poll ``ready()`` until it holds, ``timeout`` s after ``since`` (default now).

    Raises RuntimeError with a node's log tail when one of ``nodes`` exits, or, at the deadline,
    with the first one's. An exception from ``ready()`` means "not yet": a client asking a node
    that is still starting fails in many ways.
    """
    watched = list(nodes)
    deadline = (time.monotonic() if since is None else since) + timeout
    while True:
        for node in watched:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(node.failure(f"exited with {node.proc.returncode}"))
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - any failure to ask means "not yet"
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(watched[0].failure(f"did not {what} within {timeout}s"))
        time.sleep(interval)
