"""KAFKA_CLIENT=confluent-kafka for worker.py: librdkafka's group consumer behind the part of
kafka-python's KafkaConsumer the analytics worker uses (subscribe with a rebalance listener,
poll, commit_async with a callback, commit, position, seek, end_offsets, highwater, assignment,
close), so the worker's commit modes, lag policies and rebalance handling are written once.

Why: the worker's own bench measured a bare kafka-python consumer at 2.52 ms of CPU a 720p frame,
twice the whole floor of decode + motion; librdkafka fetches and parses in C threads.

librdkafka runs the rebalance callbacks inside poll(), on the worker's thread, so the listener's
methods (kafka-python's AsyncConsumerRebalanceListener coroutines) are driven to completion there;
a commit_async the listener awaits during a rebalance commits synchronously, as the group
protocol needs the offsets stored before the partitions move.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Generator, Iterable
from typing import Any

import confluent_kafka as ck
from confluent_kafka import KafkaException
from kafka import errors as kerr
from kafka.structs import OffsetAndMetadata, TopicPartition

from .consumer import ConfluentConsumer
from .errors import kafka_error, raised_error

log = logging.getLogger(__name__)

ASSIGN_TIMEOUT_S = 5.0  # asking an assigned partition's commit and end offsets


class _Settled:
    """An awaitable that is already done (or failed): what commit_async gives a rebalance listener."""

    def __init__(self, error: Exception | None = None) -> None:
        self._error = error

    def __await__(self) -> Generator[None, None, None]:
        if self._error is not None:
            raise self._error
        return
        yield  # a generator, as __await__ must be


def _drive(result: Any) -> None:
    """Run a listener's coroutine to its end; it may only await settled awaitables."""
    if not inspect.iscoroutine(result):
        return
    try:
        result.send(None)
    except StopIteration:
        return
    result.close()
    raise RuntimeError("a rebalance listener awaited something librdkafka's callback cannot wait for")


def _ck(tp: TopicPartition, offset: int = ck.OFFSET_INVALID) -> ck.TopicPartition:
    return ck.TopicPartition(tp.topic, tp.partition, offset)


def _tps(partitions: Iterable[ck.TopicPartition]) -> set[TopicPartition]:
    return {TopicPartition(p.topic, p.partition) for p in partitions}


class ConfluentGroupConsumer(ConfluentConsumer):
    """librdkafka in a consumer group with the surface of kafka-python's KafkaConsumer that
    AnalyticsWorker uses. Errors leave as the kafka.errors classes kafka-python raises."""

    def __init__(self, **kwargs: Any) -> None:
        if not kwargs.get("group_id"):
            raise kerr.KafkaConfigurationError("the worker's consumer needs a group_id")
        super().__init__("", on_commit=self._on_commit, **kwargs)  # subscribe() names the topic
        self._listener: Any = None
        self._commit_callback: Callable[[Any, Any], None] | None = None
        self._in_rebalance = False

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self._topic = topics[0]
        self._listener = listener
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    # -- rebalances (inside poll, on the caller's thread) --------------------------------------------

    def _call_listener(self, name: str, partitions: list[ck.TopicPartition]) -> None:
        if self._listener is None:
            return
        self._in_rebalance = True
        try:
            _drive(getattr(self._listener, name)(_tps(partitions)))
        except Exception:  # an exception raised into librdkafka's callback would be lost there
            log.exception("rebalance listener %s failed", name)
        finally:
            self._in_rebalance = False

    def _on_assign(self, _consumer: Any, partitions: list[ck.TopicPartition]) -> None:
        """Start each partition at an offset known now: its commit, else its end (or beginning)
        as of this moment. librdkafka would resolve "latest" later, when fetching starts, and
        skip what was published in between; kafka-python resolves it before the first fetch."""
        try:
            starts = self._consumer.committed(partitions, timeout=ASSIGN_TIMEOUT_S)
            for p in starts:
                if p.offset < 0:
                    low, high = self._consumer.get_watermark_offsets(p, timeout=ASSIGN_TIMEOUT_S)
                    p.offset = high if self._reset == "latest" else low
            self._consumer.assign(starts)
        except KafkaException as exc:  # librdkafka assigns them itself after the callback
            log.warning("start offsets of %s not known (%s): librdkafka resolves them",
                        sorted(p.partition for p in partitions), raised_error(exc))
        self._call_listener("on_partitions_assigned", partitions)

    def _on_revoke(self, _consumer: Any, partitions: list[ck.TopicPartition]) -> None:
        self._call_listener("on_partitions_revoked", partitions)

    def _on_lost(self, _consumer: Any, partitions: list[ck.TopicPartition]) -> None:
        self._call_listener("on_partitions_lost", partitions)

    # -- offsets ------------------------------------------------------------------------------------

    def commit_async(self, offsets: dict[TopicPartition, OffsetAndMetadata],
                     callback: Callable[[Any, Any], None] | None = None) -> _Settled:
        """Commit without waiting; `callback(offsets, response)` runs in a later poll, `response` an
        exception when the commit failed. From a rebalance listener: commits before returning."""
        wanted = [_ck(tp, o.offset) for tp, o in offsets.items()]
        if self._in_rebalance:
            try:
                self._consumer.commit(offsets=wanted, asynchronous=False)
            except KafkaException as exc:
                return _Settled(raised_error(exc))
            return _Settled()
        if callback is not None:
            self._commit_callback = callback
        try:
            self._consumer.commit(offsets=wanted, asynchronous=True)
        except KafkaException as exc:
            raise raised_error(exc) from None
        return _Settled()

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int | None = None) -> None:
        """Commit and wait for the answer (librdkafka bounds the wait by its own request timeout)."""
        try:
            self._consumer.commit(offsets=[_ck(tp, o.offset) for tp, o in offsets.items()], asynchronous=False)
        except KafkaException as exc:
            raise raised_error(exc) from None

    def _on_commit(self, err: Any, partitions: list[ck.TopicPartition]) -> None:
        if self._commit_callback is None:
            return
        offsets = {TopicPartition(p.topic, p.partition): OffsetAndMetadata(p.offset, "", -1) for p in partitions}
        failed = next((p.error for p in partitions if p.error is not None), None)
        error = err if err is not None else failed
        if error is not None and error.code() == ck.KafkaError._NO_OFFSET:
            error = None  # nothing to commit is no failure
        self._commit_callback(offsets, kafka_error(error) if error is not None else None)

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        """The next offset to be read: the fetch position, else the committed offset, else where
        auto_offset_reset starts a partition with no commit."""
        timeout = (timeout_ms or 5000) / 1000
        try:
            fetched = self._consumer.position([_ck(tp)])[0].offset
            if fetched >= 0:
                return fetched
            committed = self._consumer.committed([_ck(tp)], timeout=timeout)[0].offset
            if committed >= 0:
                return committed
            low, high = self._consumer.get_watermark_offsets(_ck(tp), timeout=timeout)
        except KafkaException as exc:
            raise raised_error(exc) from None
        return high if self._reset == "latest" else low

    def seek(self, tp: TopicPartition, offset: int) -> None:
        try:
            self._consumer.seek(_ck(tp, offset))
        except KafkaException as exc:
            raise raised_error(exc) from None

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> dict[TopicPartition, int]:
        timeout = (timeout_ms or 5000) / 1000
        ends = {}
        try:
            for tp in tps:
                ends[tp] = self._consumer.get_watermark_offsets(_ck(tp), timeout=timeout)[1]
        except KafkaException as exc:
            raise raised_error(exc) from None
        return ends
