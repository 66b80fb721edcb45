"""Hardware video decode (HWACCEL) for the pyav decoder: which device decodes, chosen once at start.

Why: software H.264 decode is most of a producer's CPU (6-8 ms a 720p frame on a small box); a GPU's
decoder (NVIDIA NVDEC through FFmpeg's `cuda` hwaccel, VA-API on Intel/AMD where FFmpeg has it)
does it for a fraction of that. FFmpeg hands the picture back as NV12 (Y, then U and V interleaved),
which the encoder writes as JPEG without a BGR round trip (`Captured.chroma`).

The device is opened once, at start, so that a wrong setting is one line and exit 1 before any
camera opens:
- an explicit kind (`cuda`, `vaapi`, `qsv`) that this PyAV's FFmpeg lacks, or whose device cannot
  be opened (no GPU, no driver, no permission, no `--gpus` in Docker), or that FFmpeg's H.264
  decoder cannot use, is a `HwaccelError`;
- `auto` tries the kinds FFmpeg has, in PREFERENCE order, and decodes in software when none opens,
  with one line naming why each failed.
A camera whose codec the device cannot decode falls back to software under `auto` (one line) and
fails under an explicit kind (its own line; never a silent fallback).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

try:
    import av
except ImportError:  # optional, as for the pyav decoder
    av = None

log = logging.getLogger(__name__)

MODES = ("none", "auto", "cuda", "vaapi", "qsv")
PREFERENCE = ("cuda", "vaapi", "qsv")  # `auto` tries these, where FFmpeg has them
PROBE_CODEC = "h264"  # what cameras send; a device FFmpeg's H.264 decoder cannot use is no use here


class HwaccelError(Exception):
    """HWACCEL names a device that cannot decode here: one line for the user; `reason` is the
    part after the setting (what `auto` lists per kind)."""

    def __init__(self, kind: str, reason: str, hint: str = "") -> None:
        super().__init__(f"HWACCEL={kind}: {reason}{f' ({hint})' if hint else ''}")
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class HwDecoder:
    """A device that opened at start: `kind` (FFmpeg's hwdevice type) and `device` (its node or
    index, "" for the default); `explicit` when the user named it (no fallback to software)."""

    kind: str
    device: str = ""
    explicit: bool = True

    def hwaccel(self) -> Any:
        """PyAV's settings for av.open: decode on the device or fail, never a silent software decode."""
        from av.codec.hwaccel import HWAccel

        # cuda: every camera shares the device's primary context (one context per camera would cost
        # hundreds of MB of GPU memory each)
        options = {"primary_ctx": "1"} if self.kind == "cuda" else None
        return HWAccel(self.kind, self.device or None, allow_software_fallback=False, options=options)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.device}" if self.device else self.kind


def available_kinds() -> list[str]:
    """The hardware device types this PyAV's FFmpeg was built with (not proof a device exists)."""
    if av is None:
        return []
    from av.codec.hwaccel import hwdevices_available

    return list(hwdevices_available())


def _why(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.rstrip(".")


def open_device(kind: str, device: str = "", explicit: bool = True) -> HwDecoder:
    """Open `kind`'s device once for FFmpeg's H.264 decoder, as each camera will; HwaccelError
    with the reason otherwise. The context is released again: each camera opens its own."""
    kinds = available_kinds()
    if av is None:
        raise HwaccelError(kind, "needs PyAV (the av package), which is not installed")
    if kind not in kinds:
        raise HwaccelError(kind, f"the FFmpeg in this PyAV has no {kind}", f"it has: {', '.join(kinds) or 'none'}")
    from av.codec.codec import Codec

    decoder = HwDecoder(kind, device, explicit)
    try:
        decoder.hwaccel().create(Codec(PROBE_CODEC, "r"))
    except NotImplementedError:
        raise HwaccelError(kind, f"FFmpeg's {PROBE_CODEC} decoder cannot decode on {kind} in this build") from None
    except (OSError, av.FFmpegError, RuntimeError, ValueError) as err:
        where = f" {device}" if device else ""
        raise HwaccelError(kind, f"cannot open the {kind} device{where}: {_why(err)}",
                           "no such GPU or driver here, or not passed into the container?") from None
    return decoder


def choose(mode: str, device: str = "") -> HwDecoder | None:
    """The decoder device for HWACCEL=`mode`: None for software. Raises HwaccelError for an
    explicit kind that cannot be used; `auto` says in one line which device it took, or why none."""
    if mode == "none":
        return None
    if mode != "auto":
        decoder = open_device(mode, device)
        log.info("HWACCEL=%s: video decoded on %s", mode, decoder.name)
        return decoder
    reasons = []
    for kind in [k for k in PREFERENCE if k in available_kinds()]:
        try:
            decoder = open_device(kind, device, explicit=False)
        except HwaccelError as err:
            reasons.append(f"{kind}: {err.reason}")
            continue
        log.info("HWACCEL=auto: video decoded on %s", decoder.name)
        return decoder
    log.warning("HWACCEL=auto: no hardware decoder here (%s): decoding in software",
                "; ".join(reasons) or "this PyAV's FFmpeg has no cuda, vaapi or qsv")
    return None
