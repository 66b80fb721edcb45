"""FramePublisher's own bookkeeping (unit): what is counted, when the KafkaProducer is replaced,
what is logged, and that closing never raises. A fake producer stands in for kafka-python here
only; tests/test_cluster.py proves the same behaviour on a real three-node cluster. The last tests
run FramePublisher on the real broker once per KAFKA_CLIENT: both clients count alike."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import (
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    NotEnoughReplicasError,
    OutOfOrderSequenceNumberError,
)

from harness.ports import free_port
from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.kafka.broker_check import BrokerUnavailable
from rtsp_kafka_mjpeg.kafka.publisher import DeliveryLog, FramePublisher, SeqRanges, request_timeout_ms, stall_after_s
from rtsp_kafka_mjpeg.kafka.topics import prepare_topic
from rtsp_kafka_mjpeg.settings import ProducerSettings

JPEG = b"\xff\xd8" + b"x" * 996 + b"\xff\xd9"  # 1000 bytes


class FakeFuture:
    """kafka-python's future protocol: callbacks get (*args, value), errbacks (*args, error)."""

    def __init__(self) -> None:
        self._callbacks: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._errbacks: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    def add_callback(self, fn: Callable[..., None], *args: Any) -> FakeFuture:
        self._callbacks.append((fn, args))
        return self

    def add_errback(self, fn: Callable[..., None], *args: Any) -> FakeFuture:
        self._errbacks.append((fn, args))
        return self

    def succeed(self) -> None:
        for fn, args in self._callbacks:
            fn(*args, "metadata")

    def fail(self, err: Exception) -> None:
        for fn, args in self._errbacks:
            fn(*args, err)


class FakeProducer:
    """Records sends; each frame's fate is decided by the test through its future."""

    def __init__(self, flush_raises: bool = False) -> None:
        self.futures: list[FakeFuture] = []
        self.closed = threading.Event()
        self.flush_raises = flush_raises

    def send(self, topic: str, **_kwargs: Any) -> FakeFuture:
        future = FakeFuture()
        self.futures.append(future)
        return future

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def flush(self, timeout: float | None = None) -> None:
        if self.flush_raises:  # kafka-python's flush when frames are stuck
            raise KafkaTimeoutError("Timeout waiting for future")

    def close(self, timeout: float | None = None) -> None:
        self.closed.set()
        if self.flush_raises:  # kafka-python's close flushes first, and raises the same way
            raise KafkaTimeoutError("Timeout waiting for future")


