"""The report's cells: looking a figure up in the results, and writing it as text.

Shared by every section (table, goals, capacity table), so a missing figure is always "-" and a
result is always PASS / FAIL / blank, whichever section shows it.
"""

from __future__ import annotations

import math
from typing import Any

Row = tuple[str, str, str, str, str, str]  # scenario, metric, ours, tutorial, goal, result


def get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def num(value: Any, fmt: str = "{:.2f}", suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value) + suffix


def ms(value: Any) -> str:
    return num(value, "{:.1f}", " ms")


def pass_fail(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")
