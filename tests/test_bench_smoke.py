"""`python -m bench --smoke` runs every scenario for a few seconds and writes numbers.

Only that numbers were produced is checked, never their values: the CI machine is shared and
timing thresholds would make this test flaky. The goals themselves are judged by a full run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT

# Every figure the report and the goals rely on, as a path into latest.json.
EXPECTED_NUMBERS = [
    ("floor", "720p30", "cpu_s_per_frame"),
    ("pipeline", "720p30", "producer_cpu_s_per_frame"),
    ("pipeline", "720p30", "cpu_vs_floor"),
    ("pipeline", "720p30", "fps_ratio"),
    ("pipeline", "720p30", "producer_cpu_pct"),
    ("pipeline", "720p30", "dropped", "not_published"),
    ("pipeline", "720p30", "latency", "ms", "p50"),
    ("pipeline", "720p30", "latency", "ms", "p99"),
    ("pipeline", "720p30", "latency", "ms", "max"),
    ("pipeline", "720p30", "latency", "first_ms", "p50"),
    ("pipeline", "720p30", "latency", "last_ms", "p50"),
    ("pipeline", "720p30", "rtsp_backlog", "p50_ms"),
    ("fanout", "levels", "5", "fps_ratio_min"),
    ("fanout", "levels", "5", "fps_ratio_median"),
    ("fanout", "levels", "5", "latency_ms", "p99"),
    ("fanout", "levels", "5", "consumer_cpu_pct"),
    ("fanout", "levels", "5", "consumer_rss_start_mb"),
    ("fanout", "levels", "5", "consumer_rss_end_mb"),
    ("fanout", "levels", "5", "client_cpu_pct"),
    ("slow", "age", "ms", "p50"),
    ("slow", "age", "ms", "max"),
    ("slow", "age", "first_ms", "p50"),
    ("slow", "age", "last_ms", "p50"),
    ("slow", "normal_fps_ratio_min"),
    ("baseline", "share", "ours", "min_share"),
    ("baseline", "share", "tutorial", "min_share"),
    ("baseline", "latency", "alone", "tutorial_producer_lag", "growth_ms"),
    ("baseline", "latency", "side_by_side", "tutorial_producer_lag", "growth_ms"),
    ("baseline", "latency", "side_by_side", "ours", "latency", "ms", "p50"),
]


def lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        assert isinstance(data, dict) and key in data, f"missing {'.'.join(path)} (at {key!r})"
        data = data[key]
    return data


def test_smoke_run_writes_every_figure_as_a_number(kafka, tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--bootstrap", kafka.bootstrap, "--out",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"bench --smoke failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    results = json.loads(out.read_text())
    assert results["errors"] == {}
    for path in EXPECTED_NUMBERS:
        value = lookup(results, path)
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{'.'.join(path)} = {value!r}"
    assert {g["status"] for g in results["goals"]} <= {"PASS", "FAIL", "SKIP"}
    assert "Goals" in run.stdout and "vs tutorial" in run.stdout


def test_the_bundled_tutorial_baseline_is_the_shared_one_unchanged() -> None:
    shared = ROOT.parent / "shared" / "baseline"
    bundled = ROOT / "bench" / "tutorial_baseline"
    names = ("seed_producer.py", "seed_consumer.py")
    assert all((bundled / f"{name}.txt").is_file() for name in names)
    if shared.is_dir():  # present on developer machines beside the checkout
        for name in names:
            assert (bundled / f"{name}.txt").read_bytes() == (shared / name).read_bytes(), name
