"""Measured figures of the fault and failover tests, kept in artifacts/*.json across runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def record_figures(path: Path, name: str, figures: dict[str, Any]) -> None:
    """Print the figures (pytest -s) and merge them into the JSON file at `path` under `name`,
    replacing the file atomically so a reader never sees half of it."""
    print(f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[name] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
