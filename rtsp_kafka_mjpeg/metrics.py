"""Prometheus metrics (prometheus-client), one registry per process role, passed down explicitly."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ReceiveRates:
    """Frames per second handed to the hub, per camera, over a sliding window: the rate the index
    page and /api/cameras show, which need it without a Prometheus server to run rate() for them."""

    WINDOW_S = 5.0
    QUIET_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals: dict[str, collections.deque[float]] = {}

    def note(self, camera_id: str, now: float) -> None:
        """One frame of `camera_id` arrived at monotonic time `now`."""
        with self._lock:
            arrivals = self._arrivals.setdefault(camera_id, collections.deque())
            arrivals.append(now)
            while now - arrivals[0] > self.WINDOW_S:
                arrivals.popleft()

    def fps(self, camera_id: str, now: float) -> float:
        """The rate over the window, 0 once the camera has been quiet for a second."""
        with self._lock:
            recent = [t for t in self._arrivals.get(camera_id, ()) if now - t <= self.WINDOW_S]
        if len(recent) < 2 or now - recent[-1] > self.QUIET_S:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-3)


class _ViewerGauge:
    """mjpeg_viewers read from the hub's own count at scrape time: one count, never out of step."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Any]:
        gauge = GaugeMetricFamily("mjpeg_viewers", "Connected stream viewers", labels=["camera"])
        for camera, count in sorted(self._counts().items()):
            gauge.add_metric([camera], count)
        yield gauge


class ConsumerMetrics:
    """What the consumer exposes at /metrics. `viewer_counts` is the hub's count per camera."""

    def __init__(self, viewer_counts: Callable[[], dict[str, int]] = dict) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_in = Counter("mjpeg_frames_in", "Frames received from Kafka", ["camera"], registry=r)
        self.bytes_in = Counter("mjpeg_bytes_in", "JPEG bytes received from Kafka", ["camera"], registry=r)
        self.records_skipped = Counter("mjpeg_records_skipped", "Records not shown, by reason", ["reason"],
                                       registry=r)
        self.frames_superseded = Counter("mjpeg_frames_superseded",
                                         "Frames replaced by a newer one within one poll", ["camera"], registry=r)
        self.frames_out = Counter("mjpeg_frames_out", "Frames written to viewers", ["camera"], registry=r)
        self.bytes_out = Counter("mjpeg_bytes_out", "Bytes written to viewers", ["camera"], registry=r)
        r.register(_ViewerGauge(viewer_counts))
        self.latency = Histogram("mjpeg_capture_to_hub_seconds", "Capture timestamp to arrival in the hub",
                                 ["camera"], buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("mjpeg_consumer_lag_records", "Records behind the end of the topic", registry=r)
        self.kafka_up = Gauge("mjpeg_kafka_connected", "1 when the Kafka consumer is polling successfully",
                              registry=r)
        self.receive_rates = ReceiveRates()
        # Analytics: the workers' results read back from the results topic and sent as SSE.
        self.results_in = Counter("mjpeg_results_in", "Analytics results received from Kafka", ["camera"],
                                  registry=r)
        self.results_skipped = Counter("mjpeg_results_skipped", "Result records not shown, by reason", ["reason"],
                                       registry=r)
        self.result_latency = Histogram("mjpeg_capture_to_result_seconds",
                                        "Capture timestamp of the analysed frame to its result's arrival",
                                        ["camera"], buckets=LATENCY_BUCKETS, registry=r)
        self.events_out = Counter("mjpeg_events_out", "Results written to /api/events clients", registry=r)
        # Rewind: readers of the topic's past, one per replay, clip or snapshot at a time.
        self.history_readers = Gauge("mjpeg_history_readers", "Open readers of retained frames (replays, clips)",
                                     registry=r)
        self.history_requests = Counter("mjpeg_history_requests", "Requests for retained frames, by kind",
                                        ["kind"], registry=r)


class ProducerCollector:
    """The producer's /metrics, one series per camera, read from the pipelines' own counters at
    scrape time (no double bookkeeping on the per-frame path)."""

    def __init__(self, pipelines: list[Any]) -> None:
        self._pipelines = pipelines

    def collect(self) -> Iterator[Any]:
        def per_camera(kind: type, name: str, doc: str, value: Callable[[Any], float]) -> Any:
            family = kind(name, doc, labels=["camera"])
            for p in self._pipelines:
                family.add_metric([p.camera_id], value(p))
            return family

        yield per_camera(CounterMetricFamily, "producer_frames_captured", "Frames decoded from the camera",
                         lambda p: p.source.captured)
        yield per_camera(CounterMetricFamily, "producer_frames_published", "Frames acknowledged by Kafka",
                         lambda p: p.counts().sent)
        yield per_camera(CounterMetricFamily, "producer_bytes_published", "JPEG bytes acknowledged by Kafka",
                         lambda p: p.counts().sent_bytes)
        dropped = CounterMetricFamily("producer_frames_dropped", "Frames not published, by reason",
                                      labels=["camera", "reason"])
        for p in self._pipelines:
            dropped.add_metric([p.camera_id, "superseded_before_encode"], p.source.skipped)
            for reason, count in {**p.dropped, **p.counts().dropped}.items():
                dropped.add_metric([p.camera_id, reason], count)
        yield dropped
        yield per_camera(CounterMetricFamily, "producer_camera_reconnects", "Times the camera was reopened",
                         lambda p: p.source.reconnects)
        yield per_camera(GaugeMetricFamily, "producer_camera_streaming", "1 while the camera delivers frames",
                         lambda p: 1 if p.source.state == "streaming" else 0)
        decoder = GaugeMetricFamily("producer_camera_decoder", "1 for how each camera is read: mode (decode, "
                                    "mjpeg, keyframes, pyav) and the device decoding it (software, cuda, ...)",
                                    labels=["camera", "mode", "device"])
        for p in self._pipelines:
            decoder.add_metric([p.camera_id, p.source.mode, p.source.decoded_on], 1)
        yield decoder
        if self._pipelines:
            yield GaugeMetricFamily("producer_inflight_bytes", "Bytes awaiting the broker (all cameras)",
                                    value=self._pipelines[0].publisher.inflight_bytes)


def serve_producer_metrics(pipelines: list[Any], port: int, host: str) -> None:
    """Expose the producer's metrics on their own port (prometheus-client's HTTP server)."""
    registry = CollectorRegistry()
    registry.register(ProducerCollector(pipelines))
    start_http_server(port, addr=host, registry=registry)
