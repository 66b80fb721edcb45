"""``python -m bench``: run the scenarios, print the table and goals, write bench/results/latest.json.

Scenarios run grouped by resolution, so only one resolution's camera, producer and consumer are
alive at a time (a leftover 720p producer would eat CPU while 2160p is measured). A scenario
that breaks is recorded with its error and the run goes on: the report then says FAIL for what
it could not measure instead of stopping short.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import acks, capacity, report, scenarios, worker
from .paths import RESULTS_DIR
from .plan import CODECS, DECODERS, KAFKA_CLIENTS, OPTIONAL_SCENARIOS, PRESETS, RESOLUTIONS, SCENARIOS, Plan
from .services import Services

log = logging.getLogger("bench")

Task = tuple[str, str, Callable[[scenarios.Context, Any], Any]]  # resolution, error key, function


def csv(kind: type, allowed: tuple[str, ...] | None = None) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        if allowed is not None:
            bad = [x for x in items if x not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad[0]!r}; choose from {', '.join(allowed)}")
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return items

    return parse


def parse_args(argv: list[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="a few seconds per scenario at 720p only (CI)")
    mode.add_argument("--quick", action="store_true", help="15 s windows instead of 25-60 s (development)")
    parser.add_argument("--scenarios", type=csv(str, SCENARIOS + OPTIONAL_SCENARIOS),
                        help=f"comma list from {', '.join(SCENARIOS + OPTIONAL_SCENARIOS)} (default: all but "
                             "profile)")
    parser.add_argument("--resolutions", type=csv(str, tuple(RESOLUTIONS)),
                        help=f"floor/pipeline resolutions, from {', '.join(RESOLUTIONS)}")
    parser.add_argument("--window", type=float, help="seconds for every measurement window (overrides the preset)")
    parser.add_argument("--fanout-levels", type=csv(int), help="viewer counts, e.g. 1,10,50,100")
    parser.add_argument("--profile", action="store_true", help="also run the py-spy profile scenario")
    parser.add_argument("--acks", action="store_true",
                        help="also run acks=1 vs acks=all on a 3-node cluster (the acks scenario)")
    parser.add_argument("--worker", action="store_true",
                        help="also run the analytics worker's figures at 720p30 (the worker scenario)")
    parser.add_argument("--capacity", action="store_true",
                        help="also run 1..8 x 720p30 cameras through one producer.py per Kafka client "
                             "(the capacity scenario)")
    parser.add_argument("--capacity-levels", type=csv(int), help="camera counts for capacity, e.g. 1,2,4,6,8")
    parser.add_argument("--capacity-clients", type=csv(str, KAFKA_CLIENTS),
                        help=f"Kafka clients for capacity, from {', '.join(KAFKA_CLIENTS)}")
    parser.add_argument("--capacity-decoders", type=csv(str, DECODERS),
                        help=f"SOURCE_DECODERs for capacity, from {', '.join(DECODERS)} (default both: the first "
                             "with every client, the others with confluent-kafka only)")
    parser.add_argument("--capacity-codecs", type=csv(str, CODECS),
                        help=f"camera codecs for capacity, from {', '.join(CODECS)} (default both: h264 with every "
                             "client/decoder pair, mjpeg (passthrough) with confluent-kafka and the first decoder)")
    parser.add_argument("--failover", action="store_true",
                        help="instead: rounds of node failures on a 3-node cluster at production defaults, both "
                             "clients (bench/failover.py; its own flags: --failover --help)")
    parser.add_argument("--chaos", action="store_true",
                        help="instead: random faults every 30 s on a 3-node cluster for --minutes (default 60), "
                             "then the end checks (bench/chaos.py; its own flags: --chaos --help)")
    parser.add_argument("--rewind", action="store_true",
                        help="instead: rewind's goals (first replayed frame, pace, clip export, 16 cameras on the "
                             "page; bench/rewind.py, its own flags: --rewind --help)")
    parser.add_argument("--bootstrap", help="use this Kafka broker instead of starting one")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json", help="JSON results file")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    plan = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    changes: dict[str, Any] = {}
    if args.scenarios:
        changes["scenarios"] = args.scenarios
    for name in ("profile", "acks", "worker", "capacity"):  # optional scenarios, each with its own flag
        if getattr(args, name) and name not in changes.get("scenarios", plan.scenarios):
            changes["scenarios"] = (*changes.get("scenarios", plan.scenarios), name)
    for field in ("resolutions", "fanout_levels", "capacity_levels", "capacity_clients", "capacity_decoders",
                  "capacity_codecs"):
        if getattr(args, field):
            changes[field] = getattr(args, field)
    if args.window:
        changes.update(pipeline_s=args.window, fanout_s=args.window, slow_s=args.window, share_s=args.window,
                       baseline_latency_s=args.window, profile_s=args.window, worker_s=args.window,
                       capacity_s=args.window)
    return dataclasses.replace(plan, **changes), args


def tasks(plan: Plan) -> list[Task]:
    """The scenario calls of a plan, grouped by resolution in 720p -> 2160p order."""
    want = set(plan.scenarios)
    out: list[Task] = []
    for name in RESOLUTIONS:
        if name in plan.resolutions:
            if "floor" in want:
                out.append((name, f"floor:{name}", scenarios.floor))
            if "pipeline" in want:
                out.append((name, f"pipeline:{name}", scenarios.pipeline))
        if name == plan.fanout_res:
            if "fanout" in want:
                out.append((name, "fanout", scenarios.fanout))
            if "slow" in want:
                out.append((name, "slow", scenarios.slow_viewer))
            if "baseline" in want:
                out.append((name, "baseline:share", scenarios.baseline_share))
        if name == plan.profile_res and "profile" in want:
            out.append((name, "profile", scenarios.profile))
        if name == plan.acks_res and "acks" in want:
            out.append((name, "acks", acks.acks_cost))
        if name == plan.worker_res and "worker" in want:
            out.append((name, "worker", worker.worker_bench))
        if name == plan.capacity_res and "capacity" in want:
            out.append((name, "capacity", capacity.capacity))
        if name == plan.baseline_latency_res and "baseline" in want:
            if "pipeline" in want and name not in plan.resolutions:  # ours' side of the comparison
                out.append((name, f"pipeline:{name}", scenarios.pipeline))
            out.append((name, "baseline:latency", scenarios.baseline_latency))
    return out


def run(plan: Plan, bootstrap: str | None) -> dict[str, Any]:
    started = time.monotonic()
    errors: dict[str, str] = {}
    with Services(bootstrap, RESULTS_DIR / "logs") as services:
        ctx = scenarios.Context(plan, services)
        ctx.results["meta"] = {
            "mode": plan.mode,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "plan": dataclasses.asdict(plan),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
        }
        todo = tasks(plan)
        for i, (res_name, key, fn) in enumerate(todo):
            log.info("--- %s", key)
            try:
                fn(ctx, RESOLUTIONS[res_name])
            except Exception as err:
                log.exception("%s failed", key)
                errors[key] = f"{type(err).__name__}: {str(err)[:500]}"
                services.release(res_name)
            if i + 1 == len(todo) or todo[i + 1][0] != res_name:
                services.release(res_name)
        ctx.results["producer_lifetime"] = services.lifetimes
    results = ctx.results
    results["errors"] = errors
    results["meta"]["duration_s"] = time.monotonic() - started
    results["meta"]["loadavg_end"] = os.getloadavg()
    results["goals"] = report.evaluate(results, errors)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--failover" in argv:  # its own cluster and flags (bench/failover.py), not the scenario plan
        from . import failover

        return failover.main([a for a in argv if a != "--failover"])
    if "--chaos" in argv:  # its own cluster, stack and flags (bench/chaos.py)
        from . import chaos

        return chaos.main([a for a in argv if a != "--chaos"])
    if "--rewind" in argv:  # its own broker, topic and flags (bench/rewind.py)
        from . import rewind

        return rewind.main([a for a in argv if a != "--rewind"])
    plan, args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: services stop by PID
    results = run(plan, args.bootstrap)
    report.write_json(results, args.out)
    text = report.render(results, results["goals"])
    if len(plan.capacity_decoders) > 1 and "h264" in plan.capacity_codecs and results.get("capacity"):
        text += "\n\n" + "\n".join(capacity.decoder_table(results["capacity"]))
    args.out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    log.info("results in %s", args.out)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
