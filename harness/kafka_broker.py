"""A real Apache Kafka broker (KRaft, one combined broker+controller node) for demo and tests.

Why this shape: Docker is not available and only Maven Central is reachable, so the broker runs
from Maven jars (see ``harness.kafka_jars``) on the machine's Java 17, in KRaft combined mode
(no ZooKeeper); its lifecycle is the one ``harness.kafka_node`` gives every node. The controller
quorum is static (``controller.quorum.voters``) rather than ``--standalone``: a static quorum
takes its voters from the config, so restarting on the same data dir works even when a new
``KafkaBroker`` picked a different controller port.

Version: ``harness.kafka_jars.DEFAULT_VERSION`` (override with env ``KAFKA_VERSION``).

Use::

    broker = KafkaBroker()                 # or KafkaBroker(sasl_users={"alice": "pw"})
    broker.start()                         # returns once a metadata request succeeds
    KafkaProducer(**broker.client_config())
    tls = KafkaBroker(ssl=True, scram_users={"bob": "pw"})  # + SSL and SASL_SSL (SCRAM) listeners
    KafkaProducer(**tls.client_config(listener="sasl_ssl"))  # verifies the broker with tls.ca_file
    broker.kill(); broker.start()          # crash and restart on the same data dir
    broker.close()                         # stop, and delete the temp data dir it made

CLI: ``python -m harness.kafka_broker --fetch`` caches the jars;
``python -m harness.kafka_broker --port 9092 --data-dir DIR`` runs one in the foreground until
SIGINT/SIGTERM and prints ``kafka broker ready at 127.0.0.1:9092`` once it answers.
"""

from __future__ import annotations

import argparse
import logging
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
from harness.kafka_jars import fetch_kafka, kafka_version
from harness.kafka_node import VIDEO_CONFIG, KafkaNode, _cluster_id, wait_for
from harness.ports import free_ports, port_open

log = logging.getLogger(__name__)

BROKER_USER = "harness-broker"  # SASL identity the broker uses to talk to itself
PLAIN_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
SCRAM_MECHANISM = "SCRAM-SHA-256"


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_keystore(directory: Path) -> tuple[Path, Path, str]:
    """A self-signed broker certificate for 127.0.0.1/localhost: (PKCS12 keystore, PEM CA file,
    keystore password). Made once per directory with the JDK's keytool; reused on restart."""
    keystore, ca_file, pw_file = directory / "broker.p12", directory / "ca.pem", directory / "keystore.pw"
    if keystore.exists() and ca_file.exists() and pw_file.exists():
        return keystore, ca_file, pw_file.read_text()
    directory.mkdir(parents=True, exist_ok=True)
    keystore.unlink(missing_ok=True)
    password = secrets.token_urlsafe(16)
    store = ["-alias", "broker", "-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", password]
    for cmd in (
        ["keytool", "-genkeypair", *store, "-keypass", password, "-keyalg", "RSA", "-keysize", "2048",
         "-validity", "30", "-dname", "CN=localhost", "-ext", "SAN=IP:127.0.0.1,DNS:localhost", "-noprompt"],
        ["keytool", "-exportcert", "-rfc", *store, "-file", str(ca_file)],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"keytool failed:\n{result.stdout}{result.stderr}")
    pw_file.write_text(password)
    return keystore, ca_file, password


def _check_names(users: dict[str, str] | None, what: str) -> dict[str, str] | None:
    for user, password in (users or {}).items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", user):
            raise ValueError(f"{what} user name {user!r}: use letters, digits, _ . -")
        if what == "SCRAM" and not re.fullmatch(r"[A-Za-z0-9_.!@#%^*+-]+", password):
            # StorageTool's --add-scram syntax has no quoting for , ] = or spaces
            raise ValueError(f"SCRAM password of {user!r}: use letters, digits and _.!@#%^*+-")
    return dict(users) if users else None


