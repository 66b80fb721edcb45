"""Run the `cluster` profile of docker-compose.yml the way Docker would, then reach it the way its
clients do: brokers, quorum, settings, and replicated acks=all records through each listener.

Why: three brokers that each listen on the same container ports only form one cluster if every
name they advertise and every quorum voter resolves and connects where it should, which only
shows when they run. So, from the jars of the image's Kafka version and without Docker:
- the "host" is a private user + network namespace with a bridge for the project's network
  (harness/compose/network.py); each node is a container on it: its own network, mount and UTS
  namespaces, its service name as hostname, the other services resolvable by name;
- each node runs the image's launch exactly as harness/compose/broker.py does for the single
  broker: configureDefaults/configure, the image's own KafkaDockerWrapper setup (server.properties
  and storage), kafka.Kafka. The only change to a service's environment is KAFKA_LOG_DIRS;
- its `ports` are published on the host as Docker's userland proxy publishes them.
Then two clients: "host" (no service name resolves; the host bootstrap a README command gives)
and "network" (an app container: the apps' KAFKA_BOOTSTRAP_SERVERS with the given variables).

Usage: python -m harness.compose.cluster --libs KAFKA_LIBS_DIR --host-bootstrap LIST
                                         [--set VAR=VALUE ...]   (compose variables, from the root)
Prints one line per view; on failure one line naming it and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from harness import procs
from harness.compose.broker import (
    CheckFailed,
    bind_hosts,
    image_environment,
    ns_inode,
    run_command,
    setup_configs,
    start_broker,
)
from harness.compose.file import ROOT, enabled_services, environment, load, profile_services, published
from harness.compose.network import (
    SUBNET,
    Container,
    PortProxy,
    await_network_ready,
    create_bridge,
    hosts_file,
    stop_all,
)

log = logging.getLogger("compose_cluster")

PROFILE = "cluster"
APPS = ("producer", "consumer")
NODE_READY_TIMEOUT_S = 120.0  # three setups and three brokers at once on a small machine
VIEW_TIMEOUT_S = 45.0
# A node's controlled shutdown waits for a quorum the other nodes, stopping too, no longer make up;
# the data is thrown away, so it is not waited for long.
STOP_TIMEOUT_S = 3.0
FAILED = "compose cluster check failed: "
# KafkaDockerWrapper passes these to the JVM, never into server.properties.
NOT_SETTINGS = {"KAFKA_VERSION", "KAFKA_HEAP_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS",
                "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS", "KAFKA_LOG4J_LOGGERS",
                "KAFKA_LOG4J_ROOT_LOGLEVEL", "KAFKA_TOOLS_LOG4J_LOGLEVEL", "KAFKA_LOG_DIRS"}


def broker_settings(compose_env: dict[str, str]) -> dict[str, str]:
    """The broker settings a service's KAFKA_* variables become in the image (KAFKA_LOG_DIRS left
    out: the run rewrites it): KAFKA_X_Y -> x.y, `___` -> `-`, `__` -> `_`."""
    settings = {}
    for key, value in compose_env.items():
        if key.startswith("KAFKA_") and key not in NOT_SETTINGS:
            name = key.removeprefix("KAFKA_").lower().replace("___", "-").replace("__", "\0")
            settings[name.replace("_", ".").replace("\0", "_")] = value
    return settings


def compose_model(pairs: list[str]) -> dict[str, Any]:
    """docker-compose.yml with these variables set, as `--profile cluster` gives it to Compose."""
    variables = dict(pair.split("=", 1) for pair in pairs)
    compose = load(variables)
    try:
        enabled_services(compose, {PROFILE})
    except ValueError as err:
        raise CheckFailed(str(err)) from err
    return compose


def app_bootstrap(compose: dict[str, Any]) -> str:
    """The one KAFKA_BOOTSTRAP_SERVERS of the app containers."""
    found = {environment(compose["services"][app])["KAFKA_BOOTSTRAP_SERVERS"] for app in APPS}
    if len(found) != 1:
        raise CheckFailed(f"producer and consumer use different brokers: {sorted(found)}")
    return found.pop()


# --- the engine: the host, its bridge, the containers ---------------------------------------------


def engine(args: argparse.Namespace) -> None:
    """Start every node of the profile as a container, publish their ports, run both views."""
    if ns_inode("net") == args.outer_net or ns_inode("mnt") == args.outer_mnt:
        raise CheckFailed("refusing to run outside a private network and mount namespace")
    compose = compose_model(args.set)
    nodes = profile_services(compose, PROFILE)
    members = {name: f"{SUBNET}.{index + 2}" for index, name in enumerate([*nodes, "consumer"])}
    create_bridge()
    work = Path(tempfile.mkdtemp(prefix="compose-cluster-"))
    started: list[Container] = []
    proxy = None
    try:
        common = ["--outer-mnt", ns_inode("mnt"), *_sets(args.set)]
        for name in nodes:
            step = ["harness.compose.cluster", "node", "--libs", args.libs, "--service", name,
                    "--work", str(work / name), "--members", json.dumps(members), *common]
            started.append(Container(name, members[name], step, work / f"{name}.err"))
        routes = {binding: members[name] for name in nodes for binding in published(compose["services"][name])}
        proxy = PortProxy(routes)
        proxy.start()
        began = time.monotonic()
        _await_ready(started)
        log.info("%d nodes ready in %.1fs", len(started), time.monotonic() - began)
        print(f"nodes {', '.join(nodes)}: configured by the image's setup, listeners open", flush=True)
        views = [("host", args.host_bootstrap, None), ("network", app_bootstrap(compose), "consumer")]
        for view_name, bootstrap, container in views:
            step = ["harness.compose.cluster", "view", "--name", view_name, "--bootstrap", bootstrap,
                    "--hosts", hosts_file(members, container), *common, *(["--check-voters"] if container else [])]
            began = time.monotonic()
            result = _run_view(view_name, step, members.get(container or ""), work)
            log.info("view %s took %.1fs", view_name, time.monotonic() - began)
            print(_describe(view_name, bootstrap, result), flush=True)
    finally:
        if proxy is not None:
            proxy.close()
        began = time.monotonic()
        stop_all(started)
        log.info("containers stopped in %.1fs", time.monotonic() - began)
        shutil.rmtree(work, ignore_errors=True)


def _sets(pairs: list[str]) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def _await_ready(containers: list[Container]) -> None:
    waiting = selectors.DefaultSelector()
    for container in containers:
        waiting.register(container.proc.stdout, selectors.EVENT_READ, container)  # type: ignore[arg-type]
    deadline = time.monotonic() + NODE_READY_TIMEOUT_S + 30
    while waiting.get_map():
        if time.monotonic() > deadline:
            raise CheckFailed(f"nodes not ready in time: {[k.data.name for k in waiting.get_map().values()]}")
        for key, _ in waiting.select(timeout=1.0):
            container: Container = key.data
            line = container.proc.stdout.readline().decode().strip()  # type: ignore[union-attr]
            if line != "ready":
                container.proc.wait(timeout=30)
                raise CheckFailed(f"node {container.name}: {container.last_error().removeprefix(FAILED)}")
            waiting.unregister(key.fileobj)


def _run_view(name: str, step: list[str], ip: str | None, work: Path) -> dict[str, Any]:
    """A client: in an app container on the network (``ip``), or on the host itself (None)."""
    party = Container(name, ip, step, work / f"view-{name}.err")
    try:
        assert party.proc.stdout is not None
        ready = selectors.DefaultSelector()
        ready.register(party.proc.stdout, selectors.EVENT_READ)
        line = party.proc.stdout.readline() if ready.select(timeout=VIEW_TIMEOUT_S + 30) else b""
        if not line:
            party.proc.wait(timeout=30)
            raise CheckFailed(f"view {name}: {party.last_error().removeprefix(FAILED)}")
        return json.loads(line)
    finally:
        party.stop()


def _describe(name: str, bootstrap: str, r: dict[str, Any]) -> str:
    brokers = " ".join(f"{node}={address}" for node, address in sorted(r["brokers"].items()))
    voters = "with a leader" + (", each answering as a controller at its address" if r["voters_checked"] else "")
    return (f"view {name}: bootstrap {bootstrap}; brokers {brokers}; quorum voters "
            f"{','.join(map(str, r['voters']))} {voters}; settings as composed on nodes "
            f"{','.join(map(str, r['configured']))}; topic {r['partitions']} partitions x {r['replicas']} replicas, "
            f"{r['in_sync']} in sync, min ISR {r['min_isr']}, leaders on nodes {','.join(map(str, r['leaders']))}; "
            f"acks=all round trip ok")


# --- a node: one container of the profile -----------------------------------------------------------


def node(args: argparse.Namespace) -> None:
    """The image's launch in this container: setup, then the broker, until stdin closes."""
    await_network_ready(30)
    if ns_inode("mnt") == args.outer_mnt:
        raise CheckFailed("refusing to replace /etc/hosts outside a private mount namespace")
    service = compose_model(args.set)["services"][args.service]
    work = Path(args.work)
    work.mkdir(parents=True)
    run_command("hostname", service.get("hostname", args.service))
    hosts = work / "hosts"
    hosts.write_text(hosts_file(json.loads(args.members), args.service))
    bind_hosts(hosts)
    image_env = image_environment(environment(service), work / "data")
    began = time.monotonic()
    properties = setup_configs(Path(args.libs), work, image_env)
    log.info("%s: setup took %.1fs", args.service, time.monotonic() - began)
    proc = start_broker(Path(args.libs), work, properties, image_env, timeout=NODE_READY_TIMEOUT_S)
    log.info("%s: listeners open %.1fs after setup began", args.service, time.monotonic() - began)
    try:
        print("ready", flush=True)
        closed = selectors.DefaultSelector()
        closed.register(sys.stdin, selectors.EVENT_READ)
        while not closed.select(timeout=1.0):  # readable = EOF: the engine is done
            if proc.poll() is not None:
                raise CheckFailed(f"broker exited with {proc.returncode}: {procs.log_tail(work / 'server.log', 300)!r}")
    finally:
        procs.terminate(proc, timeout=STOP_TIMEOUT_S)


