"""One KafkaConsumer per process, in a background thread, handing frames to a sink (the hub).

Bad records are skipped and counted by reason, logged at most once per reason and interval,
never shown and never allowed to stop the loop. Within one poll only the newest frame of each
camera reaches the sink: older ones would be replaced before any viewer could see them.
An unexpected error (a bug, not a broker outage) makes the subscriber unhealthy until a poll
succeeds again, so /healthz says so instead of staying green while frames stop.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from .frame import BadRecord, Frame, frame_from_record
from .metrics import ConsumerMetrics
from .settings import ConsumerSettings

log = logging.getLogger(__name__)

FETCH_OVERHEAD = 64 * 1024
WARN_INTERVAL_S = 60.0
RETRY_S = 1.0
PROBE_EVERY_S = 1.0


class RateLimitedWarnings:
    """Logs each kind of problem at most once per interval, with how many were suppressed."""

    def __init__(self, interval_s: float = WARN_INTERVAL_S) -> None:
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        extra = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        log.warning("%s%s", message, f" ({extra} more since last said)" if extra else "")


@dataclasses.dataclass(frozen=True)
class KafkaHealth:
    """What /healthz says about the subscriber: are the brokers answering, and does an unexpected
    error (`error`, its exception type) keep failing the polls. Only the type is kept: /healthz is
    open without auth, and an error's text may hold anything; the log has the details."""

    connected: bool
    error: str = ""
    failures: int = 0

    @property
    def ok(self) -> bool:
        return self.connected and not self.error

    @property
    def reason(self) -> str | None:
        if self.error:
            return f"the Kafka subscriber failed {self.failures} time(s) in a row: {self.error}"
        if not self.connected:
            return "the Kafka brokers are not answering"
        return None


class FrameSubscriber:
    """Polls the topic and hands valid frames to `sink` until stopped."""

    def __init__(self, settings: ConsumerSettings, sink: Callable[[Frame], None], metrics: ConsumerMetrics,
                 stop: threading.Event | None = None,
                 consumer_factory: Callable[[], KafkaConsumer] | None = None) -> None:
        self._settings = settings
        self._sink = sink
        self._metrics = metrics
        self._stop = stop or threading.Event()
        self._new_consumer = consumer_factory or self._create_consumer
        self._warnings = RateLimitedWarnings()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self._next_probe = 0.0
        self.connected = False
        self._error = ""
        self._failures = 0
        self._traced: set[str] = set()  # error kinds whose traceback this failure streak logged

    def health(self) -> KafkaHealth:
        return KafkaHealth(self.connected, self._error, self._failures)

    def _create_consumer(self) -> KafkaConsumer:
        s = self._settings
        fetch_bytes = s.max_message_bytes + FETCH_OVERHEAD
        return KafkaConsumer(
            s.topic,
            **s.kafka_client_config(),
            group_id=s.group_id or None,
            auto_offset_reset=s.start_from,
            enable_auto_commit=bool(s.group_id),
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            fetch_min_bytes=1,
            max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=max(fetch_bytes, 64 * 1024 * 1024),
            receive_message_max_bytes=max(100_000_000, fetch_bytes * 2),
            max_poll_records=200,
            reconnect_backoff_max_ms=2000,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kafka-subscriber", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.poll_once():
                self._stop.wait(RETRY_S)
        if self._consumer is not None:
            self._consumer.close()

    def poll_once(self) -> bool:
        """One poll, its frames handed on, and a broker probe when due. False when it failed:
        the caller waits before the next try instead of spinning on a broken broker or a bug."""
        try:
            if self._consumer is None:
                self._consumer = self._new_consumer()
            batches = self._consumer.poll(timeout_ms=500)
            if batches:
                self._set_connected(True)
                self._handle(batches)
            if time.monotonic() >= self._next_probe:
                self._next_probe = time.monotonic() + PROBE_EVERY_S
                self._probe(self._consumer)
        except KafkaError as err:
            self._set_connected(False, type(err).__name__)
            return False
        except Exception as err:  # noqa: BLE001 - the loop must outlive a bug; _failed logs the traceback
            self._failed(err)
            return False
        if self._error:
            log.info("the Kafka subscriber works again after %d failure(s)", self._failures)
            self._error, self._failures = "", 0
            self._traced.clear()
        return True

    def _failed(self, err: Exception) -> None:
        """Unhealthy until a poll succeeds; the traceback once per kind of error and failure streak,
        then a rate-limited line (not a traceback every second)."""
        kind = type(err).__name__
        self._error = kind
        self._failures += 1
        if kind not in self._traced:
            self._traced.add(kind)
            log.error("unexpected error in the Kafka subscriber; /healthz says unhealthy until a poll "
                      "succeeds", exc_info=err)
        else:
            self._warnings.warn("unexpected", f"the Kafka subscriber still fails ({kind}: {err}), "
                                              f"{self._failures} time(s) in a row")

    def _probe(self, consumer: KafkaConsumer) -> None:
        """Ask the brokers for the end offsets: proves connectivity while no frame arrives (an idle
        camera is not a broker outage) and gives the consumer lag."""
        try:
            partitions = list(consumer.assignment())
            if not partitions:
                consumer.topics()
                self._set_connected(True)
                return
            ends = consumer.end_offsets(partitions, timeout_ms=1000)
            lag = 0
            for tp, end in ends.items():
                position = consumer.position(tp, timeout_ms=1000)
                if end is not None and position is not None:
                    lag += max(0, end - position)
            self._metrics.lag.set(lag)
            self._set_connected(True)
        except KafkaError as err:
            self._set_connected(False, type(err).__name__)

    def _handle(self, batches: dict[Any, list[Any]]) -> None:
        newest: dict[str, Frame] = {}
        for records in batches.values():
            for record in records:
                try:
                    frame = frame_from_record(record.key, record.value, record.headers,
                                              self._settings.max_message_bytes)
                except BadRecord as bad:
                    self._metrics.records_skipped.labels(bad.reason).inc()
                    self._warnings.warn(bad.reason, f"skipping record at {record.topic}/{record.partition}"
                                                    f"@{record.offset}: {bad}")
                    continue
                previous = newest.get(frame.camera_id)
                if previous is not None:
                    self._metrics.frames_superseded.labels(frame.camera_id).inc()
                newest[frame.camera_id] = frame
                self._metrics.frames_in.labels(frame.camera_id).inc()
                self._metrics.bytes_in.labels(frame.camera_id).inc(len(frame.jpeg))
        now_ns, now = time.time_ns(), time.monotonic()
        for frame in newest.values():
            self._metrics.latency.labels(frame.camera_id).observe(max(0, now_ns - frame.capture_ts_ns) / 1e9)
            self._sink(frame)
            self._metrics.receive_rates.note(frame.camera_id, now)

    def _set_connected(self, connected: bool, why: str = "") -> None:
        if connected != self.connected:
            self.connected = connected
            self._metrics.kafka_up.set(1 if connected else 0)
            if connected:
                log.info("Kafka subscriber connected to %s, topic %s", self._settings.bootstrap_servers,
                         self._settings.topic)
            else:
                log.warning("Kafka subscriber lost the brokers%s; retrying", f" ({why})" if why else "")
