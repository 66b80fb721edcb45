"""Capture -> result as a reader sees it: results gathered in the bench process as they arrive.

Threads in the parent (not children) because each sample is the arrival time of a result at a
real reader, a plain KafkaConsumer on the results topic or an SSE client of consumer.py's
/api/events, minus the capture time the result carries.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from .. import stats


class ResultCollector(threading.Thread):
    """A plain KafkaConsumer on the results topic: (arrival ns, capture ts ns) per result record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="results-collector", daemon=True)
        self.samples: list[tuple[int, int]] = []
        self._stop_event = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       client_id="bench-results", fetch_max_wait_ms=100)
        tps = [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic) or [0])]
        self._consumer.assign(tps)
        self._consumer.seek_to_end(*tps)
        for tp in tps:
            self._consumer.position(tp)  # resolve the end now, not at the first poll

    def run(self) -> None:
        while not self._stop_event.is_set():
            batches = self._consumer.poll(timeout_ms=100)
            now = time.time_ns()
            for records in batches.values():
                for record in records:
                    try:
                        self.samples.append((now, int(json.loads(record.value)["capture_ts_ns"])))
                    except (ValueError, KeyError, TypeError):
                        continue
        self._consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


class SseClient(threading.Thread):
    """An /api/events client: (arrival ns, capture ts ns) per `data:` line it reads."""

    def __init__(self, url: str) -> None:
        super().__init__(name="sse-client", daemon=True)
        self.url = url
        self.samples: list[tuple[int, int]] = []
        self.error: str | None = None
        self.connected = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as resp:
                self.connected.set()
                while not self._stop_event.is_set():
                    line = resp.readline()
                    if not line:
                        break
                    if line.startswith(b"data:"):
                        now = time.time_ns()
                        try:
                            self.samples.append((now, int(json.loads(line[5:])["capture_ts_ns"])))
                        except (ValueError, KeyError, TypeError):
                            continue
        except OSError as err:
            if not self._stop_event.is_set():
                self.error = f"{type(err).__name__}: {err}"
        finally:
            self.connected.set()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=7)


def latency_ms(samples: list[tuple[int, int]], start_ns: int, end_ns: int) -> dict[str, Any]:
    return stats.summary([(a - c) / 1e6 for a, c in samples if start_ns <= a <= end_ns and c > 0])
