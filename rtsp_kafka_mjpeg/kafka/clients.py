"""The one place where KAFKA_CLIENT becomes a Kafka client, for the producer, the consumers and
the worker. kafka-python is the default; confluent-kafka puts librdkafka behind the same surface
(confluent/), so every caller is written once, against kafka-python's classes and errors.

Callers pass kafka-python keyword arguments (their own *_config functions stay the one source of
truth); the adapters translate them. Clients that must stay kafka-python whatever KAFKA_CLIENT
says (gevent-friendly probes, the results reader) say so here.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from ..settings import KAFKA_CLIENTS
from .confluent.consumer import ConfluentConsumer
from .confluent.group_consumer import ConfluentGroupConsumer
from .confluent.producer import ConfluentProducer
from .producer_id import bump_epoch_on_reset
from .replica_links import ReplicaLinks

CONFLUENT = "confluent-kafka"


class KafkaPythonProducer(KafkaProducer):
    """kafka-python's KafkaProducer whose idempotent producer, after giving up on a frame it had
    sent, bumps its epoch (as Java's does) instead of dropping its id and then never asking for
    another (producer_id.py: the stalls after a node's death, and late frames after a network cut),
    and which stays connected to every replica of its partitions, so a partition that moves at a
    controlled shutdown is written at once (replica_links.py)."""

    def __init__(self, **configs: Any) -> None:
        super().__init__(**configs)
        bump_epoch_on_reset(self._transaction_manager)
        self.replica_links = ReplicaLinks(self)


def _checked(kafka_client: str) -> str:
    if kafka_client not in KAFKA_CLIENTS:
        raise ValueError(f"unknown Kafka client {kafka_client!r}; expected one of {', '.join(KAFKA_CLIENTS)}")
    return kafka_client


def producer_class(kafka_client: str) -> Any:
    """The producer class for KAFKA_CLIENT: both take KafkaProducer's keyword arguments."""
    return ConfluentProducer if _checked(kafka_client) == CONFLUENT else KafkaPythonProducer


def frame_consumer(kafka_client: str, topic: str, **config: Any) -> Any:
    """KAFKA_CLIENT's consumer of the frames topic: both take KafkaConsumer's keyword arguments
    and answer poll / assignment / highwater / close alike."""
    cls = ConfluentConsumer if _checked(kafka_client) == CONFLUENT else KafkaConsumer
    return cls(topic, **config)


def side_consumer(*topics: str, **config: Any) -> KafkaConsumer:
    """A kafka-python consumer whatever KAFKA_CLIENT says: for the broker probe and the results
    reader, whose waits must cooperate with consumer.py's gevent (librdkafka's metadata request
    would block every viewer) and whose few requests a second cost next to nothing."""
    return KafkaConsumer(*topics, **config)


def worker_consumer(kafka_client: str, **config: Any) -> Any:
    """KAFKA_CLIENT's group consumer for the analytics worker: both answer subscribe (with
    kafka-python's rebalance listener), poll, commits, position, seek and end offsets alike."""
    return ConfluentGroupConsumer(**config) if _checked(kafka_client) == CONFLUENT else KafkaConsumer(**config)


def worker_producer(kafka_client: str, **config: Any) -> Any:
    """KAFKA_CLIENT's producer of the worker's results (idempotent, acks=all, either client)."""
    return producer_class(kafka_client)(**config)
