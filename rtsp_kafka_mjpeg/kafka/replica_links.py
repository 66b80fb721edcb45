"""kafka-python's producer kept connected to every replica of the partitions it writes to.

Why (issue 22): at a controlled shutdown the leader hands each partition to a follower within
~0.1 s, and the producer learns who from fresh metadata; kafka-python 3.0.12 speaks Produce v9,
without the new-leader hint of KIP-951 that librdkafka gets in the error itself. If the producer
had no connection to the new leader (a node that led none of its partitions since it last
restarted), it connected only then: in the failover bench's slowest round, metadata named the new
leader at +0.14 s, the connection was opened at +0.26 s and ready at +0.36 s, and the frame was
acknowledged at +0.61 s, so the viewer's gap was 1.02 s against the 1 s goal.

So, on the producer's own I/O thread, once a second: connect to every live replica of its
partitions that it has no connection to (respecting the client's reconnect backoff), and while a
replica is missing from the live brokers (down, or restarting) ask for metadata every couple of
seconds, so a node that comes back is connected well before it is handed a partition. The cost:
one idle connection per broker that holds a replica, and a small metadata request every 2 s only
while such a broker is down.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import errors as kerr

log = logging.getLogger(__name__)

PERIOD_S = 1.0  # between checks
METADATA_EVERY_S = 2.0  # while a replica is not among the live brokers


class ReplicaLinks:
    """Runs as a recurring task on a kafka-python producer's network loop (its sender thread), so it
    touches the client's connections only where the client itself does."""

    def __init__(self, producer: Any) -> None:
        self._client = producer._sender._client
        self._cluster = producer._metadata
        self._asked_at = float("-inf")
        self._client._net.call_soon_threadsafe(self._tick)

    def replicas(self) -> set[int]:
        """Node ids that hold a replica of a partition this producer has metadata for (its topics)."""
        nodes: set[int] = set()
        for partitions in list(self._cluster._partitions.values()):
            for partition in list(partitions.values()):
                nodes.update(partition.replica_nodes)
        return nodes

    def missing(self) -> tuple[set[int], set[int]]:
        """(live replicas without a connection, replicas not among the live brokers)."""
        unconnected, offline = set(), set()
        for node in self.replicas():
            if self._cluster.broker_metadata(node) is None:
                offline.add(node)
            elif node not in self._client._manager._conns:
                unconnected.add(node)
        return unconnected, offline

    def _tick(self) -> None:
        try:
            self._connect_missing()
        except Exception as err:  # noqa: BLE001 - a check must never end the sender's loop
            log.debug("replica links: %s: %s", type(err).__name__, err)
        try:
            self._client._net.call_later(PERIOD_S, self._tick)
        except RuntimeError:
            pass  # the producer closed

    def _connect_missing(self) -> None:
        unconnected, offline = self.missing()
        for node in unconnected:
            try:
                self._client.maybe_connect(node)  # no-op while the node is in reconnect backoff
            except kerr.KafkaError as err:
                log.debug("replica links: node %s: %s", node, type(err).__name__)
        now = time.monotonic()
        if offline and now - self._asked_at >= METADATA_EVERY_S:
            self._asked_at = now
            self._cluster.request_update()
