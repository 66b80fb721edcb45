"""Flask app factory: every route in one place, each only translating HTTP into calls on the hub,
the status objects and the settings.

A stream handler does go2rtc's four steps: find the camera, attach a viewer (`hub.viewer`),
write parts as frames come, detach (leaving the `with`). go2rtc-style aliases
(`/api/frame.jpeg?src=`, `/api/stream.mjpeg?src=`) let existing tools and Home Assistant cards work.
`/api/events` does the same with the analytics board: find the cameras, attach a watcher, write
each newer result as a Server-Sent Event, detach.
"""

from __future__ import annotations

import dataclasses
import logging
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from ..kafka.health import KafkaHealth
from ..kafka.history import HistoryUnavailable
from ..metrics import ConsumerMetrics
from ..settings import ConsumerSettings
from .auth import ViewerAuth
from .clip_writer import FORMATS
from .hub import FrameHub
from .multipart import MIMETYPE, PartCache
from .mux import Mux, MuxBody
from .results_board import Posted, ResultBoard
from .rewind import MAX_SPEED, NotRetained, Rewind, span_json
from .status import CameraStatus, Health, camera_statuses
from .timespec import TimeSpecError, parse_duration_s, parse_time_ns, rfc3339

log = logging.getLogger(__name__)

TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
WAIT_FOR_FIRST_CAMERA_S = 10.0
MAX_QUERY_BYTES = 4096  # /api/mux names up to MAX_MUX_CAMERAS cameras, each perhaps with a start
MAX_MUX_CAMERAS = 64
EVENTS_HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing a quiet stream
EVENTS_RETRY_MS = 1000  # how soon a browser's EventSource reconnects after the stream drops


