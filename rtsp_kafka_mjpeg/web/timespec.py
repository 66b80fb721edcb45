"""Times and durations in playback URLs, in the forms users of camera servers already type:
RFC 3339 (MediaMTX's playback server: ``2026-12-04T17:30:00Z``), Unix seconds (``1796400000.5``)
or relative to now (``-30s``, ``-5m``, ``-1h``, ``now``). A malformed value is a TimeSpecError
whose message is the one line the HTTP 400 answers with.
"""

from __future__ import annotations

import datetime as dt
import re

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
NS = 1_000_000_000


class TimeSpecError(ValueError):
    """A time or duration that cannot be read; str() is the line for the user."""


def parse_time_ns(text: str, now_ns: int) -> int:
    """Unix nanoseconds for an RFC 3339 time, Unix seconds, ``-<n>[ms|s|m|h|d]`` before now, or ``now``."""
    raw = text.strip()
    if not raw:
        raise TimeSpecError("empty time: give RFC 3339 (2026-12-04T17:30:00Z), Unix seconds or -30s")
    if raw == "now":
        return now_ns
    relative = _RELATIVE.match(raw)
    if relative:
        return now_ns - round(float(relative[1]) * _UNITS_S[relative[2] or "s"] * NS)
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds < 0 or seconds > 1e11:  # NaN, negative, or past the year 5000
            raise TimeSpecError(f"time {raw!r} is not a Unix time in seconds")
        return round(seconds * NS)
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise TimeSpecError(f"time {raw!r} is not RFC 3339 (2026-12-04T17:30:00Z), Unix seconds or -30s") from None
    if parsed.tzinfo is None:
        raise TimeSpecError(f"time {raw!r} has no UTC offset (add Z or +01:00)")
    delta = parsed - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def parse_duration_s(text: str) -> float:
    """Seconds for ``10``, ``10.5``, ``1500ms``, ``30s``, ``5m`` or ``1h`` (MediaMTX takes seconds)."""
    match = _DURATION.match(text.strip())
    if not match or float(match[1]) <= 0:
        raise TimeSpecError(f"duration {text!r} is not a positive number of seconds (or 500ms, 5m, 1h)")
    return float(match[1]) * _UNITS_S[match[2] or "s"]


def rfc3339(ts_ns: int) -> str:
    """RFC 3339 in UTC with milliseconds, as /list answers."""
    when = dt.datetime.fromtimestamp(ts_ns / NS, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
