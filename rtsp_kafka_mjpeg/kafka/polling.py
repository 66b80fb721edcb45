"""The polling loop every Kafka reader here runs (frames, results, the worker): retry pacing after a
failed poll, rate-limited warnings for bad records, and the fetch headroom over a record's size."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FETCH_OVERHEAD = 64 * 1024  # a fetch's framing beyond the largest record it must carry
WARN_INTERVAL_S = 60.0
RETRY_FIRST_S = 0.1  # a failed poll is retried soon (a node just went away), then less often
RETRY_MAX_S = 1.0


def run_polls(poll_once: Callable[[], bool], stop: threading.Event) -> None:
    """Calls `poll_once` until `stop` is set. After a failed poll (False) it waits 0.1 s, doubling
    to at most 1 s while polls keep failing: soon after a node goes away, never a busy loop."""
    retry_s = RETRY_FIRST_S
    while not stop.is_set():
        if poll_once():
            retry_s = RETRY_FIRST_S
        else:
            stop.wait(retry_s)
            retry_s = min(RETRY_MAX_S, retry_s * 2)


class RateLimitedWarnings:
    """Logs each kind of problem at most once per interval, with how many were suppressed."""

    def __init__(self, logger: logging.Logger | None = None, interval_s: float = WARN_INTERVAL_S) -> None:
        self._log = logger or log  # the caller's logger: the line names the reader that skipped
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        extra = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        self._log.warning("%s%s", message, f" ({extra} more since last said)" if extra else "")
