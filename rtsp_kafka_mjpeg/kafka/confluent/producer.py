"""KAFKA_CLIENT=confluent-kafka: librdkafka behind the part of kafka-python's KafkaProducer that
FramePublisher uses, so the publisher's logic (bounded bytes, counters, replacement of a stuck
producer, one log line per state change) is the same whichever client carries the frames.

Why an adapter and not a second publisher: FramePublisher's recovery rules were proven on real
brokers and clusters; keeping them in one place means both clients are held to them. The adapter
takes KafkaProducer's keyword arguments (publisher.producer_config stays the one source of truth),
translates them to librdkafka's names, and turns every librdkafka error into the kafka.errors
class kafka-python raises for the same failure, so the delivery log reads the same.

librdkafka calls back (delivery reports, logs, client errors) only from poll()/flush(): one
daemon thread polls until the adapter is closed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, NamedTuple

import confluent_kafka
from confluent_kafka import KafkaError as RdError
from confluent_kafka import KafkaException
from kafka import errors as kerr
from kafka.future import Future

from .errors import CONNECTION_CODES, RdkafkaLog, kafka_error, raised_error

log = logging.getLogger(__name__)
rdkafka_log = logging.getLogger(f"{__name__}.librdkafka")

POLL_S = 0.1  # delivery reports wait at most this long for the poll thread
# librdkafka scans for expired frames once a second: expire them this much early, so each frame is
# still answered within the delivery timeout (FramePublisher counts a later answer as "stuck").
EXPIRY_SCAN_MS = 500
QUEUE_MAX = 2_147_483_647  # librdkafka's own queue bounds at their maximum: PRODUCER_MAX_INFLIGHT_BYTES bites first
# librdkafka asks again for the leader of a partition whose broker is down only on its once-a-second
# topic scan (not configurable): after a crashed leader was replaced it wrote again 0.2-0.9 s later
# (4 rounds; 1.2-1.8 s in 3 more with its debug log on), kafka-python 0.1-0.3 s. Any metadata
# answer updates its leaders, so while a frame waits unanswered we ask ourselves, as kafka-python
# does on each failed connect to the dead leader: 0.1-0.4 s (5 rounds).
LEADER_QUERY_AFTER_S = 0.3  # a frame unanswered this long (acks=all on a healthy cluster: ~2-20 ms)
LEADER_QUERY_EVERY_S = 0.2
LEADER_QUERY_TIMEOUT_S = 0.5


# -- configuration ---------------------------------------------------------------------------------

def librdkafka_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """librdkafka properties for KafkaProducer keyword arguments (publisher.producer_config's).

    Every argument must be known here: a setting silently dropped would make the two clients differ."""
    args = dict(kwargs)
    acks = args.pop("acks", 1)
    idempotent = bool(args.pop("enable_idempotence", False))
    conf: dict[str, Any] = {
        "bootstrap.servers": ",".join(_as_list(args.pop("bootstrap_servers"))),
        "security.protocol": args.pop("security_protocol", "PLAINTEXT").lower(),
        "client.id": args.pop("client_id", "rtsp-kafka-mjpeg"),
        "acks": "all" if acks in ("all", -1) else str(acks),
        "enable.idempotence": idempotent,
        "linger.ms": args.pop("linger_ms", 0),
        "compression.type": args.pop("compression_type", None) or "none",
        "message.max.bytes": args.pop("max_request_size", 1_048_576),
        "batch.size": args.pop("batch_size", 16_384),
        "request.timeout.ms": args.pop("request_timeout_ms", 30_000),
        "retries": args.pop("retries", 2_147_483_647),
        "retry.backoff.ms": args.pop("retry_backoff_ms", 100),
        "reconnect.backoff.ms": args.pop("reconnect_backoff_ms", 50),
        "reconnect.backoff.max.ms": args.pop("reconnect_backoff_max_ms", 1000),
        # Idempotent: one request in flight. With more, a request refused by a partition's old
        # leader (NOT_LEADER_FOR_PARTITION) makes the next one skip a sequence number, and
        # librdkafka recovers by bumping its epoch and sending again frames a broker may already
        # have written (librdkafka issue #4953, open): a frame on the topic twice. One in flight
        # cost no latency here: 16 cameras x 15 fps x 60 KB to three nodes, p50 10.6-15.0 ms
        # against 14.0-27.4 ms with five; a waiting camera's frames go out together in the next request.
        "max.in.flight.requests.per.connection": args.pop("max_in_flight_requests_per_connection",
                                                          1 if idempotent else 5),
        # kafka-python's partitioner (murmur2 of the key, Java's): each camera lands on the same
        # partition whichever client wrote it, so per-camera order holds across a client switch.
        "partitioner": "murmur2_random",
        "queue.buffering.max.messages": QUEUE_MAX,
        "queue.buffering.max.kbytes": QUEUE_MAX,
    }
    delivery_ms = args.pop("delivery_timeout_ms", 120_000)
    conf["message.timeout.ms"] = max(delivery_ms - EXPIRY_SCAN_MS, conf["linger.ms"] + 1, 1)
    if "sasl_mechanism" in args:
        conf.update({"sasl.mechanism": args.pop("sasl_mechanism"), "sasl.username": args.pop("sasl_plain_username"),
                     "sasl.password": args.pop("sasl_plain_password")})
    if "ssl_cafile" in args:
        conf["ssl.ca.location"] = args.pop("ssl_cafile")
    # Waits of our own (start-up metadata, partitions_for); librdkafka has no such settings.
    args.pop("bootstrap_timeout_ms", None)
    args.pop("max_block_ms", None)
    args.pop("metrics_enabled", None)  # librdkafka's statistics are off unless statistics.interval.ms is set
    if args:
        raise ValueError(f"KafkaProducer arguments with no librdkafka translation: {', '.join(sorted(args))}")
    return conf


def _as_list(servers: str | list[str]) -> list[str]:
    return servers.split(",") if isinstance(servers, str) else list(servers)


# -- the producer ------------------------------------------------------------------------------------

class Delivered(NamedTuple):
    """What a successful send's callback gets (the fields of kafka-python's RecordMetadata it uses)."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class ConfluentProducer:
    """librdkafka with the surface of kafka-python's KafkaProducer that FramePublisher uses:
    send() -> future (add_callback / add_errback), flush(), partitions_for(), close(), and
    force_close() (fail every frame still queued or in flight, as kafka-python's sender does).

    Construction waits for the cluster's metadata (bootstrap_timeout_ms) and raises
    KafkaTimeoutError when the brokers cannot be reached, like KafkaProducer."""

    def __init__(self, **kwargs: Any) -> None:
        self._wait_s = kwargs.get("max_block_ms", 60_000) / 1000
        bootstrap_s = kwargs.get("bootstrap_timeout_ms", kwargs.get("max_block_ms", 60_000)) / 1000
        conf = librdkafka_config(kwargs)
        conf.update(logger=RdkafkaLog(rdkafka_log), error_cb=self._on_client_error)
        self._fatal: RdError | None = None
        self._errors_said: set[int] = set()
        self._ready = False  # until the brokers answered once, a failure is the constructor's to raise
        self._closed = threading.Event()
        try:
            self._producer = confluent_kafka.Producer(conf)
        except KafkaException as exc:
            raise kerr.KafkaConfigurationError(f"librdkafka refused its configuration: {raised_error(exc)}") from None
        self._topics: set[str] = set()  # written to: their leaders are asked for when frames wait
        # unanswered frames -> when sent, oldest first: a partition whose leader died waits while
        # the others are answered (acks=all: from the moment the dead node leaves their ISR)
        self._unanswered: dict[Future, float] = {}
        self._unanswered_lock = threading.Lock()
        self._poller = threading.Thread(target=self._poll, name="confluent-kafka-poll", daemon=True)
        self._poller.start()
        self._leader_watch = threading.Thread(target=self._watch_leaders, name="confluent-kafka-leaders",
                                              daemon=True)
        try:
            self._producer.list_topics(timeout=bootstrap_s)
        except KafkaException as exc:
            self.force_close(1.0)
            self.close()
            raise kerr.KafkaTimeoutError(f"Failed to bootstrap within {bootstrap_s:g} s "
                                         f"({raised_error(exc).__class__.__name__}: {raised_error(exc)})") from None
        self._ready = True
        self._leader_watch.start()

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None) -> Future:
        """Queue one record; the future is settled from the poll thread (or at once, on failure)."""
        future = Future()
        if self._closed.is_set():
            raise kerr.IllegalStateError("Cannot send after the producer is closed.")
        self._topics.add(topic)
        with self._unanswered_lock:
            self._unanswered[future] = time.monotonic()
        try:
            self._producer.produce(topic, value, key, headers=headers, timestamp=timestamp_ms or 0,
                                   on_delivery=lambda err, msg: self._settle(future, err, msg))
        except (KafkaException, BufferError) as exc:
            with self._unanswered_lock:
                self._unanswered.pop(future, None)
            raise raised_error(exc, self._fatal) from None
        return future

    def _settle(self, future: Future, err: RdError | None, msg: Any) -> None:
        with self._unanswered_lock:
            self._unanswered.pop(future, None)
        if err is None:
            future.success(Delivered(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1]))
        else:
            future.failure(kafka_error(err, self._fatal))

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every queued record's answer; KafkaTimeoutError if some are still pending."""
        left = self._producer.flush(-1 if timeout is None else timeout)
        if left:
            raise kerr.KafkaTimeoutError(f"Timeout waiting for {left} record(s)")

    def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions, from fresh metadata (waits up to max_block_ms)."""
        try:
            meta = self._producer.list_topics(topic, timeout=self._wait_s).topics.get(topic)
        except KafkaException as exc:
            raise kerr.KafkaTimeoutError(f"Failed to update metadata after {self._wait_s:g} secs. "
                                         f"({raised_error(exc)})") from None
        if meta is None or meta.error is not None:
            raise kerr.KafkaTimeoutError(f"Failed to update metadata after {self._wait_s:g} secs. "
                                         f"({meta.error.str() if meta and meta.error else 'no such topic'})")
        return set(meta.partitions)

    def force_close(self, timeout: float = 1.0) -> None:
        """Fail every record still queued or in flight (errbacks get IllegalStateError, as with
        kafka-python's forced close) and stop the poll thread; never raises."""
        if self._closed.is_set():
            return
        try:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.flush(timeout)  # serves the purged records' reports
        except (KafkaException, RuntimeError) as exc:
            log.debug("librdkafka purge: %s", exc)
        self._stop_polling(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued within `timeout` (None: for ever), fail the rest, release librdkafka."""
        if not self._closed.is_set():
            if timeout is None or timeout > 0:
                left = self._producer.flush(-1 if timeout is None else timeout)
                if left:
                    log.debug("closing with %d record(s) unanswered: failing them", left)
            self.force_close(1.0)
        if self._poller is threading.current_thread():
            return  # librdkafka's close() from its own callback would deadlock
        try:
            self._producer.close()
        except RuntimeError:
            pass  # closed already

    def _stop_polling(self, timeout: float) -> None:
        self._closed.set()
        if self._leader_watch.is_alive() and self._leader_watch is not threading.current_thread():
            self._leader_watch.join(LEADER_QUERY_TIMEOUT_S + 1.0)  # librdkafka must not close under it
        if self._poller is not threading.current_thread():
            self._poller.join(max(timeout, POLL_S * 2))

    def _watch_leaders(self) -> None:
        """While a frame waits unanswered past LEADER_QUERY_AFTER_S, ask for its topics' metadata."""
        while not self._closed.wait(LEADER_QUERY_EVERY_S):
            with self._unanswered_lock:
                oldest = next(iter(self._unanswered.values()), None)
            if oldest is None or time.monotonic() - oldest < LEADER_QUERY_AFTER_S:
                continue
            for topic in list(self._topics):
                try:
                    self._producer.list_topics(topic, timeout=LEADER_QUERY_TIMEOUT_S)
                except (KafkaException, RuntimeError) as exc:
                    log.debug("asking for %s's leaders: %s", topic, exc)

    def _poll(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(POLL_S)
            except Exception as exc:  # noqa: BLE001 - a callback's failure must not end the polling
                log.warning("librdkafka poll: %s: %s", type(exc).__name__, exc)

    def _on_client_error(self, err: RdError) -> None:
        """Client-level errors (not a record's): broker connections come and go, and FramePublisher
        says so through the records' answers, so those stay at DEBUG; any other kind is said once.
        At start-up the constructor raises instead (explained_failures makes that one line)."""
        if err.fatal():
            self._fatal = err
        code = err.code()
        if not self._ready or code in CONNECTION_CODES or code in self._errors_said:
            log.debug("librdkafka: %s: %s", err.name(), err.str())
            return
        self._errors_said.add(code)
        log.warning("Kafka client error (%s: %s)", type(kafka_error(err)).__name__, err.str())