class Producers:
    """The factory FramePublisher calls for each new producer; keeps every one it made. With
    `gated`, every producer after the first waits for `release` (a slow connect)."""

    def __init__(self, gated: bool = False) -> None:
        self.made: list[FakeProducer] = []
        self.release = threading.Event()
        if not gated:
            self.release.set()

    def __call__(self) -> FakeProducer:
        if self.made:
            self.release.wait(5)
        self.made.append(FakeProducer())
        return self.made[-1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frame(seq: int, camera: str = "cam1") -> Frame:
    return Frame(camera, 1_700_000_000_000_000_000 + seq, seq, 640, 360, JPEG)


def settings(**overrides: Any) -> ProducerSettings:
    return ProducerSettings(**{"acks": "all", "delivery_timeout_ms": 5000, **overrides})


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_acknowledged_frames_are_counted_and_their_seqs_kept_as_ranges() -> None:
    producers = Producers()
    pub = FramePublisher(settings(), producers)
    for seq in range(1, 6):
        assert pub.publish(frame(seq))
    futures = producers.made[0].futures
    for i in (0, 1, 3, 4):
        futures[i].succeed()
    futures[2].fail(NotEnoughReplicasError("fewer in-sync replicas than required"))
    assert pub.sent == 4 and pub.sent_bytes == 4 * len(JPEG)
    assert pub.dropped == {"send_failed:NotEnoughReplicasError": 1}
    assert str(pub.camera("cam1").acknowledged) == "1-2,4-5"
    assert pub.inflight_bytes == 0


def test_each_cameras_frames_are_counted_apart_in_one_publisher() -> None:
    producers = Producers()
    pub = FramePublisher(settings(max_inflight_bytes=2500), producers)
    assert pub.publish(frame(1, "door")) and pub.publish(frame(1, "yard"))
    assert not pub.publish(frame(2, "yard")), "over the shared in-flight limit"
    producers.made[0].futures[0].succeed()
    producers.made[0].futures[1].fail(NotEnoughReplicasError("fewer in-sync replicas than required"))
    door, yard = pub.camera("door"), pub.camera("yard")
    assert (door.sent, str(door.acknowledged), dict(door.dropped)) == (1, "1", {})
    assert (yard.sent, str(yard.acknowledged)) == (0, "none")
    assert yard.dropped == {"backpressure": 1, "send_failed:NotEnoughReplicasError": 1}
    assert pub.sent == 1 and sum(pub.dropped.values()) == 2


def test_seq_ranges_merge_a_filled_gap_and_stay_bounded() -> None:
    ranges = SeqRanges()
    for seq in (1, 2, 4, 3, 3, 7):
        ranges.add(seq)
    assert str(ranges) == "1-4,7"
    for seq in range(9, 9 + 2 * SeqRanges.MAX_RANGES, 2):
        ranges.add(seq)
    assert str(ranges).startswith("(older forgotten),")
    assert str(ranges).count(",") == SeqRanges.MAX_RANGES


def test_frames_beyond_the_inflight_limit_are_dropped_not_queued() -> None:
    pub = FramePublisher(settings(max_inflight_bytes=2500), Producers())
    assert pub.publish(frame(1)) and pub.publish(frame(2))
    assert not pub.publish(frame(3))
    assert pub.dropped == {"backpressure": 1}
    assert pub.inflight_bytes == 2 * len(JPEG)


def test_a_producer_that_stops_answering_frames_is_replaced() -> None:
    producers, clock = Producers(gated=True), Clock()
    cfg = settings(acks="all")
    pub = FramePublisher(cfg, producers, clock=clock)
    old = producers.made[0]
    pub.publish(frame(1))
    clock.now += 1.0
    pub.publish(frame(2))
    clock.now += stall_after_s(cfg) - 1.0
    assert pub.publish(frame(3)), "frame 1 is not overdue yet: kafka-python answers it by its delivery timeout"
    assert pub.restarts == 0
    clock.now += 0.1
    assert not pub.publish(frame(4)), "frame 1 is overdue: the producer is stuck"
    # The old producer is closed; its frames can never be answered: counted, their bytes released.
    assert wait_until(lambda: old.closed.is_set() and pub.inflight_bytes == 0)
    assert pub.dropped == {"producer_restart": 4} and pub.restarts == 1  # frames 1-3, and 4 offered meanwhile
    producers.release.set()
    assert wait_until(lambda: pub.publish(frame(5)))
    assert len(producers.made) == 2 and len(producers.made[1].futures) == 1, "new frames go to the new producer"
    old.futures[1].succeed()
    assert pub.sent == 0, "a late answer from the retired producer changes nothing"
    producers.made[1].futures[0].succeed()
    assert pub.sent == 1 and str(pub.camera("cam1").acknowledged) == "5"


@pytest.mark.parametrize("acks", ["all", "1"])
def test_an_expired_frame_is_counted_and_the_producer_kept(acks: str) -> None:
    producers = Producers()
    pub = FramePublisher(settings(acks=acks), producers)
    pub.publish(frame(1))
    producers.made[0].futures[0].fail(KafkaTimeoutError("Expiring 1 record(s) for frames-0: 5003 ms has passed"))
    assert pub.publish(frame(2))
    assert len(producers.made) == 1 and len(producers.made[0].futures) == 2
    assert pub.dropped == {"send_failed:KafkaTimeoutError": 1}


@pytest.mark.parametrize("error", [IllegalStateError("fatal OUT_OF_ORDER_SEQUENCE_NUMBER"),
                                   KafkaError("Unexpected error in InitProducerIdResponse")])
def test_an_error_breaking_the_producer_state_gets_a_new_producer(error: Exception) -> None:
    producers = Producers(gated=True)
    pub = FramePublisher(settings(), producers)
    pub.publish(frame(1))
    producers.made[0].futures[0].fail(error)
    assert not pub.publish(frame(2)), "no producer while the new one connects"
    assert pub.dropped == {f"send_failed:{type(error).__name__}": 1, "producer_restart": 1}
    producers.release.set()
    assert wait_until(lambda: pub.publish(frame(3)))
    assert len(producers.made) == 2 and pub.restarts == 1


def test_a_sequence_error_the_client_recovers_from_loses_the_frame_not_the_producer() -> None:
    # Issue 22: kafka-python bumps its epoch after a broken sequence; replacing it as well dropped
    # every camera's frames in flight a second time.
    producers = Producers()
    pub = FramePublisher(settings(), producers)
    pub.publish(frame(1))
    pub.publish(frame(2))
    producers.made[0].futures[0].fail(OutOfOrderSequenceNumberError("sequence broken"))
    producers.made[0].futures[1].succeed()
    assert pub.publish(frame(3))
    assert len(producers.made) == 1 and pub.restarts == 0
    assert pub.dropped == {"send_failed:OutOfOrderSequenceNumberError": 1}


def test_a_frame_is_overdue_a_request_timeout_and_a_second_after_the_delivery_timeout() -> None:
    # an answer may come a request timeout (2.5 s here) late; librdkafka's 1 s expiry scan on top
    assert stall_after_s(settings(delivery_timeout_ms=5000)) == pytest.approx(8.5)
    assert stall_after_s(settings(delivery_timeout_ms=5000, kafka_client="confluent-kafka",
                                  acks="1")) == pytest.approx(9.5)
    # librdkafka at acks=all keeps frames 60 s (an expiry makes it write frames twice): overdue after that
    assert stall_after_s(settings(delivery_timeout_ms=5000, kafka_client="confluent-kafka")) == pytest.approx(64.5)


def test_librdkafka_keeping_frames_past_the_delivery_timeout_is_said_once_and_not_replaced(caplog) -> None:
    producers, clock = Producers(), Clock()
    pub = FramePublisher(settings(kafka_client="confluent-kafka"), producers, clock=clock)
    with caplog.at_level(logging.INFO, logger="rtsp_kafka_mjpeg.kafka.publisher"):
        pub.publish(frame(1))
        clock.now += 4.9
        pub.publish(frame(2))
        assert not caplog.records, "inside the delivery timeout nothing is said"
        clock.now += 0.6
        pub.publish(frame(3))
        clock.now += 10
        pub.publish(frame(4))
        assert [r.getMessage() for r in caplog.records] == [
            "Kafka delivery failing (KafkaTimeoutError: no answer from the brokers for 5.5s); dropping frames until it "
            "recovers"]
        for future in producers.made[0].futures:
            future.succeed()
        assert caplog.records[-1].getMessage().startswith("Kafka delivery resumed after 10.0s")
    assert pub.restarts == 0 and pub.sent == 4 and len(producers.made) == 1
    assert request_timeout_ms(settings(acks="1")) == request_timeout_ms(settings()) == 2500


def test_frames_kept_for_one_camera_say_resumed_only_once_that_camera_delivers(caplog) -> None:
    # A crashed leader with librdkafka at acks=all: once the dead node leaves the ISR the other
    # cameras' frames are answered while this camera's wait for its new leader. Each such answer
    # said "resumed" and the next look "failing": 76 pairs in 5 failover rounds; then each camera's
    # backlog, answered in order as it drains, said it again (6 pairs in the next 5 rounds).
    producers, clock = Producers(), Clock()
    pub = FramePublisher(settings(kafka_client="confluent-kafka"), producers, clock=clock)

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records]
    with caplog.at_level(logging.INFO, logger="rtsp_kafka_mjpeg.kafka.publisher"):
        pub.publish(frame(1, "door"))
        pub.publish(frame(1, "yard"))
        clock.now += 0.5
        pub.publish(frame(2, "door"))
        clock.now += 5.5
        pub.publish(frame(2, "yard"))  # the first frames 6 s unanswered: failing
        futures = producers.made[0].futures
        futures[1].succeed()  # yard's partition takes frames again
        futures[3].succeed()
        for seq in range(3, 8):
            clock.now += 0.1
            pub.publish(frame(seq, "yard"))
            futures[-1].succeed()
        assert len(said()) == 1 and said()[0].startswith("Kafka delivery failing (KafkaTimeoutError: no answer"), said()
        futures[0].succeed()  # door's first frame reaches its new leader
        assert len(said()) == 2 and said()[1].startswith("Kafka delivery resumed after 0.5s"), said()
        clock.now += 0.1
        pub.publish(frame(8, "yard"))  # door's seq 2, queued 6.1 s ago, drains behind it: no news
        futures[2].succeed()
        futures[-1].succeed()
        assert len(said()) == 2, said()
        pub.publish(frame(3, "door"))  # a frame queued after the outage, unanswered past the timeout: news
        clock.now += 5.5
        pub.publish(frame(9, "yard"))
        assert len(said()) == 3 and said()[2].startswith("Kafka delivery failing (KafkaTimeoutError: no answer"), said()
    assert pub.restarts == 0


