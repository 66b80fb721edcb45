"""The Kafka client's own share of the worker's CPU (a child process, pinned to the worker's CPU).

The frames topic consumed in a consumer group and one result-sized record produced for each frame,
with worker.py's own client settings (its consumer_config and producer_config, through the same
translation to librdkafka), and nothing else: no decode, no processor, none of the worker's code.

Why: the worker's CPU per frame is the floor (decode + processor) + this + the worker's own code.
Measured beside the worker on the same frames, it says how much of the worker's cost above its
floor is the client's, which no worker on that client can go below, and how much is ours.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

from ..paths import ROOT

POLL_WAIT_S = 0.2  # as the worker's poll
WARMUP_S = 2.0  # after the group assigned the partitions: connections and fetch sessions settle
NO_FRAMES_S = 30.0  # no frame this long after start: give up (the figure is then None)


def _settings(bootstrap: str, topic: str, results_topic: str, client: str) -> Any:
    from rtsp_kafka_mjpeg.settings import WorkerSettings, resolve

    env = {"CONFIG_FILE": str(ROOT / "config.env"), "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": topic,
           "KAFKA_RESULTS_TOPIC": results_topic, "KAFKA_CLIENT": client,
           "WORKER_GROUP_ID": f"bench-clients-{uuid.uuid4().hex[:8]}"}
    return resolve(WorkerSettings, {}, env)


def _result_value(topic: str) -> bytes:
    """A motion result as the worker writes it: one box, so about the size of the real ones."""
    from rtsp_kafka_mjpeg.results import FrameInfo, result_record

    info = FrameInfo("cam1", 1, time.time_ns(), 1280, 720, topic, 0, 1)
    return result_record(info, "motion", 0.1, "bench:1", {"level": 0.01234, "moving": True,
                                                        "boxes": [[0.1, 0.2, 0.3, 0.4]]})


def clients_cost(bootstrap: str, topic: str, results_topic: str, client: str, seconds: float,
                 cpu: int) -> dict[str, Any]:
    """CPU of this process per frame consumed (and result produced), pinned to `cpu`."""
    os.sched_setaffinity(0, {cpu})  # before any client thread starts: they all inherit it
    settings = _settings(bootstrap, topic, results_topic, client)
    value = _result_value(topic)
    if client == "confluent-kafka":
        return _confluent(settings, value, seconds)
    return _kafka_python(settings, value, seconds)


class _Window:
    """Counts frames from WARMUP_S after the first ones arrived until `seconds` later."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = 0.0
        self.start_cpu = 0.0
        self.frames = 0
        self.warm_until: float | None = None
        self.give_up_at = time.monotonic() + NO_FRAMES_S

    def count(self, n: int) -> bool:
        """False once the window is over (or no frame came within NO_FRAMES_S)."""
        now = time.monotonic()
        if self.warm_until is None:
            if n:
                self.warm_until = now + WARMUP_S
            return now < self.give_up_at
        if not self.start:
            if now >= self.warm_until:
                self.start, self.start_cpu = now, time.process_time()
            return True
        self.frames += n
        return now - self.start < self.seconds

    def figures(self, acked: int) -> dict[str, Any]:
        cpu = time.process_time() - self.start_cpu if self.start else 0.0
        return {"frames": self.frames, "seconds": time.monotonic() - self.start if self.start else 0.0,
                "results_acked": acked,
                "cpu_s": cpu, "cpu_s_per_frame": cpu / self.frames if self.frames else None}


def _confluent(settings: Any, value: bytes, seconds: float) -> dict[str, Any]:
    import confluent_kafka as ck

    from rtsp_kafka_mjpeg.analytics.worker import MAX_POLL_RECORDS, consumer_config, producer_config
    from rtsp_kafka_mjpeg.kafka.confluent.consumer import librdkafka_consumer_config
    from rtsp_kafka_mjpeg.kafka.confluent.producer import POLL_S, librdkafka_config

    consumer = ck.Consumer({**librdkafka_consumer_config(consumer_config(settings)), "group.id": settings.group})
    producer = ck.Producer(librdkafka_config(producer_config(settings)))
    acked = [0]
    stop = threading.Event()

    def serve_reports() -> None:  # librdkafka answers only in poll(): a thread polls, as the worker's does
        while not stop.is_set():
            producer.poll(POLL_S)

    def delivered(err: Any, _msg: Any) -> None:
        if err is None:
            acked[0] += 1

    poller = threading.Thread(target=serve_reports, daemon=True)
    poller.start()
    consumer.subscribe([settings.topic])
    window = _Window(seconds)
    try:
        while True:
            messages = consumer.consume(1, POLL_WAIT_S)  # the worker's poll: wait for one, take what is there
            if messages:
                messages += consumer.consume(MAX_POLL_RECORDS - 1, 0)
            frames = 0
            for msg in messages:
                if msg.error() is None:
                    msg.value(), msg.headers()
                    producer.produce(settings.results_topic, value, msg.key(), on_delivery=delivered)
                    frames += 1
            if not window.count(frames):
                break
        out = window.figures(acked[0])
    finally:
        producer.flush(5)
        stop.set()
        poller.join(2)
        consumer.close()
    return out


def _kafka_python(settings: Any, value: bytes, seconds: float) -> dict[str, Any]:
    from kafka import KafkaConsumer, KafkaProducer

    from rtsp_kafka_mjpeg.analytics.worker import consumer_config, producer_config

    consumer = KafkaConsumer(**consumer_config(settings))
    producer = KafkaProducer(**producer_config(settings))
    acked = [0]

    def delivered(_metadata: Any) -> None:
        acked[0] += 1

    consumer.subscribe([settings.topic])
    window = _Window(seconds)
    try:
        while True:
            n = 0
            for records in consumer.poll(timeout_ms=int(POLL_WAIT_S * 1000)).values():
                for record in records:
                    producer.send(settings.results_topic, value=value, key=record.key).add_callback(delivered)
                n += len(records)
            if not window.count(n):
                break
        out = window.figures(acked[0])
    finally:
        producer.close(timeout=5)
        consumer.close()
    return out
