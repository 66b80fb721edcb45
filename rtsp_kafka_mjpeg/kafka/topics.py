"""The frames topic, prepared before the first frame: created with frame-sized limits when it is
missing (and allowed to be), and the largest JPEG it accepts read back, so no frame is ever sent
that the broker would reject."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ..frame import RECORD_OVERHEAD
from ..settings import ProducerSettings
from .broker_check import BrokerUnavailable, explained_failures

log = logging.getLogger(__name__)


def prepare_topic(settings: ProducerSettings) -> int:
    """Create the topic with frame-sized limits if it is missing (and allowed to), and return the
    largest JPEG the topic accepts, so no frame is ever sent that the broker would reject."""
    with explained_failures(settings):
        admin = KafkaAdminClient(**settings.kafka_client_config())
    try:
        created = _create_topic(admin, settings) if settings.create_topic else False
        configs = _topic_configs(admin, settings.topic)
        topic_limit = int(configs["max.message.bytes"]) if configs.get("max.message.bytes") else None
    except KafkaError as err:
        raise BrokerUnavailable(f"cannot prepare topic {settings.topic!r}: {type(err).__name__}: {err}") from None
    finally:
        admin.close()
    limit = settings.max_message_bytes
    if topic_limit is not None and topic_limit - RECORD_OVERHEAD < limit:
        limit = max(1024, topic_limit - RECORD_OVERHEAD)
        log.warning("topic %s accepts records up to %d bytes: frames are kept under %d bytes",
                    settings.topic, topic_limit, limit)
    if not created:
        _report_retention(settings, configs)
    return limit


def _report_retention(settings: ProducerSettings, configs: dict[str, str]) -> None:
    """An existing topic keeps its own retention (rewind reaches back only that far): say so once
    when it differs from KAFKA_RETENTION_MS / KAFKA_RETENTION_BYTES."""
    wanted = {"retention.ms": str(settings.retention_ms), "retention.bytes": str(settings.retention_bytes)}
    differs = {k: configs[k] for k, v in wanted.items() if configs.get(k) not in (None, v)}
    if differs:
        log.info("topic %s exists with %s (KAFKA_RETENTION_MS=%d, KAFKA_RETENTION_BYTES=%d apply to a created "
                 "topic only; change an existing one with kafka-configs.sh)", settings.topic,
                 ", ".join(f"{k}={v}" for k, v in sorted(differs.items())), settings.retention_ms,
                 settings.retention_bytes)


def _create_topic(admin: KafkaAdminClient, settings: ProducerSettings) -> bool:
    """Create the topic if it is missing; True if this call created it."""
    try:
        admin.create_topics({settings.topic: {
            "num_partitions": settings.partitions,
            "replication_factor": settings.replication_factor,
            "configs": {
                "max.message.bytes": str(settings.max_message_bytes + RECORD_OVERHEAD),
                "retention.ms": str(settings.retention_ms),
                "retention.bytes": str(settings.retention_bytes),
                "segment.ms": str(min(settings.retention_ms, 600_000)),
                "min.insync.replicas": str(settings.topic_min_insync_replicas()),
            },
        }}, timeout_ms=int(settings.connect_timeout_s * 1000))
        log.info("created topic %s (%d partitions, replication %d, min in-sync replicas %d)", settings.topic,
                 settings.partitions, settings.replication_factor, settings.topic_min_insync_replicas())
        return True
    except TopicAlreadyExistsError:
        return False


def _topic_configs(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    """The topic's limits and retention as the brokers apply them."""
    names = ["max.message.bytes", "retention.ms", "retention.bytes"]
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, names)
    entries = admin.describe_configs([resource], config_filter="all").get("topic", {}).get(topic, {})
    return {name: entries[name]["value"] for name in names if entries.get(name, {}).get("value") is not None}
