"""One app run as a subprocess (``Service``): its own log file, readiness by port, stop by PID.

Every process the benchmark starts (producer.py, consumer.py, worker.py, the tutorial's scripts)
goes through this one launcher, so each is stopped by its own PID (``harness.procs``), never by
name, and a failure always carries the tail of that process's log.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Self

from harness import procs
from harness.ports import port_open

from .paths import ROOT
from .proctree import ProcTree

log = logging.getLogger("bench.services")  # the name its log lines carried before services.py was split


class ServiceError(RuntimeError):
    """A service did not start or died; the message carries its log tail."""


class Service:
    """A subprocess with its own log file, stopped by PID."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 cwd: Path = ROOT, port: int | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        procs.track(self.proc)
        log.info("started %s (pid %d)", self.name, self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tree(self) -> ProcTree:
        return ProcTree(self.pid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def fail(self, what: str) -> ServiceError:
        return ServiceError(f"{self.name} {what}:\n{procs.log_tail(self.log_path, 3000)}")

    def wait_http(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.port is not None
        while not port_open("127.0.0.1", self.port):
            if not self.alive():
                raise self.fail("exited before listening")
            if time.monotonic() > deadline:
                raise self.fail(f"not listening after {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> int | None:
        code = procs.terminate(self.proc, timeout)
        if self.proc is not None:
            log.info("stopped %s (exit %s)", self.name, code)
        return code
