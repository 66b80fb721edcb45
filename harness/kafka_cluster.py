"""A real Apache Kafka cluster of n KRaft nodes (combined broker+controller) for failover tests and demos.

Why this shape: the single ``KafkaBroker`` cannot show replication or a leader moving. Here every
node is its own JVM from the same Maven jars (a ``harness.kafka_node.KafkaNode``, as the single
broker is), with its own client and controller ports and data dir; all are formatted with one
cluster id and share a static quorum (``controller.quorum.voters`` of all n), so any node
restarts on its own data dir and rejoins.
Internal topics are replicated n-fold with a min ISR of 2, like a production cluster.

``session_timeout_ms`` is the brokers' ``broker.session.timeout.ms``: how long after a SIGKILL
the controller fences a node and moves its partitions' leadership. Production's default is 9000;
tests may shorten it (the heartbeat must stay below it).

Use::

    cluster = KafkaCluster(n=3, session_timeout_ms=6000)
    cluster.start()                      # returns once metadata lists n live brokers
    cluster.leader_of("frames", cluster.partition_for_key("frames", "cam1"))
    cluster.kill(2); cluster.restart(2)  # crash (SIGKILL) and rejoin on the same data dir
    cluster.stop(1)                      # controlled shutdown (SIGTERM): leadership moves first
    cluster.active_controller(); cluster.under_replicated("frames")
    cluster.close()

CLI (a cluster demo): ``python -m harness.kafka_cluster`` runs three nodes in the foreground (client
ports 9092-9094, Kafka's default 9 s session) and prints
``kafka cluster ready at 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094``; point
``KAFKA_BOOTSTRAP_SERVERS`` there, with ``KAFKA_REPLICATION_FACTOR=3`` and ``KAFKA_ACKS=all``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from kafka.partitioner.default import murmur2

from harness import procs
from harness.kafka_jars import fetch_kafka, kafka_version
from harness.kafka_node import VIDEO_CONFIG, KafkaNode, _cluster_id, wait_for
from harness.ports import free_ports, port_open

log = logging.getLogger(__name__)

T = TypeVar("T")
PROD_SESSION_TIMEOUT_MS = 9000  # Kafka's default broker.session.timeout.ms
# A follower whose fetch fails (its leader moved or died) waits this long before it fetches again,
# from the new leader; acks=all frames wait for it. Kafka's 1000 ms made a controlled shutdown
# cost 1.2-1.3 s of video; 100 ms: 0.3-0.5 s (measured here). docker-compose's cluster uses it too.
REPLICA_FETCH_BACKOFF_MS = "100"


class ClusterNode(KafkaNode):
    """One combined broker+controller JVM of the cluster: its id, ports, data dir and process."""

    @property
    def title(self) -> str:
        return f"Kafka cluster node {self.node_id} ({self.bootstrap})"


class KafkaCluster:
    """n KRaft nodes on 127.0.0.1; each can be killed, stopped and restarted on its own data dir."""

    def __init__(
        self,
        n: int = 3,
        session_timeout_ms: int = 3000,
        heartbeat_interval_ms: int = 500,
        data_dir: str | Path | None = None,
        ports: list[int] | None = None,
        extra_config: dict[str, str] | None = None,
        version: str | None = None,
        start_timeout: float = 120.0,
        extra_listeners: tuple[str, ...] = (),
    ) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        if ports is not None and len(ports) != n:
            raise ValueError(f"{n} nodes need {n} client ports, got {len(ports)}")
        if not 0 < heartbeat_interval_ms < session_timeout_ms:
            raise ValueError("the heartbeat interval must be positive and below the session timeout")
        self.n = n
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="kafka-cluster-")).resolve()
        self.extra_config = dict(extra_config or {})
        self.version = kafka_version(version)
        self.start_timeout = start_timeout
        drawn = iter(free_ports(n * (2 + len(extra_listeners))))  # client (unless given), controller, extras
        client_ports = ports or [next(drawn) for _ in range(n)]
        self.nodes = {i: ClusterNode(i, client_ports[i - 1], next(drawn), self.data_dir / f"node{i}")
                      for i in range(1, n + 1)}
        # More PLAINTEXT client listeners, each on its own port per node: a client bootstrapped on
        # one is told that listener's addresses, so one client's path to a node can be cut
        # (harness.netcut) while replication and every other client go on.
        self.listener_ports = {name: {i: next(drawn) for i in self.nodes} for name in extra_listeners}

    @property
    def bootstrap(self) -> str:
        """Every node's client listener, comma-separated (what KAFKA_BOOTSTRAP_SERVERS takes)."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    def bootstrap_via(self, listener: str) -> str:
        """Every node's port of one of the ``extra_listeners``, comma-separated."""
        return ",".join(f"127.0.0.1:{port}" for port in self.listener_ports[listener].values())

    def node(self, node_id: int) -> ClusterNode:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise ValueError(f"no node {node_id} in this cluster (nodes {sorted(self.nodes)})") from None

    def _config(self, node: ClusterNode) -> dict[str, str]:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes.values())
        replicas, min_isr = str(self.n), str(min(2, self.n))
        return {
            **VIDEO_CONFIG,
            **node.kraft_config(voters, {"PLAINTEXT": ("PLAINTEXT", node.port),
                                         **{name: ("PLAINTEXT", ports[node.node_id])
                                            for name, ports in self.listener_ports.items()}}),
            # Internal topics replicated like a production cluster's.
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "default.replication.factor": replicas,
            "broker.session.timeout.ms": str(self.session_timeout_ms),
            "broker.heartbeat.interval.ms": str(self.heartbeat_interval_ms),
            "replica.fetch.backoff.ms": REPLICA_FETCH_BACKOFF_MS,
            **self.extra_config,
        }

    def _prepare(self, libs: Path) -> None:
        """Write every node's config and format the unformatted ones with one cluster id, in parallel."""
        cluster_id = _cluster_id()
        formats = []
        for node in self.nodes.values():
            node.write_config(self._config(node))
            formats.append((node, node.begin_format(libs, cluster_id)))
        for node, proc in formats:
            node.finish_format(proc, timeout=self.start_timeout)

    def start(self) -> None:
        """Start every node that is not running; return once metadata lists all n brokers alive.

        Raises RuntimeError with the failing node's log tail if one dies or the cluster never forms.
        """
        t0 = time.monotonic()
        libs = fetch_kafka(self.version)
        self._prepare(libs)
        for node in self.nodes.values():
            if not node.is_running():
                node.launch(libs)
        try:
            # Ports first: a client bootstrapped before a JVM listens logs a burst of ECONNREFUSED.
            self._wait(lambda: all(port_open("127.0.0.1", n.port) for n in self.nodes.values()),
                       "open its client port")
            self._wait(lambda: len(self.live_brokers()) == self.n, "form with all nodes live")
        except BaseException:
            self.close_processes()
            raise
        log.info("Kafka cluster of %d up at %s in %.1fs", self.n, self.bootstrap, time.monotonic() - t0)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node at once, like a crash; its data dir is kept."""
        self.node(node_id).kill()

    def stop(self, node_id: int, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM, SIGKILL after ``timeout`` s): its leaderships move first."""
        self.node(node_id).stop(timeout)

    def restart(self, node_id: int) -> None:
        """Start a stopped node on its own data dir; return once the cluster lists it alive."""
        node = self.node(node_id)
        if node.is_running():
            return
        node.launch(fetch_kafka(self.version))
        self._wait(lambda: port_open("127.0.0.1", node.port), "open its client port", node)
        self._wait(lambda: node_id in self.live_brokers(), f"list node {node_id} alive again", node)

    def _wait(self, ready: Callable[[], bool], what: str, only: ClusterNode | None = None) -> None:
        """Until ``ready()``, ``start_timeout`` s at most, failing at once if a watched node exits."""
        wait_for([only] if only else self.nodes.values(), ready, what, self.start_timeout, interval=0.3)

    # --- questions to the cluster (each through a short-lived admin client on the live nodes) ---

    @contextmanager
    def admin(self, timeout_ms: int = 5000) -> Iterator[Any]:
        """A kafka-python admin client bootstrapped from the nodes running now."""
        from kafka import KafkaAdminClient  # late: importing the harness should not need a broker

        running = [n for n in self.nodes.values() if n.is_running()]
        listening = [n.bootstrap for n in running if port_open("127.0.0.1", n.port)]
        servers = listening or [n.bootstrap for n in running]
        if not servers:
            raise RuntimeError("no node of the cluster is running")
        client = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=timeout_ms,
                                  bootstrap_timeout_ms=timeout_ms, client_id="kafka-cluster-harness")
        try:
            yield client
        finally:
            client.close()

    def ask(self, question: Callable[[Any], T], timeout: float = 15.0) -> T:
        """`question(admin)`, asked again on a Kafka error until `timeout` s: while a dead node is
        still listed, kafka-python may send a request to it and fail with ECONNREFUSED."""
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.admin() as admin:
                    return question(admin)
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def live_brokers(self) -> set[int]:
        """Ids of the brokers the controller holds registered and unfenced."""
        brokers = self.ask(lambda admin: admin.describe_cluster()["brokers"])
        return {b["broker_id"] for b in brokers if not b.get("is_fenced")}

    def partitions(self, topic: str) -> list[dict[str, Any]]:
        """The topic's partitions as kafka-python describes them: partition_index, leader_id,
        replica_nodes, isr_nodes; sorted by partition."""
        def describe(admin: Any) -> list[dict[str, Any]]:
            from kafka.errors import for_code

            described = admin.describe_topics([topic])
            if described and described[0].get("error_code"):
                # e.g. a broker whose metadata has not caught up yet: unknown topic, asked again
                raise for_code(described[0]["error_code"])(f"topic {topic!r}")
            return described

        described = self.ask(describe)
        if not described:
            raise RuntimeError(f"topic {topic!r} not described")
        return sorted(described[0]["partitions"], key=lambda p: p["partition_index"])

    def leader_of(self, topic: str, partition: int) -> int | None:
        """The node leading ``partition`` of ``topic`` now, None while it has no leader."""
        leader = self.partitions(topic)[partition]["leader_id"]
        return leader if leader >= 0 else None

    def partition_for_key(self, topic: str, key: bytes | str) -> int:
        """The partition kafka-python's default partitioner picks for ``key`` (murmur2, like Java's)."""
        data = key.encode() if isinstance(key, str) else key
        return (murmur2(data) & 0x7FFFFFFF) % len(self.partitions(topic))

    def under_replicated(self, topic: str) -> int:
        """How many of the topic's partitions have fewer in-sync replicas than replicas."""
        return sum(len(p["isr_nodes"]) < len(p["replica_nodes"]) for p in self.partitions(topic))

    def active_controller(self) -> int:
        """The node leading the KRaft metadata quorum (the active controller). The "controller" a
        metadata response names is a random broker in KRaft, so ask the quorum itself."""
        quorum = self.ask(lambda admin: admin.describe_metadata_quorum())
        leader = quorum["topics"][0]["partitions"][0]["leader_id"]
        if leader < 0:
            raise RuntimeError("the metadata quorum has no leader now")
        return int(leader)

    def close_processes(self) -> None:
        """SIGKILL every node still running (a failed start must not leave JVMs behind)."""
        for node in self.nodes.values():
            node.kill()

    def close(self, timeout: float = 5.0) -> None:
        """Stop every node at once, SIGKILL what still runs after `timeout` s (with every node
        going, a controlled shutdown cannot finish: no node is left to take over), and delete the
        data dir if this object made it."""
        running = [node for node in self.nodes.values() if node.is_running()]
        for node in running:
            if node.proc is not None:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in running:
            procs.terminate(node.proc, max(0.1, deadline - time.monotonic()))
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """CLI: run an n-node cluster in the foreground until SIGINT/SIGTERM (a cluster demo)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--port", type=int, default=9092, help="client port of node 1; node i gets PORT+i-1")
    parser.add_argument("--session-timeout-ms", type=int, default=PROD_SESSION_TIMEOUT_MS,
                        help="broker.session.timeout.ms (Kafka's default 9000)")
    parser.add_argument("--data-dir", help="kept across runs; default a temp dir, deleted")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cluster = KafkaCluster(n=args.nodes, session_timeout_ms=args.session_timeout_ms,
                           heartbeat_interval_ms=min(2000, args.session_timeout_ms // 3), data_dir=args.data_dir,
                           ports=[args.port + i for i in range(args.nodes)])
    try:
        cluster.start()
        print(f"kafka cluster ready at {cluster.bootstrap}", flush=True)
        while not stop.wait(1.0):
            dead = [n.node_id for n in cluster.nodes.values() if not n.is_running()]
            if dead:
                log.error("node %s died:\n%s", dead[0], procs.log_tail(cluster.node(dead[0]).log_path))
                return 1
        return 0
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