def tune_viewer_socket(environ: dict[str, Any], lowat: int) -> None:
    """Keep a viewer's unsent kernel queue small, so a slow viewer skips frames instead of
    falling seconds behind in its socket buffer (newest-frame semantics down to the kernel)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, lowat)
    except OSError as err:
        log.debug("TCP_NOTSENT_LOWAT not set: %s", err)


def client_gone_check(environ: dict[str, Any]) -> Callable[[], bool]:
    """Whether the client of this request closed its connection: readable with nothing to read.
    A stream that has nothing to send (a replay caught up with a quiet camera) asks this, since
    only a write would otherwise tell it the client left."""
    sock = environ.get("gunicorn.socket")

    def gone() -> bool:
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    return gone


def find_camera(hub: FrameHub, camera_id: str | None, wait_s: float) -> str:
    """The named camera (404 if unknown) or, unnamed, the first one, waiting up to `wait_s` for a
    first frame so a page opened before the camera starts still gets its stream (503 after)."""
    if camera_id:
        if not hub.has_camera(camera_id):
            abort(404, description=f"unknown camera {camera_id[:64]!r}")
        return camera_id
    first = hub.first_camera(wait_s)
    if first is None:
        abort(503, description="no camera has sent a frame yet")
    return first


def stream(hub: FrameHub, camera_id: str, parts: PartCache, metrics: ConsumerMetrics) -> Iterator[bytes]:
    """The multipart body of one viewer: attached on the first write, detached when the server
    closes the response (client gone, shutdown)."""
    frames_out = metrics.frames_out.labels(camera_id)
    bytes_out = metrics.bytes_out.labels(camera_id)
    with hub.viewer(camera_id) as viewer:
        for published in viewer:
            part = parts.part(published)
            yield part
            frames_out.inc()
            bytes_out.inc(len(part))


def sse_event(posted: Posted) -> bytes:
    """One result as a Server-Sent Event; its JSON is compact, so it is one data line."""
    return b"event: result\ndata: " + posted.data + b"\n\n"


def event_stream(board: ResultBoard, cameras: list[str], metrics: ConsumerMetrics,
                 heartbeat_s: float) -> Iterator[bytes]:
    """The SSE body of one client: the reconnect delay first (it also sends the headers at once),
    the recent results, then each newer one, a comment when nothing came for `heartbeat_s`."""
    with board.watch(cameras) as watcher:
        yield f"retry: {EVENTS_RETRY_MS}\n\n".encode()
        while not board.closed:
            results = watcher.next(heartbeat_s)
            if results:
                metrics.events_out.inc(len(results))
                yield b"".join(sse_event(p) for p in results)
            elif not board.closed:
                yield b": keepalive\n\n"


def create_app(settings: ConsumerSettings, hub: FrameHub, metrics: ConsumerMetrics,
               kafka_health: Callable[[], KafkaHealth] = lambda: KafkaHealth(connected=True),
               first_camera_wait_s: float = WAIT_FOR_FIRST_CAMERA_S, board: ResultBoard | None = None,
               events_heartbeat_s: float = EVENTS_HEARTBEAT_S, rewind: Rewind | None = None) -> Flask:
    """Build the web app around an existing hub and results board (the subscribers are started by
    the caller). `first_camera_wait_s`: how long a stream request with no camera named waits for one."""
    board = board if board is not None else ResultBoard()
    app = Flask(__name__)
    app.config.update(PROPAGATE_EXCEPTIONS=False, TEMPLATES_AUTO_RELOAD=False)
    auth = ViewerAuth(settings)
    parts = PartCache()
    rewind = rewind if rewind is not None else Rewind(settings, metrics)

    def camera_arg() -> str | None:
        # go2rtc's src= and MediaMTX's path= are aliases of camera=
        return request.args.get("camera") or request.args.get("src") or request.args.get("path")

    def named_camera() -> str:
        camera = camera_arg()
        if not camera:
            abort(400, description="name the camera: ?camera=ID")
        return camera

    def time_arg(name: str) -> int:
        try:
            return parse_time_ns(request.args.get(name, ""), time.time_ns())
        except TimeSpecError as err:
            abort(400, description=str(err))

    def parse_speed(raw: str) -> float:
        try:
            speed = float(raw)
        except ValueError:
            speed = 0.0
        if not 0 < speed <= MAX_SPEED:
            abort(400, description=f"speed {raw[:32]!r} must be a number above 0 and at most {MAX_SPEED:g}")
        return speed

    def speed_arg() -> float:
        return parse_speed(request.args.get("speed", "1"))

    def stream_response(body: Iterator[bytes], extra: dict[str, str] | None = None) -> Response:
        tune_viewer_socket(request.environ, settings.socket_lowat_bytes)
        return Response(body, mimetype=MIMETYPE, direct_passthrough=True,
                        headers={"Cache-Control": "no-cache, no-store, must-revalidate", "X-Accel-Buffering": "no",
                                 **(extra or {})})

    def statuses() -> list[CameraStatus]:
        return camera_statuses(hub, metrics.receive_rates.fps, time.monotonic(), settings.stale_after_s)

    @app.before_request
    def guard() -> Response | None:
        if len(request.query_string) > MAX_QUERY_BYTES:
            abort(414)
        if not auth.allows(request):
            return Response("authentication required\n", 401, {"WWW-Authenticate": auth.challenge})
        return None

    @app.get("/")
    def index() -> str:
        return render_template("index.html")

    @app.get("/video_feed")
    @app.get("/api/stream.mjpeg")
    def video_feed() -> Response:
        if "start" in request.args:  # rewind: from a moment of the past at the recorded pace, then live
            camera, start, speed = named_camera(), time_arg("start"), speed_arg()
            body = rewind.replay(camera, start, speed, client_gone_check(request.environ))
            return stream_response(body, {"X-Replay-Start": rfc3339(start)})
        camera = find_camera(hub, camera_arg(), first_camera_wait_s)
        return stream_response(stream(hub, camera, parts, metrics))

    @app.get("/snapshot.jpg")
    @app.get("/api/frame.jpeg")
    def snapshot() -> Response:
        if "time" in request.args:  # the frame of a moment of the past (Frigate's snapshot at a time)
            frame = rewind.frame_at(named_camera(), time_arg("time"))
            return Response(frame.jpeg, mimetype="image/jpeg",
                            headers={"Cache-Control": "private, max-age=3600",
                                     "X-Capture-Timestamp-Ns": str(frame.capture_ts_ns), "X-Sequence": str(frame.seq)})
        latest = hub.latest(find_camera(hub, camera_arg(), 0))
        if latest is None:
            abort(503, description="no frame yet")
        return Response(latest.frame.jpeg, mimetype="image/jpeg",
                        headers={"Cache-Control": "no-store",
                                 "X-Capture-Timestamp-Ns": str(latest.frame.capture_ts_ns)})

    @app.get("/api/events")
    def events() -> Response:
        # Repeatable (?camera=a&camera=b): the index page follows all its tiles on one connection.
        cameras = list(dict.fromkeys(request.args.getlist("camera") + request.args.getlist("src")))
        if not cameras or not all(cameras):
            abort(400, description="name the camera: /api/events?camera=ID")
        for camera in cameras:
            if not (hub.has_camera(camera) or board.has_camera(camera)):
                abort(404, description=f"unknown camera {camera[:64]!r}")
        return Response(event_stream(board, cameras, metrics, events_heartbeat_s), mimetype="text/event-stream",
                        direct_passthrough=True, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/list")
    def retained_list() -> Response:
        """MediaMTX's playback /list: the retained spans of a camera."""
        return jsonify([span_json(span) for span in rewind.spans(named_camera())])

    @app.get("/get")
    def clip() -> Response:
        """MediaMTX's playback /get: a span as a file, streamed as it is written."""
        camera, start = named_camera(), time_arg("start")
        fmt = request.args.get("format", "mp4")
        if fmt not in FORMATS:
            abort(400, description=f"format {fmt[:16]!r} is not one of {', '.join(FORMATS)}")
        try:
            duration = parse_duration_s(request.args.get("duration", ""))
        except TimeSpecError as err:
            abort(400, description=str(err))
        if duration > settings.clip_max_s:
            abort(400, description=f"duration {duration:g} s is over CLIP_MAX_DURATION_S ({settings.clip_max_s:g} s)")
        body = rewind.clip(camera, start, duration, fmt)
        mimetype, ext = FORMATS[fmt]
        name = f"{camera}_{rfc3339(start).replace(':', '-')}_{duration:g}s.{ext}"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return Response(body, mimetype=mimetype, direct_passthrough=True,
                        headers={"Content-Disposition": f'attachment; filename="{safe}"', "Cache-Control": "no-store",
                                 "X-Accel-Buffering": "no"})

    @app.errorhandler(NotRetained)
    def not_retained(err: NotRetained) -> tuple[Response, int]:
        return jsonify(err.as_json()), 404

    @app.errorhandler(HistoryUnavailable)
    def history_unavailable(err: HistoryUnavailable) -> tuple[Response, int]:
        return jsonify(error=str(err)), 503

    def per_camera(name: str) -> dict[str, str]:
        """?start=door@-60s&start=yard@2026-12-04T17:30:00Z -> {"door": "-60s", "yard": "..."}."""
        out = {}
        for value in request.args.getlist(name):
            camera, sep, rest = value.partition("@")
            if not sep or not camera or not rest:
                abort(400, description=f"{name}={value[:64]!r}: give it as CAMERA@VALUE")
            out[camera] = rest
        return out

    @app.get("/api/mux")
    def mux() -> Response:
        """Many cameras, live or replayed, as one multipart stream (the index page's one connection)."""
        cameras = list(dict.fromkeys(request.args.getlist("camera")))
        if not cameras or not all(cameras) or len(cameras) > MAX_MUX_CAMERAS:
            abort(400, description=f"name 1 to {MAX_MUX_CAMERAS} cameras: /api/mux?camera=a&camera=b")
        starts, speeds = per_camera("start"), per_camera("speed")
        now = time.time_ns()
        replays = {}
        for camera in cameras:
            if camera in starts:
                try:
                    replays[camera] = parse_time_ns(starts[camera], now)
                except TimeSpecError as err:
                    abort(400, description=str(err))
            elif not hub.has_camera(camera):
                abort(404, description=f"unknown camera {camera[:64]!r}")
        speed_of = {camera: parse_speed(raw) for camera, raw in speeds.items()}
        streams = Mux()

        def counted(camera: str, size: int) -> None:
            metrics.frames_out.labels(camera).inc()
            metrics.bytes_out.labels(camera).inc(size)

        try:
            for camera in cameras:
                if camera in replays:
                    body = rewind.replay(camera, replays[camera], speed_of.get(camera, 1.0), streams.stop.is_set)
                    streams.add_replay(camera, body)
                else:
                    streams.add_live(hub, camera, parts, counted)
        except BaseException:
            streams.close()
            raise
        return stream_response(MuxBody(streams))

    @app.get("/api/cameras")
    def cameras() -> Response:
        return jsonify(cameras=[dataclasses.asdict(row) for row in statuses()])

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        health = Health(kafka_health(), statuses())
        return jsonify(health.as_json()), health.http_status

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(Exception)
    def no_stack_traces(err: Exception) -> tuple[str, int]:
        if isinstance(err, HTTPException) and err.code is not None:
            return f"{err.description or err.name}\n", err.code
        log.exception("request failed")
        return "internal error\n", 500

    return app
