"""A relay in front of an RTSP camera (TCP transport) that can freeze the video in the middle of a frame.

Why: a camera that hangs (SIGSTOP, a stuck encoder, a cable pulled) mostly stops between frames,
and the client's FFmpeg returns the last whole frame when its read times out. Sometimes it stops
while a frame is on the wire: the client holds the frame's first RTP fragment and nothing more.
That case was rare under load and hid a bug (a reader that waited two read timeouts); this relay
makes it happen every time: once `stall_mid_frame()` is called it forwards the next video RTP
packet that does not end a frame (marker bit clear) and then nothing more from the camera, while
keeping both TCP connections open, as a hung camera would. A later connection (the client's
reconnect) is relayed as usual.

RTSP interleaved framing (RFC 2326 10.12): ``$``, channel, 16-bit length, then the RTP packet;
everything else from the camera is an RTSP response (headers, then Content-Length bytes).
"""

from __future__ import annotations

import logging
import socket
import threading

log = logging.getLogger(__name__)

VIDEO_CHANNEL = 0  # the first SETUP's RTP channel: the camera's only stream
_MARKER = 0x80


class StallingRelay:
    """Listens on a free loopback port; each client connection is relayed to `camera_port`."""

    def __init__(self, camera_port: int) -> None:
        self._camera_port = camera_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stall = threading.Event()
        self.stalled = threading.Event()  # set once the half frame went out and the relay froze
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def url(self, camera_url: str) -> str:
        """The camera's URL with this relay's port in place of the camera's."""
        return camera_url.replace(f":{self._camera_port}/", f":{self.port}/")

    def stall_mid_frame(self) -> None:
        self._stall.set()

    def close(self) -> None:
        self._closed.set()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                camera = socket.create_connection(("127.0.0.1", self._camera_port))
            except OSError:
                client.close()  # the camera refused (down, restarting): so does the relay, and it keeps listening
                continue
            self._sockets += [client, camera]
            threading.Thread(target=self._upstream, args=(client, camera), daemon=True).start()
            threading.Thread(target=self._downstream, args=(camera, client), daemon=True).start()

    @staticmethod
    def _upstream(client: socket.socket, camera: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                camera.sendall(data)
        except OSError:
            pass

    def _downstream(self, camera: socket.socket, client: socket.socket) -> None:
        reader = camera.makefile("rb")
        try:
            while chunk := self._next_message(reader):
                client.sendall(chunk)
                if self._stall.is_set() and self._is_first_fragment(chunk):
                    self._stall.clear()  # this session hangs; a reconnect streams again
                    self.stalled.set()
                    log.info("relay: froze after the first fragment of a frame")
                    self._closed.wait()
                    return
        except OSError:
            pass

    @staticmethod
    def _is_first_fragment(chunk: bytes) -> bool:
        """A video RTP packet that does not end its frame (an FU-A start or middle)."""
        return chunk[:1] == b"$" and chunk[1] == VIDEO_CHANNEL and not chunk[5] & _MARKER

    @staticmethod
    def _next_message(reader) -> bytes:
        """One interleaved RTP packet or one RTSP response, as bytes; b"" at the end."""
        first = reader.read(1)
        if first == b"$":
            header = reader.read(3)
            return first + header + reader.read(int.from_bytes(header[1:3], "big"))
        if not first:
            return b""
        head = first
        while not head.endswith(b"\r\n\r\n"):
            byte = reader.read(1)
            if not byte:
                return head
            head += byte
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + (reader.read(length) if length else b"")