def test_late_answers_about_an_outage_that_ended_say_nothing() -> None:
    # Seen with librdkafka after a node's death: frames queued during the outage were reported
    # expired after newer ones got through, and each flipped the log: 60 "failing"/"resumed" pairs.
    dlog = DeliveryLog()
    assert dlog.failed(KafkaTimeoutError("Message timed out"), now=10.0, queued_at=5.0) is not None
    assert dlog.delivered(now=15.0, queued_at=14.9) is not None  # resumed
    for late in range(20):
        assert dlog.failed(KafkaTimeoutError("Message timed out"), now=15.1 + late / 100, queued_at=9.0) is None
    assert dlog.delivered(now=16.0, queued_at=15.9) is None
    assert dlog.failed(KafkaTimeoutError("Message timed out"), now=30.0, queued_at=25.0) is not None  # a new outage


def test_delivery_resumes_when_every_camera_that_failed_delivers_again_not_at_another_cameras_frame() -> None:
    # bench.chaos's network cut: one camera's partition leader out of reach for 20 s while the
    # other cameras' frames went through said "failing" and "resumed" four times each
    dlog = DeliveryLog()
    assert dlog.failed(KafkaTimeoutError("Expiring 44 record(s)"), now=10.0, queued_at=5.0, camera="cam-4") is not None
    assert dlog.delivered(now=10.1, queued_at=10.0, camera="cam-0") is None
    assert dlog.failed(KafkaTimeoutError("Expiring 45 record(s)"), now=15.0, queued_at=10.0, camera="cam-4") is None
    assert dlog.delivered(now=15.1, queued_at=15.0, camera="cam-1") is None
    resumed = dlog.delivered(now=33.0, queued_at=32.9, camera="cam-4")
    assert resumed == "Kafka delivery resumed after 23.0s (frames failed: 2 KafkaTimeoutError)"


