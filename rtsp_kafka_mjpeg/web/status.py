"""What /api/cameras and /healthz report, as plain objects built from the hub, the receive rates
and the subscriber's health at a given moment: testable without HTTP or a clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..kafka.health import KafkaHealth
from .hub import FrameHub


@dataclasses.dataclass(frozen=True)
class CameraStatus:
    """One camera as the index page shows it. `live` is false once its newest frame is older than
    the stale threshold: the page then says "no signal" instead of freezing on an old picture."""

    id: str
    width: int
    height: int
    fps: float
    age_s: float
    live: bool
    viewers: int


def camera_statuses(hub: FrameHub, fps: Callable[[str, float], float], now: float,
                    stale_after_s: float) -> list[CameraStatus]:
    """Every camera that has sent a frame, by name. `now` is time.monotonic() (frames' arrival clock)."""
    viewers = hub.viewer_counts()
    rows = []
    for camera_id in hub.cameras():
        latest = hub.latest(camera_id)
        if latest is None:
            continue
        age = now - latest.received_monotonic
        rows.append(CameraStatus(camera_id, latest.frame.width, latest.frame.height, round(fps(camera_id, now), 1),
                                 round(age, 2), age <= stale_after_s, viewers.get(camera_id, 0)))
    return rows


@dataclasses.dataclass(frozen=True)
class Health:
    """The /healthz answer. Only Kafka decides it: a camera that goes quiet is reported (live
    false) but is not a fault of this process, so restarting it would not help."""

    kafka: KafkaHealth
    cameras: list[CameraStatus]

    @property
    def http_status(self) -> int:
        return 200 if self.kafka.ok else 503

    def as_json(self) -> dict[str, Any]:
        return {"status": "ok" if self.kafka.ok else "unhealthy", "reason": self.kafka.reason,
                "kafka": {"connected": self.kafka.connected, "error": self.kafka.error or None,
                          "failures": self.kafka.failures},
                "cameras": {c.id: {"age_s": c.age_s, "live": c.live} for c in self.cameras},
                "viewers": sum(c.viewers for c in self.cameras)}
