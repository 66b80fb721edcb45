"""Many real MJPEG viewers in one process: plain sockets, one selector, parts parsed, never decoded.

Why not ``harness.mjpeg_client.MjpegViewer``: it copies every body into a ``bytes`` (fine for
tests, but at 100 viewers x 30 fps x 55 KB the copies would make the clients, not the server,
the bottleneck). ``PartCounter`` parses the same protocol (HTTP/1.x, chunked or not,
multipart with Content-Length, or the tutorial's parts without it) from one shared receive
buffer and only counts body bytes. It records, per part, the moment its last byte arrived, the
capture timestamp and sequence headers, and its size.

A slow viewer (``--slow-fraction``) reads through a token bucket at that fraction of the
stream's byte rate (probed on a normal viewer first) with a small SO_RCVBUF, like a viewer on a
poor link.

The parent (``ViewerRun``) syncs on two stdout lines, ``window-start NS`` and ``window-end NS``,
to sample server CPU and memory over exactly the client's measurement window; the parts go to a
JSON file. Run alone: ``python -m bench.viewers URL --viewers 10 --window 10 --out parts.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

RECV_BUFFER = 1 << 18
SLOW_CHUNK = 4096
SLOW_RCVBUF = 16384
HEAD_LIMIT = 4096
TUTORIAL_PART_END = b"\xff\xd9\r\n\r\n"  # JPEG EOI + the tutorial's trailing CRLFCRLF
CHUNK_LINE_LIMIT = 64
IN_HEAD, UNTIL_MARK = -1, -2

PartRow = tuple[int, int, int, int]  # received_ns, capture_ts_ns (0: none), sequence (-1: none), size


class ProtocolError(ValueError):
    """The server sent something that is not an MJPEG stream."""


def take_until(carry: bytes, buf: bytes | bytearray, s: int, e: int, sep: bytes,
               limit: int) -> tuple[bytes | None, int, bytes]:
    """Find ``sep`` in ``carry + buf[s:e]`` looking at most ``limit`` new bytes.

    Returns (text before sep or None, new s, new carry). Only small heads and chunk-size lines go
    through here, so copying up to ``limit`` bytes is cheap; bodies never do.
    """
    window = carry + bytes(buf[s:min(e, s + limit)])
    idx = window.find(sep)
    if idx < 0:
        if e - s > limit:
            raise ProtocolError(f"no {sep!r} within {limit} bytes")
        return None, e, window
    return window[:idx], s + idx + len(sep) - len(carry), b""


class PartCounter:
    """Incremental parser of one MJPEG HTTP response; appends a ``PartRow`` per complete part."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.parts: list[PartRow] = []
        self.bytes = 0
        self.done = False
        self._response_head = bytearray()
        self._chunked = False
        self._chunk_left = 0
        self._chunk_crlf = 0
        self._line_carry = b""
        self._head_carry = b""
        self._body_left = IN_HEAD
        self._mark_tail = b""
        self._cts = 0
        self._seq = -1
        self._size = 0

    def feed(self, buf: bytes | bytearray, n: int) -> None:
        """Consume ``buf[:n]`` as just received from the socket."""
        self.bytes += n
        if self.status:
            self._payload(buf, 0, n)
            return
        self._response_head += buf[:n]
        end = self._response_head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._response_head) > HEAD_LIMIT * 4:
                raise ProtocolError("response head too long")
            return
        lines = bytes(self._response_head[:end]).decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        rest = bytes(self._response_head[end + 4:])
        self._response_head = bytearray()
        if rest:
            self._payload(rest, 0, len(rest))

    def _payload(self, buf: bytes | bytearray, s: int, e: int) -> None:
        if not self._chunked:
            self._multipart(buf, s, e)
            return
        while s < e and not self.done:
            if self._chunk_left:
                take = min(self._chunk_left, e - s)
                self._multipart(buf, s, s + take)
                s += take
                self._chunk_left -= take
                if not self._chunk_left:
                    self._chunk_crlf = 2
            elif self._chunk_crlf:
                take = min(self._chunk_crlf, e - s)
                s += take
                self._chunk_crlf -= take
            else:
                line, s, self._line_carry = take_until(self._line_carry, buf, s, e, b"\r\n", CHUNK_LINE_LIMIT)
                if line is None:
                    return
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    self.done = True
                self._chunk_left = size

    def _multipart(self, buf: bytes | bytearray, s: int, e: int) -> None:
        while s < e:
            if self._body_left > 0:
                take = min(self._body_left, e - s)
                s += take
                self._size += take
                self._body_left -= take
                if not self._body_left:
                    self._finish()
            elif self._body_left == UNTIL_MARK:
                s = self._until_mark(buf, s, e)
            else:
                head, s, self._head_carry = take_until(self._head_carry, buf, s, e, b"\r\n\r\n", HEAD_LIMIT)
                if head is None:
                    return
                self._start(head)

    def _start(self, head: bytes) -> None:
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            if not line or line.startswith("--"):
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._cts = int(headers.get("x-capture-timestamp-ns", "0") or 0)
        self._seq = int(headers.get("x-sequence", "-1") or -1)
        self._size = 0
        length = int(headers.get("content-length", "-1") or -1)
        if length > 0:
            self._body_left = length
        elif length == 0:
            self._finish()
        else:  # the tutorial's parts: no Content-Length, body ends at EOI + CRLFCRLF
            self._body_left = UNTIL_MARK
            self._mark_tail = b""

    def _until_mark(self, buf: bytes | bytearray, s: int, e: int) -> int:
        """Consume body bytes up to and including the tutorial's end mark; sizes count the JPEG only."""
        mark = TUTORIAL_PART_END
        if self._mark_tail:  # the mark may straddle two receives
            joined = self._mark_tail + bytes(buf[s:min(e, s + len(mark))])
            j = joined.find(mark)
            if j >= 0:
                used = j + len(mark) - len(self._mark_tail)
                self._size += used - 4  # CRLFCRLF after the JPEG's EOI is not part of it
                self._finish()
                return s + used
        idx = buf.find(mark, s, e)
        if idx >= 0:
            self._size += idx + len(mark) - s - 4
            self._finish()
            return idx + len(mark)
        self._size += e - s
        keep = len(mark) - 1  # short receives: the old tail plus the new bytes
        self._mark_tail = (self._mark_tail + bytes(buf[max(s, e - keep):e]))[-keep:]
        return e

    def _finish(self) -> None:
        self.parts.append((time.time_ns(), self._cts, self._seq, self._size))
        self._body_left = IN_HEAD
        self._mark_tail = b""


