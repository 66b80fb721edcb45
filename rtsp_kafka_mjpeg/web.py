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
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from .auth import ViewerAuth
from .events import Posted, ResultBoard
from .hub import FrameHub
from .metrics import ConsumerMetrics
from .multipart import MIMETYPE, PartCache
from .settings import ConsumerSettings
from .status import CameraStatus, Health, camera_statuses
from .subscriber import KafkaHealth

log = logging.getLogger(__name__)

TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
WAIT_FOR_FIRST_CAMERA_S = 10.0
MAX_QUERY_BYTES = 2048
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
               events_heartbeat_s: float = EVENTS_HEARTBEAT_S) -> Flask:
    """Build the web app around an existing hub and results board (the subscribers are started by
    the caller). `first_camera_wait_s`: how long a stream request with no camera named waits for one."""
    board = board if board is not None else ResultBoard()
    app = Flask(__name__)
    app.config.update(PROPAGATE_EXCEPTIONS=False, TEMPLATES_AUTO_RELOAD=False)
    auth = ViewerAuth(settings)
    parts = PartCache()

    def camera_arg() -> str | None:
        return request.args.get("camera") or request.args.get("src")

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
        camera = find_camera(hub, camera_arg(), first_camera_wait_s)
        tune_viewer_socket(request.environ, settings.socket_lowat_bytes)
        return Response(stream(hub, camera, parts, metrics), mimetype=MIMETYPE, direct_passthrough=True,
                        headers={"Cache-Control": "no-cache, no-store, must-revalidate", "X-Accel-Buffering": "no"})

    @app.get("/snapshot.jpg")
    @app.get("/api/frame.jpeg")
    def snapshot() -> Response:
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
