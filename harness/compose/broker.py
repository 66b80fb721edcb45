"""Run the broker docker-compose.yml describes the way the apache/kafka image would, then reach it
the way its clients do: one record produced and consumed through each listener.

Why: Docker cannot run here, and a listener mistake only shows once a client follows the address
the broker advertises. So, from the jars of the image's own Kafka version:
1. the image's shell steps (apache/kafka docker/resources/common-scripts/configureDefaults and
   configure): a default CLUSTER_ID; KAFKA_LISTENERS derived from the advertised ones if unset;
2. the image's own translation, the class its launch script runs (kafka.docker.KafkaDockerWrapper
   setup): each KAFKA_X_Y becomes x.y in server.properties (`___` -> `-`, `__` -> `_`, its
   KAFKA_*_OPTS excluded) and the storage is formatted with CLUSTER_ID;
3. kafka.Kafka on that file, as kafka-server-start.sh does.
All of it runs in private network, mount and UTS namespaces (`unshare`; root inside a new user
namespace, so no real root is needed): the compose ports are free, the hostname is the service's
`hostname:`, and /etc/hosts says what each party resolves, each client in its own mount namespace:
- the broker's container: `kafka` and `localhost` are itself;
- "host" (config.env's KAFKA_BOOTSTRAP_SERVERS): `localhost` is the broker, `kafka` is unknown;
- "network" (the apps' KAFKA_BOOTSTRAP_SERVERS in compose): `kafka` is the broker, `localhost`
  is another machine (a container's localhost is itself).

Usage: python -m harness.compose.broker --libs KAFKA_LIBS_DIR   (from the repository root)
Prints one line per view; on failure one line naming it and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from harness import procs
from harness.compose.file import ROOT, environment, load
from harness.kafka_jars import write_log4j2_config
from harness.kafka_node import JVM_OPTS
from harness.ports import port_open

log = logging.getLogger("compose_broker")

# configureDefaults in the apache/kafka image.
IMAGE_DEFAULTS = {"CLUSTER_ID": "5L6g3nShT-eMCtK--X86sw"}
ELSEWHERE = "192.0.2.1"  # TEST-NET-1: no route inside the namespace, connecting fails at once
VIEW_TIMEOUT_S = 25.0
BROKER_START_TIMEOUT_S = 40.0
FAILED = "compose broker check failed: "


class CheckFailed(Exception):
    """A step failed; the message is the one line to print."""


def image_environment(compose_env: dict[str, str], log_dir: Path) -> dict[str, str]:
    """The environment the image's launch sees: compose's, after configureDefaults and configure.

    KAFKA_LOG_DIRS is rewritten to a temporary directory: the only change to the compose values.
    """
    env = dict(compose_env)
    for key, default in IMAGE_DEFAULTS.items():
        if not env.get(key):
            env[key] = default
    roles = env.get("KAFKA_PROCESS_ROLES", "")
    if roles:
        if not env.get("CLUSTER_ID"):
            raise CheckFailed("CLUSTER_ID environment variable not set (the image's configure exits)")
        if roles == "controller":
            if env.get("KAFKA_ADVERTISED_LISTENERS"):
                raise CheckFailed("KAFKA_ADVERTISED_LISTENERS is not supported on a KRaft controller")
            env.pop("KAFKA_ADVERTISED_LISTENERS", None)
    if not env.get("KAFKA_LISTENERS") and roles != "controller" and env.get("KAFKA_ADVERTISED_LISTENERS"):
        env["KAFKA_LISTENERS"] = re.sub(r"://[^:]*:", "://0.0.0.0:", env["KAFKA_ADVERTISED_LISTENERS"])
    env["KAFKA_LOG_DIRS"] = str(log_dir)
    return env


def _java(libs: Path, log4j: Path, main: str, *args: str) -> list[str]:
    # C1 only: these JVMs live seconds, and full JIT would spend its CPU on code run a few times.
    return ["java", *JVM_OPTS, "-XX:TieredStopAtLevel=1", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*",
            main, *args]


def _java_env(image_env: dict[str, str]) -> dict[str, str]:
    """Only the image's variables and what finds java: a stray KAFKA_* here would become a setting."""
    base = {key: os.environ[key] for key in ("PATH", "JAVA_HOME", "LANG") if key in os.environ}
    return {**base, **image_env}


