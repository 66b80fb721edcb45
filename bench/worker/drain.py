"""The Kafka client's share of the worker's CPU (a child process): the frames topic fetched, nothing done.

A child of its own so its CPU per record is the bare client's alone, measured with the worker
stopped, and can be set against the worker's CPU per frame.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import TopicPartition


def drain(bootstrap: str, topic: str, seconds: float) -> dict[str, Any]:
    """kafka-python alone: a KafkaConsumer fetching the frames topic as the worker does (records of
    up to 50 per poll, 100 ms fetch wait), nothing done with them; CPU of the process per record.
    The part of the worker's CPU that is the Kafka client's, before any decode."""
    from kafka import KafkaConsumer as Consumer

    consumer = Consumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="bench-drain",
                        max_poll_records=50, fetch_max_wait_ms=100, max_partition_fetch_bytes=16 * 1024 * 1024,
                        metrics_enabled=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [0])]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    warm_until = time.monotonic() + 1.0
    start_cpu = start = 0.0
    records = 0
    while True:
        got = sum(len(r) for r in consumer.poll(timeout_ms=200).values())
        now = time.monotonic()
        if not start and now >= warm_until:
            start_cpu, start, records = time.process_time(), now, 0
        elif start:
            records += got
            if now - start >= seconds:
                break
    cpu = time.process_time() - start_cpu
    consumer.close()
    return {"records": records, "seconds": time.monotonic() - start,
            "cpu_s_per_record": cpu / records if records else None}
