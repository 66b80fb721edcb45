"""Where the benchmark's files live: the checkout, the bundled tutorial, the results folder.

A module of its own because the process launcher (its working directory), the apps' environment
(config.env), the tutorial scenario and the CLI all need these paths, and none of them should have
to import another for a path.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The tutorial's producer and consumer, copied byte for byte from ../shared/baseline so the
# benchmark runs on any clone (tests/test_bench_smoke.py checks the copy is still identical).
# Stored as .py.txt: it is the tutorial's text, run as-is by the benchmark, not project code.
BASELINE_DIR = ROOT / "bench" / "tutorial_baseline"
RESULTS_DIR = ROOT / "bench" / "results"