# --- a view: a client of the cluster --------------------------------------------------------------


def view(args: argparse.Namespace) -> None:
    """This party's /etc/hosts, then the cluster as a client sees it; prints a JSON line."""
    await_network_ready(30)
    if ns_inode("mnt") == args.outer_mnt:
        raise CheckFailed("refusing to replace /etc/hosts outside a private mount namespace")
    with tempfile.TemporaryDirectory(prefix="compose-view-") as folder:
        hosts = Path(folder) / "hosts"
        hosts.write_text(args.hosts)
        bind_hosts(hosts)
    compose = compose_model(args.set)
    nodes = {int(environment(compose["services"][n])["KAFKA_NODE_ID"]): environment(compose["services"][n])
             for n in profile_services(compose, PROFILE)}
    result = inspect_cluster(args.bootstrap, nodes, f"compose-cluster-{args.name}", args.check_voters,
                             time.monotonic() + VIEW_TIMEOUT_S)
    print(json.dumps(result), flush=True)


def inspect_cluster(bootstrap: str, nodes: dict[int, dict[str, str]], topic: str, check_voters: bool,
                    deadline: float) -> dict[str, Any]:
    """Brokers and quorum as the cluster reports them, each node's settings (asked of that node, at
    the address it advertises), with ``check_voters`` every quorum voter's address (each node runs
    the same voters: checked with the settings) answering as a controller, then a topic with the
    brokers' defaults: one acks=all record per partition, each read back. Retried until
    ``deadline`` while the cluster may still be forming; a setting that differs fails at once.

    Why the voters: a quorum forms with one voter's address wrong (the others make a majority and
    the wrong one still fetches from the leader), and breaks only at the next election."""
    last_error = "no attempt"
    while time.monotonic() < deadline:
        doing = ["connecting"]
        try:
            return _inspect_once(bootstrap, nodes, topic, check_voters, doing)
        except CheckFailed:
            raise
        except Exception as err:  # noqa: BLE001 - any client failure means "not ready yet"
            last_error = f"{doing[0]}: {type(err).__name__}: {err}"
            log.info("not yet: %s", last_error)
        time.sleep(0.5)
    raise CheckFailed(f"cluster not usable through {bootstrap} before the deadline; last error: {last_error}")


