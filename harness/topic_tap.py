"""Reading a frames topic from outside the apps, for failover tests and the failover bench:
a Tap records when each camera's records arrive (the brokers' and producers' share of a
viewer's gap), topic_seqs reads every frame's seq back, and acked_seqs parses the producer's
closing line of acknowledged seqs, so "nothing acknowledged is lost" can be checked."""

from __future__ import annotations

import re
import threading
import time
from itertools import pairwise

from kafka import KafkaConsumer, TopicPartition

# producer.py's closing line per camera: "Kafka acknowledged N frames, seqs 1-210,584-868"
ACKED_LINE = re.compile(r"Kafka acknowledged (\d+) frames, seqs (\S+)")


class Tap:
    """A bare kafka-python consumer in this process, reading a topic's records per key (camera) as
    they arrive. On the frames topic its gaps are the brokers' and producers' share of a viewer's
    gap (the rest is consumer.py's); on the results topic, the analytics worker's."""

    def __init__(self, bootstrap: str, topic: str, partitions: set[int]) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                                       fetch_max_wait_ms=100, reconnect_backoff_max_ms=500,
                                       max_partition_fetch_bytes=16 * 2**20, fetch_max_bytes=64 * 2**20)
        tps = [TopicPartition(topic, p) for p in partitions]
        self._consumer.assign(tps)
        self._consumer.seek_to_end(*tps)
        self._arrivals: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batches = self._consumer.poll(timeout_ms=200)
            except Exception:  # noqa: BLE001 - a node going away mid-poll: poll again
                continue
            now = time.time_ns()
            for records in batches.values():
                for rec in records:
                    self._arrivals.setdefault(rec.key.decode(), []).append(now)

    def arrived_since(self, key: str, ts_ns: int) -> int:
        return sum(1 for t in list(self._arrivals.get(key, [])) if t > ts_ns)

    def gaps_s(self, since_ns: int) -> dict[str, float]:
        return {cam: round(max((b - a for a, b in pairwise([t for t in times if t >= since_ns - 2 * 10**9])),
                               default=0) / 1e9, 2) for cam, times in list(self._arrivals.items())}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def topic_seqs(bootstrap: str, topic: str, partitions: dict[str, int]) -> dict[str, list[int]]:
    """Every frame's seq on the topic, per camera, in log order (read from the beginning)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                             max_partition_fetch_bytes=16 * 2**20, fetch_max_bytes=64 * 2**20)
    try:
        tps = [TopicPartition(topic, p) for p in set(partitions.values())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        seqs: dict[str, list[int]] = {cam: [] for cam in partitions}
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError("reading the topic took over 120 s")
            for records in consumer.poll(timeout_ms=1000).values():
                for rec in records:
                    headers = dict(rec.headers)
                    seqs[rec.key.decode()].append(int(headers["seq"]))
        return seqs
    finally:
        consumer.close()


def acked_seqs(ranges: str) -> set[int]:
    seqs: set[int] = set()
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        seqs.update(range(int(lo), int(hi or lo) + 1))
    return seqs
