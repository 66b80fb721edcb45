"""A real MJPEG viewer over a plain socket: HTTP/1.1 (chunked or not) + multipart parsing.

Used by tests and the benchmark as the "browser that counts": it records each part's headers,
body and the wall-clock moment the whole part had arrived, without decoding the JPEG.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from itertools import pairwise
from urllib.parse import urlsplit


@dataclasses.dataclass
class Part:
    headers: dict[str, str]
    body: bytes
    received_ns: int

    @property
    def capture_ts_ns(self) -> int:
        return int(self.headers.get("x-capture-timestamp-ns", "0"))


class ChunkedDecoder:
    """Incremental HTTP/1.1 chunked transfer decoding."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._remaining = 0  # bytes left in the current chunk
        self._crlf_due = False  # the CRLF closing a chunk is next
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while self._buf and not self.done:
            if self._crlf_due:
                if len(self._buf) < 2:
                    break
                del self._buf[:2]
                self._crlf_due = False
                continue
            if self._remaining:
                take = min(self._remaining, len(self._buf))
                out += self._buf[:take]
                del self._buf[:take]
                self._remaining -= take
                self._crlf_due = self._remaining == 0
                continue
            end = self._buf.find(b"\r\n")
            if end < 0:
                break
            size = int(bytes(self._buf[:end]).split(b";")[0], 16)
            del self._buf[: end + 2]
            if size == 0:
                self.done = True
            self._remaining = size
        return bytes(out)


class MultipartParser:
    """Splits a multipart/x-mixed-replace body into parts (Content-Length framed)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Part]:
        self._buf += data
        parts = []
        while True:
            start = self._buf.find(b"--")
            if start < 0:
                break
            head_end = self._buf.find(b"\r\n\r\n", start)
            if head_end < 0:
                break
            lines = bytes(self._buf[start:head_end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "-1"))
            if length < 0:
                raise ValueError("part without Content-Length")
            body_start = head_end + 4
            if len(self._buf) < body_start + length:
                break
            body = bytes(self._buf[body_start: body_start + length])
            del self._buf[: body_start + length]
            parts.append(Part(headers, body, time.time_ns()))
        return parts


class MjpegViewer:
    """One streaming HTTP connection; `read_parts()` returns the parts that arrived."""

    def __init__(self, url: str, timeout: float = 10.0, recv_buffer: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        u = urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        if recv_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\n{extra}\r\n".encode())
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self._head = bytearray()
        self._chunked: ChunkedDecoder | None = None
        self._parser = MultipartParser()
        self.bytes_received = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_data(self, data: bytes) -> list[Part]:
        """Feed raw socket bytes; returns completed parts."""
        self.bytes_received += len(data)
        if not self.status:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return []
            lines = bytes(self._head[:end]).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                self.response_headers[name.strip().lower()] = value.strip()
            if self.response_headers.get("transfer-encoding", "").lower() == "chunked":
                self._chunked = ChunkedDecoder()
            data = bytes(self._head[end + 4:])
            self._head.clear()
        if self._chunked is not None:
            data = self._chunked.feed(data)
        return self._parser.feed(data)

    def read_parts(self, count: int, timeout: float) -> list[Part]:
        """Blocking: read until `count` parts arrived or `timeout` s passed."""
        parts: list[Part] = []
        deadline = time.monotonic() + timeout
        while len(parts) < count and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            if not data:
                break
            parts.extend(self.on_data(data))
            if self.status and self.status != 200:
                break
        return parts

    def close(self) -> None:
        self.sock.close()


class BackgroundViewer:
    """One MJPEG viewer connection read in a background thread for as long as a test runs.

    Keeps every part with its arrival time and notes when the server closed the socket, so a test
    can tell "the same connection carried frames again" from "a new connection did", and measure
    the longest wait between frames around an event.
    """

    def __init__(self, url: str, name: str = "viewer") -> None:
        self.name = name
        self.viewer = MjpegViewer(url)
        self.closed_ns: int | None = None
        self._parts: list[Part] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"viewer-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self.viewer.sock
        sock.settimeout(0.5)
        while not self._stop.is_set():
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed_ns = time.time_ns()
                return
            parts = self.viewer.on_data(data)
            with self._lock:
                self._parts.extend(parts)

    @property
    def parts(self) -> list[Part]:
        with self._lock:
            return list(self._parts)

    def first_captured_after(self, ts_ns: int) -> Part | None:
        return next((p for p in self.parts if p.capture_ts_ns > ts_ns), None)

    def wait_captured_after(self, ts_ns: int, timeout: float) -> Part | None:
        """The first part captured after `ts_ns`, waiting up to `timeout` s for it (None: none came)."""
        deadline = time.monotonic() + timeout
        while (part := self.first_captured_after(ts_ns)) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return part

    def streaming_since(self, ts_ns: int, span_s: float = 2.0) -> bool:
        """Frames captured after `ts_ns` have arrived, spanning `span_s` of capture time."""
        after = [p.capture_ts_ns for p in self.parts if p.capture_ts_ns > ts_ns]
        return bool(after) and after[-1] - after[0] >= span_s * 1e9

    def longest_gap(self, since_ns: int) -> tuple[Part, Part] | None:
        """The two frames around the longest wait between arrivals, from shortly (2 s) before
        `since_ns` on; None with fewer than two frames."""
        parts = [p for p in self.parts if p.received_ns >= since_ns - 2 * 10**9]
        return max(pairwise(parts), key=lambda pair: pair[1].received_ns - pair[0].received_ns, default=None)

    def gap_s(self, since_ns: int) -> float:
        """The longest wait between two frames arriving, from shortly (2 s) before `since_ns` on."""
        gap = self.longest_gap(since_ns)
        return 0.0 if gap is None else round((gap[1].received_ns - gap[0].received_ns) / 1e9, 2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.viewer.close()