def _inspect_once(bootstrap: str, nodes: dict[int, dict[str, str]], topic: str, check_voters: bool,
                  doing: list[str]) -> dict[str, Any]:
    """One attempt; ``doing[0]`` names the step under way, for the failure line."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import TopicAlreadyExistsError

    common = {"bootstrap_servers": bootstrap.split(","), "request_timeout_ms": 5000, "bootstrap_timeout_ms": 5000}
    admin = KafkaAdminClient(**common)
    try:
        doing[0] = "listing the brokers"
        brokers = {b["broker_id"]: f"{b['host']}:{b['port']}" for b in admin.describe_cluster()["brokers"]}
        if set(brokers) != set(nodes):
            raise RuntimeError(f"brokers in the metadata: {sorted(brokers)}")
        doing[0] = "describing the quorum"
        quorum = admin.describe_metadata_quorum()["topics"][0]["partitions"][0]
        voters = sorted(voter["replica_id"] for voter in quorum["current_voters"])
        if quorum["leader_id"] not in voters:
            raise RuntimeError(f"no quorum leader among voters {voters}")
        for node_id, compose_env in nodes.items():
            doing[0] = f"asking node {node_id} for its settings at {brokers[node_id]}"
            resource = ConfigResource(ConfigResourceType.BROKER, str(node_id))
            running = admin.describe_configs([resource], config_filter="all")["broker"][str(node_id)]
            for key, value in broker_settings(compose_env).items():
                if (running.get(key) or {}).get("value") != value:
                    raise CheckFailed(f"node {node_id} runs {key}={(running.get(key) or {}).get('value')}, "
                                      f"the compose file sets {value}")
        if check_voters:
            for voter in next(iter(nodes.values()))["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","):
                doing[0] = f"asking voter {voter} for its APIs"
                host, port = voter.split("@", 1)[1].rsplit(":", 1)
                if not answers_as_controller(host, int(port)):
                    raise RuntimeError(f"{host}:{port} is not a controller listener")
        doing[0] = f"creating topic {topic}"
        try:
            admin.create_topics({topic: {}}, wait_for_metadata=True)  # the brokers' default shape
        except TopicAlreadyExistsError:
            pass
        partitions = admin.describe_topics([topic])[0]["partitions"]
        topic_configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        min_isr = topic_configs["topic"][topic]["min.insync.replicas"]["value"]
    finally:
        admin.close()
    leaders = {p["partition_index"]: p["leader_id"] for p in partitions}
    doing[0] = f"acks=all records to partitions led by nodes {sorted(set(leaders.values()))}"
    _round_trip(common, topic, leaders)
    return {
        "brokers": brokers, "voters": voters, "voters_checked": check_voters, "configured": sorted(nodes),
        "partitions": len(partitions),
        "replicas": _one({len(p["replica_nodes"]) for p in partitions}),
        "in_sync": _one({len(p["isr_nodes"]) for p in partitions}),
        "min_isr": int(min_isr), "leaders": sorted({p["leader_id"] for p in partitions}),
    }


API_PRODUCE, API_VOTE, API_VERSIONS = 0, 52, 18


def answers_as_controller(host: str, port: int) -> bool:
    """Whether host:port is a KRaft controller listener: its ApiVersions (v0, which every Kafka
    answers) lists Vote and not Produce. A broker listener lists Produce; nothing listening fails."""
    request = struct.pack(">hhih", API_VERSIONS, 0, 1, len(b"compose-check")) + b"compose-check"
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        response = _receive(sock, struct.unpack(">i", _receive(sock, 4))[0])
    _, error, count = struct.unpack_from(">ihi", response)
    keys = {struct.unpack_from(">h", response, 10 + 6 * i)[0] for i in range(count)}
    return error == 0 and API_VOTE in keys and API_PRODUCE not in keys


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return data


def _one(values: set[int]) -> int | str:
    return values.pop() if len(values) == 1 else f"mixed {sorted(values)}"


def _round_trip(common: dict[str, Any], topic: str, leaders: dict[int, int]) -> None:
    """One acks=all record into every partition (so to every leader), each read back."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    payload = uuid.uuid4().bytes
    partitions = sorted(leaders)
    producer = KafkaProducer(**common, acks="all", max_block_ms=5000)
    try:
        for partition, future in [(p, producer.send(topic, payload, partition=p)) for p in partitions]:
            try:
                future.get(timeout=10)
            except Exception as err:
                raise RuntimeError(f"partition {partition} (leader node {leaders[partition]}): "
                                   f"{type(err).__name__}: {err}") from err
    except BaseException:
        with contextlib.suppress(Exception):  # its unsent records would replace the error that matters
            producer.close(timeout=1)
        raise
    producer.close(timeout=5)
    consumer = KafkaConsumer(**common, enable_auto_commit=False)
    try:
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        unread = set(assigned)
        read_until = time.monotonic() + 10
        while unread and time.monotonic() < read_until:
            for partition, records in consumer.poll(timeout_ms=500).items():
                if any(record.value == payload for record in records):
                    unread.discard(partition)
        if unread:
            raise RuntimeError(f"records not read back from partitions {sorted(p.partition for p in unread)}")
    finally:
        consumer.close()


