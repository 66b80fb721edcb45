"""One camera's system under test: producer.py -> topic -> consumer.py (``Stack``), started together.

Apart from ``Services`` (which keeps one stack per resolution) because scenarios also build
stacks of their own: on another broker (acks), for N cameras (capacity), beside a worker
(worker). A stack needs only the broker's address and a log folder from whoever owns it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Protocol

from harness.ports import free_port
from harness.rtsp_camera import RtspCamera

from .app_env import project_env
from .plan import Resolution
from .process import Service
from .scrape import http_json, http_text
from .topic_counter import TopicCounter

log = logging.getLogger("bench.services")  # the name its log lines carried before services.py was split

STOPPED_LINE = re.compile(r"stopped: (\d+) frames published, (\d+) dropped")


class StackHost(Protocol):
    """What a ``Stack`` takes from ``bench.services.Services``: the broker's address and the log
    folder. A protocol rather than an import, so this module and bench.services (which builds
    stacks) do not import each other."""

    @property
    def bootstrap(self) -> str: ...

    @property
    def log_dir(self) -> Path: ...


class Stack:
    """One camera's system under test: producer.py -> topic -> consumer.py, started together."""

    def __init__(self, services: StackHost, res: Resolution, camera: RtspCamera, bootstrap: str | None = None,
                 producer_args: list[str] | None = None, label: str = "", **settings: str) -> None:
        """``producer_args`` replace the one-camera ``--source``/``--camera-id``; ``label`` names the
        log files (default: the resolution)."""
        self.res = res
        self.topic = f"bench-{res.name}-{uuid.uuid4().hex[:8]}"
        bootstrap = bootstrap or services.bootstrap
        env = {**project_env(bootstrap, self.topic), **settings}
        argv = producer_args if producer_args is not None else ["--source", camera.url, "--camera-id", "cam1"]
        label = label or res.name
        self.producer = Service(f"producer-{label}", [sys.executable, "producer.py", *argv], env, services.log_dir)
        port = free_port()
        self.consumer = Service(f"consumer-{label}", [sys.executable, "consumer.py", "--port", str(port)],
                                env, services.log_dir, port=port)
        self.counter: TopicCounter | None = None
        self._bootstrap = bootstrap
        self.lifetime: dict[str, int] = {}
        self.started_at = 0.0

    def settle(self, seconds: float) -> None:
        """Wait until the stack has run ``seconds`` since frames started flowing."""
        time.sleep(max(0.0, self.started_at + seconds - time.monotonic()))

    @property
    def feed_url(self) -> str:
        return f"{self.consumer.url}/video_feed"

    def start(self) -> None:
        self.producer.start()
        self.consumer.start()
        self.consumer.wait_http()
        deadline = time.monotonic() + 40
        while True:  # frames flow once the consumer's hub lists the camera with a rate
            if not self.producer.alive():
                raise self.producer.fail("exited")
            try:
                cams = http_json(f"{self.consumer.url}/api/cameras")
                if isinstance(cams, dict) and any(c.get("fps", 0) > 0 for c in cams.get("cameras", [])):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self.consumer.fail("never listed a live camera")
            time.sleep(0.3)
        self.counter = TopicCounter(self._bootstrap, self.topic)
        self.started_at = time.monotonic()
        log.info("stack %s up: topic %s, %s", self.res.name, self.topic, self.feed_url)

    def consumer_metrics(self) -> str:
        return http_text(f"{self.consumer.url}/metrics")

    def stop(self) -> None:
        """Stop both; the producer's last log line gives its lifetime published/dropped totals."""
        if self.counter is not None:
            self.counter.close()
        self.producer.stop()
        self.consumer.stop()
        match = STOPPED_LINE.search(self.producer.log_text())
        if match:
            self.lifetime = {"published": int(match[1]), "dropped": int(match[2])}
