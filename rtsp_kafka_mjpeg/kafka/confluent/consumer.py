"""KAFKA_CLIENT=confluent-kafka for consumer.py: librdkafka behind the part of kafka-python's
KafkaConsumer that FrameSubscriber uses (poll, assignment, highwater, close), so the subscriber's
rules (newest frame per camera, bad records counted, lag, health) hold whichever client reads.

Why: at 8 cameras x 720p30 consumer.py spent 1.20 ms of CPU per record with kafka-python (which
fetches and parses in Python) against 0.43 ms with librdkafka (C threads of its own), measured side
by side on the same records.

consumer.py serves viewers from gevent greenlets in the same OS thread as the subscriber: a C call
that blocks (a consume with a timeout, a metadata request) would stall every viewer. So under
gevent poll() takes what librdkafka has already fetched (timeout 0) and waits between tries with
gevent's sleep, and metadata requests run on a native thread. librdkafka's callbacks (logs, client
errors) are served by poll(), on the subscriber's own thread.

Without a group (KAFKA_GROUP_ID empty) every partition of the topic is assigned by hand, as
kafka-python does, and nothing is committed; librdkafka still wants a group.id, so it gets a
private one it never uses. With a group, librdkafka's group protocol assigns the partitions.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
import uuid
from typing import Any, NamedTuple

import confluent_kafka as ck
from confluent_kafka import KafkaError as RdError
from confluent_kafka import KafkaException
from kafka import errors as kerr
from kafka.structs import TopicPartition

from .errors import RdkafkaLog, kafka_error, raised_error

log = logging.getLogger(__name__)
rdkafka_log = logging.getLogger(f"{__name__}.librdkafka")

POLL_SLICE_S = 0.005  # under gevent: how often an empty poll looks again (adds at most this much delay)
METADATA_TIMEOUT_S = 2.0  # one metadata request at most this long (close() waits for it)
METADATA_RETRY_S = 1.0  # topic missing or the request failed: ask again this soon
METADATA_EVERY_S = 30.0  # partitions added to the topic are picked up this soon
# librdkafka asks again for the leader of a partition whose node died only on its once-a-second
# topic scan, and may undo its first move to the successor for one more scan: 1.7-2.0 s of video
# lost after each election at production defaults (issue 22). Refreshing every 250 ms costs a
# small metadata request per 250 ms and cut that to 0.0-0.26 s (tests/test_cluster.py).
METADATA_REFRESH_MS = 250
_IGNORED = frozenset({RdError._PARTITION_EOF})


class Record(NamedTuple):
    """One consumed record: the fields of kafka-python's ConsumerRecord that FrameSubscriber reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def gevent_patched() -> bool:
    """True in consumer.py's gevent worker, where a blocking C call would stall every viewer."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return bool(monkey.is_module_patched("threading"))


def _native_executor() -> concurrent.futures.Executor:
    """One real OS thread for blocking librdkafka calls (a greenlet would block the whole hub)."""
    if gevent_patched():
        from gevent.threadpool import ThreadPoolExecutor
        return ThreadPoolExecutor(1)
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rdkafka-metadata")


def librdkafka_consumer_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """librdkafka properties for KafkaConsumer keyword arguments (FrameSubscriber's).

    Every argument must be known here: a setting silently dropped would make the two clients differ.
    The three our own code uses (group_id, max_poll_records, bootstrap_timeout_ms) are left in `kwargs`."""
    args = dict(kwargs)
    for ours in ("group_id", "max_poll_records", "bootstrap_timeout_ms"):
        args.pop(ours, None)
    servers = args.pop("bootstrap_servers")
    conf: dict[str, Any] = {
        "bootstrap.servers": servers if isinstance(servers, str) else ",".join(servers),
        "security.protocol": args.pop("security_protocol", "PLAINTEXT").lower(),
        "client.id": args.pop("client_id", "rtsp-kafka-mjpeg"),
        "auto.offset.reset": args.pop("auto_offset_reset", "latest"),
        "enable.auto.commit": bool(args.pop("enable_auto_commit", False)),
        "fetch.wait.max.ms": args.pop("fetch_max_wait_ms", 500),
        "fetch.min.bytes": args.pop("fetch_min_bytes", 1),
        "max.partition.fetch.bytes": args.pop("max_partition_fetch_bytes", 1_048_576),
        "fetch.max.bytes": args.pop("fetch_max_bytes", 52_428_800),
        "receive.message.max.bytes": args.pop("receive_message_max_bytes", 100_000_000),
        "reconnect.backoff.max.ms": args.pop("reconnect_backoff_max_ms", 1000),
        "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
    }
    # librdkafka refuses a response limit below its fetch limit plus a header's worth.
    conf["receive.message.max.bytes"] = max(conf["receive.message.max.bytes"], conf["fetch.max.bytes"] + 512)
    # group membership (the worker's): only when given, librdkafka's defaults otherwise
    for ours, theirs in (("session_timeout_ms", "session.timeout.ms"),
                         ("heartbeat_interval_ms", "heartbeat.interval.ms"),
                         ("auto_commit_interval_ms", "auto.commit.interval.ms")):
        if ours in args:
            conf[theirs] = args.pop(ours)
    args.pop("metrics_enabled", None)  # librdkafka's statistics are off unless statistics.interval.ms is set
    if "sasl_mechanism" in args:
        conf.update({"sasl.mechanism": args.pop("sasl_mechanism"), "sasl.username": args.pop("sasl_plain_username"),
                     "sasl.password": args.pop("sasl_plain_password")})
    if "ssl_cafile" in args:
        conf["ssl.ca.location"] = args.pop("ssl_cafile")
    if args:
        raise ValueError(f"KafkaConsumer arguments with no librdkafka translation: {', '.join(sorted(args))}")
    return conf


class ConfluentConsumer:
    """librdkafka with the surface of kafka-python's KafkaConsumer that FrameSubscriber uses.

    poll(timeout_ms) -> {TopicPartition: [Record]}; highwater(tp) from the last fetch's answer (no
    request); assignment(); close(). Errors leave as the kafka.errors classes kafka-python raises."""

    def __init__(self, topic: str, on_commit: Any = None, **kwargs: Any) -> None:
        self._topic = topic
        self._max_records = int(kwargs.get("max_poll_records", 500))
        self._group = kwargs.get("group_id") or None
        self._reset = kwargs.get("auto_offset_reset", "latest")
        self._cooperative = gevent_patched()
        conf = librdkafka_consumer_config(kwargs)
        conf.update({"group.id": self._group or f"rtsp-kafka-mjpeg-unused-{uuid.uuid4().hex[:12]}",
                     "logger": RdkafkaLog(rdkafka_log), "error_cb": self._on_client_error})
        if on_commit is not None:
            conf["on_commit"] = on_commit
        self._pending: kerr.KafkaError | None = None  # raised by the next poll
        self._errors_said: set[int] = set()
        try:
            self._consumer = ck.Consumer(conf)
        except KafkaException as exc:
            raise kerr.KafkaConfigurationError(f"librdkafka refused its configuration: {exc}") from None
        self._assigned: set[int] = set()
        self._metadata: concurrent.futures.Future[Any] | None = None
        self._next_metadata = 0.0
        self._executor: concurrent.futures.Executor | None = None
        if self._group:
            if topic:  # a group consumer may subscribe later (ConfluentGroupConsumer)
                self._consumer.subscribe([topic])
        else:
            self._executor = _native_executor()

    # -- what FrameSubscriber calls ------------------------------------------------------------------

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Record]]:
        """Records fetched so far (at most max_poll_records), waiting up to `timeout_ms` for some."""
        if self._pending is not None:
            err, self._pending = self._pending, None
            raise err
        self._follow_partitions()
        deadline = time.monotonic() + timeout_ms / 1000
        try:
            while True:
                # librdkafka's consume(n, timeout) waits for all n or the timeout: take what is
                # fetched already, and wait (when allowed to block) for just the first record
                messages = self._consumer.consume(self._max_records, 0)
                left = max(0.0, deadline - time.monotonic())
                if messages or left <= 0:
                    break
                if not self._cooperative:
                    messages = self._consumer.consume(1, left)
                    if messages and self._max_records > 1:
                        messages += self._consumer.consume(self._max_records - 1, 0)
                    break
                time.sleep(min(POLL_SLICE_S, left))  # gevent's sleep: the viewers run meanwhile
        except KafkaException as exc:
            raise raised_error(exc) from None
        return self._batches(messages)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end offset as the last fetch reported it; None before any fetch."""
        try:
            _, high = self._consumer.get_watermark_offsets(ck.TopicPartition(tp.topic, tp.partition), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    def close(self) -> None:
        """Leave the group (if any) and release librdkafka; a metadata request still out is waited for."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        try:
            self._consumer.close()
        except RuntimeError:
            pass  # closed already

    # -- partitions without a group ------------------------------------------------------------------

    def _follow_partitions(self) -> None:
        """Without a group: ask for the topic's partitions now and then on a native thread, and assign
        the new ones at the start position once the answer is in. Never blocks the frame thread."""
        if self._executor is None:
            return
        if self._metadata is not None and self._metadata.done():
            done, self._metadata = self._metadata, None
            self._assign_new(done)
        if self._metadata is None and time.monotonic() >= self._next_metadata:
            self._metadata = self._executor.submit(self._consumer.list_topics, self._topic,
                                                   timeout=METADATA_TIMEOUT_S)

    def _assign_new(self, answer: concurrent.futures.Future[Any]) -> None:
        try:
            topic = answer.result().topics.get(self._topic)
        except KafkaException as exc:
            log.debug("topic metadata for %s: %s", self._topic, exc)
            topic = None
        if topic is None or topic.error is not None or not topic.partitions:
            self._next_metadata = time.monotonic() + METADATA_RETRY_S
            return
        self._next_metadata = time.monotonic() + METADATA_EVERY_S
        new = sorted(set(topic.partitions) - self._assigned)
        if not new:
            return
        start = ck.OFFSET_END if self._reset == "latest" else ck.OFFSET_BEGINNING
        self._consumer.incremental_assign([ck.TopicPartition(self._topic, p, start) for p in new])
        self._assigned.update(new)
        log.debug("reading %s partitions %s from the %s", self._topic, new, self._reset)

    # -- records and errors --------------------------------------------------------------------------

    def _batches(self, messages: list[Any]) -> dict[TopicPartition, list[Record]]:
        batches: dict[TopicPartition, list[Record]] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() not in _IGNORED and self._pending is None:
                    self._pending = kafka_error(err)
                continue
            topic, partition = msg.topic(), msg.partition()
            record = Record(topic, partition, msg.offset(), msg.timestamp()[1], msg.key(), msg.value(),
                            msg.headers() or [])
            batches.setdefault(TopicPartition(topic, partition), []).append(record)
        if not batches and self._pending is not None:
            err, self._pending = self._pending, None
            raise err
        return batches

    def _on_client_error(self, err: RdError) -> None:
        """Client-level errors (not a record's). Broker connections come and go and the probe says
        so, so those stay at DEBUG; a fatal one fails the next poll; any other kind is said once."""
        code = err.code()
        if err.fatal():
            self._pending = kafka_error(err)
        if code in _CONNECTION_CODES or code in self._errors_said:
            log.debug("librdkafka: %s: %s", err.name(), err.str())
            return
        self._errors_said.add(code)
        log.warning("Kafka client error (%s: %s)", type(kafka_error(err)).__name__, err.str())


_CONNECTION_CODES = frozenset({RdError._TRANSPORT, RdError._ALL_BROKERS_DOWN, RdError._RESOLVE,
                               RdError._NODE_UPDATE, RdError._DESTROY_BROKER, RdError._TIMED_OUT})
