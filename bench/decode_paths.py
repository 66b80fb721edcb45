"""CPU per frame of the producer's decode paths, side by side in one run on the same cameras.

What each path costs is what the capture thread plus the encoder cost in this process (the
camera runs in its own process, Kafka is left out): process CPU time over a window, divided by
the frames that came out as JPEG bytes ready to publish. Paths run one after another, each with a
warm-up (the opening burst of buffered frames and, for key frames, the first key-frame interval)
that is not counted.

  h264-decode-encode        720p30 H.264 clip: decode + JPEG encode every frame (the floor, OpenCV:
                            decode to BGR + cv2.imencode)
  h264-pyav-yuv             the same camera, SOURCE_DECODER=pyav: PyAV decode to YUV 4:2:0 + JPEG
                            straight from the planes (simplejpeg), no BGR in between
  mjpeg-decode-reencode     720p30 MJPEG camera: decode + re-encode (passthrough off)
  mjpeg-passthrough         the same camera: the camera's own JPEGs, undecoded
  thumbs-decode-all-drop    1 fps from the 720p30 H.264 clip, every frame decoded, most dropped
  thumbs-keyframes          1 fps from the same clip, key frames only (PyAV)

Run: ``nice -n 10 python -m bench.decode_paths [--seconds 12]``; prints a table and writes
bench/results/decode-paths.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from harness.clips import make_clip
from harness.rtsp_camera import RtspCamera
from rtsp_kafka_mjpeg.capture.encoder import JpegEncoder
from rtsp_kafka_mjpeg.capture.source import FrameSource

log = logging.getLogger("bench.decode_paths")

RESULTS = Path(__file__).resolve().parent / "results" / "decode-paths.json"
# Fractions of 1/max_fps: a frame is published once this much of the interval has passed (the
# pipeline's pacing with some slack for arrival jitter).
_DUE = 0.9


def run_path(url: str, seconds: float, warmup: float, quality: int, **source_args: Any) -> dict[str, Any]:
    """Capture and encode like the producer for `warmup` + `seconds`; CPU over the last `seconds`."""
    max_fps = float(source_args.get("max_fps", 0.0))
    min_gap_ns = int(_DUE * 1e9 / max_fps) if max_fps else 0
    stop = threading.Event()
    source = FrameSource(url, stop=stop, **source_args)
    encoder = JpegEncoder(quality)
    source.start()
    frames = last = last_ts = 0
    cpu0 = wall0 = 0.0
    started = time.monotonic()
    measuring = False
    try:
        while True:
            now = time.monotonic()
            if not measuring and now - started >= warmup:
                measuring, frames, cpu0, wall0 = True, 0, time.process_time(), now
            if measuring and now - wall0 >= seconds:
                break
            captured = source.newest(after=last, timeout=1.0)
            if captured is None:
                continue
            last = captured.number
            if min_gap_ns and captured.ts_ns - last_ts < min_gap_ns:
                continue
            last_ts = captured.ts_ns
            encoder.encode_captured(captured)
            frames += 1
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    finally:
        source.stop()
    return {"mode": source.mode, "frames": frames, "fps": round(frames / wall, 2),
            "cpu_ms_per_frame": round(1000 * cpu / max(frames, 1), 3), "cpu_pct_core": round(100 * cpu / wall, 1),
            "passed_through": encoder.passed_through, "from_yuv": encoder.from_yuv}


def decode_paths(seconds: float = 12.0, width: int = 1280, height: int = 720, fps: int = 30,
                 quality: int = 80, thumb_fps: float = 1.0) -> dict[str, Any]:
    """Measure every path (see the module docstring) and the ratios that matter; returns a dict."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    clip = make_clip(width, height, fps)
    paths: dict[str, dict[str, Any]] = {}
    with RtspCamera(clip=clip, width=width, height=height, fps=fps) as h264:
        paths["h264-decode-encode"] = run_path(h264.url, seconds, 2.0, quality)
        paths["h264-pyav-yuv"] = run_path(h264.url, seconds, 2.0, quality, decoder="pyav")
        paths["thumbs-decode-all-drop"] = run_path(h264.url, seconds, 3.0, quality, max_fps=thumb_fps,
                                                   keyframes="off")
        paths["thumbs-keyframes"] = run_path(h264.url, seconds, 3.0, quality, max_fps=thumb_fps)
    with RtspCamera(width=width, height=height, fps=fps, mjpeg=True) as mjpeg:
        paths["mjpeg-decode-reencode"] = run_path(mjpeg.url, seconds, 2.0, quality, mjpeg_passthrough=False)
        paths["mjpeg-passthrough"] = run_path(mjpeg.url, seconds, 2.0, quality)

    def ratio(a: str, b: str, key: str = "cpu_ms_per_frame", precision: int = 1) -> float:
        return round(paths[a][key] / max(paths[b][key], 1e-9), precision)

    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "camera": f"{width}x{height}p{fps}", "seconds": seconds, "jpeg_quality": quality, "thumb_fps": thumb_fps,
        "paths": paths,
        "ratios": {
            "h264_opencv_over_pyav": ratio("h264-decode-encode", "h264-pyav-yuv", precision=2),
            "mjpeg_reencode_over_passthrough": ratio("mjpeg-decode-reencode", "mjpeg-passthrough"),
            "h264_floor_over_mjpeg_passthrough": ratio("h264-decode-encode", "mjpeg-passthrough"),
            "thumbs_decode_all_over_keyframes_per_frame": ratio("thumbs-decode-all-drop", "thumbs-keyframes"),
            "thumbs_decode_all_over_keyframes_cpu": ratio("thumbs-decode-all-drop", "thumbs-keyframes",
                                                         "cpu_pct_core"),
        },
    }


def table(result: dict[str, Any]) -> str:
    rows = [f"{'path':<24} {'mode':<10} {'fps':>6} {'ms CPU/frame':>13} {'% of a core':>12}"]
    for name, p in result["paths"].items():
        rows.append(f"{name:<24} {p['mode']:<10} {p['fps']:>6} {p['cpu_ms_per_frame']:>13} {p['cpu_pct_core']:>12}")
    rows += [f"{k}: {v}x" for k, v in result["ratios"].items()]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decode_paths", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="measured window per path")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    result = decode_paths(args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{table(result)}\nwritten to {args.out}")  # the report is the output, not a log line
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
