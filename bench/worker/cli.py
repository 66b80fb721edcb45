"""The children's command line, both ends: ``main`` runs one command and prints one JSON object;
``child`` runs ``python -m bench.worker CMD ...`` from the parent and reads that object back.

Both ends in one module so the command names and the one-JSON-line protocol are written once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..paths import ROOT
from .clients import clients_cost
from .common import PROCESSOR
from .drain import drain
from .feed import publish
from .floor import measure_floor

# The first line of the package's docstring, as `--help` has always shown it.
DESCRIPTION = "The analytics worker's figures (issue 11), in one run side by side:"


def child(argv: list[str], timeout: float) -> dict[str, Any]:
    from harness.sealed_env import sealed_environ

    out = subprocess.run([sys.executable, "-m", "bench.worker", *argv], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT, env=sealed_environ(), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench.worker {argv[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="cmd", required=True)
    fl = sub.add_parser("floor", help="decode + processor CPU per frame over recorded JPEGs, on one CPU")
    fl.add_argument("frames_dir", type=Path)
    fl.add_argument("--processor", default=PROCESSOR)
    fl.add_argument("--fps", type=int, default=30)
    fl.add_argument("--rounds", type=int, default=2)
    fl.add_argument("--pace-fps", type=int, default=0, help="also time it paced at this rate (a live worker's)")
    dr = sub.add_parser("drain", help="kafka-python's CPU per record fetched, nothing else")
    dr.add_argument("--bootstrap", required=True)
    dr.add_argument("--topic", required=True)
    dr.add_argument("--seconds", type=float, default=10.0)
    cl = sub.add_parser("clients", help="the Kafka client alone, as the worker uses it: frames consumed in a "
                                        "group, a result produced per frame; CPU per frame on one CPU")
    cl.add_argument("--bootstrap", required=True)
    cl.add_argument("--topic", required=True)
    cl.add_argument("--results-topic", required=True)
    cl.add_argument("--client", default="kafka-python")
    cl.add_argument("--seconds", type=float, default=10.0)
    cl.add_argument("--cpu", type=int, required=True)
    pub = sub.add_parser("publish", help="recorded JPEGs as N live cameras")
    pub.add_argument("frames_dir", type=Path)
    pub.add_argument("--bootstrap", required=True)
    pub.add_argument("--topic", required=True)
    pub.add_argument("--cameras", type=int, default=4)
    pub.add_argument("--fps", type=int, default=30)
    pub.add_argument("--seconds", type=float, default=30.0)
    pub.add_argument("--width", type=int, default=1280)
    pub.add_argument("--height", type=int, default=720)
    args = parser.parse_args(argv)
    if args.cmd == "floor":
        out = measure_floor(args.frames_dir, args.processor, args.fps, args.rounds, args.pace_fps)
    elif args.cmd == "clients":
        out = clients_cost(args.bootstrap, args.topic, args.results_topic, args.client, args.seconds, args.cpu)
    elif args.cmd == "drain":
        out = drain(args.bootstrap, args.topic, args.seconds)
    else:
        out = publish(args.frames_dir, args.bootstrap, args.topic, args.cameras, args.fps, args.seconds,
                      args.width, args.height)
    print(json.dumps(out))
    return 0
