"""Publishing frames to Kafka: topic creation, keys and headers, bounded in-flight bytes.

kafka-python 3.x has no `buffer_memory` bound, so we keep our own: while the bytes awaiting
the broker exceed the limit, new frames are dropped (counted) instead of queued. During a broker
outage memory stays bounded and, once it returns, viewers get live frames, not a stale backlog.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError

from .broker_check import BrokerUnavailable, explained_failures
from .frame import Frame
from .settings import ProducerSettings

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 4096  # key, headers and batch framing around the JPEG


def prepare_topic(settings: ProducerSettings) -> int:
    """Create the topic with frame-sized limits if it is missing (and allowed to), and return the
    largest JPEG the topic accepts, so no frame is ever sent that the broker would reject."""
    with explained_failures(settings):
        admin = KafkaAdminClient(**settings.kafka_client_config())
    try:
        if settings.create_topic:
            _create_topic(admin, settings)
        topic_limit = _topic_max_message_bytes(admin, settings.topic)
    except KafkaError as err:
        raise BrokerUnavailable(f"cannot prepare topic {settings.topic!r}: {type(err).__name__}: {err}") from None
    finally:
        admin.close()
    limit = settings.max_message_bytes
    if topic_limit is not None and topic_limit - RECORD_OVERHEAD < limit:
        limit = max(1024, topic_limit - RECORD_OVERHEAD)
        log.warning("topic %s accepts records up to %d bytes: frames are kept under %d bytes",
                    settings.topic, topic_limit, limit)
    return limit


def _create_topic(admin: KafkaAdminClient, settings: ProducerSettings) -> None:
    try:
        admin.create_topics({settings.topic: {
            "num_partitions": settings.partitions,
            "replication_factor": settings.replication_factor,
            "configs": {
                "max.message.bytes": str(settings.max_message_bytes + RECORD_OVERHEAD),
                "retention.ms": str(settings.retention_ms),
                "segment.ms": str(min(settings.retention_ms, 600_000)),
            },
        }}, timeout_ms=int(settings.connect_timeout_s * 1000))
        log.info("created topic %s (%d partitions, replication %d)", settings.topic, settings.partitions,
                 settings.replication_factor)
    except TopicAlreadyExistsError:
        pass


def _topic_max_message_bytes(admin: KafkaAdminClient, topic: str) -> int | None:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["max.message.bytes"])
    entries = admin.describe_configs([resource], config_filter="all").get("topic", {}).get(topic, {})
    value = entries.get("max.message.bytes", {}).get("value")
    return int(value) if value else None


class FramePublisher:
    """Sends Frames to the topic asynchronously and counts what happened to each."""

    def __init__(self, settings: ProducerSettings) -> None:
        self._topic = settings.topic
        self._limit = settings.max_inflight_bytes
        acks: int | str = "all" if settings.acks == "all" else int(settings.acks)
        with explained_failures(settings):
            self._producer = KafkaProducer(
                **settings.kafka_client_config(),
                acks=acks,
                enable_idempotence=acks == "all",
                linger_ms=settings.linger_ms,
                compression_type=None,  # JPEG does not compress further
                max_request_size=settings.max_message_bytes + RECORD_OVERHEAD,
                batch_size=256 * 1024,
                delivery_timeout_ms=settings.delivery_timeout_ms,
                request_timeout_ms=max(1000, settings.delivery_timeout_ms - settings.linger_ms - 100),
                max_block_ms=int(settings.connect_timeout_s * 1000),
                retries=3,
                reconnect_backoff_max_ms=2000,
                metrics_enabled=False,  # kafka-python's own sensors cost CPU per request; we count ourselves
            )
        self._lock = threading.Lock()
        self._inflight = 0
        self.sent = 0
        self.sent_bytes = 0
        self.dropped: Counter[str] = Counter()
        self._last_error: str | None = None

    @property
    def inflight_bytes(self) -> int:
        return self._inflight

    def publish(self, frame: Frame) -> bool:
        """Queue a frame for the broker; False (and counted) when it is dropped instead."""
        size = len(frame.jpeg)
        with self._lock:
            if self._inflight + size > self._limit:
                self.dropped["backpressure"] += 1
                return False
            self._inflight += size
        try:
            future = self._producer.send(self._topic, value=frame.jpeg, key=frame.kafka_key(),
                                         headers=frame.kafka_headers(), timestamp_ms=frame.capture_ts_ns // 1_000_000)
        except KafkaError as err:
            self._done(size)
            self._failed(err)
            return False
        future.add_callback(self._on_sent, size)
        future.add_errback(self._on_error, size)
        return True

    def _done(self, size: int) -> None:
        with self._lock:
            self._inflight -= size

    def _on_sent(self, size: int, _metadata: Any) -> None:
        self._done(size)
        self.sent += 1
        self.sent_bytes += size
        if self._last_error is not None:
            log.info("Kafka delivery resumed")
            self._last_error = None

    def _on_error(self, size: int, err: Exception) -> None:
        self._done(size)
        self._failed(err)

    def _failed(self, err: Exception) -> None:
        name = type(err).__name__
        self.dropped[f"send_failed:{name}"] += 1
        if self._last_error != name:
            self._last_error = name
            log.warning("Kafka delivery failing (%s); dropping frames until it recovers", name)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to `timeout_s`), then close the connection."""
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError:
            pass
        self._producer.close(timeout=timeout_s)
