"""The tutorial baseline side by side with ours: frames per viewer, and whether latency grows.

The tutorial (``../shared/baseline``) runs as it is, on the same broker and camera, on a topic
of its own. Its parts carry no timestamp and no sequence, so its figures come from its topic:
how many records entered it (end offsets) and when (``CountSampler``, ``producer_lag``).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import uuid
from typing import Any

from harness.ports import free_port

from . import stats
from .app_env import baseline_env
from .measure import (
    LATENCY_FLAT_ABS_MS,
    BacklogSampler,
    Context,
    Window,
    in_window,
    latency_block,
    measure,
    per_viewer_fps,
    snapshot,
)
from .paths import BASELINE_DIR
from .plan import Resolution
from .process import Service
from .services import Services
from .topic_counter import TopicCounter
from .viewers import ViewerRun

log = logging.getLogger(__name__)


class CountSampler(threading.Thread):
    """Samples a topic's record count a few times a second: the tutorial's publish times.

    The tutorial sends every frame it reads and its records carry the producer's send time, so
    the n-th record left the producer at the moment the count reached n. A real-time camera
    delivered frame n at t_ref + (n - n_ref)/fps; the difference is how far the tutorial's
    capture loop has fallen behind the camera (its producer lag).
    """

    def __init__(self, bootstrap: str, topic: str, interval_s: float = 0.25) -> None:
        super().__init__(name=f"count-{topic}", daemon=True)
        self._counter = TopicCounter(bootstrap, topic)
        self._interval = interval_s
        self._stop_event = threading.Event()
        self.samples: list[tuple[int, int]] = []

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.append((time.time_ns(), self._counter.count()))
            except Exception as err:  # noqa: BLE001 - keep sampling through a hiccup
                log.debug("count sample failed: %s", err)
            self._stop_event.wait(self._interval)
        self._counter.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def producer_lag(samples: list[tuple[int, int]], fps: int, start_ns: int, end_ns: int,
                 edge_s: float) -> dict[str, Any]:
    """The tutorial producer's lag behind a real-time camera over a window (see ``CountSampler``)."""
    rows = [(t, n) for t, n in samples if start_ns <= t <= end_ns]
    if len(rows) < 3:
        return {"first_ms": None, "last_ms": None, "growth_ms": None, "slope_ms_per_s": None,
                "grows": None, "fps_ratio": None}
    t_ref, n_ref = rows[0]
    times = [t for t, _ in rows]
    lag_ms = [((t - t_ref) / 1e9 - (n - n_ref) / fps) * 1e3 for t, n in rows]
    first, last = stats.edges(times, lag_ms, start_ns, end_ns, edge_s)
    first_p50, last_p50 = stats.pct(first, 50), stats.pct(last, 50)
    growth = None if first_p50 is None or last_p50 is None else last_p50 - first_p50
    seconds = (rows[-1][0] - t_ref) / 1e9
    return {
        "first_ms": first_p50,
        "last_ms": last_p50,
        "growth_ms": growth,
        "slope_ms_per_s": stats.slope_per_s(times, lag_ms),
        "grows": None if growth is None else not stats.is_flat(first_p50, last_p50, 2 * 1000 / fps),
        "fps_ratio": (rows[-1][1] - n_ref) / seconds / fps if seconds > 0 else None,
        "edge_s": edge_s,
    }


class Tutorial:
    """The tutorial's producer and consumer, as they are, on a topic of their own."""

    def __init__(self, services: Services, res: Resolution) -> None:
        cam = services.camera(res)
        self.topic = f"bench-tutorial-{res.name}-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        env = baseline_env(services.bootstrap, self.topic, RTSP_URL=cam.url, PORT=str(self.port))
        self.producer = Service(f"tutorial-producer-{res.name}", [sys.executable, "seed_producer.py.txt"], env,
                                services.log_dir, cwd=BASELINE_DIR)
        self.consumer = Service(f"tutorial-consumer-{res.name}", [sys.executable, "seed_consumer.py.txt"], env,
                                services.log_dir, cwd=BASELINE_DIR, port=self.port)
        self.bootstrap = services.bootstrap
        self.counter: TopicCounter | None = None

    @property
    def feed_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video_feed"

    def start(self) -> None:
        if not (BASELINE_DIR / "seed_producer.py.txt").is_file():
            raise FileNotFoundError(f"tutorial baseline not found in {BASELINE_DIR}")
        self.producer.start()
        self.counter = TopicCounter(self.bootstrap, self.topic)
        if not self.counter.wait_records(1, 40):  # its consumer subscribes once the topic exists
            raise self.producer.fail("published nothing in 40 s")
        self.consumer.start()
        self.consumer.wait_http()

    def stop(self) -> None:
        if self.counter is not None:
            self.counter.close()
        self.consumer.stop(timeout=5)
        self.producer.stop(timeout=5)


