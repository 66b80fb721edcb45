"""Fault injection on real parts: a camera that dies or hangs, a broker that crashes, a consumer
that restarts. Each test measures how long recovery takes, prints the figures and records them in
artifacts/faults.json (merged with what other runs wrote there).
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import psutil
import pytest
from conftest import CAMERA_FPS, CAMERA_H, CAMERA_W, ROOT, App, app_env, read_parts, wait_for
from playwright.sync_api import Page
from prometheus_client.parser import text_string_to_metric_families

from harness import figures as figures_file
from harness.mjpeg_client import BackgroundViewer, Part
from harness.ports import free_port, port_open
from harness.rtsp_camera import RtspCamera

FIGURES = ROOT / "artifacts" / "faults.json"
CAMERA_BACK_WITHIN_S = 10.0  # a camera that comes back is on screen again within this
BROKER_OUTAGE_S = 60
RSS_GROWTH_LIMIT = 100 * 2**20
STOPPED_LINE = re.compile(r"stopped: (\d+) frames published, (\d+) dropped")


# -- helpers -------------------------------------------------------------------------------------

def record_figures(test: str, figures: dict[str, Any]) -> None:
    """Print the measured figures and merge them into artifacts/faults.json under the test's name."""
    figures_file.record_figures(FIGURES, test, figures)


def count_lines(app: App, needle: str) -> int:
    return sum(needle in line for line in app.log().splitlines())


def seconds(ns: int) -> float:
    return round(ns / 1e9, 2)


def http_status(url: str, timeout: float = 3.0) -> int:
    """The HTTP status of a GET, or 0 when there was no answer in time."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            res.read()
            return res.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def scrape(url: str) -> dict[str, float]:
    """Prometheus samples by name (labels but camera folded in as name{label=value}), summed over cameras."""
    with urllib.request.urlopen(url, timeout=5) as res:
        text = res.read().decode()
    samples: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "camera")
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] += sample.value
    return dict(samples)


def grown(before: dict[str, float], after: dict[str, float], prefix: str) -> float:
    """How much the samples whose key starts with `prefix` grew between two scrapes."""
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))


def sequences(parts: list[Part]) -> list[int]:
    return [int(p.headers["x-sequence"]) for p in parts]


def strictly_increasing(values: list[int]) -> bool:
    return all(a < b for a, b in pairwise(values))


class Checks:
    """Collects every unmet expectation of a test, so one run reports all of them at once."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def expect(self, ok: bool, message: str) -> None:
        if not ok:
            self.failed.append(message)

    def verify(self, **logs: str) -> None:
        tails = "".join(f"\n--- {name} log ---\n{text[-6000:]}" for name, text in logs.items())
        assert not self.failed, "\n".join(["", *self.failed]) + tails


@pytest.fixture
def recorders() -> Iterator[list[BackgroundViewer]]:
    opened: list[BackgroundViewer] = []
    yield opened
    for recorder in opened:
        recorder.close()


def camera_sessions(app: App, camera_port: int) -> set[int]:
    """Local ports of the app's established TCP connections to the camera: one per RTSP session,
    so a new one means a (re-)open attempt is under way, answered by the camera or not."""
    conns = psutil.Process(app.proc.pid).net_connections(kind="tcp")
    return {c.laddr.port for c in conns
            if c.raddr and c.raddr.port == camera_port and c.status == psutil.CONN_ESTABLISHED}


def wait_reopening(app: App, camera_port: int, old: set[int]) -> None:
    """Block until the app has opened a camera session other than `old` (deadline 20 s)."""
    assert wait_for(lambda: bool(camera_sessions(app, camera_port) - old), 20, 0.05), \
        f"the producer never tried to reopen the camera\n{app.log()}"


def wait_streaming(consumer: App, producer: App, camera_id: str = "door") -> None:
    assert wait_for(lambda: len(read_parts(f"{consumer.url}/video_feed?camera={camera_id}", 1, 5)) == 1, 40), \
        f"no frame reached the consumer\n--- producer ---\n{producer.log()}\n--- consumer ---\n{consumer.log()}"


