"""The subscriber's own logic: frames to the sink (newest per camera per poll), and health that
turns bad on an unexpected error until a poll succeeds again.

A stand-in consumer replaces KafkaConsumer here, and only here: these are unit tests of pure
logic. The subscriber against a real broker is covered by test_pipeline_e2e.py and test_faults.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaConnectionError
from kafka.structs import TopicPartition

from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.kafka.subscriber import POLL_FAILURES_LOST_S, FrameSubscriber
from rtsp_kafka_mjpeg.metrics import ConsumerMetrics
from rtsp_kafka_mjpeg.settings import ConsumerSettings

JPEG = b"\xff\xd8" + b"\x01" * 10 + b"\xff\xd9"
TP = TopicPartition("frames", 0)


def record(seq: int, camera: str = "door") -> SimpleNamespace:
    frame = Frame(camera, 1_700_000_000 * 10**9 + seq, seq, 4, 3, JPEG)
    return SimpleNamespace(topic=TP.topic, partition=TP.partition, offset=seq, key=frame.kafka_key(),
                           value=frame.jpeg, headers=frame.kafka_headers())


class ScriptedConsumer:
    """Answers each poll from a script: a batch dict, or an exception to raise; then empty polls."""

    def __init__(self, *script: object, highwater: int | None = None) -> None:
        self._script = list(script)
        self._highwater = highwater

    def poll(self, timeout_ms: int) -> object:
        outcome = self._script.pop(0) if self._script else {}
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def assignment(self) -> set[TopicPartition]:
        return {TP} if self._highwater is not None else set()

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwater

    def topics(self) -> set[str]:
        return {TP.topic}


def subscriber(consumer: ScriptedConsumer,
               sink: Callable[[Frame], None] | None = None) -> tuple[FrameSubscriber, list[Frame]]:
    """A subscriber on the scripted consumer; frames go to `sink`, or to the returned list."""
    got: list[Frame] = []
    sub = FrameSubscriber(ConsumerSettings(), sink or got.append, ConsumerMetrics(),
                          consumer_factory=lambda: consumer, probe_factory=lambda: consumer)
    sub.probe.check()
    return sub, got


def test_only_the_newest_frame_of_each_camera_in_a_poll_reaches_the_sink() -> None:
    sub, got = subscriber(ScriptedConsumer({TP: [record(1), record(1, "yard"), record(2), record(3)]}))
    assert sub.poll_once()
    assert sorted((f.camera_id, f.seq) for f in got) == [("door", 3), ("yard", 1)]
    assert sub.health().ok


def test_an_unexpected_error_makes_it_unhealthy_until_a_poll_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    sub, _ = subscriber(ScriptedConsumer({}, *[RuntimeError("a bug")] * 5))
    assert sub.poll_once() and sub.health().ok
    with caplog.at_level(logging.INFO, logger="rtsp_kafka_mjpeg.kafka.subscriber"):
        for _ in range(5):
            assert not sub.poll_once()
        failing = sub.health()
        assert sub.poll_once()
    assert not failing.ok and failing.connected and (failing.error, failing.failures) == ("RuntimeError", 5)
    assert sub.health().ok and sub.health().failures == 0
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, "the traceback is logged once, not once per failed poll"
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 2
    assert "works again after 5 failure(s)" in caplog.records[-1].getMessage()


def test_a_failing_sink_makes_it_unhealthy() -> None:
    def broken_sink(frame: Frame) -> None:
        raise ValueError("sink down")

    sub, _ = subscriber(ScriptedConsumer({TP: [record(1)]}), broken_sink)
    assert not sub.poll_once()
    assert not sub.health().ok and sub.health().error == "ValueError"


def test_a_broker_outage_is_not_an_unexpected_error() -> None:
    now = [0.0]
    sub = FrameSubscriber(ConsumerSettings(), lambda frame: None, ConsumerMetrics(), clock=lambda: now[0],
                          consumer_factory=lambda: ScriptedConsumer({}, *[KafkaConnectionError()] * 3),
                          probe_factory=ScriptedConsumer)
    sub.probe.check()
    assert sub.poll_once() and sub.health().connected
    assert not sub.poll_once()
    now[0] = POLL_FAILURES_LOST_S
    assert not sub.poll_once()
    health = sub.health()
    assert not health.ok and not health.connected and health.error == ""
    assert health.reason == "the Kafka brokers are not answering"


def test_a_poll_that_fails_while_one_node_dies_does_not_count_as_losing_the_brokers(
        caplog: pytest.LogCaptureFixture) -> None:
    # Seen on the cluster: a leader's SIGKILL failed one poll with KafkaConnectionError while the
    # other two nodes answered; the subscriber said "lost the brokers" and /healthz went red for 1 s.
    now = [0.0]
    sub = FrameSubscriber(ConsumerSettings(), lambda frame: None, ConsumerMetrics(), clock=lambda: now[0],
                          consumer_factory=lambda: ScriptedConsumer({}, KafkaConnectionError(),
                                                                    KafkaConnectionError(), {}, KafkaConnectionError()),
                          probe_factory=ScriptedConsumer)
    sub.probe.check()
    with caplog.at_level(logging.INFO, logger="rtsp_kafka_mjpeg.kafka.subscriber"):
        assert sub.poll_once()
        for step in (0.5, 1.0):
            now[0] = step
            assert not sub.poll_once()
            assert sub.health().ok
        now[0] = 2.0
        assert sub.poll_once()
        now[0] = 2.0 + POLL_FAILURES_LOST_S - 0.1  # a new streak: the one before ended with a good poll
        assert not sub.poll_once() and sub.health().ok
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_lag_is_the_records_between_the_last_one_handed_on_and_the_highwater_mark() -> None:
    metrics = ConsumerMetrics()
    sub = FrameSubscriber(ConsumerSettings(), lambda frame: None, metrics,
                          consumer_factory=lambda: ScriptedConsumer({TP: [record(1), record(2)]}, highwater=10))
    assert sub.poll_once()
    assert metrics.registry.get_sample_value("mjpeg_consumer_lag_records") == 7  # offsets 3..9 unread


class FlakyProbeClient:
    """Answers topics() from a script of outcomes: True (answers) or an exception to raise."""

    def __init__(self, *outcomes: object) -> None:
        self._outcomes = list(outcomes)

    def topics(self) -> set[str]:
        outcome = self._outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return {TP.topic}


def test_failed_broker_asks_are_tried_again_before_the_brokers_count_as_lost() -> None:
    down = KafkaConnectionError
    client = FlakyProbeClient(True, down(), down(), down(), True, down(), down(), down(), down())
    sub = FrameSubscriber(ConsumerSettings(), lambda frame: None, ConsumerMetrics(),
                          consumer_factory=lambda: ScriptedConsumer(), probe_factory=lambda: client)
    sub.probe.check()
    assert sub.health().connected
    sub.probe.check()  # the node asked died, and was picked again twice; another answers
    assert sub.health().connected
    sub.probe.check()  # nobody answers four times in a row: an outage
    assert not sub.health().connected and sub.health().reason == "the Kafka brokers are not answering"
