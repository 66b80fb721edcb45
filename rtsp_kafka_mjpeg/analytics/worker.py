"""The analytics worker loop: frames from the topic, in a consumer group, through a processor, to
JSON results on the results topic (key = camera id).

Workers of one group share the partitions (so the cameras); each group gets every frame. One
thread polls, decodes and processes; heartbeats run on kafka-python's I/O thread, so a slow
processor does not cost the group membership (it only delays rebalances by one record).

Commit modes:
- `after-processing`: offsets are committed (about every second, on revocation, at exit) only up
  to the longest prefix of done records (offsets.py): processed with the result acknowledged,
  or skipped/junk. At-least-once: a frame whose result is not yet safe is processed again by
  whoever owns the partition next; that is where the duplicates come from, and it bounds them.
- `auto`: kafka-python commits what was polled every second: at-most-once flavoured.

Lag policies:
- `every`: every record in order; the lag per partition is reported.
- `newest`: per poll only each camera's newest frame is processed (the rest are skipped); and a
  partition more than `lag_threshold` records behind its end jumps to `lag_threshold` records
  before the end, not to the very end: a partition carries several cameras, and the last
  `lag_threshold` records hold the newest frame of each camera that is still sending, which the
  same poll then picks. So results stay fresh instead of working through a backlog.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ..frame import BadRecord, Frame, frame_from_record
from ..kafka.clients import worker_consumer, worker_producer
from ..kafka.polling import FETCH_OVERHEAD, RateLimitedWarnings
from ..results import FrameInfo, Unserializable, result_record
from ..settings import WorkerSettings
from .metrics import ANY_CAMERA, WorkerMetrics
from .offsets import DoneOffsets
from .processors import DECODE_FLAGS, Processor, wanted_image

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 1.0
LAG_EVERY_S = 1.0
MAX_POLL_RECORDS = 50  # a poll's worth of a slow processor must stay well within a rebalance
FLUSH_TIMEOUT_S = 5.0
CATCH_UP_POLLS, CATCH_UP_WAIT_MS = 3, 10
# Results wait up to this long to share a request: at linger 0 every result was a produce request
# of its own, each waking the client's threads on the worker's one core. 4 x 720p30 with
# confluent-kafka, same frames, four pairs of runs: 1.01-1.08 -> 0.90-1.02 ms of CPU a frame, for
# ~8 ms more from capture to result (mean 16-17 -> 24 ms). 25 / 50 ms saved little more
# (0.90-0.98 / 0.86 ms) for 38 / 48 ms.
RESULTS_LINGER_MS = 10


def consumer_config(settings: WorkerSettings) -> dict[str, Any]:
    """KafkaConsumer arguments: group membership per WORKER_SESSION_TIMEOUT_MS, fetches frame-sized."""
    fetch_bytes = settings.max_message_bytes + FETCH_OVERHEAD
    session = settings.session_timeout_ms
    return {
        **settings.kafka_client_config(),
        "group_id": settings.group,
        "enable_auto_commit": settings.commit == "auto",
        "auto_commit_interval_ms": int(COMMIT_EVERY_S * 1000),
        "auto_offset_reset": "latest",
        "session_timeout_ms": session,
        # a third of the session as usual, but at most 1 s: the heartbeat is how a worker learns
        # that another left, so it bounds how soon that one's cameras move here
        "heartbeat_interval_ms": max(300, min(session // 3, 1000)),
        "max_poll_records": MAX_POLL_RECORDS,
        "fetch_max_wait_ms": 100,
        "fetch_min_bytes": 1,
        "max_partition_fetch_bytes": fetch_bytes,
        "fetch_max_bytes": max(fetch_bytes, 64 * 1024 * 1024),
        "receive_message_max_bytes": max(100_000_000, fetch_bytes * 2),
        "reconnect_backoff_max_ms": 1000,
        "metrics_enabled": False,
    }


def producer_config(settings: WorkerSettings) -> dict[str, Any]:
    """KafkaProducer arguments for small JSON results: acks=all, idempotent, batched briefly."""
    return {
        **settings.kafka_client_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": RESULTS_LINGER_MS,
        "max_block_ms": int(settings.connect_timeout_s * 1000),
        "retry_backoff_ms": 50,
        "reconnect_backoff_max_ms": 500,
        "metrics_enabled": False,
    }


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Rebalances(AsyncConsumerRebalanceListener):
    """Runs on kafka-python's I/O thread, so it awaits the commit instead of blocking on it."""

    def __init__(self, worker: AnalyticsWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        w = self._worker
        if w.settings.commit == "after-processing" and revoked:
            w.flush_results()
            offsets = w.commit_offsets(revoked)
            if offsets:
                try:
                    await w.consumer.commit_async(offsets)
                    log.debug("committed %s before giving up the partitions", offsets)
                except KafkaError as err:
                    w.metrics.commits_failed.inc()
                    w.warnings.warn("commit", f"commit on revocation failed: {type(err).__name__}: {err}")
        w.partitions_gone(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._worker.partitions_assigned(assigned)

    async def on_partitions_lost(self, lost: Any) -> None:
        # evicted: the group already gave them away, a commit would be refused
        self._worker.partitions_gone(lost)


class AnalyticsWorker:
    """Consumes `settings.topic` in group `settings.group` and publishes one result per processed
    frame until `stop` is set; then flushes, commits and leaves the group at once."""

    def __init__(self, settings: WorkerSettings, name: str, processor: Processor, metrics: WorkerMetrics,
                 stop: threading.Event, consumer_factory: Callable[[], Any] | None = None,
                 producer_factory: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.name = name
        self.processor = processor
        self.metrics = metrics
        self.stop = stop
        self.worker = worker_id()
        self.warnings = RateLimitedWarnings(log)
        self.done = DoneOffsets()
        self._decode_flag = DECODE_FLAGS[wanted_image(processor)]
        self._filter = settings.camera_filter
        self._after_processing = settings.commit == "after-processing"
        self._newest = settings.lag_policy == "newest"
        self._failed_offsets: dict[Any, int] = {}  # partition -> lowest offset whose result failed
        self._failed_lock = threading.Lock()
        self._next_offsets: dict[Any, int] = {}  # partition -> offset after the last record polled
        self._ends: dict[Any, int] = {}  # partition -> end offset, asked once a second
        self._next_lag = self._next_commit = 0.0
        self._committed: dict[Any, int] = {}  # partition -> offset last sent to be committed
        self.assigned: frozenset[Any] = frozenset()
        self._unannounced: set[Any] = set()  # assigned, start offset not yet logged
        self.lag_total = 0
        self.producer = (producer_factory or (lambda: worker_producer(settings.kafka_client,
                                                                      **producer_config(settings))))()
        self.consumer = (consumer_factory or (lambda: worker_consumer(settings.kafka_client,
                                                                      **consumer_config(settings))))()
        self.consumer.subscribe([settings.topic], listener=_Rebalances(self))

    # --- group membership (called on kafka-python's I/O thread) ----------------------------------

    def partitions_assigned(self, assigned: Any) -> None:
        self.assigned = self.assigned | frozenset(assigned)  # an increment, under cooperative protocols
        self._unannounced = set(assigned)
        self.metrics.rebalances.inc()
        self.metrics.assigned.set(len(self.assigned))
        log.info("assigned partitions %s of %s", sorted(tp.partition for tp in self.assigned), self.settings.topic)

    def partitions_gone(self, tps: Any) -> None:
        self.done.forget(tps)
        for tp in tps:
            self._next_offsets.pop(tp, None)
            self._committed.pop(tp, None)
        self.assigned = self.assigned - frozenset(tps)
        self.metrics.assigned.set(len(self.assigned))
        for tp in tps:
            try:
                self.metrics.lag.remove(str(tp.partition))
            except KeyError:
                pass

    def commit_offsets(self, tps: Any = None) -> dict[Any, OffsetAndMetadata]:
        return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self.done.committable(tps).items()}

    def flush_results(self) -> None:
        try:
            self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as err:
            self.warnings.warn("flush", f"results not all acknowledged: {type(err).__name__}: {err}")

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                batches = self.consumer.poll(timeout_ms=200)
            except KafkaError as err:
                self.warnings.warn("poll", f"polling {self.settings.topic} failed: {type(err).__name__}: {err}")
                self.stop.wait(0.5)
                continue
            if self._unannounced:
                self._announce(batches)
            if batches and self._newest:
                self._catch_up(batches)
            if batches:
                self._handle(batches)
            self._retry_failed()
            self._tick(between_polls=True)
        self._shutdown()

    def _announce(self, batches: dict[Any, list[Any]]) -> None:
        """Log where each newly assigned partition is read from, once its offset is known (committed,
        or the end for a new group): from that line on, every frame published is processed."""
        tps, self._unannounced = self._unannounced, set()
        starts = {}
        for tp in sorted(tps & self.consumer.assignment()):
            if batches.get(tp):
                starts[tp.partition] = batches[tp][0].offset
                continue
            try:
                starts[tp.partition] = self.consumer.position(tp, timeout_ms=5000)
            except KafkaError as err:
                self.warnings.warn("position", f"no start offset for {tp}: {type(err).__name__}: {err}")
        if starts:
            log.info("reading %s from offsets %s", self.settings.topic,
                     ", ".join(f"{p}@{o}" for p, o in starts.items()))

    def _catch_up(self, batches: dict[Any, list[Any]]) -> None:
        """`newest`: what poll() returned may have been fetched while the last frame was processed,
        with newer frames on the brokers since; kafka-python fetches a partition again only once its
        buffered records are taken. Short polls until nothing more comes pick those up: a few ms
        spent so that the newest frame is processed, not one up to a processing time old."""
        for _ in range(CATCH_UP_POLLS):
            more = self.consumer.poll(timeout_ms=CATCH_UP_WAIT_MS)
            if not more:
                return
            for tp, records in more.items():
                batches.setdefault(tp, []).extend(records)

    def _handle(self, batches: dict[Any, list[Any]]) -> None:
        todo: list[tuple[Any, Any, Frame]] = []
        newest: dict[str, int] = {}  # camera -> index in todo
        for tp, records in batches.items():
            if records:
                self._next_offsets[tp] = records[-1].offset + 1
            for record in records:
                try:
                    frame = frame_from_record(record.key, record.value, record.headers,
                                              self.settings.max_message_bytes)
                except BadRecord as bad:
                    self._finish(tp, record.offset)
                    self.metrics.invalid.labels(bad.reason).inc()
                    self.warnings.warn(bad.reason, f"skipping record at {tp.topic}/{tp.partition}@{record.offset}: "
                                                   f"{bad}")
                    continue
                if self._filter and frame.camera_id not in self._filter:
                    self._finish(tp, record.offset)
                    self.metrics.skipped.labels(frame.camera_id, "filtered").inc()
                    continue
                if self._after_processing:
                    self.done.read(tp, record.offset)
                if self._newest:
                    earlier = newest.get(frame.camera_id)
                    if earlier is not None:
                        old_tp, old_record, old_frame = todo[earlier]
                        self._finish(old_tp, old_record.offset)
                        self.metrics.skipped.labels(old_frame.camera_id, "superseded").inc()
                        todo[earlier] = (tp, record, frame)
                        continue
                    newest[frame.camera_id] = len(todo)
                todo.append((tp, record, frame))
        for tp, record, frame in todo:
            if self.stop.is_set():
                return  # not done, so not committed: the next owner processes it
            if tp not in self.assigned:
                continue  # revoked while we worked: it is someone else's now
            self._process(tp, record, frame)
            self._tick(between_polls=False)

    def _finish(self, tp: Any, offset: int) -> None:
        if self._after_processing:
            self.done.read(tp, offset, done=True)

    def _process(self, tp: Any, record: Any, frame: Frame) -> None:
        camera = frame.camera_id
        t0 = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), self._decode_flag)
        t1 = time.perf_counter()
        if image is None:
            self._fail(tp, record.offset, camera, "undecodable", f"JPEG of {camera} seq {frame.seq} does not decode")
            return
        self.metrics.decoding.observe(t1 - t0)
        info = FrameInfo(camera, frame.seq, frame.capture_ts_ns, frame.width, frame.height,
                         tp.topic, tp.partition, record.offset)
        try:
            output = self.processor(info, image)
        except Exception as err:  # noqa: BLE001 - a processor's bug must not stop the worker
            self._fail(tp, record.offset, camera, "raised", f"processor {self.name} raised on {camera} seq "
                                                            f"{frame.seq}: {type(err).__name__}: {err}")
            return
        elapsed = time.perf_counter() - t1
        self.metrics.processing.observe(elapsed)
        if output is None:
            self.metrics.processed.labels(camera).inc()
            self._finish(tp, record.offset)
            return
        if not isinstance(output, dict):
            self._fail(tp, record.offset, camera, "not_a_dict", f"processor {self.name} returned "
                                                               f"{type(output).__name__}, not a dict or None")
            return
        try:
            value = result_record(info, self.name, elapsed * 1000, self.worker, output)
        except Unserializable as err:
            self._fail(tp, record.offset, camera, "unserializable", f"processor {self.name} output for {camera} "
                                                                   f"is not JSON-able: {err}")
            return
        self.metrics.processed.labels(camera).inc()
        try:
            future = self.producer.send(self.settings.results_topic, value=value, key=camera.encode())
        except KafkaError as err:
            self._result_failed(tp, record.offset, camera, err)
            return
        future.add_callback(self._result_acked, tp, record.offset, frame.capture_ts_ns)
        future.add_errback(lambda err: self._result_failed(tp, record.offset, camera, err))

    def _fail(self, tp: Any, offset: int, camera: str, reason: str, message: str) -> None:
        """A frame that cannot be processed counts as done: retrying it would fail the same way."""
        self._finish(tp, offset)
        self.metrics.failed.labels(camera, reason).inc()
        self.warnings.warn(reason, message)

    def _result_acked(self, tp: Any, offset: int, capture_ts_ns: int, _metadata: Any) -> None:
        self.metrics.results.inc()
        self.metrics.result_latency.observe(max(0, time.time_ns() - capture_ts_ns) / 1e9)
        if self._after_processing:
            self.done.done(tp, offset)

    def _result_failed(self, tp: Any, offset: int, camera: str, err: Exception) -> None:
        """The result is not safe: in after-processing mode the frame is read again (at-least-once)."""
        self.metrics.failed.labels(camera, "publish_failed").inc()
        self.warnings.warn("publish_failed", f"result for {camera} not delivered to "
                                             f"{self.settings.results_topic}: {type(err).__name__}: {err}")
        if self._after_processing:
            with self._failed_lock:
                self._failed_offsets[tp] = min(offset, self._failed_offsets.get(tp, offset))

    def _retry_failed(self) -> None:
        with self._failed_lock:
            failed, self._failed_offsets = self._failed_offsets, {}
        for tp, offset in failed.items():
            if tp in self.consumer.assignment():
                self.done.rewind(tp, offset)
                self.consumer.seek(tp, offset)
                self._next_offsets[tp] = offset

    def _tick(self, between_polls: bool) -> None:
        """Once a second the lag of each partition (its end asked of the brokers: while a backlog
        sits in the fetch buffer no new fetch brings a fresh highwater mark); between polls,
        `newest` jumps a partition that is too far behind (see the module docstring)."""
        now = time.monotonic()
        if now >= self._next_lag:
            self._next_lag = now + LAG_EVERY_S
            self._report_lag()
        if self._after_processing and now >= self._next_commit:
            self._next_commit = now + COMMIT_EVERY_S
            self._commit_async()
        if between_polls and self._newest:
            self._jump_if_behind()

    def _end(self, tp: Any) -> int | None:
        hw = self.consumer.highwater(tp)
        known = self._ends.get(tp)
        return hw if known is None else known if hw is None else max(hw, known)

    def _report_lag(self) -> None:
        tps = list(self.consumer.assignment())
        try:
            self._ends = self.consumer.end_offsets(tps, timeout_ms=1000) if tps else {}
        except KafkaError as err:
            self.warnings.warn("lag", f"cannot read the end offsets: {type(err).__name__}: {err}")
        total = 0
        for tp in tps:
            end, position = self._end(tp), self._next_offsets.get(tp)
            if end is None or position is None:
                continue  # nothing polled from it yet
            behind = max(0, end - position)
            self.metrics.lag.labels(str(tp.partition)).set(behind)
            total += behind
        self.lag_total = total

    def _jump_if_behind(self) -> None:
        for tp in self.consumer.assignment():
            end, position = self._end(tp), self._next_offsets.get(tp)
            if end is None or position is None or end - position <= self.settings.lag_threshold:
                continue
            target = end - self.settings.lag_threshold
            self.consumer.seek(tp, target)
            self._next_offsets[tp] = target
            if self._after_processing:
                self.done.jump(tp, target)
            self.metrics.skipped.labels(ANY_CAMERA, "lag_jump").inc(target - position)

    def _commit_async(self) -> None:
        """Commit, without waiting, what moved since the last commit (about once a second)."""
        offsets = {tp: o for tp, o in self.commit_offsets(self.consumer.assignment()).items()
                   if self._committed.get(tp) != o.offset}
        if not offsets:
            return
        try:
            self.consumer.commit_async(offsets, callback=self._commit_done)
        except KafkaError as err:
            self._commit_done(offsets, err)
            return
        self._committed.update((tp, o.offset) for tp, o in offsets.items())

    def _commit_done(self, _offsets: Any, response: Any) -> None:
        if isinstance(response, Exception):
            self.metrics.commits_failed.inc()
            self.warnings.warn("commit", f"offset commit failed: {type(response).__name__}: {response}")

    def _shutdown(self) -> None:
        """Flush the results, commit what is done, leave the group (its partitions move at once)."""
        self.flush_results()
        if self._after_processing:
            offsets = self.commit_offsets(self.consumer.assignment())
            if offsets:
                try:
                    self.consumer.commit(offsets, timeout_ms=5000)
                except KafkaError as err:
                    self.metrics.commits_failed.inc()
                    log.warning("final offset commit failed: %s: %s", type(err).__name__, err)
        try:
            self.consumer.close()
        except KafkaError as err:
            log.warning("leaving the group failed: %s: %s", type(err).__name__, err)
        try:
            self.producer.close(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as err:
            log.warning("closing the results producer: %s: %s", type(err).__name__, err)


class WorkerStatusLine:
    """Once a second on a terminal: processed fps, skipped, failed, lag and partitions."""

    def __init__(self, worker: AnalyticsWorker, stop: threading.Event, out: Any = None) -> None:
        self._worker = worker
        self._stop = stop
        self._out = out
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        self._out = self._out or sys.stderr
        if self._out.isatty():
            self._thread.start()

    def _run(self) -> None:
        w, m = self._worker, self._worker.metrics
        prev_t, prev = time.monotonic(), m.total(m.processed)
        while not self._stop.wait(1.0):
            now, processed = time.monotonic(), m.total(m.processed)
            self._out.write(f"\r{w.settings.group}: {(processed - prev) / max(now - prev_t, 1e-6):5.1f} fps  "
                            f"skipped {m.total(m.skipped):7.0f}  failed {m.total(m.failed) + m.total(m.invalid):6.0f}"
                            f"  lag {w.lag_total:6d}  partitions {len(w.assigned):3d}")
            self._out.flush()
            prev_t, prev = now, processed
        self._out.write("\n")
