"""`worker.py --processes N`: N worker processes of one group on this box.

Why processes: a detector (HOG, an ONNX model) needs more than one core at a camera's rate, and
Python threads would share one interpreter lock. Each child is a whole worker.py in the same
consumer group, so the brokers share the partitions (cameras) between them as between workers on
different boxes: nothing is coordinated here but their lives. A child that exits ends the others
(an init system or Docker restarts the whole); SIGINT/SIGTERM is passed on to every child.
Each child gets its share of the cores for OpenCV's and onnxruntime's thread pools (WORKER_THREADS):
N processes each sizing their pools to every core would oversubscribe the box N times.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

STOP_GRACE_S = 15.0  # a child flushes, commits and leaves the group within this after SIGTERM


def thread_share(processes: int, threads: int = 0) -> int:
    """Threads per child for OpenCV and onnxruntime: `threads` when set, else this box's cores
    (those this process may run on) shared out, at least one each."""
    return threads or max(1, len(os.sched_getaffinity(0)) // processes)


def child_argv(script: Path, argv: Sequence[str] | None, index: int, metrics_port: int,
               threads: int = 0) -> list[str]:
    """One child's command line: the same flags (None: this process's), one process, its own
    metrics port (port + index) and its share of the cores' threads."""
    flags = sys.argv[1:] if argv is None else list(argv)
    args = [sys.executable, str(script), *flags, "--processes", "1"]  # the last flag wins
    if threads:
        args += ["--threads", str(threads)]
    if metrics_port:
        args += ["--metrics-port", str(metrics_port + index)]
    return args


def run_processes(script: Path, argv: Sequence[str] | None, count: int, metrics_port: int,
                  threads: int = 0) -> int:
    """Start `count` children (each with `threads` for its libraries, 0: its share of the cores),
    wait for a signal or for one to exit; stop the rest; return the first non-zero exit status (0
    when all stopped cleanly)."""
    share = thread_share(count, threads)
    children = [subprocess.Popen(child_argv(script, argv, i, metrics_port, share)) for i in range(count)]
    log.info("%d worker processes: pids %s%s", count, ", ".join(str(c.pid) for c in children),
             f", metrics on ports {metrics_port}-{metrics_port + count - 1}" if metrics_port else "")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and all(c.poll() is None for c in children):
        stop.wait(0.2)
    ended = [c for c in children if c.poll() is not None]
    if ended and not stop.is_set():
        log.warning("worker process %d exited with %d: stopping the others", ended[0].pid, ended[0].returncode)
    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for c in children:
        try:
            c.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker process %d did not stop within %.0f s: killed", c.pid, STOP_GRACE_S)
            c.kill()
            c.wait()
    codes = [c.returncode for c in ended] + [c.returncode for c in children if c not in ended]
    return next((code for code in codes if code not in (0, -signal.SIGTERM)), 0)
