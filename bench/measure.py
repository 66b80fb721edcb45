"""Measurement windows: what the parent snapshots at a viewer process's window start and end.

Every window is framed by the viewer process's ``window-start`` / ``window-end`` lines; at each
the parent snapshots CPU and RSS of the measured processes, the end offsets of their topics and
the machine's CPU, so CPU, frames published and frames received all cover the same interval.
Samplers (RTSP backlog) and the latency summaries every scenario reports live here too.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import psutil

from . import stats
from .plan import Plan
from .proctree import ProcTree, cpu_delta
from .rtsp_backlog import RtspBacklog
from .scrape import histogram_buckets, histogram_quantile
from .services import Services
from .topic_counter import TopicCounter
from .viewers import ViewerRun

log = logging.getLogger(__name__)

MB = 1024 * 1024
LATENCY_FLAT_ABS_MS = 5.0
AGE_FLAT_ABS_MS = 100.0
RSS_GROWTH_TOLERANCE = (4 * MB, 0.05)  # "not growing": within 4 MiB or 5 %, whichever is larger


@dataclasses.dataclass
class Snapshot:
    t_ns: int
    cpu: dict[str, dict[int, float]]
    rss: dict[str, int]
    counts: dict[str, int]
    machine: tuple[float, float] = (0.0, 0.0)  # all cores: busy seconds, total seconds


def machine_times() -> tuple[float, float]:
    t = psutil.cpu_times()
    total = sum(t)
    return total - t.idle - getattr(t, "iowait", 0.0), total


@dataclasses.dataclass
class Window:
    """What the parent saw over one viewer window."""

    start: Snapshot
    end: Snapshot

    @property
    def seconds(self) -> float:
        return (self.end.t_ns - self.start.t_ns) / 1e9

    def cpu_s(self, name: str) -> float:
        return cpu_delta(self.start.cpu[name], self.end.cpu[name])

    def cpu_pct(self, name: str) -> float:
        """CPU of a process tree as % of one core over the window."""
        return 100.0 * self.cpu_s(name) / self.seconds

    @property
    def machine_busy_pct(self) -> float:
        """How busy the whole machine was (all cores, 100 = all busy): context for every figure."""
        busy = self.end.machine[0] - self.start.machine[0]
        total = self.end.machine[1] - self.start.machine[1]
        return 100.0 * busy / total if total > 0 else 0.0

    def records(self, name: str) -> int:
        return self.end.counts[name] - self.start.counts[name]


def snapshot(trees: dict[str, ProcTree], counters: dict[str, TopicCounter]) -> Snapshot:
    t_ns = time.time_ns()
    return Snapshot(t_ns, {k: t.cpu() for k, t in trees.items()}, {k: t.rss() for k, t in trees.items()},
                    {k: c.count() for k, c in counters.items()}, machine_times())


def measure(run: ViewerRun, trees: dict[str, ProcTree], counters: dict[str, TopicCounter]) -> Window:
    """Snapshot at the viewer process's window start and end."""
    run.wait_line("window-start")
    start = snapshot(trees, counters)
    run.wait_line("window-end")
    return Window(start, snapshot(trees, counters))


def in_window(parts: list[list[int]], start_ns: int, end_ns: int) -> list[list[int]]:
    return [p for p in parts if start_ns <= p[0] <= end_ns]


def latency_block(parts: list[list[int]], start_ns: int, end_ns: int, edge_s: float, abs_tol: float) -> dict[str, Any]:
    """p50/p99/max of (arrival - capture ts) in ms, plus first-vs-last slices and whether it is flat."""
    rows = [p for p in parts if p[1] > 0]
    times = [p[0] for p in rows]
    ms = [(p[0] - p[1]) / 1e6 for p in rows]
    first, last = stats.edges(times, ms, start_ns, end_ns, edge_s)
    block: dict[str, Any] = {
        "ms": stats.summary(ms),
        "first_ms": stats.summary(first),
        "last_ms": stats.summary(last),
        "edge_s": edge_s,
        "slope_ms_per_s": stats.slope_per_s(times, ms),
    }
    block["per_s"] = per_second(times, ms, start_ns)
    block["growth_ms"] = (None if block["first_ms"]["p50"] is None or block["last_ms"]["p50"] is None
                          else block["last_ms"]["p50"] - block["first_ms"]["p50"])
    block["flat"] = stats.is_flat(block["first_ms"]["p50"], block["last_ms"]["p50"], abs_tol)
    return block


