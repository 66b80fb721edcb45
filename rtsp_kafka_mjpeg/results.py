"""The analytics result record: one JSON object per processed frame on the results topic.

Key = camera id (UTF-8), value = UTF-8 JSON, so plain ``kcat -C -t camera-events`` reads it.
The worker builds it with ``result_record``; consumer.py reads it back with ``parse_result``.
Schema (``"v": 1``; fields are only ever added)::

    {"v": 1, "camera": "door", "capture_ts_ns": 1764211200123456789, "seq": 4711,
     "source": {"topic": "camera-frames", "partition": 3, "offset": 98765},
     "processor": "motion", "processing_ms": 2.41, "worker": "host:1234",
     "output": {...whatever the processor returned...}}
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

SCHEMA_VERSION = 1
MAX_RESULT_BYTES = 256 * 1024  # a result is a few hundred bytes; anything near this is a processor bug
# built once: json.dumps with any non-default argument builds a new encoder for every call
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class BadResult(ValueError):
    """A record on the results topic that is not a result we can show."""


class Unserializable(TypeError):
    """A processor returned something JSON cannot carry (or too much of it)."""


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    """What a processor is told about the frame besides its pixels."""

    camera_id: str
    seq: int
    capture_ts_ns: int
    width: int
    height: int
    topic: str
    partition: int
    offset: int


def result_record(info: FrameInfo, processor: str, processing_ms: float, worker: str,
                  output: dict[str, Any]) -> bytes:
    """The JSON value for one processed frame; raises Unserializable for output JSON cannot hold
    (NaN and infinities included: browsers' JSON.parse rejects them)."""
    record = {
        "v": SCHEMA_VERSION,
        "camera": info.camera_id,
        "capture_ts_ns": info.capture_ts_ns,
        "seq": info.seq,
        "source": {"topic": info.topic, "partition": info.partition, "offset": info.offset},
        "processor": processor,
        "processing_ms": round(processing_ms, 3),
        "worker": worker,
        "output": output,
    }
    try:
        value = _ENCODER.encode(record).encode()
    except (TypeError, ValueError) as err:
        raise Unserializable(str(err)) from None
    if len(value) > MAX_RESULT_BYTES:
        raise Unserializable(f"{len(value)} bytes of JSON (limit {MAX_RESULT_BYTES})")
    return value


def parse_result(value: bytes | None) -> dict[str, Any]:
    """A result record's JSON as a dict with the fields the page needs; BadResult otherwise."""
    if not value:
        raise BadResult("empty record")
    if len(value) > MAX_RESULT_BYTES:
        raise BadResult(f"{len(value)} bytes, over {MAX_RESULT_BYTES}")
    try:
        record = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        raise BadResult("not JSON") from None
    if not isinstance(record, dict):
        raise BadResult("not a JSON object")
    camera, ts, output = record.get("camera"), record.get("capture_ts_ns"), record.get("output")
    if not isinstance(camera, str) or not camera:
        raise BadResult("no camera")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
        raise BadResult("no capture_ts_ns")
    if not isinstance(output, dict):
        raise BadResult("no output object")
    if not isinstance(record.get("processor"), str):
        raise BadResult("no processor")
    return record