# --- entry point ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libs", help="jars of the compose file's Kafka version (harness.kafka_jars.fetch_kafka)")
    parser.add_argument("--host-bootstrap", help="KAFKA_BOOTSTRAP_SERVERS of a program on the host")
    parser.add_argument("--set", action="append", default=[], help="a compose variable, VAR=VALUE")
    sub = parser.add_subparsers(dest="step")
    inner = sub.add_parser("engine")
    for flag in ("--libs", "--host-bootstrap", "--outer-net", "--outer-mnt"):
        inner.add_argument(flag, required=True)
    node_step = sub.add_parser("node")
    for flag in ("--libs", "--service", "--work", "--members", "--outer-mnt"):
        node_step.add_argument(flag, required=True)
    view_step = sub.add_parser("view")
    for flag in ("--name", "--bootstrap", "--hosts", "--outer-mnt"):
        view_step.add_argument(flag, required=True)
    view_step.add_argument("--check-voters", action="store_true", help="in the network: voters resolve there")
    for step in (inner, node_step, view_step):
        step.add_argument("--set", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("COMPOSE_CLUSTER_LOG", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    steps = {"engine": engine, "node": node, "view": view}
    try:
        if args.step in steps:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the finally blocks: stop the JVMs
            steps[args.step](args)
        else:
            if not args.libs or not args.host_bootstrap:
                parser.error("--libs and --host-bootstrap are required")
            # exec: whoever stops this process stops unshare, whose --kill-child stops the engine.
            cmd = ["unshare", "--map-root-user", "--net", "--mount", "--fork", "--kill-child=SIGTERM", "--",
                   sys.executable, "-m", "harness.compose.cluster", "engine", "--libs", args.libs,
                   "--host-bootstrap", args.host_bootstrap, "--outer-net", ns_inode("net"),
                   "--outer-mnt", ns_inode("mnt"), *_sets(args.set)]
            os.chdir(ROOT)
            os.execvp(cmd[0], cmd)
    except CheckFailed as err:
        print(f"{FAILED}{err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
