"""The floor: what decoding a frame of the clip and JPEG-encoding it must cost, on one core.

The producer cannot do less per frame than H.264 decode + ``cv2.imencode`` at the same quality,
so its CPU per published frame is reported as a multiple of this. Measured in a child process
pinned to one CPU (OpenCV and FFmpeg then use one thread, no thread hand-off overhead), on the
same cached clip the camera serves, in the same run as the producer figures.

Run alone: ``python -m bench.floor CLIP [--frames N] [--quality Q]`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WARMUP_FRAMES = 5  # codec set-up and first allocations are not per-frame costs


def measure(clip: Path, frames: int, quality: int) -> dict[str, float | int]:
    """Decode ``frames`` frames of the clip (looping) and encode each; CPU seconds per frame."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})  # before cv2 loads, so its thread pools see one CPU
    import cv2

    cv2.setNumThreads(1)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise RuntimeError(f"cannot open {clip}")
    done = 0
    jpeg_bytes = 0
    encode_cpu = 0.0
    start_cpu = 0.0
    start_wall = 0.0
    while done < frames + WARMUP_FRAMES:
        ok, image = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
            continue
        if done == WARMUP_FRAMES:
            start_cpu, start_wall = time.process_time(), time.monotonic()
            encode_cpu = 0.0
            jpeg_bytes = 0
        t = time.thread_time()
        ok, buf = cv2.imencode(".jpg", image, params)
        encode_cpu += time.thread_time() - t
        if not ok:
            raise RuntimeError("imencode failed")
        jpeg_bytes += len(buf)
        done += 1
    total = time.process_time() - start_cpu
    cap.release()
    return {
        "frames": frames,
        "cpu_s_per_frame": total / frames,
        "encode_cpu_s_per_frame": encode_cpu / frames,
        "decode_cpu_s_per_frame": (total - encode_cpu) / frames,
        "wall_s_per_frame": (time.monotonic() - start_wall) / frames,
        "jpeg_kb": jpeg_bytes / frames / 1024,
        "cpu": cpus[-1],
    }


def run_floor(clip: Path, frames: int, quality: int, timeout: float = 600.0) -> dict[str, float | int]:
    """Measure in a fresh pinned child process (the parent's threads and imports stay out of it),
    with the shell's OpenCV/FFmpeg options sealed off as for the producer it is compared with."""
    from harness.sealed_env import sealed_environ

    out = subprocess.run([sys.executable, "-m", "bench.floor", str(clip), "--frames", str(frames),
                          "--quality", str(quality)], capture_output=True, text=True, timeout=timeout,
                         cwd=Path(__file__).resolve().parents[1], env=sealed_environ(), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"floor measurement failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--quality", type=int, default=80)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.clip, args.frames, args.quality)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
