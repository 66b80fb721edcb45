"""Small statistics over measured samples: percentiles, windows, first-vs-last comparisons.

Kept apart from the scenarios so the definitions a goal relies on ("flat", "p99") live in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), None when there is no sample."""
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p99 / max and the sample count: the shape every latency figure is reported in."""
    return {
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "max": float(max(values)) if len(values) else None,
        "n": len(values),
    }


def edges(times_ns: Sequence[int], values: Sequence[float], start_ns: int, end_ns: int,
          edge_s: float) -> tuple[list[float], list[float]]:
    """Values whose time falls in the first / last ``edge_s`` seconds of [start, end]."""
    edge_ns = int(edge_s * 1e9)
    first = [v for t, v in zip(times_ns, values, strict=True) if start_ns <= t < start_ns + edge_ns]
    last = [v for t, v in zip(times_ns, values, strict=True) if end_ns - edge_ns <= t <= end_ns]
    return first, last


def is_flat(first_p50: float | None, last_p50: float | None, abs_tol: float, rel_tol: float = 0.25) -> bool:
    """Flat means the last slice's median is within ``rel_tol`` (or ``abs_tol``) above the first's.

    Both tolerances because a 10 ms median jitters by a few ms (relative alone would be too
    strict) while a 1 s one drifting by 300 ms is real growth (absolute alone would be too loose).
    """
    if first_p50 is None or last_p50 is None:
        return False
    return last_p50 - first_p50 <= max(abs_tol, rel_tol * first_p50)


def slope_per_s(times_ns: Sequence[int], values: Sequence[float]) -> float | None:
    """Least-squares slope of values over time (units per second): how fast something grows."""
    if len(values) < 3:
        return None
    t = (np.asarray(times_ns, dtype=float) - times_ns[0]) / 1e9
    if float(t[-1] - t[0]) <= 0:
        return None
    return float(np.polyfit(t, np.asarray(values, dtype=float), 1)[0])