def per_second(times_ns: list[int], values: list[float], start_ns: int) -> list[list[float]]:
    """[second, p50, max] per second of the window: the latency-over-time series, small enough to keep."""
    buckets: dict[int, list[float]] = {}
    for t, v in zip(times_ns, values, strict=True):
        buckets.setdefault(int((t - start_ns) // 1_000_000_000), []).append(v)
    return [[s, round(stats.pct(vs, 50) or 0.0, 2), round(max(vs), 2)] for s, vs in sorted(buckets.items())]


class Context:
    """What every scenario shares: the plan, the services, the results gathered so far."""

    def __init__(self, plan: Plan, services: Services) -> None:
        self.plan = plan
        self.services = services
        self.results: dict[str, Any] = {"floor": {}, "pipeline": {}, "fanout": {}, "slow": {}, "baseline": {},
                                        "profile": {}}

    def viewer_log(self, name: str) -> Any:
        return self.services.log_dir / f"viewers-{name}.log"


class BacklogSampler(threading.Thread):
    """Samples producers' RTSP input backlog (``RtspBacklog``) a few times a second."""

    def __init__(self, probes: dict[str, RtspBacklog], interval_s: float = 0.25) -> None:
        super().__init__(name="rtsp-backlog", daemon=True)
        self._probes = probes
        self._interval = interval_s
        self._stop_event = threading.Event()
        self.samples: dict[str, list[tuple[int, float]]] = {k: [] for k in probes}

    def run(self) -> None:
        while not self._stop_event.is_set():
            for label, probe in self._probes.items():
                value = probe.seconds()
                if value is not None:
                    self.samples[label].append((time.time_ns(), value))
            self._stop_event.wait(self._interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def block(self, label: str, start_ns: int, end_ns: int, edge_s: float) -> dict[str, Any]:
        """Backlog in ms of video over a window: median, max, first vs last slice."""
        rows = [(t, v * 1e3) for t, v in self.samples.get(label, []) if start_ns <= t <= end_ns]
        times, values = [t for t, _ in rows], [v for _, v in rows]
        first, last = stats.edges(times, values, start_ns, end_ns, edge_s)
        first_p50, last_p50 = stats.pct(first, 50), stats.pct(last, 50)
        return {"p50_ms": stats.pct(values, 50), "max_ms": max(values) if values else None,
                "first_ms": first_p50, "last_ms": last_p50,
                "growth_ms": None if first_p50 is None or last_p50 is None else last_p50 - first_p50,
                "n": len(values)}


def per_thread(pid: int, before: dict[int, float], after: dict[int, float], frames: int) -> dict[str, float]:
    """Producer CPU ms per published frame by thread: Python threads by name, native ones summed.

    Names come from ``py-spy dump`` when installed; native threads are FFmpeg's decoder workers
    and OpenCV's pool (their work is decode; the ``capture`` thread only drives it).
    """
    from .profiling import thread_names

    if not frames:
        return {}
    names = thread_names(pid)
    out: dict[str, float] = {}
    for tid, t in after.items():
        label = names.get(tid, "native (ffmpeg/opencv workers)" if names else f"tid {tid}")
        out[label] = out.get(label, 0.0) + (t - before.get(tid, 0.0)) * 1e3 / frames
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def hub_latency(before_text: str, after_text: str) -> dict[str, float | None]:
    """Capture -> consumer hub (producer + Kafka + poll), from the consumer's own histogram.

    Splits the end-to-end figure in two: what is left (hub -> viewer) is the web side's share.
    Bucket-interpolated, so coarse (buckets 5, 10, 20, 30, 50, 75, 100 ms ...).
    """
    name = "mjpeg_capture_to_hub_seconds"
    before, after = histogram_buckets(before_text, name), histogram_buckets(after_text, name)
    out: dict[str, float | None] = {}
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        v = histogram_quantile(before, after, q)
        out[label] = None if v is None else v * 1e3
    return out


def per_viewer_fps(viewers: list[dict[str, Any]], start_ns: int, end_ns: int, kind: str = "normal") -> list[float]:
    seconds = (end_ns - start_ns) / 1e9
    return [len(in_window(v["parts"], start_ns, end_ns)) / seconds for v in viewers if v["kind"] == kind]


def rss_growing(start: int, end: int) -> bool:
    return end - start > max(RSS_GROWTH_TOLERANCE[0], RSS_GROWTH_TOLERANCE[1] * start)
