"""Goals, the printed table and the JSON file.

Each goal of the issue is one row with the measured figure and PASS / FAIL; a goal whose
scenario did not run in this mode says SKIP (not measured), and a scenario that broke says FAIL
with the error, so a miss is never hidden behind a missing number.

A package with a module per section of the report: ``table`` (the main table), ``goals``,
``capacity_table``, ``notes``, over ``cells`` (lookups and cell formatting). This module puts
the sections together (``render``) and writes the JSON file; ``evaluate`` is the goals'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .capacity_table import capacity_table
from .goals import evaluate
from .notes import CAPACITY_NOTES, NOTES, WORKER_NOTES
from .table import rows

__all__ = ["evaluate", "render", "write_json"]


def render(results: dict[str, Any], goals: list[dict[str, Any]]) -> str:
    table = [("scenario", "metric", "ours", "tutorial", "goal", "result"), *rows(results)]
    widths = [max(len(r[i]) for r in table) for i in range(6)]
    lines = [" | ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    meta = results.get("meta", {})
    load = meta.get("loadavg_start") or [0, 0, 0]
    out = [f"rtsp-kafka-mjpeg benchmark ({meta.get('mode', '?')} mode, {meta.get('duration_s', 0):.0f} s, "
           f"{meta.get('cpus', '?')} CPUs, load average at start {load[0]:.2f})", "",
           *lines, "", "Goals"]
    gw = max((len(g["goal"]) for g in goals), default=10)
    for g in goals:
        out.append(f"  {g['status']:<4}  {g['goal'].ljust(gw)}  {g['measured']}  (target {g['target']})")
    cap = capacity_table(results.get("capacity") or {})
    if cap:
        out += ["", *cap]
    errors = results.get("errors") or {}
    if errors:
        out += ["", "Errors"] + [f"  {k}: {v}" for k, v in errors.items()]
    out += ["", NOTES + (WORKER_NOTES if results.get("worker") else "")
            + (CAPACITY_NOTES if results.get("capacity") else "")]
    return "\n".join(out)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(path)
