"""py-spy on running processes: where the producer's and the consumer's CPU goes under load.

Optional (py-spy is not a project requirement: ``.venv/bin/pip install py-spy``). Sampling is
non-blocking, but py-spy itself costs CPU on a 2-core machine, so profiles are taken in their
own scenario and never during a measured window.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TOP = 12
LINE_NO = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.is_file() else shutil.which("py-spy")


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from one non-blocking ``py-spy dump`` (empty without py-spy).

    Threads not listed are native ones (FFmpeg's decoder workers, OpenCV's pool).
    """
    spy = py_spy()
    if spy is None:
        return {}
    try:
        out = subprocess.run([spy, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True,
                             timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(m[1]): m[2] for m in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', out, re.MULTILINE)}


def summarize(collapsed: str) -> dict[str, Any]:
    """Top functions by self time and by inclusive time, and time per thread, from raw stacks."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else ""
        frames = [LINE_NO.sub(")", f) for f in frames if not f.startswith(("thread", "process"))]
        if not frames:
            continue
        total += count
        threads[thread] += count
        self_time[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": f, "pct": 100.0 * c / total} for f, c in counter.most_common(TOP)] if total else []

    return {"samples": total, "self": top(self_time), "inclusive": top(inclusive), "threads": top(threads)}


def profile_pids(pids: dict[str, int], seconds: float, out_dir: Path) -> dict[str, Any]:
    """Record all ``pids`` at once for ``seconds``; returns a summary per name (or why not)."""
    spy = py_spy()
    if spy is None:
        log.warning("py-spy not installed: no profile (pip install py-spy)")
        return {"error": "py-spy not installed"}
    out_dir.mkdir(parents=True, exist_ok=True)
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for name, pid in pids.items():
        out = out_dir / f"{name}.txt"
        argv = [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "100",
                "--format", "raw", "--nonblocking", "--threads", "--output", str(out)]
        running[name] = (subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)
    result: dict[str, Any] = {}
    for name, (proc, out) in running.items():
        _, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0 or not out.is_file():
            result[name] = {"error": err.decode(errors="replace")[-500:]}
            continue
        result[name] = {"pid": pids[name], "file": str(out), **summarize(out.read_text())}
    return result
