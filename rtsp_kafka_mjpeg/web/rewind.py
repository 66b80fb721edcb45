"""Rewind: a camera's retained frames as a paced replay, a list of spans, a clip or a still.

What the routes call (app.py only translates HTTP). Each request gets its own reader of the
topic (kafka.history.CameraHistory, no group), counted in /metrics and closed when the client
leaves, so seeking costs nothing to live viewers, the workers or other replays.

Replay pace: frame i is due at start + (capture_ts_i - capture_ts_0) / speed. A reader that has
caught up with the log is live: it sends each frame as it arrives, on the same reader, so the
handover from the past to now has no gap and no repeated sequence.

CPU-heavy work (JPEG decode and H.264 encode for a clip) runs on a native thread under
consumer.py's gevent (``offload``), so a clip export never stalls the live viewers' greenlets.
The Kafka reads stay on the request's greenlet: kafka-python's sockets cooperate with gevent
(and belong to the thread that made them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..frame import Frame
from ..kafka.history import CameraHistory, Span, retained_spans
from ..metrics import ConsumerMetrics
from ..settings import ConsumerSettings
from .clip_writer import ClipWriter
from .multipart import multipart_part
from .timespec import NS, rfc3339

T = TypeVar("T")
MAX_SPEED = 64.0
CLIP_CHUNK_FRAMES = 15  # frames encoded per native-thread call (fewer hops, still streamed)


class NotRetained(Exception):
    """The asked moment or span is not in the topic: 404 with what is retained."""

    def __init__(self, message: str, spans: list[Span]) -> None:
        super().__init__(message)
        self.spans = spans

    def as_json(self) -> dict[str, Any]:
        return {"error": str(self), "retained": [span_json(s) for s in self.spans]}


def span_json(span: Span) -> dict[str, Any]:
    """A span as MediaMTX's /list answers it: start (RFC 3339) and duration (seconds)."""
    return {"start": rfc3339(span.start_ns), "duration": round((span.end_ns - span.start_ns) / NS, 3)}


