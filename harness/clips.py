"""Pre-encoded H.264 test clips, so a benchmark's camera costs ~1% CPU instead of a live x264.

The clip is a raw H.264 elementary stream (``.h264``), the form the camera server's ``--clip``
mode loops with ``multifilesrc``: a container would not survive being read back-to-back.
Encoded once with Debian's ffmpeg (libx264; the venv has no encoder) and cached under
``.cache/clips/<w>x<h>p<fps>-<seconds>s.h264`` (seconds are in the name so clips of different
lengths never shadow each other).

Settings and why: ``testsrc2`` moves every frame (tests check motion); Main profile with no
B-frames and ``tune=zerolatency`` like an IP camera's stream; a key frame every second so a viewer
joining the shared stream starts within a second; yuv420p because decoders expect it.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

FFMPEG = "/usr/bin/ffmpeg"
CLIP_DIR = Path(__file__).resolve().parent.parent / ".cache" / "clips"


def make_clip(
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seconds: int = 10,
    path: str | Path | None = None,
) -> Path:
    """Return an .h264 clip of a moving pattern, encoding it only if not cached yet.

    ``path`` overrides the cache location. Serve it with ``RtspCamera(clip=..., fps=fps)``:
    the camera must be told the same fps, since an elementary stream carries no timestamps.
    """
    out = Path(path) if path else CLIP_DIR / f"{width}x{height}p{fps}-{seconds}s.h264"
    if out.is_file() and out.stat().st_size > 0:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={width}x{height}:rate={fps}",
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-profile:v",
        "main",
        "-bf",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(fps),
        "-keyint_min",
        str(fps),
        "-sc_threshold",
        "0",
        "-f",
        "h264",
        str(tmp),
    ]
    log.info("encoding %s", out)
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({result.returncode}): {result.stderr[-2000:]}")
        os.replace(tmp, out)  # atomic: a concurrent or interrupted run never sees half a clip
    finally:
        tmp.unlink(missing_ok=True)
    return out