def watched_stack(env: dict[str, str], cam: RtspCamera, start_app: Any,
                  recorders: list[BackgroundViewer]) -> tuple[App, App, BackgroundViewer]:
    """Producer + consumer on `cam`, and a viewer already receiving frames."""
    producer = start_app("producer.py", env, "--source", cam.url, "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    wait_streaming(consumer, producer)
    recorder = BackgroundViewer(f"{consumer.url}/video_feed?camera=door")
    recorders.append(recorder)
    assert wait_for(lambda: len(recorder.parts) >= 10, 15), "viewer got no frames before the fault"
    return producer, consumer, recorder


# -- 1. camera killed and restarted ---------------------------------------------------------------

@pytest.mark.slow
def test_producer_rides_out_a_camera_crash_and_video_resumes_within_seconds_of_its_return(
        kafka, topic, start_app, recorders) -> None:
    cam = RtspCamera(port=free_port(), width=CAMERA_W, height=CAMERA_H, fps=CAMERA_FPS)
    cam.start()
    try:
        producer, consumer, recorder = watched_stack(app_env(kafka.bootstrap, topic), cam, start_app, recorders)

        killed_ns = time.time_ns()
        cam.kill()
        assert wait_for(lambda: count_lines(producer, ": reconnecting") >= 1, 15), producer.log()
        detected_s = seconds(time.time_ns() - killed_ns)
        # The outage lasts 3 s (the fault's length, not a wait for anything), /healthz sampled at
        # 4 Hz throughout: the camera is dark, the broker fine all along.
        health = []
        dark_until = time.monotonic() + 3
        while time.monotonic() < dark_until:
            health.append(http_status(f"{consumer.url}/healthz"))
            time.sleep(0.25)
        assert producer.proc.poll() is None, f"producer exited while the camera was down:\n{producer.log()}"

        restart_ns = time.time_ns()  # anything captured after this comes from the restarted camera
        cam.start()
        back_ns = time.time_ns()
        first = recorder.wait_captured_after(restart_ns, 30)
        assert first is not None, f"no new frame within 30 s of the camera's return\n{producer.log()}"
        recovery_s = seconds(first.received_ns - back_ns)
        assert wait_for(lambda: len([p for p in recorder.parts if p.capture_ts_ns > restart_ns]) >= 20, 10)
        alive = producer.proc.poll() is None
        log_text = producer.log()  # before the camera goes away for good
    finally:
        cam.close()

    parts = recorder.parts
    figures = {"camera_down_s": seconds(back_ns - killed_ns), "loss_detected_s": detected_s,
               "recovery_s": recovery_s, "frames_before": sum(p.capture_ts_ns < killed_ns for p in parts),
               "frames_after": sum(p.capture_ts_ns > restart_ns for p in parts),
               "healthz_during_camera_outage": dict(Counter(health))}
    record_figures("camera_restart", figures)

    lines = log_text.splitlines()
    check = Checks()
    check.expect(alive, "the producer exited after a camera crash")
    check.expect(sum(": reconnecting" in line for line in lines) == 1, "'reconnecting' not logged exactly once")
    check.expect(sum(": streaming" in line for line in lines) == 2,  # at start-up and after the return
                 "'streaming' not logged again (exactly once) after the camera returned")
    check.expect("Traceback" not in log_text, "a traceback in the producer log")
    check.expect(recorder.closed_ns is None, "the consumer dropped the viewer during the camera outage")
    check.expect(strictly_increasing(sequences(parts)), f"x-sequence not increasing: {sequences(parts)}")
    check.expect(recovery_s <= CAMERA_BACK_WITHIN_S,
                 f"video back {recovery_s} s after the camera returned (limit {CAMERA_BACK_WITHIN_S} s)")
    check.expect(set(health) == {200}, f"/healthz said {dict(Counter(health))} during a camera outage although "
                                       "the broker was reachable all along (it must report broker connectivity)")
    check.verify(producer=log_text, consumer=consumer.log())


# -- 2. camera that hangs -------------------------------------------------------------------------

@pytest.mark.slow
def test_producer_detects_a_hung_camera_stays_responsive_and_recovers_when_it_resumes(
        kafka, topic, start_app, recorders) -> None:
    read_timeout_s = 2.0
    cam = RtspCamera(port=free_port(), width=CAMERA_W, height=CAMERA_H, fps=CAMERA_FPS)
    cam.start()
    cam_pid = cam.pid
    assert cam_pid is not None
    stopped = False
    try:
        env = app_env(kafka.bootstrap, topic, SOURCE_READ_TIMEOUT_S=str(read_timeout_s))
        producer, _consumer, recorder = watched_stack(env, cam, start_app, recorders)

        # The camera freezes mid-stream: its TCP connection stays open but carries nothing.
        streaming = camera_sessions(producer, cam.port)
        frozen_ns = time.time_ns()
        os.kill(cam_pid, signal.SIGSTOP)
        stopped = True
        assert wait_for(lambda: count_lines(producer, ": reconnecting") >= 1, read_timeout_s + 20, 0.05), \
            f"the producer never noticed the hung camera\n{producer.log()}"
        detected_s = seconds(time.time_ns() - frozen_ns)
        last_before_hang = max(p.capture_ts_ns for p in recorder.parts)
        wait_reopening(producer, cam.port, streaming)  # gave up the frozen session, retrying
        assert producer.proc.poll() is None, producer.log()

        resumed_ns = time.time_ns()
        os.kill(cam_pid, signal.SIGCONT)
        stopped = False
        first = recorder.wait_captured_after(resumed_ns, 40)
        assert first is not None, f"no frame within 40 s of the camera resuming\n{producer.log()}"
        recovery_s = seconds(first.received_ns - resumed_ns)

        # Hang it again and stop the producer while it waits on the frozen camera.
        streaming = camera_sessions(producer, cam.port)
        os.kill(cam_pid, signal.SIGSTOP)
        stopped = True
        assert wait_for(lambda: count_lines(producer, ": reconnecting") >= 2, read_timeout_s + 20, 0.05), \
            producer.log()
        wait_reopening(producer, cam.port, streaming)  # inside a re-open the camera will never answer
        term_at = time.monotonic()
        producer.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = producer.wait(30)
        except Exception:  # noqa: BLE001 - a hang is the failure we are looking for
            code = None
        exit_s = round(time.monotonic() - term_at, 2)
    finally:
        if stopped:
            os.kill(cam_pid, signal.SIGCONT)
        cam.close()

    parts = recorder.parts
    # Frames "captured" while the camera was frozen are stale pictures stamped with a fresh time.
    ghost = [p for p in parts if frozen_ns + 10**9 < p.capture_ts_ns < resumed_ns]
    figures = {"read_timeout_s": read_timeout_s, "hang_detected_s": detected_s, "recovery_after_resume_s": recovery_s,
               "frames_stamped_during_hang": len(ghost),
               "last_frame_stamped_after_freeze_s": seconds(last_before_hang - frozen_ns),
               "sigterm_exit_s_while_camera_hung": exit_s, "exit_code": code}
    record_figures("camera_hang", figures)

    check = Checks()
    check.expect(detected_s <= read_timeout_s + 3,
                 f"hung camera noticed after {detected_s} s with SOURCE_READ_TIMEOUT_S={read_timeout_s:g}")
    check.expect(not ghost, f"{len(ghost)} frames published with capture times while the camera was frozen")
    check.expect(recovery_s <= CAMERA_BACK_WITHIN_S, f"video back {recovery_s} s after the camera resumed")
    check.expect(code == 0, f"producer exit code {code} after SIGTERM while the camera hung")
    check.expect(exit_s <= 6.0, f"producer took {exit_s} s to exit on SIGTERM while the camera hung")
    check.expect("Traceback" not in producer.log(), "a traceback in the producer log")
    check.verify(producer=producer.log())


@pytest.mark.slow
def test_a_camera_that_never_answers_at_start_up_fails_with_one_error_line_in_bounded_time(
        kafka, topic, start_app) -> None:
    open_timeout_s = 3.0
    cam = RtspCamera(hang=True)
    cam.start()
    try:
        env = app_env(kafka.bootstrap, topic, SOURCE_OPEN_TIMEOUT_S=str(open_timeout_s))
        started = time.monotonic()
        producer = start_app("producer.py", env, "--source", cam.url, "--camera-id", "door")
        try:
            code: int | None = producer.wait(open_timeout_s + 10)
        except Exception:  # noqa: BLE001 - still running is the failure
            code = None
        elapsed = round(time.monotonic() - started, 2)
    finally:
        cam.close()

    record_figures("camera_never_answers", {"open_timeout_s": open_timeout_s, "exit_s": elapsed, "exit_code": code})
    text = producer.log()
    # Everything but our own INFO lines is what an operator has to read: it must be the one error.
    not_info = [line for line in text.strip().splitlines() if " INFO " not in line]
    check = Checks()
    check.expect(code not in (None, 0), f"exit code {code} after {elapsed} s (limit {open_timeout_s + 10:g} s)")
    check.expect(len(not_info) == 1 and "cannot open video source" in not_info[0],
                 f"expected exactly one error line, got {len(not_info)}: {not_info}")
    check.expect("Traceback" not in text, "a traceback in the producer log")
    check.verify(producer=text)


# -- 3. broker crash ------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_broker_crash_is_ridden_out_with_bounded_memory_and_the_open_stream_resumes(
        crash_broker, camera, topic, start_app, recorders) -> None:
    broker = crash_broker
    metrics_port = free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    env = app_env(broker.bootstrap, topic, PRODUCER_METRICS_PORT=str(metrics_port))
    producer = start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    wait_streaming(consumer, producer)
    assert http_status(f"{consumer.url}/healthz") == 200
    recorder = BackgroundViewer(f"{consumer.url}/video_feed?camera=door")
    recorders.append(recorder)
    assert wait_for(lambda: len(recorder.parts) >= 20, 15), "viewer got no frames before the crash"
    proc = psutil.Process(producer.proc.pid)

    rss_start = proc.memory_info().rss
    at_kill = scrape(metrics_url)
    killed_ns = time.time_ns()
    broker.kill()
    rss: list[int] = []
    health: list[tuple[float, int]] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < BROKER_OUTAGE_S:
        assert producer.proc.poll() is None, f"producer died during the outage:\n{producer.log()}"
        rss.append(proc.memory_info().rss)
        health.append((round(time.monotonic() - t0, 1), http_status(f"{consumer.url}/healthz")))
        # Paces the sampling at 1 Hz over the outage's fixed length; nothing is waited for.
        time.sleep(max(0.0, len(rss) - (time.monotonic() - t0)))
    rss_end_outage = proc.memory_info().rss
    at_restart = scrape(metrics_url)
    parts_in_outage = [p for p in recorder.parts if p.received_ns > killed_ns + 2 * 10**9]

    restart_ns = time.time_ns()
    broker.start()
    ready_ns = time.time_ns()
    first = recorder.wait_captured_after(killed_ns, 60)
    assert first is not None, (f"no frame reached the open stream within 60 s of the broker's return\n"
                               f"--- producer ---\n{producer.log()}\n--- consumer ---\n{consumer.log()}")
    assert wait_for(lambda: http_status(f"{consumer.url}/healthz") == 200, 30), consumer.log()
    healthy_ns = time.time_ns()
    # Steady state after recovery: of the first 3 s worth of frames, judge the last 2 s worth.
    recovered = wait_for(lambda: len([p for p in recorder.parts if p.received_ns > healthy_ns]) >= CAMERA_FPS * 3,
                         20)
    live = [p for p in recorder.parts if p.received_ns > healthy_ns][-CAMERA_FPS * 2:]
    worst_age_ms = max(((p.received_ns - p.capture_ts_ns) / 1e6 for p in live), default=float("inf"))
    fresh_seqs = sequences([p for p in recorder.parts if p.capture_ts_ns > killed_ns])

    assert producer.proc.poll() is None, producer.log()
    producer_code = producer.stop()
    stopped = STOPPED_LINE.search(producer.log())
    published, dropped = (int(stopped[1]), int(stopped[2])) if stopped else (-1, -1)

    first_503 = next((t for t, status in health if status == 503), None)
    captured = grown(at_kill, at_restart, "producer_frames_captured")
    send_dropped = (grown(at_kill, at_restart, "producer_frames_dropped_total{reason=send_failed")
                    + grown(at_kill, at_restart, "producer_frames_dropped_total{reason=backpressure"))
    superseded = grown(at_kill, at_restart, "producer_frames_dropped_total{reason=superseded_before_encode")
    figures = {"outage_s": seconds(restart_ns - killed_ns), "broker_restart_s": seconds(ready_ns - restart_ns),
               "producer_rss_start_mb": round(rss_start / 2**20, 1), "producer_rss_max_mb": round(max(rss) / 2**20, 1),
               "producer_rss_end_of_outage_mb": round(rss_end_outage / 2**20, 1),
               "producer_rss_growth_mb": round((max(rss) - rss_start) / 2**20, 1),
               "first_frame_after_broker_ready_s": seconds(first.received_ns - ready_ns),
               "first_frame_age_ms": round((first.received_ns - first.capture_ts_ns) / 1e6),
               "worst_age_after_recovery_ms": round(worst_age_ms), "healthz_503_after_s": first_503,
               "healthz_200_after_broker_ready_s": seconds(healthy_ns - ready_ns),
               "healthz_unanswered_samples": sum(status == 0 for _, status in health),
               "frames_published": published, "frames_dropped": dropped,
               "outage_frames_captured": captured, "outage_frames_dropped_unsendable": send_dropped,
               "outage_frames_superseded_before_encode": superseded,
               "fresh_frames_on_open_stream": len(fresh_seqs)}
    record_figures("broker_crash", figures)

    plog, clog = producer.log(), consumer.log()
    check = Checks()
    check.expect(max(rss) - rss_start < RSS_GROWTH_LIMIT, f"producer RSS grew {figures['producer_rss_growth_mb']} MB")
    check.expect("Kafka delivery failing" in plog, "the producer did not log that delivery is failing")
    check.expect("Kafka delivery resumed" in plog, "the producer did not log that delivery resumed")
    check.expect(producer_code == 0 and stopped is not None, f"producer exit {producer_code} / no 'stopped:' line")
    check.expect(dropped >= 0.5 * CAMERA_FPS * BROKER_OUTAGE_S,
                 f"only {dropped} frames counted as dropped over a {BROKER_OUTAGE_S} s outage at {CAMERA_FPS} fps")
    # Kept capturing, and the frames it could not send were dropped at the publisher (counted), not
    # piled up behind a blocked send: a blocked pipeline shows up as frames superseded before encode.
    check.expect(captured >= 0.8 * CAMERA_FPS * BROKER_OUTAGE_S,
                 f"only {captured:.0f} frames captured over a {BROKER_OUTAGE_S} s broker outage")
    check.expect(send_dropped >= 0.8 * captured - CAMERA_FPS * 6,  # the last delivery timeout's worth may be pending
                 f"{send_dropped:.0f} of {captured:.0f} frames captured in the outage dropped as unsendable")
    check.expect(superseded <= 0.1 * captured, f"{superseded:.0f} of {captured:.0f} frames superseded before encode: "
                                               "the pipeline was blocked")
    check.expect(not parts_in_outage, f"{len(parts_in_outage)} frames reached the viewer with the broker down")
    check.expect(recorder.closed_ns is None, "the viewer's connection was closed during the outage")
    check.expect(len(fresh_seqs) >= CAMERA_FPS and strictly_increasing(fresh_seqs),
                 f"the open stream did not carry new frames in order: {fresh_seqs}")
    check.expect(recovered, f"fewer than {CAMERA_FPS * 3} frames within 20 s of /healthz saying 200 again")
    check.expect(worst_age_ms < 1000, f"frames {worst_age_ms:.0f} ms old after recovery: a stale backlog")
    check.expect(figures["first_frame_after_broker_ready_s"] <= 15, "frames took more than 15 s to flow again")
    check.expect(first_503 is not None, f"/healthz never said 503 with the broker down: {health}")
    check.expect(first_503 is None or all(status == 503 for t, status in health if t >= first_503),
                 f"/healthz not steadily 503 during the outage: {health}")
    check.expect("Kafka subscriber lost the brokers" in clog, "the consumer did not log losing the brokers")
    check.expect(count_lines(consumer, "Kafka subscriber connected") >= 2, "the consumer did not log reconnecting")
    check.expect("Traceback" not in plog and "Traceback" not in clog, "a traceback in a log")
    check.verify(producer=plog, consumer=clog)


