"""Serving the app with gunicorn's gevent worker: thousands of long-lived MJPEG responses in
one process, each a cheap greenlet, where thread-per-connection servers run out of threads.

One worker process, so one Kafka consumer per consumer.py. The subscriber is started inside the
worker (threads started before gunicorn forks would not survive the fork).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.workers.ggevent import GeventWorker

from ..kafka.subscriber import FrameSubscriber
from ..metrics import ConsumerMetrics
from ..settings import ConsumerSettings
from .app import create_app
from .hub import FrameHub
from .results_board import ResultBoard
from .results_subscriber import ResultSubscriber

log = logging.getLogger(__name__)


class BindError(OSError):
    """The HTTP address cannot be bound (in use, not ours)."""


def check_bindable(host: str, port: int) -> None:
    """Fail before gunicorn starts (and retries for seconds) when the port cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise BindError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def build_wsgi_app(settings: ConsumerSettings) -> Any:
    """Hub + subscriber, results board + its subscriber, Flask app, created in the process that
    will serve them."""
    hub = FrameHub()
    board = ResultBoard()
    metrics = ConsumerMetrics(viewer_counts=hub.viewer_counts)
    subscriber = FrameSubscriber(settings, hub.publish, metrics)
    subscriber.start()
    results = ResultSubscriber(settings, board.post, metrics)
    results.start()
    app = create_app(settings, hub, metrics, kafka_health=subscriber.health, board=board)
    app.extensions.update(subscriber=subscriber, hub=hub, board=board, results=results)
    return app


def release_viewers_on_shutdown(worker: Any) -> None:
    """gunicorn hook: when the worker is told to stop, end every stream at once instead of
    letting open MJPEG responses run into the graceful timeout and a SIGKILL."""

    def watch() -> None:
        while worker.alive:
            time.sleep(0.2)
        worker.wsgi.extensions["hub"].close()
        worker.wsgi.extensions["board"].close()
        worker.wsgi.extensions["subscriber"].stop()
        worker.wsgi.extensions["results"].stop()

    threading.Thread(target=watch, name="shutdown-watch", daemon=True).start()


class GracefulGeventWorker(GeventWorker):
    """gunicorn's gevent worker, but Ctrl-C (SIGINT) and SIGQUIT stop it the way SIGTERM does:
    stop accepting, end the streams, exit 0. The stock worker raises SystemExit inside a spawned
    greenlet, which gevent prints as a traceback on every Ctrl-C (benoitc/gunicorn#3239)."""

    def handle_quit(self, sig: int, frame: Any) -> None:
        self.alive = False


class _SameLogFormat(glogging.Logger):
    """gunicorn's own messages through our handlers: one format, secrets masked."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.handlers = list(logging.getLogger().handlers)


class StreamServer(BaseApplication):
    """gunicorn, configured from our settings instead of its own CLI."""

    def __init__(self, settings: ConsumerSettings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        host = f"[{s.host}]" if ":" in s.host else s.host
        options = {
            "bind": f"{host}:{s.port}",
            "workers": 1,
            "worker_class": GracefulGeventWorker,
            "worker_connections": s.max_viewers,
            "timeout": 30,
            "graceful_timeout": 3,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "logger_class": _SameLogFormat,
            "loglevel": s.log_level.lower(),
            "proc_name": "rtsp-kafka-mjpeg-consumer",
            "preload_app": False,
            "limit_request_line": 4094,
            "limit_request_fields": 100,
            "limit_request_field_size": 8190,
            "control_socket_disable": True,
            "post_worker_init": release_viewers_on_shutdown,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return build_wsgi_app(self.settings)
