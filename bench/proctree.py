"""CPU and memory of a measured process and its children, read from outside with psutil.

Why from outside: the figures are about the processes a user runs, exactly as
``tests/conftest.py`` launches them, so nothing the benchmark does changes them. Every scenario
takes its CPU windows from these snapshots, whichever way the process was started.
"""

from __future__ import annotations

import psutil


class ProcTree:
    """CPU and RSS of a process and its children (consumer.py forks a gunicorn worker)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def members(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) per live PID: deltas of these are a window's CPU."""
        out: dict[int, float] = {}
        for proc in self.members():
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return out

    def threads(self) -> dict[int, float]:
        """CPU seconds per thread id of the root process (where a process's CPU goes, by thread)."""
        try:
            return {th.id: th.user_time + th.system_time for th in self.root.threads()}
        except psutil.Error:
            return {}

    def rss(self) -> int:
        """Resident bytes of the whole tree."""
        total = 0
        for proc in self.members():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def leaf_pid(self) -> int:
        """The youngest descendant (gunicorn's worker), or the root: the one worth profiling."""
        members = self.members()
        return members[-1].pid if members else self.root.pid


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``ProcTree.cpu()`` snapshots (new PIDs count from zero)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())
