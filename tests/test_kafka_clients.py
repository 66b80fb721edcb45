"""KAFKA_CLIENT=confluent-kafka beside kafka-python: the same records byte for byte on the real
broker, the same log lines through a broker crash, librdkafka's errors read as kafka-python's, and
every producer setting handed to librdkafka."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaError as RdError
from conftest import app_env, read_parts, wait_for
from kafka import KafkaConsumer
from kafka import errors as kerr

from harness.kafka_broker import KafkaBroker
from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.kafka.confluent.errors import kafka_error
from rtsp_kafka_mjpeg.kafka.confluent.producer import ConfluentProducer, librdkafka_config
from rtsp_kafka_mjpeg.kafka.publisher import (
    STATE_ERRORS,
    FramePublisher,
    needs_new_producer,
    producer_config,
)
from rtsp_kafka_mjpeg.kafka.topics import prepare_topic
from rtsp_kafka_mjpeg.settings import ProducerSettings

OUTAGE_S = 12  # longer than the delivery timeout (5 s): frames must expire while the broker is down
CAPTURED_NS = time.time_ns() - 60 * 10**9  # recent: the broker keeps the topic's records for an hour


def frames() -> list[Frame]:
    """Two cameras' frames, each JPEG different, capture times 1/30 s apart (not a whole ms)."""
    return [Frame(camera, CAPTURED_NS + seq * 33_333_333, seq, 64, 48,
                  b"\xff\xd8" + bytes([seq % 256]) * (1000 + seq) + camera.encode() + b"\xff\xd9")
            for seq in range(1, 21) for camera in ("door", "yard")]


def publish_all(kafka: KafkaBroker, client: str, topic: str) -> None:
    settings = ProducerSettings(bootstrap_servers=kafka.bootstrap, topic=topic, kafka_client=client, acks="all")
    prepare_topic(settings)
    pub = FramePublisher(settings)
    for frame in frames():
        assert pub.publish(frame)
    pub.close(timeout_s=10)
    assert pub.sent == len(frames()), dict(pub.dropped)


def records(kafka: KafkaBroker, topic: str) -> list[tuple[object, ...]]:
    """(partition, timestamp, timestamp type, key, headers, value) of every record, by camera and seq."""
    consumer = KafkaConsumer(topic, **kafka.client_config(), auto_offset_reset="earliest", consumer_timeout_ms=15000)
    found = [(r.partition, r.timestamp, r.timestamp_type, r.key, r.headers, r.value)
             for _, r in zip(range(len(frames())), consumer, strict=False)]
    consumer.close()
    return sorted(found, key=lambda r: (r[3], r[1]))


