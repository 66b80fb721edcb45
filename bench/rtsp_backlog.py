"""How far a producer's RTSP reading lags its camera, from the kernel's socket queue.

A module of its own because it is the one figure read from /proc/net/tcp rather than from the
apps: latency that builds up *before* any capture timestamp is taken, invisible in the headers.
"""

from __future__ import annotations

from pathlib import Path

import psutil


def tcp_rx_queue(local_port: int, remote_port: int) -> int | None:
    """Bytes received by the kernel but not yet read by the process, for one loopback connection.

    From /proc/net/tcp (tx_queue:rx_queue column); None when the connection is not there.
    """
    want = (f"{local_port:04X}", f"{remote_port:04X}")
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[1].rsplit(":", 1)[1] == want[0] and cols[2].rsplit(":", 1)[1] == want[1]:
                return int(cols[4].split(":")[1], 16)
    return None


class RtspBacklog:
    """How far a producer's RTSP reading lags the camera: unread bytes in its camera socket.

    A producer that decodes slower than the camera sends leaves the stream queued in its
    kernel receive buffer (up to tcp_rmem's max, 32 MB here: seconds of video) before any
    capture timestamp is taken, so this is the part of latency the headers cannot show.
    Bytes / the clip's byte rate = seconds of video waiting.
    """

    def __init__(self, pid: int, camera_port: int, byte_rate: float) -> None:
        self.pid = pid
        self.camera_port = camera_port
        self.byte_rate = byte_rate
        self._local_port: int | None = None

    def _find_port(self) -> int | None:
        try:
            for conn in psutil.Process(self.pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == self.camera_port:
                    return int(conn.laddr.port)
        except psutil.Error:
            return None
        return None

    def seconds(self) -> float | None:
        """Seconds of video queued unread right now (None: no camera connection found)."""
        if self._local_port is None:
            self._local_port = self._find_port()
            if self._local_port is None:
                return None
        queued = tcp_rx_queue(self._local_port, self.camera_port)
        if queued is None:
            self._local_port = None  # reconnected on another port: look again next time
            return None
        return queued / self.byte_rate
