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

from ..frame import Frame
from ..kafka.publisher import CameraCounts, FramePublisher
from .encoder import FrameRejected, FrameTooLarge, JpegEncoder
from .source import FrameSource

log = logging.getLogger(__name__)


class ProducerPipeline:
    """Wires source -> encoder -> publisher for one camera until `stop` is set. Many cameras each
    have their own pipeline (capture, encode) and share one publisher (one Kafka client)."""

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
        due = 0  # MAX_FPS: capture time from which the next frame may go
        interval = self.min_interval_ns
        slack = interval // 10  # a frame a few ms early still counts as on time
        while not self.stop.is_set():
            captured = self.source.newest(after=last_number, timeout=0.5)
            if captured is None:
                continue
            last_number = captured.number
            if interval:
                if captured.ts_ns < due - slack:
                    self.dropped["max_fps"] += 1
                    continue
                # Keep the cadence (a strict "interval since the last one" turned 1 fps of key
                # frames into 0.75 fps), never bunching frames after a late one.
                due = max(due + interval, captured.ts_ns + interval - slack)
            try:
                jpeg, width, height = self.encoder.encode_captured(captured)
            except FrameTooLarge:
                self.dropped["too_large"] += 1
                continue
            except FrameRejected:
                self.dropped["undecodable"] += 1
                continue
            frame = Frame(self.camera_id, captured.ts_ns, self.published + 1, width, height, jpeg)
            if self.publisher.publish(frame):
                self.published += 1

    def counts(self) -> CameraCounts:
        """This camera's delivery counts in the shared publisher."""
        return self.publisher.camera(self.camera_id)

    def dropped_total(self) -> int:
        """Frames that reached us but not the broker, for any reason."""
        return self.source.skipped + sum(self.dropped.values()) + sum(self.counts().dropped.values())

    def start(self) -> threading.Thread:
        """Run in a thread of its own: a camera that hangs or reconnects holds up only itself."""
        thread = threading.Thread(target=self.run, name=f"pipeline-{self.camera_id}", daemon=True)
        thread.start()
        return thread


class StatusLine:
    """Once a second on a terminal: one line per camera (fps, kbit/s, drops, camera state),
    rewritten in place."""

    def __init__(self, pipelines: list[ProducerPipeline], stop: threading.Event) -> None:
        self._pipelines = pipelines
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        if sys.stderr.isatty():
            self._thread.start()

    def _run(self) -> None:
        pipelines = self._pipelines
        width = max(len(p.camera_id) for p in pipelines)
        prev_t = time.monotonic()
        prev = [(p.counts().sent, p.counts().sent_bytes) for p in pipelines]
        shown = False
        while not self._stop.wait(1.0):
            now = time.monotonic()
            dt = max(now - prev_t, 1e-6)
            lines = []
            for i, p in enumerate(pipelines):
                counts = p.counts()
                sent, sent_bytes = counts.sent, counts.sent_bytes
                lines.append(f"{p.camera_id:<{width}}: {(sent - prev[i][0]) / dt:5.1f} fps  "
                             f"{(sent_bytes - prev[i][1]) * 8 / 1000 / dt:8.0f} kbit/s  "
                             f"dropped {p.dropped_total():6d}  camera {p.source.state:<12}")
                prev[i] = (sent, sent_bytes)
            up = f"\x1b[{len(lines) - 1}F" if shown and len(lines) > 1 else ""  # back to the first line
            sys.stderr.write(up + "\r" + "\x1b[K\n".join(lines) + "\x1b[K")
            sys.stderr.flush()
            shown = True
            prev_t = now
        sys.stderr.write("\n")
