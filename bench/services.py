"""The long-lived services of a run (``Services``): one Kafka broker, RTSP cameras looping cached
clips, and one ``Stack`` (producer.py -> consumer.py) per resolution, one resolution at a time.

The parts it is built from each have their own module: ``process`` (a subprocess stopped by
PID), ``proctree`` (its CPU and memory, read from outside with psutil), ``app_env`` (the sealed
environments), ``stack``, ``topic_counter``, ``scrape`` (/metrics and JSON) and ``rtsp_backlog``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from harness.clips import make_clip
from harness.kafka_broker import KafkaBroker
from harness.rtsp_camera import RtspCamera

# Re-exported: tests/test_harness_hygiene.py imports both from here.
from .app_env import baseline_env, project_env
from .plan import Resolution
from .rtsp_backlog import RtspBacklog
from .stack import Stack

__all__ = ["CLIP_SECONDS", "Services", "baseline_env", "project_env"]

CLIP_SECONDS = 10  # the harness's cached clips; the camera loops them


class Services:
    """The broker (ours, or one given with --bootstrap), cameras and stacks, one resolution at a time.

    Only one resolution's stack runs at once: a 720p producer left running would eat CPU while
    the 2160p one is measured.
    """

    def __init__(self, bootstrap: str | None, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._given_bootstrap = bootstrap
        self.broker: KafkaBroker | None = None
        self.cameras: dict[str, RtspCamera] = {}
        self.stacks: dict[str, Stack] = {}
        self.lifetimes: dict[str, dict[str, int]] = {}

    @property
    def bootstrap(self) -> str:
        if self._given_bootstrap:
            return self._given_bootstrap
        assert self.broker is not None
        return self.broker.bootstrap

    def __enter__(self) -> Self:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self._given_bootstrap:
            self.broker = KafkaBroker()
            self.broker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clip(self, res: Resolution) -> Path:
        return make_clip(res.width, res.height, res.fps, CLIP_SECONDS)

    def backlog(self, pid: int, res: Resolution) -> RtspBacklog:
        """An ``RtspBacklog`` for a producer reading this resolution's camera."""
        byte_rate = self.clip(res).stat().st_size / CLIP_SECONDS
        return RtspBacklog(pid, self.camera(res).port, byte_rate)

    def camera(self, res: Resolution) -> RtspCamera:
        cam = self.cameras.get(res.name)
        if cam is None:
            for other in list(self.cameras):
                if other != res.name:
                    self.release(other)
            cam = RtspCamera(width=res.width, height=res.height, fps=res.fps, clip=self.clip(res))
            cam.start()
            self.cameras[res.name] = cam
        return cam

    def stack(self, res: Resolution) -> Stack:
        stack = self.stacks.get(res.name)
        if stack is None:
            stack = Stack(self, res, self.camera(res))
            self.stacks[res.name] = stack
            try:
                stack.start()
            except BaseException:
                self.release(res.name)
                raise
        return stack

    def release_stack(self, name: str) -> None:
        """Stop our producer/consumer of one resolution, keeping its camera (the tutorial's turn)."""
        stack = self.stacks.pop(name, None)
        if stack is not None:
            stack.stop()
            if stack.lifetime:
                self.lifetimes[name] = stack.lifetime

    def release(self, name: str) -> None:
        """Stop the stack and camera of one resolution."""
        self.release_stack(name)
        cam = self.cameras.pop(name, None)
        if cam is not None:
            cam.close()

    def close(self) -> None:
        for name in list(self.stacks) + list(self.cameras):
            self.release(name)
        if self.broker is not None:
            self.broker.close()
            self.broker = None
