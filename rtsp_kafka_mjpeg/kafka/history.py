"""One camera's past, read back from the topic's retention: the heart of rewind.

Every frame is already a record on the camera's partition (key = camera id, murmur2 like Java's
producer and both our clients), stamped with its capture time (CreateTime). So a moment is found
with the broker's time index (``offsets_for_times`` on that partition), and the records after it
are read in order, skipping other cameras that share the partition.

Each reader is its own short-lived kafka-python consumer with no group (nothing committed, no
rebalance, no effect on live viewers or the workers), closed when its client leaves. kafka-python
and not librdkafka: consumer.py serves viewers from gevent greenlets, and kafka-python's waits
cooperate with them (a blocking librdkafka call would stall every viewer).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from ..frame import BadRecord, Frame, frame_from_record
from ..settings import ConsumerSettings
from .polling import FETCH_OVERHEAD

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
POLL_MS = 100  # a caught-up reader waits this long for the next record (also how soon it sees close)


class HistoryUnavailable(Exception):
    """The brokers could not answer a question about the past (one line for the user)."""


@dataclasses.dataclass(frozen=True)
class Retained:
    """What the topic holds of one camera's partition: first and last record times (ns), and
    the offsets they bound. Empty when the partition holds nothing."""

    first_ts_ns: int | None
    last_ts_ns: int | None
    begin: int
    end: int

    @property
    def empty(self) -> bool:
        return self.first_ts_ns is None


def partition_for(camera_id: str, partitions: int) -> int:
    """The partition the producers write `camera_id` to (kafka-python's default partitioner, murmur2
    of the key like Java's; the confluent client is configured to match)."""
    return (murmur2(camera_id.encode()) & 0x7FFFFFFF) % partitions


class CameraHistory:
    """A reader of one camera's retained frames. Use as a context manager; not thread-safe."""

    def __init__(self, settings: ConsumerSettings, camera_id: str, api_version: tuple[int, ...] | None = None) -> None:
        """`api_version`: the brokers' version as an earlier reader found it (`self.api_version`):
        given, the reader skips kafka-python's version probe, which cost ~100 ms of the first
        replayed frame's 150 ms budget."""
        self.camera_id = camera_id
        self._max_bytes = settings.max_message_bytes
        try:
            self._consumer = KafkaConsumer(
                **settings.kafka_client_config(), group_id=None, enable_auto_commit=False,
                auto_offset_reset="latest", fetch_max_wait_ms=POLL_MS, fetch_min_bytes=1,
                max_partition_fetch_bytes=settings.max_message_bytes + FETCH_OVERHEAD,
                reconnect_backoff_max_ms=1000, **({"api_version": api_version} if api_version else {}))
            self.api_version: tuple[int, ...] | None = self._consumer.config.get("api_version")
            partitions = self._consumer.partitions_for_topic(settings.topic)
        except KafkaError as err:
            raise HistoryUnavailable(f"cannot read the topic's history: {type(err).__name__}") from None
        if not partitions:
            self.close()
            raise HistoryUnavailable(f"topic {settings.topic!r} has no partitions")
        self.tp = TopicPartition(settings.topic, partition_for(camera_id, len(partitions)))
        self._consumer.assign([self.tp])
        self._fetched: collections.deque[Any] = collections.deque()  # polled, not yet handed out

    def __enter__(self) -> CameraHistory:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close(autocommit=False)

    # -- questions about the retained span ---------------------------------------------------------

    def offset_at(self, ts_ns: int) -> int | None:
        """The first offset of the partition whose capture time is at or after `ts_ns` (the
        broker's time index), None when every record is older."""
        found = self._consumer.offsets_for_times({self.tp: max(0, ts_ns // NS_PER_MS)})[self.tp]
        return None if found is None else found.offset

    def retained(self) -> Retained:
        """The partition's first and last retained record times, from its offsets (two reads)."""
        begin = self._consumer.beginning_offsets([self.tp])[self.tp]
        end = self._consumer.end_offsets([self.tp])[self.tp]
        if end <= begin:
            return Retained(None, None, begin, end)
        first = self.record_at(begin)
        last = self.record_at(end - 1)
        first_ts = first.timestamp * NS_PER_MS if first is not None else None
        last_ts = last.timestamp * NS_PER_MS if last is not None else first_ts
        return Retained(first_ts, last_ts, begin, end)

    def record_at(self, offset: int, timeout_s: float = 5.0) -> Any:
        """The record at `offset` (or the next one, for a compacted or aborted gap), None if none comes."""
        self._fetched.clear()
        self._consumer.seek(self.tp, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=POLL_MS, max_records=1).values():
                if records:
                    return records[0]
        return None

    # -- reading frames ---------------------------------------------------------------------------

    def seek(self, ts_ns: int) -> bool:
        """Position at the first record captured at or after `ts_ns`; False if none is retained."""
        offset = self.offset_at(ts_ns)
        if offset is None:
            return False
        self._fetched.clear()
        self._consumer.seek(self.tp, offset)
        return True

    def frames(self, until_ns: int | None = None) -> Iterator[Frame | None]:
        """This camera's frames from the position on, in log order. Yields None after an empty
        poll (the reader has caught up with the log: a caller pacing replay knows it is live now,
        and gets a chance to stop). Ends before the first frame captured at or after `until_ns`.
        Records of other cameras and bad records are skipped."""
        key = self.camera_id.encode()
        while True:
            if not self._fetched:
                self._fetched.extend(self._consumer.poll(timeout_ms=POLL_MS).get(self.tp, []))
                if not self._fetched:
                    yield None
                    continue
            record = self._fetched.popleft()  # one at a time: a caller may stop and call again
            if record.key != key:
                continue
            try:
                frame = frame_from_record(record.key, record.value, record.headers, self._max_bytes)
            except BadRecord as bad:
                log.debug("replay of %s skips %s@%d: %s", self.camera_id, self.tp, record.offset, bad)
                continue
            if until_ns is not None and frame.capture_ts_ns >= until_ns:
                self._fetched.appendleft(record)
                return
            yield frame



@dataclasses.dataclass(frozen=True)
class Span:
    """A stretch of retained video: from the first to the last frame's capture time (ns)."""

    start_ns: int
    end_ns: int


def retained_spans(history: CameraHistory, gap_s: float, since: tuple[list[Span], int] | None = None,
                   ) -> tuple[list[Span], int]:
    """The partition's retained spans, split wherever no record arrived for more than `gap_s`.

    Read from the broker's time index, not by scanning frames: a probe every gap_s / 2 (a silence
    longer than gap_s holds one whole probe interval with no record), then the two records around
    each silent interval for its exact edges. `since`: the spans and end offset of an earlier call;
    only what was written after is probed (the first call over an hour at 5 s is ~1,400 probes of
    about a millisecond each on a local broker, later calls a handful). Returns the spans and the
    end offset they cover. Silences are the partition's: a camera that shares a busy partition and
    stops shows as retained until the whole partition is silent."""
    retained = history.retained()
    if retained.empty or retained.first_ts_ns is None or retained.last_ts_ns is None:
        return [], retained.end
    gap_ns = int(gap_s * 1e9)
    spans = [s for s in (since[0] if since else []) if s.end_ns >= retained.first_ts_ns]
    if spans and spans[0].start_ns < retained.first_ts_ns:  # retention removed the oldest records
        spans[0] = Span(retained.first_ts_ns, spans[0].end_ns)
    if spans and since is not None and since[1] >= retained.begin:
        start_ns = spans[-1].end_ns
    else:
        spans, start_ns = [], retained.first_ts_ns
    step = max(gap_ns // 2, 1)
    t = start_ns
    previous = history.offset_at(t)
    current = spans.pop() if spans else Span(retained.first_ts_ns, retained.first_ts_ns)
    while t < retained.last_ts_ns:
        nxt = min(t + step, retained.last_ts_ns)
        offset = history.offset_at(nxt) if nxt < retained.last_ts_ns else retained.end - 1
        if offset is not None and previous is not None and offset == previous and nxt - t >= step:
            before = history.record_at(previous - 1) if previous > retained.begin else None
            after = history.record_at(previous)
            if before is not None and after is not None:
                before_ns, after_ns = before.timestamp * 1_000_000, after.timestamp * 1_000_000
                if after_ns - before_ns > gap_ns:
                    spans.append(Span(current.start_ns, before_ns))
                    current = Span(after_ns, after_ns)
                    # skip the rest of the silence in one jump
                    t, previous = after_ns, history.offset_at(after_ns)
                    continue
        t, previous = nxt, offset
    spans.append(Span(current.start_ns, retained.last_ts_ns))
    return spans, retained.end
