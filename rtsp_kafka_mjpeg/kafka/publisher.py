"""Publishing frames to Kafka: keys and headers, bounded in-flight bytes, and a
producer that recovers from every broker failure by itself.

Bounded memory: kafka-python 3.x has no `buffer_memory` bound, so we keep our own: while the bytes
awaiting the broker exceed the limit, new frames are dropped (counted) instead of queued. During
an outage memory stays bounded and, once it returns, viewers get live frames, not a stale backlog.

Never stuck (issues 10 and 22): a frame batch that expires after being sent once (a node died with
it in flight) makes kafka-python drop its producer id, and 3.0.12 then never asked for a new one,
nor survived that request timing out: producer_id.py fixes both, so the client recovers by itself
as Java's does and a node's death costs only the frames the cluster could not take. As a last
resort, a producer that stops answering frames (a frame unanswered past the delivery timeout and
a request timeout, stall_after_s) or reaches a fatal state is replaced: a background thread force-closes the old one and
connects a new one while frames are dropped and counted, so the capture loop never blocks. No
frame is re-sent by the new producer, so idempotence still means no duplicates.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kafka.errors import (
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaError,
    OutOfOrderSequenceNumberError,
    ProducerFencedError,
    UnknownProducerIdError,
)

from ..frame import RECORD_OVERHEAD, Frame
from ..settings import ProducerSettings
from .broker_check import explained_failures
from .clients import CONFLUENT, producer_class

log = logging.getLogger(__name__)

STALL_MARGIN_S = 1.0  # beyond the delivery timeout, before an unanswered frame means "stuck"
RENEW_BACKOFF_S = (0.5, 5.0)  # first and longest wait between attempts to connect a new producer
# Errors after which a producer can never deliver again: it is replaced at once.
FATAL_ERRORS = (IllegalStateError, ProducerFencedError)
# One batch's producer id or sequence went wrong (a node died with it in flight). The client
# recovers by itself: kafka-python bumps the epoch (KIP-360) or asks for a new id
# (producer_id.py), librdkafka bumps its epoch, so only that frame is lost. Replacing the producer
# for them (as before issue 22) dropped every camera's frames in flight a second time. A
# librdkafka error it calls fatal carries `fatal` and does replace the producer.
SEQUENCE_ERRORS = (OutOfOrderSequenceNumberError, UnknownProducerIdError, InvalidProducerEpochError)
STATE_ERRORS = FATAL_ERRORS + SEQUENCE_ERRORS


def request_timeout_ms(settings: ProducerSettings) -> int:
    """Half of what a frame may wait after lingering: a request lost with a dying broker is retried
    once within the delivery timeout instead of using it all up."""
    return max(1000, (settings.delivery_timeout_ms - settings.linger_ms) // 2)


# librdkafka's idempotent producer (issue 22): a frame it expires while the brokers fail over makes
# it bump its producer epoch and send the frames queued behind it again under the new epoch, which
# the brokers cannot deduplicate: a run of ~8 frames written twice at each of its once-a-second
# expiry scans (362 repeats in 12 failover events), and a frame failed by spent retries does the
# same. So it keeps frames this long and retries until then (none repeated in a round of every
# event); our own delivery timeout says "failing" (frames_unanswered) and FramePublisher's
# in-flight limit drops new frames meanwhile. An outage longer than this may still repeat frames.
RDKAFKA_IDEMPOTENT_KEEP_MS = 60_000


def librdkafka_keeps_frames(settings: ProducerSettings) -> bool:
    """True where the client keeps unanswered frames past KAFKA_DELIVERY_TIMEOUT_MS (see above)."""
    return settings.kafka_client == CONFLUENT and settings.acks == "all"


def client_delivery_timeout_ms(settings: ProducerSettings) -> int:
    if librdkafka_keeps_frames(settings):
        return max(settings.delivery_timeout_ms, RDKAFKA_IDEMPOTENT_KEEP_MS)
    return settings.delivery_timeout_ms


def producer_config(settings: ProducerSettings) -> dict[str, Any]:
    """kafka-python KafkaProducer arguments for live frames."""
    acks: int | str = "all" if settings.acks == "all" else int(settings.acks)
    return {
        **settings.kafka_client_config(),
        "acks": acks,
        "enable_idempotence": acks == "all",
        "linger_ms": settings.linger_ms,
        "compression_type": None,  # JPEG does not compress further
        "max_request_size": settings.max_message_bytes + RECORD_OVERHEAD,
        "batch_size": 256 * 1024,
        "delivery_timeout_ms": client_delivery_timeout_ms(settings),
        "request_timeout_ms": request_timeout_ms(settings),
        "max_block_ms": int(settings.connect_timeout_s * 1000),
        # While leadership moves, brokers disagree for a moment about who leads (under load: seen
        # 0.9 s of NotLeaderForPartition from the new leader too); a frame failed by exhausted
        # retries also breaks the idempotent sequence. 20 retries 50 ms apart ride that out, yet a
        # lasting refusal (NotEnoughReplicas) still surfaces as itself within ~1-2 s, well inside
        # the delivery timeout, instead of as an expiry hiding the cause.
        "retries": 2_147_483_647 if librdkafka_keeps_frames(settings) else 20,
        "retry_backoff_ms": 50,
        # Each failed connect to a dead leader asks for fresh metadata: retrying at least twice a
        # second finds the new leader within half a second of its election.
        "reconnect_backoff_max_ms": 500,
        "metrics_enabled": False,  # kafka-python's own sensors cost CPU per request; we count ourselves
    }


def stall_after_s(settings: ProducerSettings) -> float:
    """How long a frame may stay unanswered before the producer counts as stuck: the delivery
    timeout, plus one request timeout, plus a second. A client answers a frame late by up to a
    request's time when a request is in flight: kafka-python's sender expires nothing while its
    InitProducerId waits behind acks=all produce requests on a connection (seen twice in 20
    failover events at the delivery timeout + 1 s alone), and librdkafka does not expire a frame
    whose request is in flight (and scans for expiry once a second). Replacing a producer that
    was about to answer dropped frames in flight on healthy partitions, and put frames the
    brokers still wrote after newer ones."""
    margin = STALL_MARGIN_S + request_timeout_ms(settings) / 1000
    if settings.kafka_client == CONFLUENT:
        margin += 1.0
    return client_delivery_timeout_ms(settings) / 1000 + margin


def needs_new_producer(err: Exception) -> bool:
    """True when, after failing a frame with `err`, the producer can never deliver again: a fatal
    state (IllegalStateError, fenced, a plain KafkaError: kafka-python's fatal state, or a
    librdkafka error marked fatal).

    Not an expiry (KafkaTimeoutError): a producer without a reachable leader expires every frame
    and recovers once the leader moves; nor a sequence error, which the client recovers from
    (SEQUENCE_ERRORS). If the producer then stops answering frames, the stall check replaces it."""
    return isinstance(err, FATAL_ERRORS) or type(err) is KafkaError or bool(getattr(err, "fatal", False))


def close_producer(producer: Any, timeout_s: float) -> None:
    """Close a KafkaProducer (or a ConfluentProducer) within about `timeout_s` whatever its state; never raises.

    kafka-python 3.0.12's close() first flushes and raises KafkaTimeoutError when frames are stuck,
    before reaching its own force-close, leaving its I/O thread running: so give the frames one
    bounded flush, then force the I/O thread closed (failing what is left) before close()."""
    if timeout_s > 0:
        try:
            producer.flush(timeout=timeout_s)
        except KafkaError:
            pass  # what is still queued is failed by the force-close below
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(max(timeout_s, 1.0))
    elif hasattr(producer, "force_close"):  # confluent.producer.ConfluentProducer: purges librdkafka's queues
        producer.force_close(max(timeout_s, 1.0))
    try:
        producer.close(timeout=0)
    except KafkaError as err:
        log.debug("Kafka producer close: %s: %s", type(err).__name__, err)


@dataclasses.dataclass(slots=True)
class _Pending:
    camera: str
    seq: int
    size: int
    generation: int
    queued_at: float


class CameraCounts:
    """What became of one camera's frames: acknowledged (count, bytes, seq ranges) or dropped."""

    def __init__(self) -> None:
        self.sent = 0
        self.sent_bytes = 0
        self.acknowledged = SeqRanges()
        self.dropped: Counter[str] = Counter()