def test_delivery_log_says_each_state_change_once() -> None:
    dlog = DeliveryLog()
    first = dlog.failed(NotEnoughReplicasError("fewer in-sync replicas than required"), now=10.0)
    assert first is not None and "NotEnoughReplicasError" in first and "fewer in-sync replicas" in first
    assert dlog.failed(NotEnoughReplicasError("again"), now=11.0) is None
    also = dlog.failed(KafkaTimeoutError("Expiring 2 record(s)"), now=12.0)
    assert also is not None and "now also KafkaTimeoutError" in also
    assert dlog.replaced("a frame failed with KafkaTimeoutError", now=12.0) is not None
    assert dlog.replaced("a frame failed with KafkaTimeoutError", now=17.0) is None
    assert dlog.failed(NotEnoughReplicasError("again"), now=18.0) is None
    resumed = dlog.delivered(now=20.5)
    assert resumed == ("Kafka delivery resumed after 10.5s (frames failed: 3 NotEnoughReplicasError, "
                       "1 KafkaTimeoutError; producer replaced 2 time(s))")
    assert dlog.delivered(now=21.0) is None
    assert dlog.failed(KafkaError("x"), now=30.0) is not None, "a new episode is news again"


def test_close_with_stuck_frames_returns_within_its_timeout_and_never_raises() -> None:
    stuck = FakeProducer(flush_raises=True)
    pub = FramePublisher(settings(), lambda: stuck)
    pub.publish(frame(1))
    started = time.monotonic()
    pub.close(timeout_s=1.0)
    assert time.monotonic() - started < 2.0
    assert stuck.closed.is_set()
    assert pub.dropped == {"unsent_at_exit": 1} and pub.inflight_bytes == 0


