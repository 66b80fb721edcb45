"""Rewind on the real broker: any camera played back from the topic's retention, its retained
spans listed, a span exported as a clip, a still at a moment, and every bad request answered.

One topic (one partition, so the cameras share it as they do on a real cluster with more cameras
than partitions) holds two spans of camera "door" at 10 fps with known capture times, a 15 s
silence between them, and camera "yard" interleaved at 5 fps. One consumer.py serves it.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import ROOT, App, app_env, read_parts, wait_for
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from harness import procs
from harness.ports import free_port, port_open
from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.web.timespec import NS, rfc3339

MS = 1_000_000
FPS = 10
STEP_NS = NS // FPS
SPAN_A_S, SILENCE_S, SPAN_B_S = 20, 15, 10


def jpeg(n: int) -> bytes:
    image = np.full((48, 64, 3), n % 255, np.uint8)
    cv2.putText(image, str(n % 100), (4, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    return cv2.imencode(".jpg", image)[1].tobytes()


@dataclass
class Recorded:
    topic: str
    t0_ns: int  # door's first frame (seq 1)
    consumer: App
    producer: KafkaProducer

    def door_ts(self, seq: int) -> int:
        """Capture time of door's frame `seq` (1-based; span B starts at seq SPAN_A_S*FPS + 1)."""
        if seq <= SPAN_A_S * FPS:
            return self.t0_ns + (seq - 1) * STEP_NS
        return self.t0_ns + (SPAN_A_S + SILENCE_S) * NS + (seq - SPAN_A_S * FPS - 1) * STEP_NS

    def url(self, path: str) -> str:
        return f"{self.consumer.url}{path}"


