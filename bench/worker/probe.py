"""A worker's figures over a window: what the parent reads at its edges, and the difference.

Apart from the scenario because both windows turn the same two snapshots (CPU of the process
tree, its /metrics, the machine's CPU, its run-queue wait) into the same figures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..measure import machine_times
from ..process import Service
from ..proctree import ProcTree, cpu_delta
from ..scrape import histogram_buckets, histogram_quantile, http_text, metric_sum


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's threads have spent runnable but waiting for a CPU (schedstat field 2):
    the share of a window a worker wanted its core and another process had it."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


class WorkerProbe:
    """What the parent reads of a worker at a window's edges: CPU of its tree and its /metrics."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.tree = ProcTree(service.pid)

    def snap(self) -> dict[str, Any]:
        return {"t_ns": time.time_ns(), "cpu": self.tree.cpu(), "metrics": http_text(f"{self.service.url}/metrics"),
                "machine": machine_times(), "waited_s": runqueue_wait_s(self.service.pid)}


def window_figures(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    def grew(metric: str) -> float:
        """How much a counter (or a histogram's _sum / _count) rose over the window."""
        return metric_sum(after["metrics"], metric) - metric_sum(before["metrics"], metric)

    def mean_ms(histogram: str) -> float | None:
        count = grew(f"{histogram}_count")
        return 1e3 * grew(f"{histogram}_sum") / count if count else None

    seconds = (after["t_ns"] - before["t_ns"]) / 1e9
    processed = grew("worker_frames_processed")
    cpu = cpu_delta(before["cpu"], after["cpu"])
    busy = after["machine"][0] - before["machine"][0]
    total = after["machine"][1] - before["machine"][1]
    name = "worker_capture_to_result_seconds"
    hb, ha = histogram_buckets(before["metrics"], name), histogram_buckets(after["metrics"], name)
    hist = {label: (None if (v := histogram_quantile(hb, ha, q)) is None else v * 1e3)
            for label, q in (("p50", 0.5), ("p99", 0.99))}
    return {
        "window_s": seconds,
        "processed": processed,
        "worker_cpu_s": cpu,
        "worker_cpu_pct": 100.0 * cpu / seconds if seconds else None,
        "worker_cpu_s_per_frame": cpu / processed if processed else None,
        "failed": grew("worker_frames_failed"),
        "lag_end": metric_sum(after["metrics"], "worker_consumer_lag_records"),
        "worker_capture_to_ack_ms": hist,
        # the worker's own clock around decode and processor (wall time): the floor's two parts as
        # they run inside the worker, beside the Kafka client, so the rest of its CPU is the pipeline's
        "decode_ms_mean": mean_ms("worker_decode_seconds"),
        "processing_ms_mean": mean_ms("worker_processing_seconds"),
        "machine_busy_pct": 100.0 * busy / total if total > 0 else 0.0,
        "waited_for_cpu_pct": 100.0 * (after["waited_s"] - before["waited_s"]) / seconds if seconds else None,
    }