# -- on the real broker, once per KAFKA_CLIENT ---------------------------------------------------------

def real_settings(kafka, topic: str, kafka_client: str, **overrides: Any) -> ProducerSettings:
    return ProducerSettings(bootstrap_servers=kafka.bootstrap, topic=topic, kafka_client=kafka_client,
                            connect_timeout_s=5.0, **overrides)


def test_with_each_client_every_frame_reaches_the_broker_and_is_counted_once(kafka, topic, kafka_client) -> None:
    cfg = real_settings(kafka, topic, kafka_client, acks="all")
    prepare_topic(cfg)
    pub = FramePublisher(cfg)
    for seq in range(1, 31):
        assert pub.publish(frame(seq, "door"))
    pub.close(timeout_s=10)
    assert (pub.sent, dict(pub.dropped), pub.inflight_bytes) == (30, {}, 0)
    assert str(pub.camera("door").acknowledged) == "1-30"
    consumer = KafkaConsumer(topic, **kafka.client_config(), auto_offset_reset="earliest", consumer_timeout_ms=15000)
    seqs = [int(dict(record.headers)["seq"]) for _, record in zip(range(30), consumer, strict=False)]
    consumer.close()
    assert sorted(seqs) == list(range(1, 31))


def test_with_each_client_a_record_too_large_fails_as_message_size_too_large(
        kafka, topic, kafka_client, caplog: pytest.LogCaptureFixture) -> None:
    admin = KafkaAdminClient(**kafka.client_config())
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"max.message.bytes": "20000"}}})
    admin.close()
    # Not prepare_topic: it would keep frames under the topic's limit. Over the topic's limit: the
    # broker refuses the record; over the producer's own request limit: the client refuses it.
    pub = FramePublisher(real_settings(kafka, topic, kafka_client, max_message_bytes=64 * 1024))
    over_topic = Frame("door", time.time_ns(), 1, 8, 8, b"\xff\xd8" + bytes(40_000) + b"\xff\xd9")
    over_request = Frame("door", time.time_ns(), 2, 8, 8, b"\xff\xd8" + bytes(100_000) + b"\xff\xd9")
    pub.publish(over_topic)
    assert not pub.publish(over_request)
    pub.close(timeout_s=10)
    assert pub.sent == 0 and pub.dropped == {"send_failed:MessageSizeTooLargeError": 2}
    warnings = [r.getMessage() for r in caplog.records if r.name == "rtsp_kafka_mjpeg.kafka.publisher"
                and r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("Kafka delivery failing (MessageSizeTooLargeError"), warnings


def test_with_each_client_an_unreachable_broker_fails_the_publisher_with_one_clear_message(kafka_client) -> None:
    cfg = ProducerSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_client=kafka_client,
                           connect_timeout_s=1.0)
    with pytest.raises(BrokerUnavailable, match=r"^cannot reach Kafka at 127\.0\.0\.1:\d+ within 1 s"):
        FramePublisher(cfg)


def test_a_created_topic_keeps_frames_as_long_and_as_much_as_configured_and_an_existing_one_says_so(
        kafka, topic, caplog: pytest.LogCaptureFixture) -> None:
    cfg = real_settings(kafka, topic, "kafka-python", retention_ms=7_200_000, retention_bytes=5 * 2**30)
    prepare_topic(cfg)
    admin = KafkaAdminClient(**kafka.client_config())
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["retention.ms", "retention.bytes"])
    entries = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    admin.close()
    assert (entries["retention.ms"]["value"], entries["retention.bytes"]["value"]) == ("7200000", str(5 * 2**30))
    with caplog.at_level(logging.INFO, logger="rtsp_kafka_mjpeg.kafka.topics"):
        prepare_topic(real_settings(kafka, topic, "kafka-python"))  # the defaults: 1 h, no size limit
    said = [r.getMessage() for r in caplog.records if "exists with" in r.getMessage()]
    assert len(said) == 1 and "retention.bytes=5368709120" in said[0] and "retention.ms=7200000" in said[0]
