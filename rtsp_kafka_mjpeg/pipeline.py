"""The producer's main loop: newest captured frame -> JPEG -> Kafka, at most `max_fps`.

Encoding runs here while capture runs in its own thread (OpenCV releases the GIL in both), so
the two overlap; whatever the camera delivers while we encode is replaced, never queued.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter

from .encoder import FrameTooLarge, JpegEncoder
from .frame import Frame
from .publisher import FramePublisher
from .source import FrameSource

log = logging.getLogger(__name__)


class ProducerPipeline:
    """Wires source -> encoder -> publisher for one camera until `stop` is set."""

    def __init__(self, camera_id: str, source: FrameSource, encoder: JpegEncoder, publisher: FramePublisher,
                 stop: threading.Event, max_fps: float = 0.0) -> None:
        self.camera_id = camera_id
        self.source = source
        self.encoder = encoder
        self.publisher = publisher
        self.stop = stop
        self.min_interval_ns = int(1e9 / max_fps) if max_fps > 0 else 0
        self.published = 0
        self.dropped: Counter[str] = Counter()

    def run(self) -> None:
        last_number = 0
        last_ts = 0
        while not self.stop.is_set():
            captured = self.source.newest(after=last_number, timeout=0.5)
            if captured is None:
                continue
            last_number = captured.number
            if self.min_interval_ns and captured.ts_ns - last_ts < self.min_interval_ns:
                self.dropped["max_fps"] += 1
                continue
            last_ts = captured.ts_ns
            try:
                jpeg, width, height = self.encoder.encode_captured(captured)
            except FrameTooLarge:
                self.dropped["too_large"] += 1
                continue
            frame = Frame(self.camera_id, captured.ts_ns, self.published + 1, width, height, jpeg)
            if self.publisher.publish(frame):
                self.published += 1

    def dropped_total(self) -> int:
        """Frames that reached us but not the broker, for any reason."""
        return self.source.skipped + sum(self.dropped.values()) + sum(self.publisher.dropped.values())


class StatusLine:
    """Once a second on a terminal: fps, kbit/s, drops and camera state, rewritten in place."""

    def __init__(self, pipeline: ProducerPipeline, stop: threading.Event) -> None:
        self._pipeline = pipeline
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        if sys.stderr.isatty():
            self._thread.start()

    def _run(self) -> None:
        p = self._pipeline
        prev_t, prev_sent, prev_bytes = time.monotonic(), p.publisher.sent, p.publisher.sent_bytes
        while not self._stop.wait(1.0):
            now, sent, sent_bytes = time.monotonic(), p.publisher.sent, p.publisher.sent_bytes
            dt = max(now - prev_t, 1e-6)
            sys.stderr.write(f"\r{p.camera_id}: {(sent - prev_sent) / dt:5.1f} fps  "
                             f"{(sent_bytes - prev_bytes) * 8 / 1000 / dt:8.0f} kbit/s  "
                             f"dropped {p.dropped_total():6d}  camera {p.source.state:<12}")
            sys.stderr.flush()
            prev_t, prev_sent, prev_bytes = now, sent, sent_bytes
        sys.stderr.write("\n")
