"""A real Apache Kafka broker (KRaft, one combined broker+controller node) for demo and tests.

Why this shape: Docker is not available and only Maven Central is reachable, so the broker runs
from Maven jars (see ``harness.kafka_jars``) on the machine's Java 17, in KRaft combined mode
(no ZooKeeper). The controller quorum is static (``controller.quorum.voters``) rather than
``--standalone``: a static quorum takes its voters from the config, so restarting on the same
data dir works even when a new ``KafkaBroker`` picked a different controller port.

Version: ``DEFAULT_VERSION`` (override with env ``KAFKA_VERSION``). 4.4.0 was checked with
kafka-python 3.0.12: admin create/list topics, produce/consume with headers, SASL/PLAIN.

Use::

    broker = KafkaBroker()                 # or KafkaBroker(sasl_users={"alice": "pw"})
    broker.start()                         # returns once a metadata request succeeds
    KafkaProducer(**broker.client_config())
    broker.kill(); broker.start()          # crash and restart on the same data dir
    broker.close()                         # stop, and delete the temp data dir it made

CLI: ``python -m harness.kafka_broker --fetch`` caches the jars;
``python -m harness.kafka_broker --port 9092 --data-dir DIR`` runs one in the foreground until
SIGINT/SIGTERM and prints ``kafka broker ready at 127.0.0.1:9092`` once it answers.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from harness import procs
from harness.kafka_jars import fetch_kafka, write_log4j2_config
from harness.ports import free_port, port_open

log = logging.getLogger(__name__)

DEFAULT_VERSION = "4.4.0"
BROKER_USER = "harness-broker"  # SASL identity the broker uses to talk to itself
PLAIN_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
JVM_OPTS = ["-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]

# Why each: video frames are up to ~16 MB; a single node needs replication factors of 1; no
# rebalance delay so a test's consumer gets its partition at once; bounded disk for long runs;
# a short broker session so a restart after SIGKILL is not held ~10 s waiting for the old
# registration to expire (measured: 11.7 s -> 4.8 s).
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


def _prop_escape(value: str) -> str:
    """Escape a value for a java .properties file (backslash is its escape character)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cluster_id() -> str:
    """A random Kafka Uuid in its base64 form (what ``kafka-storage random-uuid`` prints)."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    """One KRaft broker+controller JVM on 127.0.0.1, restartable on the same data dir."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | Path | None = None,
        sasl_users: dict[str, str] | None = None,
        extra_config: dict[str, str] | None = None,
        version: str | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="kafka-broker-")).resolve()
        for user in sasl_users or {}:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", user):
                raise ValueError(f"SASL user name {user!r}: use letters, digits, _ . -")
        self.sasl_users = dict(sasl_users) if sasl_users else None
        self._broker_password = secrets.token_urlsafe(16)
        self.extra_config = dict(extra_config or {})
        self.version = version or os.environ.get("KAFKA_VERSION") or DEFAULT_VERSION
        self.start_timeout = start_timeout
        self.start_seconds: float | None = None  # how long the last start() took
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the client listener."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's log4j log (WARN and up, plus start/stop lines)."""
        return self.data_dir / "server.log"

    @property
    def stdout_path(self) -> Path:
        """The JVM's stdout/stderr (crashes before log4j is up end here)."""
        return self.data_dir / "broker.out"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() and self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client_config(self, user: str | None = None) -> dict[str, Any]:
        """kafka-python keyword arguments to reach this broker (SASL ones when it has users).

        ``user`` picks whose credentials; default the first of ``sasl_users``.
        """
        cfg: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        if self.sasl_users:
            name = user or next(iter(self.sasl_users))
            cfg.update(
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN",
                sasl_plain_username=name,
                sasl_plain_password=self.sasl_users[name],
            )
        return cfg

    def _config(self) -> dict[str, str]:
        protocol = "SASL_PLAINTEXT" if self.sasl_users else "PLAINTEXT"
        cfg = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"CLIENT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": f"CLIENT:{protocol},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "CLIENT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir / "logs"),
            **VIDEO_CONFIG,
        }
        if self.sasl_users:
            users = {BROKER_USER: self._broker_password, **self.sasl_users}
            entries = " ".join(f"user_{u}={_jaas_quote(p)}" for u, p in users.items())
            jaas = (
                f"{PLAIN_LOGIN_MODULE} required username={_jaas_quote(BROKER_USER)} "
                f"password={_jaas_quote(self._broker_password)} {entries};"
            )
            cfg["sasl.enabled.mechanisms"] = "PLAIN"
            cfg["sasl.mechanism.inter.broker.protocol"] = "PLAIN"
            cfg["listener.name.client.plain.sasl.jaas.config"] = jaas
        cfg.update(self.extra_config)
        return cfg

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        return [
            "java",
            *JVM_OPTS,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _format_storage(self, libs: Path, props: Path) -> None:
        """Format ``log.dirs`` once; a restart on a formatted dir must keep its data."""
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cmd = self._java(libs, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props))
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kafka StorageTool format failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        """Start the JVM and return once a metadata request succeeds (``start_timeout`` s).

        Raises RuntimeError with the log tail if the broker dies or never answers.
        """
        if self.is_running():
            return
        t0 = time.monotonic()
        libs = fetch_kafka(self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text("".join(f"{k}={_prop_escape(v)}\n" for k, v in self._config().items()))
        write_log4j2_config(self.data_dir / "log4j2.properties", self.log_path)
        self._format_storage(libs, props)
        with open(self.stdout_path, "ab") as out:
            self._proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(props)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal goes to us, we stop it cleanly
            )
        procs.track(self._proc)
        try:
            self._wait_ready(t0 + self.start_timeout)
        except BaseException:
            self.kill()
            raise
        self.start_seconds = time.monotonic() - t0
        log.info(
            "Kafka %s up at %s in %.1fs (pid %d)", self.version, self.bootstrap, self.start_seconds, self._proc.pid
        )

    def _wait_ready(self, deadline: float) -> None:
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(self._failure(f"exited with {self._proc.returncode}"))
            if port_open("127.0.0.1", self.port) and self._answers():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(self._failure(f"did not answer within {self.start_timeout}s"))
            time.sleep(0.2)

    def _answers(self) -> bool:
        """True when a kafka-python admin client gets metadata (with SASL when configured)."""
        # Imported late: only callers that actually start brokers pay for kafka-python.
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(**self.client_config(), request_timeout_ms=5000, bootstrap_timeout_ms=5000)
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        try:
            admin.list_topics()
            return True
        except Exception:  # noqa: BLE001
            return False
        finally:
            admin.close()

    def _failure(self, what: str) -> str:
        return (
            f"Kafka broker {self.bootstrap} {what}.\n--- {self.log_path} ---\n"
            f"{procs.log_tail(self.log_path)}\n--- {self.stdout_path} ---\n"
            f"{procs.log_tail(self.stdout_path)}"
        )

    def stop(self, timeout: float = 20.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after ``timeout`` s. Data dir is kept."""
        procs.terminate(self._proc, timeout)

    def kill(self) -> None:
        """SIGKILL at once, like a crash. Data dir is kept; ``start()`` recovers it."""
        procs.kill(self._proc)

    def close(self) -> None:
        """Stop and delete the data dir if this object created it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """CLI: ``--fetch`` to cache jars, else run a broker in the foreground (``make demo``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetch", action="store_true", help="only cache the jars")
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--data-dir", help="kept across runs; default a temp dir, deleted")
    parser.add_argument("--version", default=None, help="Kafka version (env KAFKA_VERSION)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    version = args.version or os.environ.get("KAFKA_VERSION") or DEFAULT_VERSION
    if args.fetch:
        print(f"kafka {version} jars in {fetch_kafka(version)}", flush=True)
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    broker = KafkaBroker(port=args.port, data_dir=args.data_dir, version=version)
    try:
        broker.start()
        print(f"kafka broker ready at {broker.bootstrap}", flush=True)
        while not stop.wait(1.0):
            if not broker.is_running():
                log.error("broker died:\n%s", procs.log_tail(broker.log_path))
                return 1
        return 0
    finally:
        broker.close()


if __name__ == "__main__":
    sys.exit(main())
