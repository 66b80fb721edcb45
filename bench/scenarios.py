"""The project's scenarios: floor, producer + latency, fan-out, slow viewer, profile.

Each starts what it needs (``Services`` keeps one resolution's stack at a time), measures one
steady window (``measure``) and stores plain numbers in ``ctx.results``. The tutorial's
scenarios are in ``bench.tutorial``.
"""

from __future__ import annotations

import logging
import re
import statistics
from typing import Any

from . import stats
from .floor import run_floor
from .measure import (
    AGE_FLAT_ABS_MS,
    LATENCY_FLAT_ABS_MS,
    MB,
    BacklogSampler,
    Context,
    ProcTree,
    Window,
    hub_latency,
    in_window,
    latency_block,
    measure,
    per_thread,
    per_viewer_fps,
    rss_growing,
    snapshot,
)
from .plan import JPEG_QUALITY, Resolution
from .scrape import metric_sum
from .tutorial import baseline_latency, baseline_share
from .viewers import ViewerRun

__all__ = ["Context", "baseline_latency", "baseline_share", "fanout", "floor", "pipeline", "profile", "slow_viewer"]

log = logging.getLogger(__name__)


# --- floor --------------------------------------------------------------------------------------


def floor(ctx: Context, res: Resolution) -> dict[str, Any]:
    """Decode + imencode(q80) CPU per frame of the camera's own clip, pinned to one core."""
    frames = min(ctx.plan.floor_frames, res.fps * 10)
    result = run_floor(ctx.services.clip(res), frames, JPEG_QUALITY)
    ctx.results["floor"][res.name] = result
    log.info("floor %s: %.2f ms CPU/frame", res.name, result["cpu_s_per_frame"] * 1e3)
    return result


# --- producer + latency ---------------------------------------------------------------------------

WARNING_LINE = re.compile(r"\b(WARNING|ERROR)\b.*")


def producer_drop_reasons(log_text: str) -> dict[str, int]:
    """Why frames were not published, as far as producer.py tells: its WARNING/ERROR lines, by kind.

    The producer has no per-reason counters a process outside can read (no /metrics yet), so
    with no warning the only cause left is its newest-frame rule: the capture thread replaced a
    frame the encoder had not taken yet (encoder or publisher busy).
    """
    reasons: dict[str, int] = {}
    for line in log_text.splitlines():
        m = WARNING_LINE.search(line)
        if m:
            key = re.sub(r"\d+", "N", m.group(0))[:120]
            reasons[key] = reasons.get(key, 0) + 1
    reconnects = log_text.count(": reconnecting")
    if reconnects:
        reasons["camera reconnecting"] = reconnects
    return reasons


