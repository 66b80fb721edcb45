"""The analytics workers' results topic, read by consumer.py in one background thread of its own.

Its own KafkaConsumer (the frame thread must never wait on it), no consumer group, starting at the
newest record: the page shows what the workers say now, not a replay. Bad records are counted by
reason and logged at most once a minute per reason; nothing stops the loop. A missing results topic
(no worker ever ran) is not a fault: /healthz does not look here, the page says "no analytics".
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from ..kafka.clients import side_consumer
from ..kafka.polling import RateLimitedWarnings, run_polls
from ..metrics import ConsumerMetrics
from ..results import MAX_RESULT_BYTES, BadResult, parse_result
from ..settings import ConsumerSettings

log = logging.getLogger(__name__)

METADATA_MAX_AGE_MS = 10_000  # a results topic made after start-up (first worker) is found within this


def bad_result_reason(err: BadResult) -> str:
    """A short metric label for why a record was refused ("not_json", "no_camera", "too_large", ...)."""
    text = str(err)
    if text[:1].isdigit():
        return "too_large"
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:32] or "bad"


class ResultSubscriber:
    """Polls the results topic and hands each poll's newest result per (camera, processor) to `sink`."""

    def __init__(self, settings: ConsumerSettings, sink: Callable[[dict[str, Any]], None],
                 metrics: ConsumerMetrics, stop: threading.Event | None = None,
                 consumer_factory: Callable[[], KafkaConsumer] | None = None) -> None:
        self._settings = settings
        self._sink = sink
        self._metrics = metrics
        self._stop = stop or threading.Event()
        self._new_consumer = consumer_factory or self._create_consumer
        self._warnings = RateLimitedWarnings(log)
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self._receiving = False

    def _create_consumer(self) -> KafkaConsumer:
        s = self._settings
        return side_consumer(
            s.results_topic,
            **s.kafka_client_config(),
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            allow_auto_create_topics=False,  # the workers own the results topic; a viewer creates nothing
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            fetch_min_bytes=1,
            max_partition_fetch_bytes=MAX_RESULT_BYTES * 4,
            max_poll_records=500,
            reconnect_backoff_max_ms=1000,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="results-subscriber", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        run_polls(self.poll_once, self._stop)
        if self._consumer is not None:
            self._consumer.close()

    def poll_once(self) -> bool:
        """One poll, its results handed on. False when it failed (the caller waits, then retries)."""
        try:
            if self._consumer is None:
                self._consumer = self._new_consumer()
            batches = self._consumer.poll(timeout_ms=500)
        except KafkaError as err:
            self._warnings.warn("kafka", f"reading the results topic {self._settings.results_topic} failed "
                                         f"({type(err).__name__}); retrying")
            return False
        except Exception as err:  # analytics must never take the video down with them
            self._warnings.warn("unexpected", f"unexpected error reading the results topic: {err!r}")
            log.debug("results poll failed", exc_info=True)
            return False
        if batches:
            self._handle(batches)
        return True

    def _handle(self, batches: dict[Any, list[Any]]) -> None:
        newest: dict[tuple[str, str], dict[str, Any]] = {}
        for records in batches.values():
            for record in records:
                try:
                    result = parse_result(record.value)
                except BadResult as bad:
                    reason = bad_result_reason(bad)
                    self._metrics.results_skipped.labels(reason).inc()
                    self._warnings.warn(reason, f"skipping result at {record.topic}/{record.partition}"
                                                f"@{record.offset}: {bad}")
                    continue
                newest[(result["camera"], result["processor"])] = result
                self._metrics.results_in.labels(result["camera"]).inc()
        if newest and not self._receiving:
            self._receiving = True
            log.info("analytics results arriving on %s", self._settings.results_topic)
        now_ns = time.time_ns()
        for result in newest.values():
            self._metrics.result_latency.labels(result["camera"]).observe(
                max(0, now_ns - result["capture_ts_ns"]) / 1e9)
            try:
                self._sink(result)
            except (TypeError, ValueError) as err:  # NaN in a hand-made record: JSON for browsers refuses it
                self._metrics.results_skipped.labels("unserializable").inc()
                self._warnings.warn("unserializable", f"skipping a result of {result['camera']!r}: {err}")