class KafkaBroker(KafkaNode):
    """One KRaft broker+controller JVM on 127.0.0.1, restartable on the same data dir.

    A ``KafkaNode`` (node 1, its own single voter) with the client listeners and security added.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | Path | None = None,
        sasl_users: dict[str, str] | None = None,
        extra_config: dict[str, str] | None = None,
        ssl: bool = False,
        scram_users: dict[str, str] | None = None,
        version: str | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self._owns_dir = data_dir is None
        drawn = iter(free_ports(4))  # client (unless given), controller, SSL, SASL_SSL
        super().__init__(1, port or next(drawn), next(drawn),
                         Path(data_dir or tempfile.mkdtemp(prefix="kafka-broker-")).resolve())
        self.sasl_users = _check_names(sasl_users, "SASL")
        # Users of the SASL_SSL (SCRAM-SHA-256) listener; created when the storage is formatted.
        self.scram_users = _check_names(scram_users, "SCRAM")
        self.ssl_port = next(drawn) if ssl else None
        self.sasl_ssl_port = next(drawn) if self.scram_users else None
        self._broker_password = secrets.token_urlsafe(16)
        self.extra_config = dict(extra_config or {})
        self.version = kafka_version(version)
        self.start_timeout = start_timeout
        self.start_seconds: float | None = None  # how long the last start() took

    @property
    def title(self) -> str:
        return f"Kafka broker {self.bootstrap}"

    @property
    def ssl_bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the SSL listener (``ssl=True``)."""
        assert self.ssl_port, "KafkaBroker(ssl=True) has an SSL listener"
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the SASL_SSL listener (``scram_users``)."""
        assert self.sasl_ssl_port, "KafkaBroker(scram_users=...) has a SASL_SSL listener"
        return f"127.0.0.1:{self.sasl_ssl_port}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def ca_file(self) -> Path:
        """PEM file that verifies the broker's certificate (clients' ``ssl_cafile``)."""
        return self.tls_dir / "ca.pem"

    def client_config(self, user: str | None = None, listener: str = "client") -> dict[str, Any]:
        """kafka-python keyword arguments to reach this broker (SASL ones when it has users).

        ``listener``: "client" (PLAINTEXT, or SASL_PLAINTEXT with ``sasl_users``), "ssl" or
        "sasl_ssl". ``user`` picks whose credentials; default the first of that listener's users.
        """
        if listener == "ssl":
            return {"bootstrap_servers": self.ssl_bootstrap, "security_protocol": "SSL",
                    "ssl_cafile": str(self.ca_file)}
        if listener == "sasl_ssl":
            assert self.scram_users
            name = user or next(iter(self.scram_users))
            return {"bootstrap_servers": self.sasl_ssl_bootstrap, "security_protocol": "SASL_SSL",
                    "ssl_cafile": str(self.ca_file), "sasl_mechanism": SCRAM_MECHANISM,
                    "sasl_plain_username": name, "sasl_plain_password": self.scram_users[name]}
        assert listener == "client", listener
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

    def _listeners(self) -> dict[str, tuple[str, int]]:
        """Client-facing listeners: name -> (security protocol, port)."""
        found = {"CLIENT": ("SASL_PLAINTEXT" if self.sasl_users else "PLAINTEXT", self.port)}
        if self.ssl_port:
            found["SSL"] = ("SSL", self.ssl_port)
        if self.sasl_ssl_port:
            found["SASL_SSL"] = ("SASL_SSL", self.sasl_ssl_port)
        return found

    def _config(self) -> dict[str, str]:
        cfg = {**self.kraft_config(f"1@127.0.0.1:{self.controller_port}", self._listeners()), **VIDEO_CONFIG}
        if self.sasl_users:
            users = {BROKER_USER: self._broker_password, **self.sasl_users}
            entries = " ".join(f"user_{u}={_jaas_quote(p)}" for u, p in users.items())
            jaas = (
                f"{PLAIN_LOGIN_MODULE} required username={_jaas_quote(BROKER_USER)} "
                f"password={_jaas_quote(self._broker_password)} {entries};"
            )
            cfg["sasl.enabled.mechanisms"] = "PLAIN"
            cfg["listener.name.client.sasl.enabled.mechanisms"] = "PLAIN"
            cfg["sasl.mechanism.inter.broker.protocol"] = "PLAIN"
            cfg["listener.name.client.plain.sasl.jaas.config"] = jaas
        if self.ssl_port or self.sasl_ssl_port:
            keystore, _, password = make_keystore(self.tls_dir)
            cfg.update({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(keystore),
                        "ssl.keystore.password": password, "ssl.key.password": password})
        if self.sasl_ssl_port:
            cfg["listener.name.sasl_ssl.sasl.enabled.mechanisms"] = SCRAM_MECHANISM
            cfg["listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config"] = f"{SCRAM_LOGIN_MODULE} required;"
        cfg.update(self.extra_config)
        return cfg

    def start(self) -> None:
        """Start the JVM and return once a metadata request succeeds (``start_timeout`` s).

        Raises RuntimeError with the log tail if the broker dies or never answers.
        """
        if self.is_running():
            return
        t0 = time.monotonic()
        libs = fetch_kafka(self.version)
        self.write_config(self._config())
        # Users of the SASL_SSL listener exist from the start: StorageTool writes their credentials.
        scram = [arg for user, password in (self.scram_users or {}).items()
                 for arg in ("--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]")]
        self.finish_format(self.begin_format(libs, _cluster_id(), *scram))
        self.launch(libs)
        try:
            wait_for([self], self._ready, "answer", self.start_timeout, since=t0)
        except BaseException:
            self.kill()
            raise
        self.start_seconds = time.monotonic() - t0
        log.info("Kafka %s up at %s in %.1fs (pid %s)", self.version, self.bootstrap, self.start_seconds, self.pid)

    def _ready(self) -> bool:
        """Every listener open and answering a metadata request (SASL/TLS as configured)."""
        return all(port_open("127.0.0.1", port) for _, port in self._listeners().values()) and all(
            self._answers(name.lower()) for name in self._listeners()
        )

    def _answers(self, listener: str = "client") -> bool:
        """True when a kafka-python admin client gets metadata on ``listener`` (SASL/TLS as configured)."""
        # Imported late: only callers that actually start brokers pay for kafka-python.
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(**self.client_config(listener=listener), request_timeout_ms=5000,
                                     bootstrap_timeout_ms=5000)
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        try:
            admin.list_topics()
            return True
        except Exception:  # noqa: BLE001
            return False
        finally:
            admin.close()

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
    version = kafka_version(args.version)
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