def test_both_clients_write_byte_identical_records(kafka) -> None:
    written = {}
    for client in ("kafka-python", "confluent-kafka"):
        topic = f"same-{client}-{uuid.uuid4().hex[:8]}"
        publish_all(kafka, client, topic)
        written[client] = records(kafka, topic)
    assert len(written["kafka-python"]) == len(frames())
    assert written["confluent-kafka"] == written["kafka-python"], "value, key, headers, partition or timestamp differ"
    expected = sorted((f.kafka_key(), f.capture_ts_ns // 1_000_000, f.jpeg) for f in frames())
    assert [(key, ts, value) for _, ts, _, key, _, value in written["confluent-kafka"]] == expected
    assert {kind for _, _, kind, *_ in written["confluent-kafka"]} == {0}, "timestamps are CreateTime"


@pytest.mark.parametrize(("code", "expected"), [
    (RdError._MSG_TIMED_OUT, kerr.KafkaTimeoutError),
    (RdError.NOT_ENOUGH_REPLICAS, kerr.NotEnoughReplicasError),
    (RdError.MSG_SIZE_TOO_LARGE, kerr.MessageSizeTooLargeError),
    (RdError.NOT_LEADER_FOR_PARTITION, kerr.NotLeaderForPartitionError),
    (RdError.OUT_OF_ORDER_SEQUENCE_NUMBER, kerr.OutOfOrderSequenceNumberError),
    (RdError.UNKNOWN_PRODUCER_ID, kerr.UnknownProducerIdError),
    (RdError.PRODUCER_FENCED, kerr.ProducerFencedError),
    (RdError._FENCED, kerr.ProducerFencedError),
    (RdError._FATAL, kerr.IllegalStateError),
    (RdError._TRANSPORT, kerr.KafkaConnectionError),
    (RdError._ALL_BROKERS_DOWN, kerr.KafkaConnectionError),
    (RdError._PURGE_QUEUE, kerr.IllegalStateError),
    (RdError._AUTHENTICATION, kerr.SaslAuthenticationFailedError),
])
def test_librdkafka_errors_become_the_errors_kafka_python_raises(code: int, expected: type) -> None:
    assert type(kafka_error(RdError(code))) is expected


def test_a_fatal_librdkafka_error_always_gets_a_new_producer() -> None:
    fatal = kafka_error(RdError(RdError.TOPIC_AUTHORIZATION_FAILED, fatal=True))
    assert isinstance(fatal, STATE_ERRORS) and needs_new_producer(fatal)
    assert not needs_new_producer(kafka_error(RdError(RdError._MSG_TIMED_OUT))), "an expiry keeps the producer"
    cause = RdError(RdError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True)
    fatal_sequence = kafka_error(RdError(RdError._FATAL), fatal_cause=cause)
    assert type(fatal_sequence) is kerr.OutOfOrderSequenceNumberError and needs_new_producer(fatal_sequence)


def test_a_sequence_error_the_client_recovers_from_keeps_the_producer() -> None:
    # Issue 22: a node's death left one batch's sequence broken; kafka-python bumps its epoch and
    # goes on, and replacing the producer as well dropped every camera's frames in flight again.
    for err in (kerr.OutOfOrderSequenceNumberError(), kerr.UnknownProducerIdError(), kerr.InvalidProducerEpochError(),
                kafka_error(RdError(RdError.OUT_OF_ORDER_SEQUENCE_NUMBER))):
        assert not needs_new_producer(err), err
    for err in (kerr.IllegalStateError(), kerr.ProducerFencedError(), kerr.KafkaError("fatal state")):
        assert needs_new_producer(err), err


def test_librdkafka_gets_every_producer_setting() -> None:
    settings = ProducerSettings(bootstrap_servers="a:1,b:2", acks="all", linger_ms=3, delivery_timeout_ms=5000,
                                max_message_bytes=1 << 20, security_protocol="SASL_SSL",
                                sasl_mechanism="SCRAM-SHA-256", sasl_username="cam", sasl_password="pw",
                                ssl_cafile="/etc/ca.pem", kafka_client="confluent-kafka")
    conf = librdkafka_config(producer_config(settings))  # raises on any argument it cannot translate
    assert conf["bootstrap.servers"] == "a:1,b:2" and conf["client.id"] == "rtsp-kafka-mjpeg"
    assert (conf["acks"], conf["enable.idempotence"], conf["linger.ms"]) == ("all", True, 3)
    assert conf["message.max.bytes"] == (1 << 20) + 4096 and conf["compression.type"] == "none"
    # idempotent librdkafka keeps frames 60 s and retries until then: an expired or spent frame makes
    # it bump its epoch and write the frames behind it twice (publisher.RDKAFKA_IDEMPOTENT_KEEP_MS)
    assert 59_000 <= conf["message.timeout.ms"] <= 60_000 and conf["request.timeout.ms"] == 2498
    assert (conf["retries"], conf["retry.backoff.ms"], conf["reconnect.backoff.max.ms"]) == (2**31 - 1, 50, 500)
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == ("sasl_ssl", "SCRAM-SHA-256")
    assert (conf["sasl.username"], conf["sasl.password"], conf["ssl.ca.location"]) == ("cam", "pw", "/etc/ca.pem")
    assert conf["queue.buffering.max.kbytes"] * 1024 > settings.max_inflight_bytes
    # idempotent: one request in flight, or a request refused by an old leader makes the next skip a
    # sequence and librdkafka's recovery writes frames twice (librdkafka #4953)
    assert conf["max.in.flight.requests.per.connection"] == 1
    acks_one = librdkafka_config(producer_config(ProducerSettings(acks="1", delivery_timeout_ms=5000,
                                                                  kafka_client="confluent-kafka")))
    assert (acks_one["acks"], acks_one["enable.idempotence"]) == ("1", False)
    assert 4000 <= acks_one["message.timeout.ms"] <= 5000 and acks_one["retries"] == 20
    assert acks_one["max.in.flight.requests.per.connection"] == 5


FAILING = re.compile(r"WARNING rtsp_kafka_mjpeg\.kafka\.publisher: Kafka delivery failing \(KafkaTimeoutError: .+\); "
                     r"dropping frames until it recovers$")
RESUMED = re.compile(r"INFO rtsp_kafka_mjpeg\.kafka\.publisher: Kafka delivery resumed after [\d.]+s "
                     r"\(frames failed: \d+ KafkaTimeoutError\)$")


@pytest.mark.slow
def test_the_confluent_client_rides_out_a_broker_crash_with_kafka_pythons_log_lines(
        crash_broker, camera, topic, start_app) -> None:
    env = app_env(crash_broker.bootstrap, topic, KAFKA_CLIENT="confluent-kafka")
    producer = start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", app_env(crash_broker.bootstrap, topic))
    assert wait_for(lambda: len(read_parts(f"{consumer.url}/video_feed", 1, 5)) == 1, 40), producer.log()

    crash_broker.kill()
    time.sleep(OUTAGE_S)  # the fault's length: frames expire meanwhile
    assert producer.proc.poll() is None, producer.log()
    crash_broker.start()
    assert wait_for(lambda: "Kafka delivery resumed" in producer.log(), 30), producer.log()
    restarted_at = time.time_ns()
    assert wait_for(lambda: any(p.capture_ts_ns > restarted_at for p in read_parts(
        f"{consumer.url}/video_feed", 3, 5)), 30), "no new frame reached the viewer after the broker's return"
    assert producer.stop() == 0

    lines = [line.split(" ", 2)[2] for line in producer.log().splitlines()]  # without the date and time
    not_info = [line for line in lines if not line.startswith("INFO ")]
    assert len(not_info) == 1 and FAILING.match(not_info[0]), not_info
    assert sum(bool(RESUMED.match(line)) for line in lines) == 1, lines
    assert not any("replaced" in line or "Traceback" in line for line in lines), lines


class CountingHandle:
    """librdkafka's producer handle, recording when metadata is asked for (a test's window on it)."""

    def __init__(self, real: object) -> None:
        self._real = real
        self.asked: list[float] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def __len__(self) -> int:
        return len(self._real)  # type: ignore[arg-type]

    def list_topics(self, *args: object, **kwargs: object) -> object:
        self.asked.append(time.monotonic())
        return self._real.list_topics(*args, **kwargs)  # type: ignore[attr-defined]


def answered(future: Any, timeout: float) -> bool:
    """The send's future settled in time, with success."""
    return wait_for(lambda: future.is_done, timeout, 0.005) and future.succeeded()


@pytest.mark.slow
def test_the_confluent_producer_asks_for_leaders_only_while_a_frame_waits_unanswered(crash_broker) -> None:
    # librdkafka re-asks for a dead leader's successor once a second; ConfluentProducer asks every
    # 0.2 s once a frame is 0.3 s unanswered (the ask itself waits up to 0.5 s), never while frames are answered.
    topic = f"leaders-{uuid.uuid4().hex[:8]}"
    settings = ProducerSettings(bootstrap_servers=crash_broker.bootstrap, topic=topic, acks="all",
                                delivery_timeout_ms=5000, kafka_client="confluent-kafka")
    prepare_topic(settings)
    producer = ConfluentProducer(**producer_config(settings))
    handle = producer._producer = CountingHandle(producer._producer)
    try:
        assert answered(producer.send(topic, b"first", b"door"), 30)
        handle.asked.clear()
        for _ in range(30):  # a second of frames, all answered
            assert answered(producer.send(topic, b"frame", b"door"), 5)
            time.sleep(1 / 30)
        assert handle.asked == []

        os.kill(crash_broker.pid, signal.SIGSTOP)
        try:
            waiting = producer.send(topic, b"unanswered", b"door")
            sent = time.monotonic()
            time.sleep(1.5)
        finally:
            os.kill(crash_broker.pid, signal.SIGCONT)
        assert not waiting.is_done, "answered by a stopped broker"
        asks = [round(t - sent, 2) for t in handle.asked]
        assert len(asks) >= 2 and 0.3 <= asks[0] <= 0.8, asks  # each ask waits up to 0.5 s here
        assert answered(waiting, 30)
        time.sleep(0.5)  # the watch's next look finds nothing unanswered
        handle.asked.clear()
        time.sleep(1.0)
        assert handle.asked == []
    finally:
        producer.close(5)