class SeqRanges:
    """Acknowledged frame sequence numbers as ranges: a few numbers however long the run, so the
    producer can say at exit exactly which frames the brokers acknowledged."""

    MAX_RANGES = 1000  # beyond this the oldest are forgotten: memory stays bounded in endless outages

    def __init__(self) -> None:
        self._ranges: list[list[int]] = []  # sorted, disjoint, never adjacent
        self._forgotten = False

    def add(self, seq: int) -> None:
        ranges = self._ranges
        if ranges and ranges[-1][0] <= seq:  # acks of one partition come in order: the usual case
            last = ranges[-1]
            if seq <= last[1]:
                return
            if seq == last[1] + 1:
                last[1] = seq
                return
            ranges.append([seq, seq])
        else:
            merged: list[list[int]] = []
            for lo, hi in sorted([*ranges, [seq, seq]]):
                if merged and lo <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            self._ranges = ranges = merged
        if len(ranges) > self.MAX_RANGES:
            del ranges[0]
            self._forgotten = True

    def __str__(self) -> str:
        text = ",".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in self._ranges) or "none"
        return f"(older forgotten),{text}" if self._forgotten else text


class DeliveryLog:
    """One log line per state change of delivery: when it starts failing (naming the cause), for
    each further cause, when the producer is replaced first, and when delivery resumes: once every
    camera whose frames failed delivers again (one producer carries many cameras; while a network
    cut keeps one partition's leader away, the others' frames go through, and are no news)."""

    def __init__(self) -> None:
        self._failing_since: float | None = None
        self._failing_cameras: set[str] = set()
        self._causes: Counter[str] = Counter()
        self._restarts = 0
        self._recovered_from = float("-inf")  # when the frame that ended the last failure was queued
        self.resumed_at = float("-inf")  # frames queued before are that outage's backlog, not news

    @property
    def failing(self) -> bool:
        return self._failing_since is not None

    def failed(self, err: Exception, now: float, queued_at: float = float("inf"), camera: str = "") -> str | None:
        """A frame failed. One queued before the frame that ended the last failure is a late answer
        about that outage (librdkafka reports expired frames after newer ones got through): it is
        counted as dropped by the caller, and does not start a new failure here."""
        if self._failing_since is None and queued_at < self._recovered_from:
            return None
        if camera:
            self._failing_cameras.add(camera)
        cause = type(err).__name__
        message = None
        if self._failing_since is None:
            self._failing_since = now
            message = f"Kafka delivery failing ({cause}: {_short(err)}); dropping frames until it recovers"
        elif cause not in self._causes:
            message = f"Kafka delivery still failing, now also {cause}: {_short(err)}"
        self._causes[cause] += 1
        return message

    def unanswered(self, age_s: float, now: float, cameras: set[str] | frozenset[str] = frozenset()) -> str | None:
        """No frame answered for `age_s` though the client keeps them longer (librdkafka at
        acks=all): delivery counts as failing from now, once, and resumes once each of `cameras`
        (those with a frame that old) delivers again. Without them, any answer said "resumed" while
        the frames of a camera whose leader was still being replaced waited: seen as 76
        "failing"/"resumed" pairs in 5 failover rounds."""
        self._failing_cameras.update(cameras)
        if self._failing_since is not None:
            return None
        self._failing_since = now
        return (f"Kafka delivery failing (KafkaTimeoutError: no answer from the brokers for {age_s:.1f}s); "
                "dropping frames until it recovers")

    def replaced(self, reason: str, now: float) -> str | None:
        self._restarts += 1
        if self._failing_since is None:
            self._failing_since = now
        if self._restarts > 1:
            return None
        return f"Kafka producer replaced by a new one ({reason})"

    def delivered(self, now: float, queued_at: float = float("-inf"), camera: str = "") -> str | None:
        if self._failing_since is None:
            return None
        self._failing_cameras.discard(camera)
        if self._failing_cameras:
            return None  # another camera's frames still fail
        self._recovered_from = queued_at
        causes = ", ".join(f"{count} {cause}" for cause, count in self._causes.most_common()) or "none"
        restarts = f"; producer replaced {self._restarts} time(s)" if self._restarts else ""
        message = f"Kafka delivery resumed after {now - self._failing_since:.1f}s (frames failed: {causes}{restarts})"
        self._failing_since, self._causes, self._restarts = None, Counter(), 0
        self.resumed_at = now
        return message