def pipeline(ctx: Context, res: Resolution) -> dict[str, Any]:
    """Producer CPU/frame vs floor, published fps vs source, drops, and capture->viewer latency."""
    if res.name not in ctx.results["floor"]:
        floor(ctx, res)
    stack = ctx.services.stack(res)
    stack.settle(ctx.plan.settle_s)
    assert stack.counter is not None
    window_s = ctx.plan.pipeline_s
    metrics_before = stack.consumer_metrics()
    backlog = BacklogSampler({"ours": ctx.services.backlog(stack.producer.pid, res)})
    backlog.start()
    producer_tree = stack.producer.tree()
    run = ViewerRun(stack.feed_url, 1, window_s, warmup=ctx.plan.warmup_s, log_path=ctx.viewer_log(res.name)).start()
    try:
        run.wait_line("window-start")
        threads_before = producer_tree.threads()
        start = snapshot({"producer": producer_tree, "consumer": stack.consumer.tree()}, {"ours": stack.counter})
        run.wait_line("window-end")
        end = snapshot({"producer": producer_tree, "consumer": stack.consumer.tree()}, {"ours": stack.counter})
        threads_after = producer_tree.threads()
        w = Window(start, end)
        data = run.result()
    finally:
        backlog.stop()
    metrics_after = stack.consumer_metrics()
    viewer = data["viewers"][0]
    parts = in_window(viewer["parts"], w.start.t_ns, w.end.t_ns)
    published = w.records("ours")
    expected = res.fps * w.seconds
    floor_cpu = ctx.results["floor"][res.name]["cpu_s_per_frame"]
    cpu_per_frame = w.cpu_s("producer") / published if published else None
    captures = sorted({p[1] for p in parts if p[1] > 0})
    # Camera frames between the first and last capture the viewer saw, minus those it saw: frames
    # skipped anywhere on the way. Counted over the span, not per gap, so capture-time jitter
    # (a 4K decode finishing late, the next one early) is not mistaken for a drop.
    span_frames = round((captures[-1] - captures[0]) * res.fps / 1e9) + 1 if captures else 0
    missing_at_viewer = max(0, span_frames - len(captures))
    superseded = (metric_sum(metrics_after, "mjpeg_frames_superseded")
                  - metric_sum(metrics_before, "mjpeg_frames_superseded"))
    result: dict[str, Any] = {
        "window_s": w.seconds,
        "source_fps": res.fps,
        "published_frames": published,
        "published_fps": published / w.seconds,
        "fps_ratio": published / expected,
        "producer_cpu_s_per_frame": cpu_per_frame,
        "floor_cpu_s_per_frame": floor_cpu,
        "cpu_vs_floor": cpu_per_frame / floor_cpu if cpu_per_frame else None,
        "producer_cpu_pct": w.cpu_pct("producer"),
        "consumer_cpu_pct": w.cpu_pct("consumer"),
        "machine_busy_pct": w.machine_busy_pct,
        "viewer_fps_ratio": len(parts) / expected,
        "client_cpu_pct": 100.0 * data["client_cpu_s"] / w.seconds,
        "dropped": {
            "not_published": max(0, round(expected - published)),
            "capture_gaps_at_viewer": missing_at_viewer,
            "superseded_in_consumer": superseded,
            "producer_log": producer_drop_reasons(stack.producer.log_text()),
        },
        "latency": latency_block(parts, w.start.t_ns, w.end.t_ns, ctx.plan.edge(w.seconds), LATENCY_FLAT_ABS_MS),
        "capture_to_hub_ms": hub_latency(metrics_before, metrics_after),
        "rtsp_backlog": backlog.block("ours", w.start.t_ns, w.end.t_ns, ctx.plan.edge(w.seconds)),
        "producer_threads_ms_per_frame": per_thread(stack.producer.pid, threads_before, threads_after, published),
    }
    ctx.results["pipeline"][res.name] = result
    lat = result["latency"]["ms"]
    log.info("pipeline %s: %.2fx floor, %.3f of source fps, latency p50 %.1f p99 %.1f ms", res.name,
             result["cpu_vs_floor"] or 0, result["fps_ratio"], lat["p50"] or 0, lat["p99"] or 0)
    return result


# --- fan-out and the slow viewer ------------------------------------------------------------------


def fanout(ctx: Context, res: Resolution) -> dict[str, Any]:
    """N concurrent viewers of one camera from one consumer process, N = each fan-out level."""
    stack = ctx.services.stack(res)
    stack.settle(ctx.plan.settle_s)
    assert stack.counter is not None
    consumer_tree = stack.consumer.tree()
    levels: dict[str, Any] = {}
    rss_first = consumer_tree.rss()
    for n in ctx.plan.fanout_levels:
        run = ViewerRun(stack.feed_url, n, ctx.plan.fanout_s, warmup=ctx.plan.warmup_s + n * 0.01,
                        log_path=ctx.viewer_log(f"fanout-{n}")).start()
        client = ProcTree(run.pid)
        w = measure(run, {"consumer": consumer_tree, "producer": stack.producer.tree(), "client": client},
                    {"ours": stack.counter})
        data = run.result()
        start_ns, end_ns = data["window_start_ns"], data["window_end_ns"]
        fps = per_viewer_fps(data["viewers"], start_ns, end_ns)
        parts = [p for v in data["viewers"] for p in in_window(v["parts"], start_ns, end_ns)]
        lat = [(p[0] - p[1]) / 1e6 for p in parts if p[1] > 0]
        published_fps = w.records("ours") / w.seconds
        levels[str(n)] = {
            "viewers": n,
            "connected_ok": sum(1 for v in data["viewers"] if v["status"] == 200),
            "fps_ratio_min": min(fps) / res.fps if fps else 0.0,
            "fps_ratio_median": statistics.median(fps) / res.fps if fps else 0.0,
            "share_of_published_min": min(fps) / published_fps if fps and published_fps else 0.0,
            "latency_ms": stats.summary(lat),
            "consumer_cpu_pct": w.cpu_pct("consumer"),
            "consumer_rss_start_mb": w.start.rss["consumer"] / MB,
            "consumer_rss_end_mb": w.end.rss["consumer"] / MB,
            "consumer_rss_growing": rss_growing(w.start.rss["consumer"], w.end.rss["consumer"]),
            "producer_fps_ratio": published_fps / res.fps,
            "client_cpu_pct": 100.0 * data["client_cpu_s"] / w.seconds,
            "machine_busy_pct": w.machine_busy_pct,
            "window_s": w.seconds,
        }
        log.info("fanout %d: min %.3f median %.3f of source fps, p99 %.1f ms, consumer %.0f%% CPU, client %.0f%%",
                 n, levels[str(n)]["fps_ratio_min"], levels[str(n)]["fps_ratio_median"],
                 levels[str(n)]["latency_ms"]["p99"] or 0, levels[str(n)]["consumer_cpu_pct"],
                 levels[str(n)]["client_cpu_pct"])
    result = {"resolution": res.name, "levels": levels, "consumer_rss_before_mb": rss_first / MB,
              "consumer_rss_after_mb": consumer_tree.rss() / MB}
    ctx.results["fanout"] = result
    return result


