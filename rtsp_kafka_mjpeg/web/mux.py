"""Many cameras' streams over one HTTP connection, for the index page.

Browsers open at most six HTTP/1.1 connections per host. With one ``<img>`` MJPEG stream per tile,
a page of 16 cameras moved 6 tiles and starved the rest, and even its ``fetch('api/cameras')``
waited (the defect Motion #1465, Shinobi #83 and Home Assistant #6879 report). So the page reads one
multipart stream that carries every tile's frames, each part naming its camera (X-Camera-Id), and
draws them itself: the page then needs three connections whatever the camera count (this stream,
the analytics events, the status poll), and it sees each part's capture time and sequence.

Each camera in the mux is a source thread (a greenlet under consumer.py's gevent): a live viewer
of the hub, or a replay from the topic (rewind). Newest-frame semantics per camera, as for a
single stream: a slow client gets each camera's newest part, never a queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from .hub import FrameHub
from .multipart import PartCache
from .rewind import Body

WAIT_S = 0.5  # how often a source and the writer look at the stop flag


class Mux:
    """Newest part per camera, written to one client as they come."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._parts: dict[str, bytes] = {}
        self.stop = threading.Event()

    def put(self, camera: str, part: bytes) -> None:
        with self._cond:
            self._parts[camera] = part
            self._cond.notify_all()

    def add_live(self, hub: FrameHub, camera: str, parts: PartCache, counted: Callable[[str, int], None]) -> None:
        """Follow `camera`'s live frames from the hub."""
        def run() -> None:
            with hub.viewer(camera) as viewer:
                while not self.stop.is_set():
                    published = viewer.next(WAIT_S)
                    if published is not None:
                        part = parts.part(published)
                        self.put(camera, part)
                        counted(camera, len(part))
        self._start(run, camera)

    def add_replay(self, camera: str, body: Body) -> None:
        """Forward a replay's parts (rewind.Rewind.replay, built with `client_gone=self.stop.is_set`)."""
        def run() -> None:
            try:
                for part in body:
                    if self.stop.is_set():
                        return
                    self.put(camera, part)
            finally:
                body.close()
        self._start(run, camera)

    def _start(self, run: Callable[[], None], camera: str) -> None:
        threading.Thread(target=run, name=f"mux-{camera}", daemon=True).start()

    def stream(self) -> Iterator[bytes]:
        """The response body: every camera's newest parts as they come, until closed."""
        while not self.stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: bool(self._parts) or self.stop.is_set(), WAIT_S)
                ready, self._parts = self._parts, {}
            if ready:
                yield b"".join(ready.values())

    def close(self) -> None:
        """Stop every source (each ends within WAIT_S, or at its next part)."""
        self.stop.set()
        with self._cond:
            self._cond.notify_all()


class MuxBody:
    """The WSGI body: closing it (client gone, server stopping) stops the sources."""

    def __init__(self, mux: Mux) -> None:
        self._mux = mux
        self._chunks = mux.stream()

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._mux.close()
        self._chunks.close()