def _short(err: Exception, limit: int = 200) -> str:
    """The error's own message, else what its kind means (a broker's errors often carry none)."""
    detail = err.args[0] if err.args and err.args[0] not in (None, "", "None") else None
    text = " ".join(str(detail or getattr(err, "description", "") or "no detail").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FramePublisher:
    """Sends Frames to the topic asynchronously, counts what happened to each, and replaces its
    KafkaProducer whenever that one can no longer deliver (see the module docstring)."""

    def __init__(self, settings: ProducerSettings,
                 producer_factory: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._topic = settings.topic
        self._limit = settings.max_inflight_bytes
        self._stall_s = stall_after_s(settings)
        self._keeps = librdkafka_keeps_frames(settings)
        self._delivery_s = settings.delivery_timeout_ms / 1000
        self._factory = producer_factory or (lambda: producer_class(settings.kafka_client)(**producer_config(settings)))
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}  # insertion order = send order
        self._tokens = itertools.count()
        self._inflight = 0
        self._generation = 0  # frames of older producers are "retired"
        self.sent = 0
        self.sent_bytes = 0
        self.restarts = 0
        self.dropped: Counter[str] = Counter()
        self.cameras: dict[str, CameraCounts] = {}  # per camera; the totals above are their sums
        self._log = DeliveryLog()
        self._closing = threading.Event()
        self._renewer: threading.Thread | None = None
        with explained_failures(settings):
            self._producer: Any | None = self._factory()

    @property
    def inflight_bytes(self) -> int:
        return self._inflight

    def camera(self, camera_id: str) -> CameraCounts:
        """One camera's counts (created at its first frame)."""
        counts = self.cameras.get(camera_id)
        if counts is None:
            counts = self.cameras.setdefault(camera_id, CameraCounts())
        return counts

    def _drop(self, camera: str, reason: str, count: int = 1) -> None:
        """Count dropped frames, in total and for their camera (caller holds the lock)."""
        self.dropped[reason] += count
        self.camera(camera).dropped[reason] += count

    def publish(self, frame: Frame) -> bool:
        """Queue a frame for the broker; False (and counted) when it is dropped instead."""
        size = len(frame.jpeg)
        self._check_stalled()
        with self._lock:
            producer, generation = self._producer, self._generation
            if producer is None:
                self._drop(frame.camera_id, "producer_restart")
                return False
            if self._inflight + size > self._limit:
                self._drop(frame.camera_id, "backpressure")
                return False
            token = next(self._tokens)
            self._pending[token] = _Pending(frame.camera_id, frame.seq, size, generation, self._clock())
            self._inflight += size
        try:
            future = producer.send(self._topic, value=frame.jpeg, key=frame.kafka_key(),
                                   headers=frame.kafka_headers(), timestamp_ms=frame.capture_ts_ns // 1_000_000)
        except KafkaError as err:
            self._on_error(token, err)
            return False
        future.add_callback(self._on_sent, token)
        future.add_errback(self._on_error, token)
        return True

    def _take(self, token: int) -> _Pending | None:
        """Remove a frame from the pending ones (None if it was already written off)."""
        with self._lock:
            pending = self._pending.pop(token, None)
            if pending is not None:
                self._inflight -= pending.size
            return pending

    def _on_sent(self, token: int, _metadata: Any) -> None:
        pending = self._take(token)
        if pending is None:
            return
        with self._lock:
            self.sent += 1
            self.sent_bytes += pending.size
            counts = self.camera(pending.camera)
            counts.sent += 1
            counts.sent_bytes += pending.size
            counts.acknowledged.add(pending.seq)
            message = self._log.delivered(self._clock(), pending.queued_at, pending.camera)
        if message:
            log.info("%s", message)

    def _on_error(self, token: int, err: Exception) -> None:
        pending = self._take(token)
        if pending is None:
            return
        with self._lock:
            if self._closing.is_set():  # failed by the force-close at exit
                self._drop(pending.camera, "unsent_at_exit")
                return
            if pending.generation != self._generation:  # failed by the force-close of a retired producer
                self._drop(pending.camera, "producer_restart")
                return
            self._drop(pending.camera, f"send_failed:{type(err).__name__}")
            message = self._log.failed(err, self._clock(), pending.queued_at, pending.camera)
        if message:
            log.warning("%s", message)
        if needs_new_producer(err):
            self._replace(f"a frame failed with {type(err).__name__}")

    def _check_stalled(self) -> None:
        """A frame kept past the delivery timeout (librdkafka at acks=all) means delivery is failing;
        safety net: a frame of the current producer unanswered far past the client's own timeout."""
        now = self._clock()
        with self._lock:
            oldest = next((p for p in self._pending.values() if p.generation == self._generation), None)
            if oldest is None or self._producer is None:
                return
            age = now - oldest.queued_at
            message = None
            if self._keeps and age > self._delivery_s:
                first, cameras = self._overdue(self._log.resumed_at, now - self._delivery_s)
                if first is not None:
                    message = self._log.unanswered(now - first, now, cameras)
        if message:
            log.warning("%s", message)
        if age > self._stall_s:
            self._replace(f"a frame unanswered for {age:.1f}s")

    def _overdue(self, queued_from: float, queued_before: float) -> tuple[float | None, set[str]]:
        """When the oldest frame of the current producer queued in [queued_from, queued_before) was
        queued, and the cameras of those frames (caller holds the lock). Frames queued before the
        last "resumed" are the outage's backlog, answered in order as it drains: not a new failure.
        Pending frames are in queueing order, so the walk stops at the first newer one."""
        first, cameras = None, set()
        for p in self._pending.values():
            if p.queued_at >= queued_before:
                break
            if p.generation == self._generation and p.queued_at >= queued_from:
                first = p.queued_at if first is None else first
                cameras.add(p.camera)
        return first, cameras

    def _replace(self, reason: str) -> None:
        """Retire the current producer and connect a new one in the background (once at a time)."""
        with self._lock:
            old = self._producer
            if old is None or self._closing.is_set():
                return  # a replacement is under way, or we are closing
            self._producer = None
            self._generation += 1
            self.restarts += 1
            message = self._log.replaced(reason, self._clock())
        if message:
            log.warning("%s", message)
        else:
            log.debug("Kafka producer replaced again (%s)", reason)
        self._renewer = threading.Thread(target=self._renew, args=(old,), name="kafka-producer-renew", daemon=True)
        self._renewer.start()

    def _renew(self, old: Any) -> None:
        close_producer(old, timeout_s=0)
        self._write_off(lambda p: p.generation != self._generation, "producer_restart")
        backoff = RENEW_BACKOFF_S[0]
        while not self._closing.is_set():
            producer = None
            try:
                producer = self._factory()
                producer.partitions_for(self._topic)  # metadata now, so send() never blocks on it
            except Exception as err:  # noqa: BLE001 - any failure: say it, wait, try again
                with self._lock:
                    message = self._log.failed(err, self._clock())
                if message:
                    log.warning("%s", message)
                if producer is not None:
                    close_producer(producer, timeout_s=0)
                self._closing.wait(backoff)
                backoff = min(backoff * 2, RENEW_BACKOFF_S[1])
                continue
            with self._lock:
                if not self._closing.is_set():
                    self._producer, producer = producer, None
            if producer is not None:  # closing meanwhile
                close_producer(producer, timeout_s=0)
            return

    def _write_off(self, which: Callable[[_Pending], bool], reason: str) -> None:
        """Count frames whose producer is gone as dropped: nothing can answer them any more."""
        with self._lock:
            gone = [token for token, p in self._pending.items() if which(p)]
            for token in gone:
                pending = self._pending.pop(token)
                self._inflight -= pending.size
                self._drop(pending.camera, reason)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued within `timeout_s` (one wait), then close; never raises.

        Ends with one line per camera saying which frames (seq ranges) the brokers acknowledged."""
        deadline = self._clock() + timeout_s
        renewer = self._renewer
        if renewer is not None:
            self._closing.set()  # stop connecting a new producer
            renewer.join(timeout_s)
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            close_producer(producer, max(0.0, deadline - self._clock()))
        self._closing.set()
        self._write_off(lambda _p: True, "unsent_at_exit")
        for camera_id, counts in sorted(self.cameras.items()):
            log.info("camera %s: Kafka acknowledged %d frames, seqs %s", camera_id, counts.sent, counts.acknowledged)
