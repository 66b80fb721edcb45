"""`python -m bench.hwaccel`: the producer's decode + JPEG cost per H.264 frame, software vs the
GPU (HWACCEL), and how many 30 fps cameras each carries, side by side in one run.

What is measured is the producer's own path (capture.pyav_reader.PyavReader -> capture.encoder.
JpegEncoder, as SOURCE_DECODER=pyav runs it) on libx264 clips made here (harness.clips):
- CPU per frame, one decoder: process CPU time / frames, software and each device that opens;
  the software figure is the floor the goals are stated against (hardware <= 0.5x at 720p,
  <= 0.25x at 1080p);
- cameras that hold: `--cameras` decoders at once in threads of one process (as one producer.py
  runs them), each as fast as it can for `--seconds`; frames/s summed over them / 30 is the number of
  30 fps cameras that fit, with the process's CPU (cores busy) beside it.
On a machine without a GPU the hardware rows say why none opened (the same line HWACCEL=auto logs).
Prints one table and writes bench/results/hwaccel.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

from harness.clips import CLIP_DIR, FFMPEG, make_clip
from rtsp_kafka_mjpeg.capture.encoder import JpegEncoder
from rtsp_kafka_mjpeg.capture.hwaccel import PREFERENCE, HwaccelError, HwDecoder, available_kinds, open_device
from rtsp_kafka_mjpeg.capture.pyav_reader import PyavReader
from rtsp_kafka_mjpeg.capture.source import Captured

from .paths import RESULTS_DIR

log = logging.getLogger("bench.hwaccel")

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 30
GOALS = {"720p": 0.5, "1080p": 0.25}  # hardware CPU per frame / software, at most


def clip_for(width: int, height: int, seconds: int = 10) -> Path:
    """harness.clips' clip (FFmpeg's CLI), or the same kind made with PyAV's own libx264 where no
    ffmpeg binary is installed (a bare GPU machine with the wheels carried)."""
    if Path(FFMPEG).exists():
        return make_clip(width, height, FPS, seconds)
    import av
    import numpy as np

    out = CLIP_DIR / f"{width}x{height}p{FPS}-{seconds}s-pyav.mp4"
    if out.is_file() and out.stat().st_size:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(FPS), "preset": "veryfast", "tune": "zerolatency"}
        for i in range(FPS * seconds):
            rgb = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, ((xx + yy) // 4 + i) % 256], -1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def run_decoder(clip: Path, hw: HwDecoder | None, seconds: float, stop: threading.Event) -> dict[str, Any]:
    """Decode + JPEG-encode `clip` (looping) until `seconds` pass or `stop`: frames done."""
    encoder = JpegEncoder(quality=80)
    frames, start = 0, time.monotonic()
    while not stop.is_set() and time.monotonic() - start < seconds:
        reader = PyavReader(str(clip), "bench", "tcp", 10, 10, 1, stop, yuv=True, hw=hw)
        try:
            while time.monotonic() - start < seconds:
                pic = reader.read()
                if pic is None:
                    break
                encoder.encode_captured(Captured(pic.image, 1, frames, None, pic.width, pic.height, pic.yuv,
                                                 pic.full_range, pic.chroma))
                frames += 1
        finally:
            reader.release()
    return {"frames": frames, "wall_s": time.monotonic() - start}


def measure(clip: Path, hw: HwDecoder | None, cameras: int, seconds: float) -> dict[str, Any]:
    """`cameras` decoders at once: frames/s in all, CPU per frame, cores busy."""
    stop = threading.Event()
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(run_decoder(clip, hw, seconds, stop)))
               for _ in range(cameras)]
    cpu0, wall0 = time.process_time(), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    frames = sum(r["frames"] for r in results)
    return {"decoders": cameras, "frames": frames, "fps": frames / wall, "cameras_at_30fps": frames / wall / FPS,
            "cpu_ms_per_frame": cpu / frames * 1000 if frames else None, "cores_busy": cpu / wall}


def devices(wanted: list[str]) -> tuple[list[HwDecoder], dict[str, str]]:
    """The devices that open here, and why each other one did not."""
    opened, why = [], {}
    for kind in wanted:
        try:
            opened.append(open_device(kind))
        except HwaccelError as err:
            why[kind] = err.reason
    return opened, why


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hwaccel", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="720p,1080p", help="comma-separated: 720p, 1080p")
    parser.add_argument("--devices", default=",".join(PREFERENCE), help="hardware kinds to try")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--cameras", type=int, default=16, help="decoders at once for the capacity row")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "hwaccel.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    opened, why = devices([k for k in args.devices.split(",") if k])
    result: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(),
                              "cpus": len(os.sched_getaffinity(0)), "ffmpeg_hwdevices": available_kinds(),
                              "not_opened": why, "sizes": {}}
    for size in [s for s in args.sizes.split(",") if s]:
        width, height = SIZES[size]
        clip = clip_for(width, height)
        row: dict[str, Any] = {"software": {"one": measure(clip, None, 1, args.seconds),
                                            "many": measure(clip, None, args.cameras, args.seconds)}}
        for hw in opened:
            row[hw.name] = {"one": measure(clip, hw, 1, args.seconds),
                            "many": measure(clip, hw, args.cameras, args.seconds)}
            floor = row["software"]["one"]["cpu_ms_per_frame"]
            ratio = row[hw.name]["one"]["cpu_ms_per_frame"] / floor
            row[hw.name]["vs_software"] = ratio
            row[hw.name]["goal"] = {"at_most": GOALS[size], "met": ratio <= GOALS[size]}
        result["sizes"][size] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{result['machine']}, {result['cpus']} CPUs, FFmpeg hwdevices {', '.join(result['ffmpeg_hwdevices'])}")
    for kind, reason in why.items():
        print(f"  {kind}: not used ({reason})")
    print(f"| size | decoder | CPU ms/frame (1 decoder) | vs software | {args.cameras} decoders: fps | "
          "cameras at 30 fps | cores busy |")
    print("|---|---|---|---|---|---|---|")
    for size, row in result["sizes"].items():
        for name, m in row.items():
            vs = f"{m['vs_software']:.2f}x (goal <= {GOALS[size]}x)" if "vs_software" in m else "1.00x"
            print(f"| {size} | {name} | {m['one']['cpu_ms_per_frame']:.2f} | {vs} | {m['many']['fps']:.0f} | "
                  f"{m['many']['cameras_at_30fps']:.1f} | {m['many']['cores_busy']:.1f} |")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
