"""What every part of the worker bench agrees on: the processor, the camera id, the worker's CPU.

In one place because the parent (scenario, launch) and the children (floor, publisher) must
agree on them without importing each other: the floor pins itself to the CPU the worker is
pinned to, and the publisher keeps off it.
"""

from __future__ import annotations

import os

PROCESSOR = "motion"
CAMERA_ID = "cam1"  # Stack's producer publishes as cam1


def worker_cpu() -> int:
    """The CPU the worker (and the floor) run on: the last one, as bench.floor pins to."""
    return sorted(os.sched_getaffinity(0))[-1]
