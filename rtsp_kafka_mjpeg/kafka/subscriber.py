"""One Kafka consumer per process, in a background thread, handing frames to a sink (the hub).
KAFKA_CLIENT picks kafka-python's KafkaConsumer or librdkafka behind the same surface
(confluent.consumer.ConfluentConsumer, chosen in clients.py); both get consumer_config()'s arguments.

Bad records are skipped and counted by reason, logged at most once per reason and interval,
never shown and never allowed to stop the loop. Within one poll only the newest frame of each
camera reaches the sink: older ones would be replaced before any viewer could see them.
An unexpected error (a bug, not a broker outage) makes the subscriber unhealthy until a poll
succeeds again, so /healthz says so instead of staying green while frames stop.

Nothing but poll() talks to the brokers on the frame thread: the lag comes from the highwater marks
the fetches already carry, and "do the brokers answer?" is asked by a BrokerProbe on its own thread
and client. A probe blocked on a node that is going away once stalled the frames of every camera
for up to a second during a leader's controlled shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from ..frame import BadRecord, Frame, frame_from_record
from ..metrics import ConsumerMetrics
from ..settings import ConsumerSettings
from .clients import frame_consumer, side_consumer
from .health import PROBE_EVERY_S, BrokerProbe, KafkaHealth
from .polling import FETCH_OVERHEAD, RateLimitedWarnings, run_polls

log = logging.getLogger(__name__)

# A poll that fails with a Kafka error while one node of several dies (its fetch session, its
# leader epoch validation) is not an outage: the other nodes answer. Until the dead node is fenced
# (broker.session.timeout.ms, 9 s by default) it still leads its partitions, and every fetch to it
# fails: polls failed 3 s in a row there once (the cluster test). Only polls failing longer than a
# session timeout and an election count as "lost the brokers"; the probe says so within seconds
# when the whole cluster is down.
POLL_FAILURES_LOST_S = 15.0



def consumer_config(s: ConsumerSettings) -> dict[str, Any]:
    """KafkaConsumer keyword arguments for the frame path (the confluent adapter translates the same)."""
    fetch_bytes = s.max_message_bytes + FETCH_OVERHEAD
    return dict(
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
        # A failed connect to a dead leader asks for fresh metadata: retrying at least twice a second
        # finds its successor within half a second of the election (1 s cost viewers ~1 s more).
        reconnect_backoff_max_ms=500,
    )


class FrameSubscriber:
    """Polls the topic and hands valid frames to `sink` until stopped."""

    def __init__(self, settings: ConsumerSettings, sink: Callable[[Frame], None], metrics: ConsumerMetrics,
                 stop: threading.Event | None = None,
                 consumer_factory: Callable[[], Any] | None = None,
                 probe_factory: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._poll_failing_since: float | None = None
        self._sink = sink
        self._metrics = metrics
        self._stop = stop or threading.Event()
        self._new_consumer = consumer_factory or self._create_consumer
        self._warnings = RateLimitedWarnings(log)
        self._thread: threading.Thread | None = None
        self._consumer: Any = None  # KafkaConsumer or ConfluentConsumer (KAFKA_CLIENT)
        self._next_offsets: dict[Any, int] = {}  # partition -> offset after the last record handed on
        self._next_lag = 0.0
        self._connected_lock = threading.Lock()
        self.probe = BrokerProbe(probe_factory or self._create_probe_client, self._set_connected, self._stop)
        self.connected = False
        self._error = ""
        self._failures = 0
        self._traced: set[str] = set()  # error kinds whose traceback this failure streak logged

    def health(self) -> KafkaHealth:
        return KafkaHealth(self.connected, self._error, self._failures)

    def _create_consumer(self) -> Any:
        """KAFKA_CLIENT's consumer on the topic: both take KafkaConsumer's keyword arguments."""
        return frame_consumer(self._settings.kafka_client, self._settings.topic, **consumer_config(self._settings))

    def _create_probe_client(self) -> Any:
        """A second, group-less client for the probe: kafka-python clients are not thread-safe."""
        return side_consumer(**self._settings.kafka_client_config(), reconnect_backoff_max_ms=1000)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kafka-subscriber", daemon=True)
        self._thread.start()
        self.probe.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.probe.join(timeout=5)

    def _run(self) -> None:
        run_polls(self.poll_once, self._stop)
        if self._consumer is not None:
            self._consumer.close()

    def poll_once(self) -> bool:
        """One poll, its frames handed on, the lag updated when due. False when it failed: the
        caller waits before the next try instead of spinning on a broken broker or a bug."""
        try:
            if self._consumer is None:
                self._consumer = self._new_consumer()
            batches = self._consumer.poll(timeout_ms=500)
            if batches:
                self._set_connected(True)
                self._handle(batches)
            if time.monotonic() >= self._next_lag:
                self._next_lag = time.monotonic() + PROBE_EVERY_S
                self._update_lag(self._consumer)
        except KafkaError as err:
            self._poll_failed(err)
            return False
        except Exception as err:  # noqa: BLE001 - the loop must outlive a bug; _failed logs the traceback
            self._failed(err)
            return False
        self._poll_failing_since = None
        if self._error:
            log.info("the Kafka subscriber works again after %d failure(s)", self._failures)
            self._error, self._failures = "", 0
            self._traced.clear()
        return True

    def _poll_failed(self, err: KafkaError) -> None:
        """A Kafka error from poll: "lost the brokers" only once polls have failed for
        POLL_FAILURES_LOST_S in a row; a node dying under a cluster costs one or two such polls."""
        now = self._clock()
        if self._poll_failing_since is None:
            self._poll_failing_since = now
        if now - self._poll_failing_since >= POLL_FAILURES_LOST_S:
            self._set_connected(False, type(err).__name__)
        else:
            log.debug("poll failed (%s: %s); retrying", type(err).__name__, err)

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

    def _update_lag(self, consumer: Any) -> None:
        """Records behind the end of the log, summed over the partitions: from the highwater marks
        of the last fetches, no request of its own."""
        lag = 0
        for tp in consumer.assignment():
            end, done = consumer.highwater(tp), self._next_offsets.get(tp)
            if end is not None and done is not None:
                lag += max(0, end - done)
        self._metrics.lag.set(lag)

    def _handle(self, batches: dict[Any, list[Any]]) -> None:
        newest: dict[str, Frame] = {}
        for records in batches.values():
            for record in records:
                self._next_offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
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
        with self._connected_lock:
            if connected == self.connected:
                return
            self.connected = connected
        self._metrics.kafka_up.set(1 if connected else 0)
        if connected:
            log.info("Kafka subscriber connected to %s, topic %s", self._settings.bootstrap_servers,
                     self._settings.topic)
        else:
            log.warning("Kafka subscriber lost the brokers%s; retrying", f" ({why})" if why else "")