def send(producer: KafkaProducer, topic: str, frame: Frame) -> None:
    producer.send(topic, frame.jpeg, key=frame.kafka_key(), headers=frame.kafka_headers(),
                  timestamp_ms=frame.capture_ts_ns // MS)


@pytest.fixture(scope="module")
def recorded(kafka, log_dir: Path) -> Iterator[Recorded]:
    topic = f"rewind-{time.time_ns() % 10**9}"
    admin = KafkaAdminClient(**kafka.client_config())
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"retention.ms": "3600000"})])
    admin.close()
    producer = KafkaProducer(**kafka.client_config(), acks="all", linger_ms=5)
    t0 = (time.time_ns() - 120 * NS) // MS * MS  # whole milliseconds, as Kafka keeps them
    rec = Recorded(topic, t0, None, producer)  # type: ignore[arg-type]
    for seq in range(1, (SPAN_A_S + SPAN_B_S) * FPS + 1):
        ts = rec.door_ts(seq)
        send(producer, topic, Frame("door", ts, seq, 64, 48, jpeg(seq)))
        if seq % 2 == 0:
            send(producer, topic, Frame("yard", ts + MS, seq // 2, 64, 48, jpeg(seq + 1)))
    producer.flush()
    port = free_port()
    log_path = log_dir / "test_rewind-consumer.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "consumer.py", "--port", str(port)], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT,
                                env=app_env(kafka.bootstrap, topic, REWIND_GAP_S="5", CLIP_MAX_DURATION_S="60"))
    procs.track(proc)
    rec.consumer = App(proc, log_path, port)
    try:
        assert wait_for(lambda: port_open("127.0.0.1", port), 30), rec.consumer.log()
        yield rec
    finally:
        rec.consumer.stop()
        assert "Traceback" not in rec.consumer.log(), rec.consumer.log()[-3000:]
        rec.consumer.close()
        producer.close()


def get(url: str, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.status, {k.lower(): v for k, v in res.headers.items()}, res.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def test_list_gives_the_retained_spans_split_at_the_silence(recorded: Recorded) -> None:
    status, headers, body = get(recorded.url("/list?camera=door"))
    assert status == 200 and headers["content-type"].startswith("application/json")
    spans = json.loads(body)
    assert [s["start"] for s in spans] == [rfc3339(recorded.t0_ns),
                                          rfc3339(recorded.door_ts(SPAN_A_S * FPS + 1))]
    # partition-level spans: yard's last frame of span A is 1 ms after door's
    assert [round(s["duration"], 1) for s in spans] == [SPAN_A_S - 0.1, SPAN_B_S - 0.1]
    assert get(recorded.url("/list?path=door"))[2] == body  # MediaMTX's path= is an alias


def test_replay_starts_at_the_asked_moment_in_order_at_the_asked_pace(recorded: Recorded) -> None:
    start = recorded.door_ts(51)  # 5 s into span A
    parts = read_parts(recorded.url(f"/video_feed?camera=door&start={rfc3339(start)}&speed=4"), 41, 30)
    assert len(parts) == 41
    assert parts[0].capture_ts_ns == start
    assert {p.headers["x-camera-id"] for p in parts} == {"door"}
    assert [int(p.headers["x-sequence"]) for p in parts] == list(range(51, 92))
    played_s = (parts[-1].received_ns - parts[0].received_ns) / NS
    recorded_s = (parts[-1].capture_ts_ns - parts[0].capture_ts_ns) / NS
    assert played_s == pytest.approx(recorded_s / 4, rel=0.1)  # bench/ holds the 2 % goal


def test_replay_accepts_unix_seconds_and_relative_times(recorded: Recorded) -> None:
    start = recorded.door_ts(101)
    unix = read_parts(recorded.url(f"/video_feed?camera=door&start={start / NS:.3f}&speed=8"), 2, 15)
    assert unix[0].capture_ts_ns == start
    ago_s = (time.time_ns() - recorded.door_ts(SPAN_A_S * FPS + 1)) / NS - 1  # 1 s into span B
    relative = read_parts(recorded.url(f"/video_feed?camera=door&start=-{ago_s:.1f}s&speed=8"), 2, 15)
    assert abs(relative[0].capture_ts_ns - recorded.door_ts(SPAN_A_S * FPS + 11)) <= NS // 2


def test_replay_that_reaches_live_hands_over_without_a_gap_or_a_repeat(recorded: Recorded) -> None:
    stop = threading.Event()
    first_live_seq = 10_001

    def camera() -> None:  # door, live at 10 fps
        seq = first_live_seq
        while not stop.is_set():
            send(recorded.producer, recorded.topic, Frame("door", time.time_ns(), seq, 64, 48, jpeg(seq)))
            recorded.producer.flush()
            seq += 1
            time.sleep(1 / FPS)

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    try:
        time.sleep(3)
        parts = read_parts(recorded.url("/video_feed?camera=door&start=-2s&speed=2"), 60, 30)
    finally:
        stop.set()
        thread.join(5)
    seqs = [int(p.headers["x-sequence"]) for p in parts]
    assert len(parts) == 60 and seqs[0] >= first_live_seq
    assert seqs == list(range(seqs[0], seqs[0] + 60)), "a gap or a repeated frame at the handover"
    last = parts[-1]
    assert (last.received_ns - last.capture_ts_ns) / NS < 1.0, "the replay did not reach live"


def decoded(body: bytes) -> tuple[int, float, str]:
    """(frames, seconds from the first to the last frame, codec) of a clip, decoded by PyAV."""
    with av.open(io.BytesIO(body)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * f.time_base) for f in container.decode(stream)]
        return len(times), max(times) - min(times), stream.codec_context.name


@pytest.mark.parametrize(("fmt", "codec", "ext"), [("mjpeg", "mjpeg", "mkv"), ("mp4", "h264", "mp4")])
def test_a_clip_holds_exactly_the_asked_span_and_decodes(recorded: Recorded, fmt: str, codec: str,
                                                          ext: str) -> None:
    start = recorded.door_ts(21)
    status, headers, body = get(recorded.url(f"/get?camera=door&start={rfc3339(start)}&duration=5&format={fmt}"))
    assert status == 200, body[:200]
    assert f'filename="door_{rfc3339(start).replace(":", "-")}_5s.{ext}"' in headers["content-disposition"]
    frames, seconds, name = decoded(body)
    assert (frames, name) == (5 * FPS, codec)
    assert seconds == pytest.approx(4.9, abs=0.01)


def test_an_mp4_clip_is_fragmented_so_players_start_before_it_ends(recorded: Recorded) -> None:
    start = recorded.door_ts(1)
    _, _, body = get(recorded.url(f"/get?camera=door&start={rfc3339(start)}&duration=10&format=mp4"))
    assert body[4:8] == b"ftyp" and b"moov" in body[:4096] and body.count(b"moof") >= 3
    assert b"mvex" in body[:4096], "no movie-extends box: not a fragmented MP4"


def test_a_still_at_a_moment_is_the_first_frame_captured_then(recorded: Recorded) -> None:
    asked = recorded.door_ts(31) - 50 * MS
    status, headers, body = get(recorded.url(f"/snapshot.jpg?camera=door&time={rfc3339(asked)}"))
    assert status == 200 and body == jpeg(31)
    assert int(headers["x-capture-timestamp-ns"]) == recorded.door_ts(31)


@pytest.mark.parametrize(("query", "status", "needle"), [
    ("/video_feed?camera=door&start=-3h", 404, "before the retained video"),
    ("/video_feed?camera=door&start={gap}", 404, "sent nothing within 5 s"),
    ("/video_feed?camera=door&start=2099-01-01T00:00:00Z", 404, "in the future"),
    ("/snapshot.jpg?camera=door&time={gap}", 404, "sent nothing within 5 s"),
    ("/get?camera=door&start=-3h&duration=5", 404, "before the retained video"),
    ("/video_feed?camera=nobody&start=-30s", 404, "camera 'nobody'"),
    ("/video_feed?camera=door&start=yesterday", 400, "is not RFC 3339"),
    ("/video_feed?camera=door&start=-30s&speed=0", 400, "speed"),
    ("/get?camera=door&start=-30s&duration=0", 400, "duration"),
    ("/get?camera=door&start=-30s&duration=61", 400, "CLIP_MAX_DURATION_S"),
    ("/get?camera=door&start=-30s&duration=5&format=avi", 400, "format"),
    ("/list", 400, "name the camera"),
])
def test_every_bad_time_or_span_gets_its_status_and_one_line(recorded: Recorded, query: str, status: int,
                                                              needle: str) -> None:
    gap = rfc3339(recorded.door_ts(SPAN_A_S * FPS) + 5 * NS)
    code, _, body = get(recorded.url(query.format(gap=gap)), timeout=20)
    text = body.decode()
    assert code == status and needle in text, (code, text)
    assert text.strip().count("\n") == 0, "more than one line"
    if status == 404 and "nobody" not in query:
        assert len(json.loads(text)["retained"]) >= 2  # says what is retained


def history_readers(recorded: Recorded) -> float:
    _, _, body = get(recorded.url("/metrics"))
    for line in body.decode().splitlines():
        if line.startswith("mjpeg_history_readers "):
            return float(line.split()[1])
    raise AssertionError("no mjpeg_history_readers in /metrics")


def test_no_reader_is_left_after_100_clients_that_seek_and_vanish(recorded: Recorded) -> None:
    for i in range(100):
        start = recorded.door_ts(1 + (i * 7) % (SPAN_A_S * FPS))
        parts = read_parts(recorded.url(f"/video_feed?camera=door&start={rfc3339(start)}"), 1, 15)
        assert parts and parts[0].capture_ts_ns == start
    assert wait_for(lambda: history_readers(recorded) == 0, 15), history_readers(recorded)