def offload(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` on a native thread when gevent runs the server (a CPU-heavy call would stall every
    greenlet), directly otherwise."""
    try:
        from gevent import get_hub, monkey
    except ImportError:
        return fn(*args)
    if not monkey.is_module_patched("threading"):
        return fn(*args)
    return get_hub().threadpool.apply(fn, args)


class Body:
    """A streamed response body that owns a reader: WSGI servers call close() when the client
    leaves or the response ends, iterated or not, so the reader is always released."""

    def __init__(self, stack: contextlib.ExitStack, chunks: Iterator[bytes]) -> None:
        self._stack = stack
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._stack.close()


@dataclasses.dataclass
class _SpanCache:
    spans: list[Span]
    end_offset: int
    lock: threading.Lock


class Rewind:
    """The consumer's access to the past, per camera."""

    def __init__(self, settings: ConsumerSettings, metrics: ConsumerMetrics,
                 history: Callable[..., CameraHistory] = CameraHistory,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings
        self.metrics = metrics
        self._history = history
        self._now = clock_ns
        self._spans: dict[str, _SpanCache] = {}
        self._spans_lock = threading.Lock()
        self._api_version: tuple[int, ...] | None = None  # the brokers', as the first reader found it

    @contextlib.contextmanager
    def reader(self, camera: str) -> Iterator[CameraHistory]:
        """A reader of `camera`'s partition, counted while open; HistoryUnavailable if the brokers
        cannot answer."""
        history = self._history(self.settings, camera, self._api_version)
        self._api_version = self._api_version or history.api_version
        self.metrics.history_readers.inc()
        try:
            yield history
        finally:
            self.metrics.history_readers.dec()
            history.close()

    # -- what is retained --------------------------------------------------------------------------

    def spans(self, camera: str) -> list[Span]:
        """The retained spans of `camera`'s partition, cached and extended (kafka.history)."""
        with self._spans_lock:
            cache = self._spans.setdefault(camera, _SpanCache([], -1, threading.Lock()))
        with cache.lock, self.reader(camera) as history:
            since = (cache.spans, cache.end_offset) if cache.end_offset >= 0 else None
            cache.spans, cache.end_offset = retained_spans(history, self.settings.rewind_gap_s, since)
            return list(cache.spans)

    def _not_retained(self, camera: str, what: str) -> NotRetained:
        return NotRetained(what, self.spans(camera))

    def locate(self, history: CameraHistory, camera: str, start_ns: int) -> Frame:
        """Seek `history` to `start_ns` and return the first frame of `camera` there; NotRetained
        when the moment is in the future, before retention, or in a silence longer than the gap.
        The found moment costs one time-index lookup and one fetch; the retained span is read only
        to explain a miss."""
        gap_ns = int(self.settings.rewind_gap_s * NS)
        if start_ns > self._now() + gap_ns:
            raise self._not_retained(camera, f"{rfc3339(start_ns)} is in the future")
        first = None
        if history.seek(start_ns):
            # At the log's end, wait only while a frame captured before start + gap may still be
            # on its way (a producer's latency is well under 2 s); an older moment is decided at once.
            give_up_ns = min(self._now() + gap_ns, start_ns + gap_ns + 2 * NS)
            first = _first_frame(history, start_ns + gap_ns, give_up_ns)
        if first is not None:
            return first
        retained = history.retained()
        if retained.first_ts_ns is None:
            raise self._not_retained(camera, f"nothing of camera {camera!r} is retained")
        if start_ns < retained.first_ts_ns - gap_ns:
            raise self._not_retained(camera, f"{rfc3339(start_ns)} is before the retained video "
                                             f"(from {rfc3339(retained.first_ts_ns)})")
        raise self._not_retained(camera, f"camera {camera!r} sent nothing within {self.settings.rewind_gap_s:g} s "
                                         f"of {rfc3339(start_ns)}")

    # -- replay ----------------------------------------------------------------------------------

    def replay(self, camera: str, start_ns: int, speed: float,
               client_gone: Callable[[], bool] = lambda: False) -> Body:
        """Multipart parts from `start_ns` at the recorded pace x `speed`, then live. Raises
        NotRetained / HistoryUnavailable before the first part (so the route can answer 404/503).
        A silence longer than the gap is skipped, not waited out. `client_gone` is asked while
        nothing is sent (live, camera quiet), so a vanished client's reader closes then too."""
        self.metrics.history_requests.labels("replay").inc()
        stack, history, first = self._open_at(camera, start_ns)
        return Body(stack, self._paced(history, first, speed, client_gone))

    def _open_at(self, camera: str, start_ns: int) -> tuple[contextlib.ExitStack, CameraHistory, Frame]:
        """A reader positioned at `start_ns` and its first frame; the stack closes the reader (at
        once here if the moment is not retained)."""
        stack = contextlib.ExitStack()
        history = stack.enter_context(self.reader(camera))
        try:
            return stack, history, self.locate(history, camera, start_ns)
        except BaseException:
            stack.close()
            raise

    def _paced(self, history: CameraHistory, first: Frame, speed: float,
               client_gone: Callable[[], bool]) -> Iterator[bytes]:
        frames_out = self.metrics.frames_out.labels(first.camera_id)
        gap_ns = int(self.settings.rewind_gap_s * NS)
        t0, ts0, previous = time.monotonic(), first.capture_ts_ns, first.capture_ts_ns
        yield multipart_part(first)
        frames_out.inc()
        live = False
        for frame in history.frames():
            if frame is None:  # caught up with the log: from now on, each frame as it comes
                live = True
                if client_gone():
                    return
                continue
            if frame.capture_ts_ns - previous > gap_ns:  # a silence: skip it, keep the pace after it
                t0, ts0 = time.monotonic(), frame.capture_ts_ns
            previous = frame.capture_ts_ns
            if not live:
                delay = t0 + (frame.capture_ts_ns - ts0) / NS / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield multipart_part(frame)
            frames_out.inc()

    # -- a still at a moment -------------------------------------------------------------------------

    def frame_at(self, camera: str, ts_ns: int) -> Frame:
        """The first frame of `camera` captured at or after `ts_ns` (within the gap)."""
        self.metrics.history_requests.labels("snapshot").inc()
        with self.reader(camera) as history:
            return self.locate(history, camera, ts_ns)

    # -- clips ---------------------------------------------------------------------------------

    def clip(self, camera: str, start_ns: int, duration_s: float, fmt: str) -> Body:
        """The span [start, start + duration) as a file in `fmt`, streamed as it is written."""
        self.metrics.history_requests.labels(f"clip_{fmt}").inc()
        stack, history, first = self._open_at(camera, start_ns)
        end_ns = start_ns + int(duration_s * NS)
        return Body(stack, self._clip_body(history, first, end_ns, fmt))

    def _clip_body(self, history: CameraHistory, first: Frame, end_ns: int, fmt: str) -> Iterator[bytes]:
        writer = ClipWriter(fmt)
        batch = [first]
        frames = history.frames(until_ns=end_ns)
        idle_deadline = time.monotonic() + max(5.0, self.settings.rewind_gap_s)
        for frame in frames:
            if frame is None:  # the log's end: the span reaches now; wait for it (or give up)
                if self._now() >= end_ns or time.monotonic() > idle_deadline:
                    break
                continue
            idle_deadline = time.monotonic() + max(5.0, self.settings.rewind_gap_s)
            batch.append(frame)
            if len(batch) >= CLIP_CHUNK_FRAMES:
                out = offload(_write_all, writer, batch)
                batch = []
                if out:
                    yield out
        out = offload(_write_all, writer, batch) + offload(writer.finish)
        if out:
            yield out


def _first_frame(history: CameraHistory, before_ns: int, give_up_ns: int) -> Frame | None:
    """The first frame from the reader's position, if captured before `before_ns`."""
    deadline = time.monotonic() + 5.0
    for frame in history.frames():
        if frame is None:
            if time.time_ns() > give_up_ns or time.monotonic() > deadline:
                return None
            continue
        return frame if frame.capture_ts_ns <= before_ns else None
    return None


def _write_all(writer: ClipWriter, frames: list[Frame]) -> bytes:
    return b"".join(writer.add(frame) for frame in frames)
