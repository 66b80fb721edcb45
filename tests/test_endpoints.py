"""The consumer's HTTP surface: stills, go2rtc aliases, /healthz, /metrics, auth and odd requests."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from conftest import CAMERA_H, CAMERA_W, app_env, read_parts, wait_for
from prometheus_client.parser import text_string_to_metric_families

from harness.mjpeg_client import MjpegViewer
from harness.ports import free_port


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def running(kafka, camera, topic, start_app):
    env = app_env(kafka.bootstrap, topic)
    start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    assert wait_for(lambda: get(f"{consumer.url}/snapshot.jpg?camera=door")[0] == 200, 30)
    return consumer


def test_snapshot_returns_the_newest_jpeg_and_404s_unknown_cameras(running) -> None:
    status, headers, body = get(f"{running.url}/snapshot.jpg?camera=door")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (CAMERA_H, CAMERA_W, 3)
    assert get(f"{running.url}/snapshot.jpg?camera=nope")[0] == 404


def test_go2rtc_aliases_serve_the_same_camera(running) -> None:
    status, headers, _ = get(f"{running.url}/api/frame.jpeg?src=door")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    parts = read_parts(f"{running.url}/api/stream.mjpeg?src=door", 5, 10)
    assert len(parts) == 5 and all(p.headers["x-camera-id"] == "door" for p in parts)


def test_healthz_reports_broker_camera_age_and_viewers(running) -> None:
    viewer = MjpegViewer(f"{running.url}/video_feed")
    viewer.read_parts(2, 10)
    status, _, body = get(f"{running.url}/healthz")
    viewer.close()
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["kafka"]["connected"] is True
    assert health["cameras"]["door"]["age_s"] < 2 and health["viewers"] >= 1


def test_metrics_parse_as_prometheus_and_count_frames(running) -> None:
    read_parts(f"{running.url}/video_feed", 10, 10)
    _, headers, body = get(f"{running.url}/metrics")
    assert headers["Content-Type"].startswith("text/plain")
    samples = {(s.name, s.labels.get("camera")): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples[("mjpeg_frames_in_total", "door")] >= 10
    assert samples[("mjpeg_frames_out_total", "door")] >= 10
    assert ("mjpeg_capture_to_hub_seconds_bucket", "door") in samples
    assert ("mjpeg_kafka_connected", None) in samples


@pytest.mark.parametrize("path", ["/video_feed?camera=" + "x" * 5000, "/snapshot.jpg?camera=%00%ff",
                                  "/video_feed?camera=../../etc/passwd", "/nope"])
def test_odd_requests_get_4xx_never_500(running, path: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    conn.request("GET", path)
    assert 400 <= conn.getresponse().status < 500
    conn.close()


def test_oversized_request_headers_get_4xx(running) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    conn.request("GET", "/snapshot.jpg", headers={"X-Long": "a" * 20000})
    assert 400 <= conn.getresponse().status < 500
    conn.close()


def test_viewer_token_and_basic_auth_guard_every_route_but_healthz(kafka, camera, topic, start_app) -> None:
    env = app_env(kafka.bootstrap, topic, VIEWER_TOKEN="tok-3x4mpl3-value", VIEWER_USERNAME="ann",
                  VIEWER_PASSWORD="pw-3x4mpl3-value")
    start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    url = consumer.url
    assert get(f"{url}/healthz")[0] in (200, 503)
    for path in ("/", "/video_feed", "/snapshot.jpg", "/metrics", "/api/cameras"):
        assert get(f"{url}{path}")[0] == 401, path
    assert get(f"{url}/api/cameras?token=wrong")[0] == 401
    assert get(f"{url}/api/cameras?token=tok-3x4mpl3-value")[0] == 200
    assert get(f"{url}/api/cameras", {"Authorization": "Bearer tok-3x4mpl3-value"})[0] == 200
    basic = base64.b64encode(b"ann:pw-3x4mpl3-value").decode()
    assert get(f"{url}/api/cameras", {"Authorization": f"Basic {basic}"})[0] == 200
    wrong = base64.b64encode(b"ann:nope").decode()
    assert get(f"{url}/api/cameras", {"Authorization": f"Basic {wrong}"})[0] == 401
    assert wait_for(lambda: len(read_parts(f"{url}/video_feed?token=tok-3x4mpl3-value", 2, 5)) == 2, 30)


def test_producer_serves_prometheus_metrics_on_its_own_port(kafka, camera, topic, start_app) -> None:
    port = free_port()
    start_app("producer.py", app_env(kafka.bootstrap, topic), "--source", camera.url, "--metrics-port", str(port))

    def published() -> float:
        try:
            _, _, body = get(f"http://127.0.0.1:{port}/metrics")
        except OSError:
            return 0.0
        samples = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        assert samples["producer_camera_streaming"] == 1.0
        return samples["producer_frames_published_total"]

    assert wait_for(lambda: published() >= 20, 30)
