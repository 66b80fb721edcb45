"""Which offsets of each partition are done, so `after-processing` commits only finished work.

A record is done when it was skipped on purpose, was junk, or was processed and its result
acknowledged by the brokers (acks arrive on the producer's thread, out of step with the loop).
What may be committed per partition is the offset after the longest done prefix: one result still
awaiting its ack holds the commit back, so a crash never loses a frame whose result is not safe.
"""

from __future__ import annotations

import threading
from typing import Any


class _Partition:
    __slots__ = ("committable", "pending")

    def __init__(self) -> None:
        self.pending: dict[int, bool] = {}  # offset -> done, in the order read (= offset order)
        self.committable: int | None = None  # the next offset to read after the done prefix

    def advance(self) -> None:
        pending = self.pending
        while pending:
            offset = next(iter(pending))
            if not pending[offset]:
                return
            del pending[offset]
            self.committable = offset + 1


class DoneOffsets:
    """Thread-safe per-partition progress: `read` when polled, `done` when finished, `committable`
    for the commit. `jump` records a seek forward (everything before it counts as done)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[Any, _Partition] = {}

    def read(self, tp: Any, offset: int, done: bool = False) -> None:
        with self._lock:
            part = self._parts.setdefault(tp, _Partition())
            part.pending[offset] = done
            if done:
                part.advance()

    def done(self, tp: Any, offset: int) -> None:
        with self._lock:
            part = self._parts.get(tp)
            if part is None or offset not in part.pending:
                return  # revoked meanwhile, or rewound: nothing to record
            part.pending[offset] = True
            part.advance()

    def jump(self, tp: Any, offset: int) -> None:
        """The consumer seeks forward to `offset`: the records before it will never be read."""
        self.read(tp, offset - 1, done=True)

    def rewind(self, tp: Any, offset: int) -> None:
        """The consumer seeks back to `offset` (a result failed): forget what was read from there."""
        with self._lock:
            part = self._parts.get(tp)
            if part is not None:
                for o in [o for o in part.pending if o >= offset]:
                    del part.pending[o]

    def undone(self, tp: Any) -> int:
        with self._lock:
            part = self._parts.get(tp)
            return sum(1 for d in part.pending.values() if not d) if part else 0

    def committable(self, tps: Any = None) -> dict[Any, int]:
        """{partition: offset to commit} for the partitions given (all when None) that have one."""
        with self._lock:
            return {tp: p.committable for tp, p in self._parts.items()
                    if p.committable is not None and (tps is None or tp in tps)}

    def forget(self, tps: Any) -> None:
        with self._lock:
            for tp in tps:
                self._parts.pop(tp, None)
