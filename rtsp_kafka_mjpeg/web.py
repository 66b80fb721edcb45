"""Flask app factory. Routes only translate HTTP into calls on the hub and settings.

Every route is registered here, in one place; a stream handler does four things: find the
camera, attach a viewer, write parts as they come, detach. go2rtc-style aliases
(`/api/frame.jpeg?src=`, `/api/stream.mjpeg?src=`) let existing tools and Home Assistant cards work.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from .auth import ViewerAuth
from .hub import BOUNDARY, CameraSlot, FrameHub
from .metrics import ConsumerMetrics
from .settings import ConsumerSettings

log = logging.getLogger(__name__)

TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
WAIT_FOR_FIRST_CAMERA_S = 10.0
KEEPALIVE_WAIT_S = 5.0
MAX_QUERY_BYTES = 2048


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


def create_app(settings: ConsumerSettings, hub: FrameHub, metrics: ConsumerMetrics,
               kafka_connected: Callable[[], bool] = lambda: True) -> Flask:
    """Build the web app around an existing hub (the subscriber is started by the caller)."""
    app = Flask(__name__)
    app.config.update(PROPAGATE_EXCEPTIONS=False, TEMPLATES_AUTO_RELOAD=False)
    auth = ViewerAuth(settings)

    def camera_arg() -> str | None:
        return request.args.get("camera") or request.args.get("src")

    def find_camera(camera_id: str | None, wait: bool) -> CameraSlot:
        if camera_id:
            slot = hub.slot(camera_id)
            if slot is None:
                abort(404, description=f"unknown camera {camera_id[:64]!r}")
            return slot
        deadline = time.monotonic() + (WAIT_FOR_FIRST_CAMERA_S if wait else 0)
        while not hub.cameras():
            if time.monotonic() >= deadline or hub.closed:
                abort(503, description="no camera has sent a frame yet")
            time.sleep(0.1)
        slot = hub.slot(hub.cameras()[0])
        assert slot is not None
        return slot

    def stream(slot: CameraSlot) -> Iterator[bytes]:
        camera = slot.camera_id
        slot.viewers += 1
        metrics.viewers.labels(camera).inc()
        frames_out = metrics.frames_out.labels(camera)
        bytes_out = metrics.bytes_out.labels(camera)
        try:
            after = 0
            while not hub.closed:
                published = hub.wait_newer(slot, after, KEEPALIVE_WAIT_S)
                if published is None:
                    continue
                after = published.number
                yield published.part
                frames_out.inc()
                bytes_out.inc(len(published.part))
        finally:
            slot.viewers -= 1
            metrics.viewers.labels(camera).dec()

    def camera_rows() -> list[dict[str, Any]]:
        now = time.monotonic()
        rows = []
        for camera_id in hub.cameras():
            slot = hub.slot(camera_id)
            latest = slot.latest if slot else None
            if slot is None or latest is None:
                continue
            age = now - latest.received_monotonic
            rows.append({"id": camera_id, "width": latest.frame.width, "height": latest.frame.height,
                         "fps": round(slot.fps(now), 1), "age_s": round(age, 2),
                         "live": age <= settings.stale_after_s, "viewers": slot.viewers})
        return rows

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
        slot = find_camera(camera_arg(), wait=True)
        tune_viewer_socket(request.environ, settings.socket_lowat_bytes)
        response = Response(stream(slot), mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                            direct_passthrough=True)
        response.headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
        response.headers["X-Accel-Buffering"] = "no"
        return response

    @app.get("/snapshot.jpg")
    @app.get("/api/frame.jpeg")
    def snapshot() -> Response:
        slot = find_camera(camera_arg(), wait=False)
        latest = slot.latest
        if latest is None:
            abort(503, description="no frame yet")
        return Response(latest.frame.jpeg, mimetype="image/jpeg",
                        headers={"Cache-Control": "no-store",
                                 "X-Capture-Timestamp-Ns": str(latest.frame.capture_ts_ns)})

    @app.get("/api/cameras")
    def cameras() -> Response:
        return jsonify(cameras=camera_rows())

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        connected = kafka_connected()
        rows = camera_rows()
        body = {"status": "ok" if connected else "unhealthy", "kafka": {"connected": connected},
                "cameras": {row["id"]: {"age_s": row["age_s"], "live": row["live"]} for row in rows},
                "viewers": sum(row["viewers"] for row in rows)}
        return jsonify(body), 200 if connected else 503

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