# -- 4. consumer restart, seen from a browser --------------------------------------------------------

def picture_is_live(page: Page, gap_ms: int = 500) -> bool:
    """The tile shows a decoded image and it changes: two element screenshots differ."""
    img = page.locator(".tile img")
    if not page.eval_on_selector(".tile img", "i => i.naturalWidth > 0"):
        return False
    first = img.screenshot()
    page.wait_for_timeout(gap_ms)  # the measurement's window: "live" means it changes within it
    second = img.screenshot()
    return first != second and page.eval_on_selector(".tile img", "i => i.naturalWidth > 0")


@pytest.mark.slow
def test_an_open_index_page_shows_live_video_again_after_a_consumer_restart_without_reloading(
        kafka, camera, topic, start_app, browser_page) -> None:
    env = app_env(kafka.bootstrap, topic)
    producer = start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    port = consumer.port
    assert port is not None
    wait_streaming(consumer, producer)

    page = browser_page
    page.goto(f"{consumer.url}/", wait_until="commit")
    page.wait_for_function("() => { const i = document.querySelector('.tile img'); return i && i.naturalWidth > 0 }",
                           timeout=20000)
    assert wait_for(lambda: picture_is_live(page), 10, 0), "video not live before the restart"
    page.evaluate("() => { window.sameDocument = true }")

    assert consumer.stop() is not None
    assert not port_open("127.0.0.1", port)
    page.wait_for_function("() => document.body.innerText.includes('Viewer unreachable')", timeout=10000)
    dead_frozen = not picture_is_live(page)

    started = time.monotonic()
    restarted = start_app("consumer.py", env, "--port", str(port), wait_http=False)
    assert wait_for(lambda: port_open("127.0.0.1", port) or restarted.proc.poll() is not None, 30, 0.05)
    listening_s = round(time.monotonic() - started, 2)
    assert restarted.proc.poll() is None, restarted.log()
    live_again = wait_for(lambda: picture_is_live(page), 30, 0)
    live_s = round(time.monotonic() - started, 2)
    same_document = page.evaluate("() => window.sameDocument === true")
    size = page.eval_on_selector(".tile img", "i => [i.naturalWidth, i.naturalHeight]")

    record_figures("consumer_restart_browser", {"consumer_listening_s": listening_s, "picture_live_again_s": live_s,
                                                "picture_live_after_listening_s": round(live_s - listening_s, 2)})
    check = Checks()
    check.expect(dead_frozen, "the picture kept changing with the consumer stopped")
    check.expect(live_again, f"the page never showed live video again ({live_s} s)")
    check.expect(same_document, "the page was reloaded")
    check.expect(size == [CAMERA_W, CAMERA_H], f"picture size {size}")
    check.expect(live_s <= 15, f"live again only {live_s} s after the consumer restarted")
    check.verify(consumer=restarted.log())