def baseline_share(ctx: Context, res: Resolution) -> dict[str, Any]:
    """Two viewers on ours and two on the tutorial, same camera, same moment: frames each gets."""
    stack = ctx.services.stack(res)
    tutorial = Tutorial(ctx.services, res)
    try:
        tutorial.start()
        stack.settle(ctx.plan.settle_s)
        time.sleep(ctx.plan.settle_s)  # the tutorial's own start-up burst
        assert stack.counter is not None and tutorial.counter is not None
        sampler = CountSampler(ctx.services.bootstrap, tutorial.topic)
        sampler.start()
        ours_run = ViewerRun(stack.feed_url, 2, ctx.plan.share_s, warmup=ctx.plan.warmup_s,
                             log_path=ctx.viewer_log("share-ours")).start()
        tut_run = ViewerRun(tutorial.feed_url, 2, ctx.plan.share_s, warmup=ctx.plan.warmup_s,
                            log_path=ctx.viewer_log("share-tutorial")).start()
        trees = {"tutorial_producer": tutorial.producer.tree(), "tutorial_consumer": tutorial.consumer.tree()}
        ours_run.wait_line("window-start")
        ours_start = snapshot({}, {"ours": stack.counter})
        tut_run.wait_line("window-start")
        tut_start = snapshot(trees, {"tutorial": tutorial.counter})
        ours_run.wait_line("window-end")
        ours_end = snapshot({}, {"ours": stack.counter})
        tut_run.wait_line("window-end")
        tut_end = snapshot(trees, {"tutorial": tutorial.counter})
        ours_data, tut_data = ours_run.result(), tut_run.result()
        sampler.stop()
        tut_w = Window(tut_start, tut_end)
        ours_w = Window(ours_start, ours_end)
        result = {
            "resolution": res.name,
            "viewers": 2,
            "ours": share_block(ours_data, ours_w.records("ours")),
            "tutorial": share_block(tut_data, tut_w.records("tutorial")),
            "tutorial_producer_cpu_pct": tut_w.cpu_pct("tutorial_producer"),
            "tutorial_consumer_cpu_pct": tut_w.cpu_pct("tutorial_consumer"),
            "tutorial_producer_lag": producer_lag(sampler.samples, res.fps, tut_start.t_ns, tut_end.t_ns,
                                                  ctx.plan.edge(tut_w.seconds)),
            "tutorial_alive": tutorial.producer.alive() and tutorial.consumer.alive(),
        }
    finally:
        tutorial.stop()
    result["tutorial"]["consumer_log_errors"] = log_errors(tutorial.consumer.log_text())
    ctx.results["baseline"]["share"] = result
    log.info("share: ours min %.3f, tutorial min %.3f (sum %.3f)", result["ours"]["min_share"],
             result["tutorial"]["min_share"], result["tutorial"]["sum_share"])
    return result


def log_errors(text: str) -> dict[str, int]:
    """Exception lines (``SomeError: message``) in a log, counted: why a tutorial viewer got nothing."""
    found: dict[str, int] = {}
    for m in re.finditer(r"^(\w+(?:Error|Exception)): (.{0,80})$", text, re.MULTILINE):
        key = f"{m[1]}: {m[2]}"
        found[key] = found.get(key, 0) + 1
    return found


def share_block(data: dict[str, Any], records: int) -> dict[str, Any]:
    """Parts each viewer got over the window / frames that entered the topic over the same window."""
    start_ns, end_ns = data["window_start_ns"], data["window_end_ns"]
    counts = [len(in_window(v["parts"], start_ns, end_ns)) for v in data["viewers"]]
    shares = [c / records if records else 0.0 for c in counts]
    return {"records": records, "parts": counts, "shares": shares, "min_share": min(shares) if shares else 0.0,
            "sum_share": sum(shares), "statuses": [v["status"] for v in data["viewers"]],
            "errors": [v["error"] for v in data["viewers"] if v["error"]]}


