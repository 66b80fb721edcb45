"""Prometheus metrics of worker.py (its own registry, served on WORKER_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ..metrics import LATENCY_BUCKETS

PROCESSING_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
ANY_CAMERA = "*"  # label of frames skipped unread (a lag jump): their cameras are not known


class WorkerMetrics:
    """Counters the worker loop updates and the status line reads (`.total` sums over labels)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.processed = Counter("worker_frames_processed", "Frames run through the processor", ["camera"],
                                 registry=r)
        self.skipped = Counter("worker_frames_skipped", "Frames not processed on purpose, by reason "
                               "(filtered: other camera; superseded: a newer frame of the camera in the same "
                               "poll; lag_jump: skipped unread to catch up)", ["camera", "reason"], registry=r)
        self.failed = Counter("worker_frames_failed", "Frames whose processing failed, by reason "
                              "(raised, not_a_dict, unserializable, undecodable, publish_failed)",
                              ["camera", "reason"], registry=r)
        self.invalid = Counter("worker_records_invalid", "Records on the frames topic that are not frames, "
                               "by reason", ["reason"], registry=r)
        self.processing = Histogram("worker_processing_seconds", "Time in the processor per frame "
                                    "(decode excluded)", buckets=PROCESSING_BUCKETS, registry=r)
        self.decoding = Histogram("worker_decode_seconds", "JPEG decode time per processed frame",
                                  buckets=PROCESSING_BUCKETS, registry=r)
        self.result_latency = Histogram("worker_capture_to_result_seconds",
                                        "Capture timestamp to the result acknowledged by Kafka",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.results = Counter("worker_results_published", "Result records acknowledged by Kafka", registry=r)
        self.lag = Gauge("worker_consumer_lag_records", "Records behind the end of each assigned partition",
                         ["partition"], registry=r)
        self.assigned = Gauge("worker_assigned_partitions", "Partitions this worker owns", registry=r)
        self.rebalances = Counter("worker_rebalances", "Partition assignments received from the group",
                                  registry=r)
        self.commits_failed = Counter("worker_commits_failed", "Offset commits the group refused or lost",
                                      registry=r)

    @staticmethod
    def total(counter: Counter) -> float:
        """Sum of a labelled counter over all its label values (for the status line)."""
        return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))

    def serve(self, port: int, host: str) -> None:
        """prometheus-client's own HTTP server in a daemon thread; OSError when the port is taken."""
        start_http_server(port, addr=host, registry=self.registry)
