"""Frames published to a topic, counted from its end offsets (``TopicCounter``).

Its own module because every scenario's "frames published in the window" comes from it, taken
at the same instants as the CPU snapshots so both figures cover the same interval; listing
offsets is one small request, so counting never fetches a frame.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger("bench.services")  # the name its log lines carried before services.py was split


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