def baseline_latency(ctx: Context, res: Resolution) -> dict[str, Any]:
    """Does the tutorial's latency grow over the window, where ours stays flat? Two phases.

    ``side_by_side``: the tutorial started next to ours (still running from its pipeline window)
    on the same camera and broker, one viewer each, one window for both; the CPU is then
    contended, which is where the designs differ: ours skips frames (its fps drops, latency
    stays), the tutorial reads every frame and falls behind.
    ``alone``: then ours is stopped and the tutorial has the machine to itself, one viewer.
    """
    stack = ctx.services.stack(res)
    tutorial = Tutorial(ctx.services, res)
    try:
        tutorial.start()
        time.sleep(ctx.plan.settle_s)
        side = tutorial_window(ctx, res, tutorial, stack, "side-by-side")
        ctx.services.release_stack(res.name)
        time.sleep(ctx.plan.settle_s)  # let the camera and the tutorial settle without ours
        alone = tutorial_window(ctx, res, tutorial, None, "alone")
    finally:
        tutorial.stop()
    ours_alone = ctx.results["pipeline"].get(res.name, {}).get("latency")
    result = {"resolution": res.name, "window_s": side["window_s"], "alone": alone, "side_by_side": side,
              "ours_alone_latency": None if not ours_alone else {
                  "first_p50_ms": ours_alone["first_ms"]["p50"], "last_p50_ms": ours_alone["last_ms"]["p50"],
                  "growth_ms": ours_alone["growth_ms"], "flat": ours_alone["flat"]}}
    ctx.results["baseline"]["latency"] = result
    log.info("tutorial %s lag growth: alone %s ms, side by side %s ms; ours side by side %s ms", res.name,
             alone["tutorial_producer_lag"]["growth_ms"], side["tutorial_producer_lag"]["growth_ms"],
             side["ours"]["latency"]["growth_ms"])
    return result


def tutorial_window(ctx: Context, res: Resolution, tutorial: Tutorial, stack: Any, label: str) -> dict[str, Any]:
    """One window of the tutorial (and ours, when ``stack`` is given), one viewer on each."""
    assert tutorial.counter is not None
    window_s = ctx.plan.baseline_latency_s
    sampler = CountSampler(ctx.services.bootstrap, tutorial.topic)
    sampler.start()
    trees = {"tutorial_producer": tutorial.producer.tree(), "tutorial_consumer": tutorial.consumer.tree()}
    counters = {"tutorial": tutorial.counter}
    probes = {"tutorial": ctx.services.backlog(tutorial.producer.pid, res)}
    ours_run = None
    if stack is not None:
        trees["producer"] = stack.producer.tree()
        counters["ours"] = stack.counter
        probes["ours"] = ctx.services.backlog(stack.producer.pid, res)
        ours_run = ViewerRun(stack.feed_url, 1, window_s, warmup=ctx.plan.warmup_s,
                             log_path=ctx.viewer_log(f"ours-{label}-{res.name}")).start()
    backlog = BacklogSampler(probes)
    backlog.start()
    run = ViewerRun(tutorial.feed_url, 1, window_s, warmup=ctx.plan.warmup_s,
                    log_path=ctx.viewer_log(f"tutorial-{label}-{res.name}")).start()
    try:
        w = measure(run, trees, counters)
        data = run.result()
        ours_data = ours_run.result() if ours_run else None
    finally:
        sampler.stop()
        backlog.stop()
    edge = ctx.plan.edge(w.seconds)
    lag = producer_lag(sampler.samples, res.fps, w.start.t_ns, w.end.t_ns, edge)
    viewer_fps = per_viewer_fps(data["viewers"], data["window_start_ns"], data["window_end_ns"])
    out: dict[str, Any] = {
        "window_s": w.seconds,
        "tutorial_producer_lag": lag,
        "tutorial_published_fps_ratio": w.records("tutorial") / w.seconds / res.fps,
        "tutorial_viewer_fps_ratio": viewer_fps[0] / res.fps if viewer_fps else 0.0,
        "tutorial_producer_cpu_pct": w.cpu_pct("tutorial_producer"),
        "tutorial_alive": tutorial.producer.alive(),
        "tutorial_rtsp_backlog": backlog.block("tutorial", w.start.t_ns, w.end.t_ns, edge),
        "machine_busy_pct": w.machine_busy_pct,
    }
    if ours_data is not None:
        start_ns, end_ns = ours_data["window_start_ns"], ours_data["window_end_ns"]
        parts = in_window(ours_data["viewers"][0]["parts"], start_ns, end_ns)
        out["ours"] = {
            "latency": latency_block(parts, start_ns, end_ns, ctx.plan.edge(w.seconds), LATENCY_FLAT_ABS_MS),
            "published_fps_ratio": w.records("ours") / w.seconds / res.fps,
            "producer_cpu_pct": w.cpu_pct("producer"),
            "rtsp_backlog": backlog.block("ours", w.start.t_ns, w.end.t_ns, edge),
        }
    return out