class Viewer:
    """One streaming connection and its parser."""

    def __init__(self, url: str, kind: str = "normal", rcvbuf: int = 0) -> None:
        u = urlsplit(url)
        self.kind = kind
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
        self.sock.settimeout(10)
        self.sock.connect((u.hostname or "127.0.0.1", u.port or 80))
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAccept: */*\r\n\r\n".encode())
        self.sock.setblocking(False)
        self.parser = PartCounter()
        self.closed = False
        self.error = ""

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "status": self.parser.status, "bytes": self.parser.bytes,
                "error": self.error, "parts": self.parser.parts}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(url: str, viewers: int, warmup: float, window: float, slow_fraction: float, probe: float,
        out: Path, say: IO[str]) -> None:
    """Connect, read until the window ends, write the parts; ``say`` gets the sync lines."""
    sel = selectors.DefaultSelector()
    clients = [Viewer(url) for _ in range(viewers)]
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    buf = bytearray(RECV_BUFFER)
    t0 = time.monotonic()
    print(f"connected {viewers}", file=say, flush=True)
    window_start = t0 + warmup
    window_end = window_start + window
    started = False
    cpu_start = cpu_end = 0.0
    start_ns = end_ns = 0
    slow: Viewer | None = None
    slow_rate = 0.0
    slow_next = 0.0
    probe_bytes = clients[0].parser.bytes if clients else 0
    while True:
        now = time.monotonic()
        if not started and now >= window_start:
            started, cpu_start, start_ns = True, cpu_seconds(), time.time_ns()
            print(f"window-start {start_ns}", file=say, flush=True)
        if now >= window_end:
            break
        if slow_fraction and slow is None and now >= t0 + probe and clients:
            byte_rate = (clients[0].parser.bytes - probe_bytes) / (now - t0)
            slow_rate = max(1024.0, byte_rate * slow_fraction)
            slow = Viewer(url, kind="slow", rcvbuf=SLOW_RCVBUF)
            slow_next = now
            log.info("stream %.0f KB/s; slow viewer reads %.0f KB/s", byte_rate / 1024, slow_rate / 1024)
        timeout = min(window_end - now, 0.1)
        if not started:
            timeout = min(timeout, window_start - now)
        if slow is not None and not slow.closed:
            timeout = min(timeout, max(0.0, slow_next - now))
        for key, _ in sel.select(max(0.0, timeout)):
            c: Viewer = key.data
            try:
                n = c.sock.recv_into(buf)
            except BlockingIOError:
                continue
            except OSError as err:
                n, c.error = 0, str(err)
            if n == 0:
                sel.unregister(c.sock)
                c.close()
                continue
            try:
                c.parser.feed(buf, n)
            except (ProtocolError, ValueError) as err:
                c.error = f"protocol: {err}"
                sel.unregister(c.sock)
                c.close()
        if slow is not None and not slow.closed and time.monotonic() >= slow_next:
            now = time.monotonic()
            try:
                n = slow.sock.recv_into(buf, SLOW_CHUNK)
            except BlockingIOError:
                n = -1
            except OSError as err:
                n, slow.error = 0, str(err)
            if n == 0:
                slow.close()
            elif n > 0:
                slow.parser.feed(buf, n)
                slow_next = max(slow_next, now - SLOW_CHUNK / slow_rate) + n / slow_rate
            else:
                slow_next = now + 0.002
    cpu_end, end_ns = cpu_seconds(), time.time_ns()
    print(f"window-end {end_ns}", file=say, flush=True)
    everyone = clients + ([slow] if slow is not None else [])
    result = {
        "window_start_ns": start_ns,
        "window_end_ns": end_ns,
        "client_cpu_s": cpu_end - cpu_start,
        "slow_rate_bps": slow_rate,
        "viewers": [c.as_dict() for c in everyone],
    }
    for c in everyone:
        if not c.closed:
            c.close()
    out.write_text(json.dumps(result))


class ViewerRun:
    """The parent's handle on a viewer process: start, wait for its window lines, read its parts."""

    def __init__(self, url: str, viewers: int, window: float, warmup: float = 1.0, slow_fraction: float = 0.0,
                 probe: float = 1.5, out: Path | None = None, log_path: Path | None = None) -> None:
        self.out = out or Path(f"/tmp/bench-viewers-{id(self)}.json")
        self.argv = [sys.executable, "-m", "bench.viewers", url, "--viewers", str(viewers), "--window",
                     str(window), "--warmup", str(warmup), "--slow-fraction", str(slow_fraction), "--probe",
                     str(probe), "--out", str(self.out)]
        self.timeout = warmup + window + 30
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.pid = 0
        self._lines: queue.Queue[str | None] = queue.Queue()

    def start(self) -> ViewerRun:
        from harness import procs

        err = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=err, text=True,
                                     cwd=Path(__file__).resolve().parents[1])
        procs.track(self.proc)  # type: ignore[arg-type]
        self.pid = self.proc.pid
        threading.Thread(target=self._pump_lines, name="viewer-lines", daemon=True).start()
        return self

    def _pump_lines(self) -> None:
        """Move the child's stdout lines into a queue, so waiting for one can have a deadline."""
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)  # EOF

    def wait_line(self, prefix: str) -> str:
        """Wait (at most the run's timeout) until the child prints a line starting with ``prefix``;
        its remainder."""
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"viewer process printed no '{prefix}' within {self.timeout:.0f} s") from None
            if line is None:
                code = self.proc.wait(timeout=5)
                raise RuntimeError(f"viewer process exited ({code}) before '{prefix}'")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def result(self) -> dict[str, Any]:
        assert self.proc is not None
        self.proc.wait(timeout=self.timeout)
        data: dict[str, Any] = json.loads(self.out.read_text())
        self.out.unlink(missing_ok=True)
        return data

    def kill(self) -> None:
        from harness import procs

        procs.kill(self.proc)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.viewers", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--viewers", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds connected before the window")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--slow-fraction", type=float, default=0.0,
                        help="add one viewer reading at this fraction of the stream's byte rate")
    parser.add_argument("--probe", type=float, default=1.5, help="seconds to measure the byte rate first")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="viewers: %(message)s")
    run(args.url, args.viewers, args.warmup, args.window, args.slow_fraction, args.probe, args.out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
