"""What ``acks=all`` costs a viewer on a real replica set: capture -> viewer latency with
``KAFKA_ACKS=1`` and ``KAFKA_ACKS=all`` on a three-node KRaft cluster (replication factor 3,
``min.insync.replicas=2``), same camera, same cluster.

The two settings take turns in short windows (1, all, all, 1, 1, all, ...: the order flips each
round, and one unmeasured window warms the brokers first) instead of one long window each, so
the shared machine's noise and the brokers' warm-up fall on both alike; each window has a fresh
producer, consumer and topic. With acks=all the leader answers only once both followers have fetched the
frame: one more broker round-trip before the consumer may read it (a consumer reads only up to
the high watermark, which waits for the in-sync followers whatever the producer's acks).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from harness.kafka_cluster import KafkaCluster

from . import stats
from .measure import Context, in_window
from .plan import Resolution
from .stack import Stack
from .viewers import ViewerRun

log = logging.getLogger(__name__)

SETTINGS = ("1", "all")


def acks_cost(ctx: Context, res: Resolution) -> dict[str, Any]:
    """p50/p99 capture -> viewer per acks setting over alternating windows on one 3-node cluster."""
    plan = ctx.plan
    latencies: dict[str, list[float]] = {acks: [] for acks in SETTINGS}
    fps: dict[str, list[float]] = {acks: [] for acks in SETTINGS}
    ctx.services.release_stack(res.name)  # the single-broker pipeline's producer would share the CPU
    camera = ctx.services.camera(res)
    with KafkaCluster(n=3, session_timeout_ms=9000, heartbeat_interval_ms=2000) as cluster:
        cluster.start()
        for turn in range(-1, plan.acks_rounds):  # turn -1: warm-up, not measured
            for acks in (SETTINGS if turn % 2 == 0 else SETTINGS[::-1])[: 1 if turn < 0 else None]:
                stack = Stack(ctx.services, res, camera, cluster.bootstrap, KAFKA_ACKS=acks,
                              KAFKA_REPLICATION_FACTOR="3")
                try:
                    stack.start()
                    stack.settle(plan.settle_s)
                    run = ViewerRun(stack.feed_url, 1, plan.acks_s, warmup=plan.warmup_s,
                                    log_path=ctx.viewer_log(f"acks-{acks}-{turn}")).start()
                    run.wait_line("window-start")
                    start_ns = time.time_ns()
                    run.wait_line("window-end")
                    end_ns = time.time_ns()
                    parts = in_window(run.result()["viewers"][0]["parts"], start_ns, end_ns)
                finally:
                    stack.stop()
                ms = [(p[0] - p[1]) / 1e6 for p in parts if p[1] > 0]
                if turn < 0:
                    continue
                latencies[acks].extend(ms)
                fps[acks].append(len(parts) / ((end_ns - start_ns) / 1e9))
                log.info("acks=%s turn %d: p50 %.1f ms, p99 %.1f ms over %d frames", acks, turn,
                         stats.pct(ms, 50) or 0, stats.pct(ms, 99) or 0, len(ms))
    result: dict[str, Any] = {
        "resolution": res.name,
        "cluster": "3 KRaft nodes (combined roles), replication factor 3, min.insync.replicas 2",
        "rounds": plan.acks_rounds,
        "window_s": plan.acks_s,
        "by_acks": {acks: {"latency_ms": stats.summary(latencies[acks]),
                           "viewer_fps": stats.summary(fps[acks])} for acks in SETTINGS},
    }
    one, all_ = (result["by_acks"][a]["latency_ms"] for a in SETTINGS)
    result["all_minus_1_ms"] = {q: (all_[q] - one[q]) if all_[q] is not None and one[q] is not None else None
                                for q in ("p50", "p99")}
    ctx.results["acks"] = result
    return result
