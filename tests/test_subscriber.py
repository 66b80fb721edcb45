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
from rtsp_kafka_mjpeg.metrics import ConsumerMetrics
from rtsp_kafka_mjpeg.settings import ConsumerSettings
from rtsp_kafka_mjpeg.subscriber import FrameSubscriber

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
    with caplog.at_level(logging.INFO, logger="rtsp_kafka_mjpeg.subscriber"):
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
    sub, _ = subscriber(ScriptedConsumer({}, KafkaConnectionError()))
    assert sub.poll_once() and sub.health().connected
    assert not sub.poll_once()
    health = sub.health()
    assert not health.ok and not health.connected and health.error == ""
    assert health.reason == "the Kafka brokers are not answering"


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


def test_one_failed_broker_probe_is_asked_again_before_the_brokers_count_as_lost() -> None:
    client = FlakyProbeClient(True, KafkaConnectionError(), True, KafkaConnectionError(), KafkaConnectionError())
    sub = FrameSubscriber(ConsumerSettings(), lambda frame: None, ConsumerMetrics(),
                          consumer_factory=lambda: ScriptedConsumer(), probe_factory=lambda: client)
    sub.probe.check()
    assert sub.health().connected
    sub.probe.check()  # the node asked died mid-request; another answers at once
    assert sub.health().connected
    sub.probe.check()  # nobody answers twice in a row: an outage
    assert not sub.health().connected and sub.health().reason == "the Kafka brokers are not answering"