def slow_viewer(ctx: Context, res: Resolution) -> dict[str, Any]:
    """One viewer reading at 1/4 of the stream's byte rate beside normal ones: how old its frames get."""
    stack = ctx.services.stack(res)
    stack.settle(ctx.plan.settle_s)
    assert stack.counter is not None
    probe = 1.5
    run = ViewerRun(stack.feed_url, ctx.plan.slow_normal_viewers, ctx.plan.slow_s, warmup=probe + ctx.plan.warmup_s,
                    slow_fraction=0.25, probe=probe, log_path=ctx.viewer_log("slow")).start()
    w = measure(run, {"consumer": stack.consumer.tree()}, {"ours": stack.counter})
    data = run.result()
    start_ns, end_ns = data["window_start_ns"], data["window_end_ns"]
    normal_fps = per_viewer_fps(data["viewers"], start_ns, end_ns)
    slow = next(v for v in data["viewers"] if v["kind"] == "slow")
    slow_parts = in_window(slow["parts"], start_ns, end_ns)
    age = latency_block(slow_parts, start_ns, end_ns, ctx.plan.edge(w.seconds), AGE_FLAT_ABS_MS)
    result = {
        "window_s": w.seconds,
        "normal_viewers": ctx.plan.slow_normal_viewers,
        "slow_rate_kb_s": data["slow_rate_bps"] / 1024,
        "slow_fps": len(slow_parts) / w.seconds,
        "age": age,
        "normal_fps_ratio_min": min(normal_fps) / res.fps if normal_fps else 0.0,
        "normal_fps_ratio_median": statistics.median(normal_fps) / res.fps if normal_fps else 0.0,
        "consumer_cpu_pct": w.cpu_pct("consumer"),
        "machine_busy_pct": w.machine_busy_pct,
    }
    ctx.results["slow"] = result
    log.info("slow viewer: %.1f fps, age p50 %.0f max %.0f ms; normal viewers min %.3f of source fps",
             result["slow_fps"], age["ms"]["p50"] or 0, age["ms"]["max"] or 0, result["normal_fps_ratio_min"])
    return result


# --- profile (optional) ------------------------------------------------------------------------


def profile(ctx: Context, res: Resolution) -> dict[str, Any]:
    """py-spy on the producer and the consumer worker under load (1 + the largest fan-out level)."""
    from .profiling import profile_pids

    stack = ctx.services.stack(res)
    stack.settle(ctx.plan.settle_s)
    n = max(ctx.plan.fanout_levels)
    run = ViewerRun(stack.feed_url, n, ctx.plan.profile_s + 2, warmup=ctx.plan.warmup_s,
                    log_path=ctx.viewer_log("profile")).start()
    run.wait_line("window-start")
    result = profile_pids({"producer": stack.producer.pid, "consumer": stack.consumer.tree().leaf_pid()},
                          ctx.plan.profile_s, ctx.services.log_dir.parent / "profiles")
    run.wait_line("window-end")
    run.result()
    result["resolution"] = res.name
    result["viewers"] = n
    ctx.results["profile"] = result
    return result
