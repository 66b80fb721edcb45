"""Pre-encoded test clips, so a benchmark's camera costs ~1% CPU instead of a live encoder.

The clip is a raw H.264 elementary stream (``.h264``), the form the camera server's ``--clip``
mode loops with ``multifilesrc``: a container would not survive being read back-to-back.
Encoded once with Debian's ffmpeg (libx264; the venv has no encoder) and cached under
``.cache/clips/<w>x<h>p<fps>-<seconds>s.h264`` (seconds are in the name so clips of different
lengths never shadow each other).

Settings and why: ``testsrc2`` moves every frame (tests check motion); Main profile with no
B-frames and ``tune=zerolatency`` like an IP camera's stream; a key frame every second so a viewer
joining the shared stream starts within a second; yuv420p because decoders expect it.

MJPEG clips (``make_mjpeg_clip``) are a directory of numbered JPEG files, one per frame: the
frames of the H.264 clip re-encoded by ``cv2.imencode`` (quality 80, the producer's default;
baseline, 4:2:0 as RTP/JPEG requires), served by the camera server's ``--mjpeg-clip`` mode
without any encoding, like an MJPEG IP camera's own pictures.
"""

from __future__ import annotations

import logging
import os
import shutil
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


MJPEG_QUALITY = 80


def make_mjpeg_clip(
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seconds: int = 10,
    quality: int = MJPEG_QUALITY,
    path: str | Path | None = None,
) -> Path:
    """Return a directory of ``%05d.jpg`` frames (``seconds * fps`` of them), made once and cached.

    The pictures are the H.264 clip's decoded frames, so they move like it. Width and height must
    be multiples of 8 (RTP/JPEG carries sizes in 8-pixel blocks). ``path`` overrides the cache
    location. Serve it with ``RtspCamera(mjpeg_clip=..., fps=fps)``.
    """
    import cv2  # the venv's OpenCV: decodes the H.264 clip and encodes the JPEGs

    if width % 8 or height % 8:
        raise ValueError(f"MJPEG clip size {width}x{height}: width and height must be multiples of 8")
    out = Path(path) if path else CLIP_DIR / f"{width}x{height}p{fps}-{seconds}s-q{quality}.mjpeg"
    frames = seconds * fps
    if (out / "done").is_file():
        return out
    source = make_clip(width, height, fps, seconds)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log.info("writing %s", out)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG)
    try:
        written = 0
        while written < frames:
            ok, img = cap.read()
            if not ok:
                break
            ok, jpeg = cv2.imencode(".jpg", img, params)
            if not ok:
                raise RuntimeError(f"cv2.imencode failed on frame {written} of {source}")
            (tmp / f"{written:05d}.jpg").write_bytes(jpeg.tobytes())
            written += 1
        if written == 0:
            raise RuntimeError(f"no frames decoded from {source}")
        (tmp / "done").write_text(f"{written}\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)  # a concurrent or interrupted run never sees half a clip
    finally:
        cap.release()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def clip_bytes(clip: Path) -> int:
    """A clip's size in bytes: the .h264 file, or all JPEG frames of an MJPEG clip directory."""
    if clip.is_dir():
        return sum(f.stat().st_size for f in clip.glob("*.jpg"))
    return clip.stat().st_size