def setup_configs(libs: Path, work: Path, image_env: dict[str, str]) -> Path:
    """Run the image's KafkaDockerWrapper setup; return the server.properties it wrote."""
    dirs = {name: work / name for name in ("defaults", "mounted", "final")}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    log4j = work / "log4j2.properties"
    write_log4j2_config(log4j, work / "setup.log")
    cmd = _java(libs, log4j, "kafka.docker.KafkaDockerWrapper", "setup", "--default-configs-dir",
                str(dirs["defaults"]), "--mounted-configs-dir", str(dirs["mounted"]),
                "--final-configs-dir", str(dirs["final"]))
    result = subprocess.run(cmd, env=_java_env(image_env), capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["(no output)"]
        raise CheckFailed(f"the image's config setup failed: {tail[0]}")
    return dirs["final"] / "server.properties"


def listener_ports(properties: Path) -> list[int]:
    """Ports of every `listeners` entry of a server.properties."""
    values = dict(line.split("=", 1) for line in properties.read_text().splitlines() if "=" in line)
    return [int(port) for port in re.findall(r"://[^:,]*:(\d+)", values.get("listeners", ""))]


def start_broker(libs: Path, work: Path, properties: Path, image_env: dict[str, str],
                 timeout: float = BROKER_START_TIMEOUT_S) -> subprocess.Popen[bytes]:
    """kafka.Kafka on ``properties``; returns once every listener port accepts connections."""
    log4j = work / "log4j2.properties"
    write_log4j2_config(log4j, work / "server.log")
    with open(work / "broker.out", "ab") as out:
        proc = subprocess.Popen(_java(libs, log4j, "kafka.Kafka", str(properties)), env=_java_env(image_env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    procs.track(proc)
    ports = listener_ports(properties)
    deadline = time.monotonic() + timeout
    while not all(port_open("127.0.0.1", port) for port in ports):
        if proc.poll() is not None:
            raise CheckFailed(f"broker exited with {proc.returncode}: {procs.log_tail(work / 'server.log', 300)!r}")
        if time.monotonic() > deadline:
            raise CheckFailed(f"broker listeners {ports} not open within {timeout:.0f}s")
        time.sleep(0.2)
    return proc


def round_trip(bootstrap: str, topic: str, deadline: float) -> str:
    """Create ``topic``, produce one record, read it back; return the address the broker advertised.

    Every step after the bootstrap connection goes to the advertised address, so a wrong one
    fails here. Retried until ``deadline``: a broker that just opened its ports may not yet lead.
    """
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    common = {"bootstrap_servers": [bootstrap], "request_timeout_ms": 5000, "bootstrap_timeout_ms": 5000}
    last_error = "no attempt"
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(**common)
            try:
                brokers = admin.describe_cluster()["brokers"]
                try:
                    admin.create_topics([NewTopic(topic, 1, 1)])
                except TopicAlreadyExistsError:
                    pass
            finally:
                admin.close()
            payload = uuid.uuid4().bytes
            producer = KafkaProducer(**common, acks="all", max_block_ms=5000)
            try:
                producer.send(topic, payload).get(timeout=5)
            finally:
                producer.close(timeout=5)
            consumer = KafkaConsumer(**common, enable_auto_commit=False)
            try:
                partition = TopicPartition(topic, 0)
                consumer.assign([partition])
                consumer.seek_to_beginning(partition)
                read_until = min(deadline, time.monotonic() + 10)
                while time.monotonic() < read_until:
                    records = consumer.poll(timeout_ms=500).get(partition, [])
                    if any(record.value == payload for record in records):
                        return ",".join(f"{b['host']}:{b['port']}" for b in brokers)
            finally:
                consumer.close()
            last_error = "the record produced was not read back"
        except Exception as err:  # noqa: BLE001 - any client failure means "not reachable yet"
            last_error = f"{type(err).__name__}: {err}"
        time.sleep(0.5)
    raise CheckFailed(f"no round trip through {bootstrap} before the deadline; last error: {last_error}")


def run_view(name: str, bootstrap: str, hosts: str, work: Path) -> dict[str, str]:
    """One client view in its own mount namespace, where /etc/hosts holds ``hosts``."""
    hosts_file = work / f"hosts-{name}"
    hosts_file.write_text(hosts)
    cmd = ["unshare", "--mount", "--", sys.executable, "-m", "harness.compose.broker", "view", "--name", name,
           "--bootstrap", bootstrap, "--hosts", str(hosts_file), "--outer-mnt", ns_inode("mnt")]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=VIEW_TIMEOUT_S + 30, check=False)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        raise CheckFailed(f"view {name}: {lines[-1].removeprefix(FAILED)}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ns_inode(kind: str) -> str:
    """This process's namespace of ``kind``: steps refuse to change what belongs to the real host."""
    return str(os.stat(f"/proc/self/ns/{kind}").st_ino)


def run_command(*cmd: str) -> None:
    """Run a setup command (ip, mount, hostname); its failure is the check's one line."""
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd)}: {result.stderr.strip() or result.returncode}")


def bind_hosts(hosts_file: Path) -> None:
    """What this mount namespace resolves, as a container's /etc/hosts."""
    run_command("mount", "--bind", str(hosts_file), "/etc/hosts")


def views(compose: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, bootstrap, /etc/hosts) of each party that reaches the broker."""
    host_bootstrap = str(dotenv_values(ROOT / "config.env")["KAFKA_BOOTSTRAP_SERVERS"])
    services = compose["services"]
    app_bootstraps = {environment(services[app])["KAFKA_BOOTSTRAP_SERVERS"] for app in ("producer", "consumer")}
    if len(app_bootstraps) != 1:
        raise CheckFailed(f"producer and consumer use different brokers: {sorted(app_bootstraps)}")
    return [
        ("host", host_bootstrap, "127.0.0.1 localhost\n"),
        ("network", app_bootstraps.pop(), f"127.0.0.1 kafka\n{ELSEWHERE} localhost\n"),
    ]


def in_namespace(args: argparse.Namespace) -> None:
    """The broker's container: bring up lo, name it `kafka`, start the broker, run the views."""
    if ns_inode("net") == args.outer_net or ns_inode("mnt") == args.outer_mnt:
        raise CheckFailed("refusing to run outside a private network and mount namespace")
    compose = load()
    run_command("ip", "link", "set", "lo", "up")
    run_command("hostname", compose["services"]["kafka"]["hostname"])
    work = Path(tempfile.mkdtemp(prefix="compose-broker-"))
    proc = None
    try:
        hosts = work / "hosts-broker"
        hosts.write_text("127.0.0.1 localhost kafka\n")
        bind_hosts(hosts)
        image_env = image_environment(environment(compose["services"]["kafka"]), work / "data")
        properties = setup_configs(Path(args.libs), work, image_env)
        log.info("server.properties written and storage formatted by the image's setup")
        proc = start_broker(Path(args.libs), work, properties, image_env)
        log.info("broker listening")
        for name, bootstrap, hosts_text in views(compose):
            result = run_view(name, bootstrap, hosts_text, work)
            print(f"view {name}: bootstrap {bootstrap}, advertised {result['advertised']}, record round trip ok",
                  flush=True)
    finally:
        procs.terminate(proc)
        shutil.rmtree(work, ignore_errors=True)


def view(args: argparse.Namespace) -> None:
    """One client: its own /etc/hosts, then a round trip; prints a JSON line."""
    if ns_inode("mnt") == args.outer_mnt:
        raise CheckFailed("refusing to replace /etc/hosts outside a private mount namespace")
    bind_hosts(Path(args.hosts))
    topic = f"compose-check-{args.name}"
    advertised = round_trip(args.bootstrap, topic, time.monotonic() + VIEW_TIMEOUT_S)
    print(json.dumps({"view": args.name, "advertised": advertised}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step")
    parser.add_argument("--libs", help="jars of the compose file's Kafka version (harness.kafka_jars.fetch_kafka)")
    inner = sub.add_parser("broker")
    inner.add_argument("--libs", required=True)
    inner.add_argument("--outer-net", required=True)
    inner.add_argument("--outer-mnt", required=True)
    client = sub.add_parser("view")
    for flag in ("--name", "--bootstrap", "--hosts", "--outer-mnt"):
        client.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("COMPOSE_BROKER_LOG", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.step == "broker":
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the finally: stop the JVM
            in_namespace(args)
        elif args.step == "view":
            view(args)
        else:
            if not args.libs:
                parser.error("--libs is required")
            # exec: whoever stops this process stops unshare, whose --kill-child stops the broker step.
            cmd = ["unshare", "--map-root-user", "--net", "--mount", "--uts", "--fork", "--kill-child=SIGTERM",
                   "--", sys.executable, "-m", "harness.compose.broker", "broker", "--libs", args.libs,
                   "--outer-net", ns_inode("net"), "--outer-mnt", ns_inode("mnt")]
            os.chdir(ROOT)
            os.execvp(cmd[0], cmd)
    except CheckFailed as err:
        print(f"{FAILED}{err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
