"""The newest analytics result per camera and processor, and the watchers that wait for newer ones.

Like the hub, but for the results topic: no per-watcher queue, a slow watcher finds the newest
result of each (camera, processor) when it comes back and skips what it was too slow for. Results
are a few hundred bytes at a few dozen per second, so one Condition for the whole board is enough,
and it lets one watcher follow several cameras (the index page follows all of its tiles with one
EventSource: browsers allow six connections per host, and each tile's MJPEG stream holds one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

RECENT_S = 3.0  # a result this young is still "the current analytics" for a new watcher


@dataclasses.dataclass(frozen=True, slots=True)
class Posted:
    """One result as the board hands it out: compact JSON (no newline, so one SSE data line), its
    number in the board's order and its arrival time (monotonic)."""

    camera: str
    processor: str
    data: bytes
    number: int
    received_monotonic: float


class Watcher:
    """Follows a set of cameras: each newer result at most once, the newest per (camera, processor).
    Made by `ResultBoard.watch`."""

    def __init__(self, board: ResultBoard, cameras: frozenset[str], backlog: list[Posted], after: int) -> None:
        self._board = board
        self._cameras = cameras
        self._backlog = backlog
        self._after = after

    def next(self, timeout: float) -> list[Posted]:
        """The results not had yet (first call: also the recent ones from before attaching), oldest
        first; [] after `timeout` s or once the board is closed."""
        if self._backlog:
            backlog, self._backlog = self._backlog, []
            return backlog
        board = self._board
        with board.cond:
            board.cond.wait_for(lambda: board.closed or board.number_for(self._cameras) > self._after, timeout)
            if board.closed:
                return []
            fresh = board.newer_than(self._cameras, self._after)
        if fresh:
            self._after = fresh[-1].number
        return fresh


class ResultBoard:
    """Holds the newest result of each camera and processor; watchers attach, wait, never queue."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._latest: dict[str, dict[str, Posted]] = {}  # camera -> processor -> newest result
        self._camera_number: dict[str, int] = {}  # camera -> number of its newest result
        self._number = 0
        self._watchers = 0
        self.closed = False

    def post(self, record: dict[str, Any]) -> None:
        """Store a parsed result record (results.parse_result) and wake the watchers."""
        camera, processor = record["camera"], record["processor"]
        data = json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
        with self.cond:
            self._number += 1
            self._latest.setdefault(camera, {})[processor] = Posted(camera, processor, data, self._number,
                                                                   time.monotonic())
            self._camera_number[camera] = self._number
            self.cond.notify_all()

    def has_camera(self, camera: str) -> bool:
        with self.cond:
            return camera in self._latest

    def latest(self, camera: str) -> list[Posted]:
        """The camera's newest result of each processor, oldest first."""
        with self.cond:
            return sorted(self._latest.get(camera, {}).values(), key=lambda p: p.number)

    def number_for(self, cameras: Iterable[str]) -> int:
        """The number of the newest result of any of `cameras` (0: none). Call with `cond` held."""
        return max((self._camera_number.get(c, 0) for c in cameras), default=0)

    def newer_than(self, cameras: Iterable[str], after: int) -> list[Posted]:
        """Every stored result of `cameras` numbered above `after`, oldest first. Call with `cond` held."""
        found = [p for c in cameras for p in self._latest.get(c, {}).values() if p.number > after]
        return sorted(found, key=lambda p: p.number)

    @contextlib.contextmanager
    def watch(self, cameras: Iterable[str], recent_s: float = RECENT_S) -> Iterator[Watcher]:
        """Attach a watcher of `cameras` for the `with` block; its first results are the ones
        younger than `recent_s`, so a page opened mid-stream shows the current analytics at once."""
        wanted = frozenset(cameras)
        now = time.monotonic()
        with self.cond:
            after = self._number
            backlog = [p for p in self.newer_than(wanted, 0) if now - p.received_monotonic <= recent_s]
            self._watchers += 1
        try:
            yield Watcher(self, wanted, backlog, after)
        finally:
            with self.cond:
                self._watchers -= 1

    @property
    def watchers(self) -> int:
        with self.cond:
            return self._watchers

    def close(self) -> None:
        """Release every watcher (shutdown)."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
