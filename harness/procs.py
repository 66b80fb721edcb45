"""Stop child processes by PID, politely first, and remember them for exit-time cleanup.

Services are stopped by their own PID (never by name) so parallel runs and a developer's own
services are never touched. The atexit hook kills whatever a crashed test forgot, so a failed
run does not leave a JVM or a camera eating the 2-core machine.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

_live: set[subprocess.Popen[bytes]] = set()
# A SIGKILLed process is gone within milliseconds; one that is not (stuck in the kernel) raises
# TimeoutExpired here instead of hanging the test run.
REAP_TIMEOUT_S = 30.0


def track(proc: subprocess.Popen[bytes]) -> None:
    """Remember ``proc`` so it is killed at interpreter exit if nobody stopped it."""
    _live.add(proc)


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> int | None:
    """SIGTERM ``proc``, wait up to ``timeout`` s, then SIGKILL; return its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM for %.1fs; sending SIGKILL", proc.pid, timeout)
            kill(proc)
    code = proc.wait(REAP_TIMEOUT_S)
    _live.discard(proc)
    return code


def kill(proc: subprocess.Popen[bytes] | None) -> int | None:
    """SIGKILL ``proc`` at once (a crash, for fault tests) and reap it."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    code = proc.wait(REAP_TIMEOUT_S)
    _live.discard(proc)
    return code


def log_tail(path: Path, max_chars: int = 4000) -> str:
    """Return the end of a log file, for error messages that explain a failed start."""
    try:
        data = path.read_bytes()
    except OSError:
        return f"(no log at {path})"
    return data[-max_chars:].decode("utf-8", "replace")


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        kill(proc)
