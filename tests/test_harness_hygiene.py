"""The harness itself: apps run sealed from the caller's shell, and a secret in an app's log
fails the test that started the app."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, App, app_env, assert_no_secrets_in_logs

from bench.services import baseline_env, project_env
from harness.log_leaks import leaks, secrets_given
from rtsp_kafka_mjpeg.settings import ALL_KEYS

# What a developer's shell might carry: each would change what the apps do.
SHELL = {"VIEWER_TOKEN": "tok-from-the-shell", "JPEG_QUALITY": "5", "LOG_LEVEL": "ERROR",
         "CONFIG_FILE": "/nonexistent/config.env", "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;udp",
         "OPENCV_FFMPEG_LOGLEVEL": "56", "PYTHONPATH": "/nonexistent", "PYTHONWARNINGS": "error",
         "GUNICORN_CMD_ARGS": "--workers 4", "http_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
SETTINGS_PROBE = ("import json; from rtsp_kafka_mjpeg.settings import ProducerSettings, ConsumerSettings, load; "
                  "p = load(ProducerSettings, [], 'p', ''); c = load(ConsumerSettings, [], 'c', ''); "
                  "print(json.dumps([p.jpeg_quality, p.log_level, c.viewer_token]))")


def child_environ(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                         env=env, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("build", [lambda: app_env("127.0.0.1:9092", "t"), lambda: project_env("127.0.0.1:9092", "t"),
                                   lambda: baseline_env("127.0.0.1:9092", "t")], ids=["tests", "bench", "tutorial"])
def test_no_setting_exported_in_the_shell_reaches_an_app(monkeypatch: pytest.MonkeyPatch,
                                                         build: Callable[[], dict[str, str]]) -> None:
    for key in ALL_KEYS:
        monkeypatch.setenv(key, "from-the-shell")
    for key, value in SHELL.items():
        monkeypatch.setenv(key, value)
    env = child_environ(build())
    assert not [k for k, v in env.items() if v == "from-the-shell"]
    assert not {k: env[k] for k in SHELL if env.get(k) == SHELL[k]}
    assert not [k for k in env if k.startswith("OPENCV_") or k.lower().endswith("_proxy")]


def test_apps_resolve_config_env_defaults_whatever_the_shell_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SHELL.items():
        monkeypatch.setenv(key, value)
    out = subprocess.run([sys.executable, "-c", SETTINGS_PROBE], cwd=ROOT, env=app_env("127.0.0.1:9092", "t"),
                         capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(out.stdout) == [80, "INFO", ""]


def test_a_consumer_ignores_a_viewer_token_and_log_level_exported_in_the_shell(
        kafka, topic, start_app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIEWER_TOKEN", "tok-from-the-shell")
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    consumer = start_app("consumer.py", app_env(kafka.bootstrap, topic))
    with urllib.request.urlopen(f"{consumer.url}/api/cameras", timeout=5) as res:
        assert res.status == 200  # no token asked for
    assert " INFO " in consumer.log()  # logging at config.env's INFO, not the shell's ERROR


# -- secrets in logs ----------------------------------------------------------------------------

def test_secrets_are_taken_from_secret_settings_flags_and_url_passwords() -> None:
    env = {"KAFKA_SASL_PASSWORD": "sasl-pw", "VIEWER_TOKEN": "tok-1", "VIEWER_PASSWORD": "vp-1",
           "KAFKA_SASL_USERNAME": "not-a-secret", "CAMERA_SOURCE": "rtsp://u:env%2Fpw@127.0.0.1/cam"}
    args = ["--viewer-token", "tok-2", "--sasl-password=sasl-2", "--source", "rtsp://cam:arg-pw@10.0.0.1:554/x",
            "--camera-id", "door"]
    assert secrets_given(env, args) == {"sasl-pw", "tok-1", "vp-1", "env%2Fpw", "env/pw", "tok-2", "sasl-2", "arg-pw"}


@pytest.mark.parametrize(("line", "leaked"), [
    ("camera rtsp://viewer:***@127.0.0.1:8554/cam: streaming", False),
    ("camera rtsp://viewer:Sup3r-S3cret-pw@127.0.0.1:8554/cam: streaming", True),
    ("login with hunter22 failed", True),
    ("camera http://viewer:x@host/cam", True),
    ("consumer on http://127.0.0.1:5000/ viewers=0", False),
])
def test_a_log_line_is_judged_by_secret_values_and_url_passwords(line: str, leaked: bool) -> None:
    found = leaks(f"first line\n{line}\n", ["hunter22", "Sup3r-S3cret-pw"])
    assert bool(found) is leaked
    assert all(f.startswith("line 2:") and "hunter22" not in f and "Sup3r" not in f for f in found)


def test_an_app_that_logs_its_secret_fails_the_check_its_test_runs_at_teardown(tmp_path: Path) -> None:
    log_path = tmp_path / "leaky.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "print('connecting with token tok-handed-in')"],
                                stdout=out, stderr=subprocess.STDOUT)
        proc.wait(30)
    leaky = App(proc, log_path, secrets=frozenset(secrets_given({"VIEWER_TOKEN": "tok-handed-in"}, [])))
    try:
        with pytest.raises(AssertionError, match=r"leaky\.log"):
            assert_no_secrets_in_logs([leaky])
        log_path.write_bytes(b"connecting with token ***\n")  # truncated in place: the same file
        assert_no_secrets_in_logs([leaky])
    finally:
        leaky.close()
