"""Reading the apps' HTTP endpoints: JSON APIs and Prometheus ``/metrics`` text.

Apart from the processes because these are pure readers: the stack, the pipeline, capacity and
worker scenarios all turn two scrapes (a window's edges) into a figure with the same helpers.
"""

from __future__ import annotations

import urllib.request


def http_json(url: str, timeout: float = 2.0) -> object:
    import json

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_text(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode(errors="replace")


def metric_sum(metrics_text: str, name: str) -> float:
    """Sum of a Prometheus counter's samples over all labels (``name`` or ``name_total``)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        metric = line.split("{", 1)[0].split(" ", 1)[0]
        if metric in (name, f"{name}_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_buckets(metrics_text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count, summed over labels) of a Prometheus histogram."""
    out: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith(f"{name}_bucket{{"):
            continue
        le = line.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """Quantile of the observations made between two scrapes, interpolated inside its bucket."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = bound, count
    return None
