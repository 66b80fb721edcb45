"""Settings: defaults < config.env < environment < flags, every bad value named in one line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from rtsp_kafka_mjpeg.settings import ConsumerSettings, ProducerSettings, SettingsError, WorkerSettings, resolve

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_apply_when_nothing_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config.env in the working directory, no CONFIG_FILE, no flags
    assert not (tmp_path / "config.env").exists()
    s = resolve(ProducerSettings, {"config": None}, {})
    assert s == ProducerSettings()
    assert (s.bootstrap_servers, s.jpeg_quality, s.camera_id) == ("localhost:9092", 80, "cam1")
    assert resolve(ConsumerSettings, {"config": None}, {}) == ConsumerSettings()


def test_environment_beats_config_file_and_flags_beat_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.env"
    cfg.write_text("JPEG_QUALITY=60\nCAMERA_ID=file\nKAFKA_TOPIC=from-file\n")
    env = {"CONFIG_FILE": str(cfg), "JPEG_QUALITY": "70", "CAMERA_ID": "env"}
    s = resolve(ProducerSettings, {"camera_id": "flag"}, env)
    assert (s.topic, s.jpeg_quality, s.camera_id) == ("from-file", 70, "flag")


def test_an_unreadable_config_file_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any file, so the refusal a container's uid gets on a mode-600 file is simulated.
    cfg = tmp_path / "config.env"
    cfg.write_text("JPEG_QUALITY=60\n")

    def refuse(path: str) -> dict[str, str]:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr("rtsp_kafka_mjpeg.settings.dotenv_values", refuse)
    with pytest.raises(SettingsError, match=r"config file '.*config.env' not readable: Permission denied"):
        resolve(ProducerSettings, {"config": str(cfg)}, {})


def test_config_env_lists_every_key_with_its_default() -> None:
    values = dotenv_values(ROOT / "config.env")
    declared = {}
    for cls in (ProducerSettings, ConsumerSettings, WorkerSettings):
        for f in dataclasses.fields(cls):
            declared[f.metadata["key"]] = f.default
    assert set(values) == set(declared)
    for key, default in declared.items():
        shown = ("true" if default else "false") if isinstance(default, bool) else str(default)
        assert values[key] == shown, key


@pytest.mark.parametrize(("env", "needle"), [
    ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
    ({"HTTP_PORT": "abc"}, "HTTP_PORT"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "nohostport"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ({"CAMERA_STALE_S": "-1"}, "CAMERA_STALE_S"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "KAFKA_SASL_MECHANISM"),
])
def test_invalid_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        resolve(ConsumerSettings, {}, {"CONFIG_FILE": str(ROOT / "config.env"), **env})


def test_unknown_key_in_config_file_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.env"
    cfg.write_text("JPEG_QUALTY=60\n")
    with pytest.raises(SettingsError, match="JPEG_QUALTY"):
        resolve(ProducerSettings, {}, {"CONFIG_FILE": str(cfg)})


def test_secret_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(SettingsError) as err:
        resolve(ProducerSettings, {}, {"CONFIG_FILE": str(ROOT / "config.env"), "KAFKA_SASL_PASSWORD": "hunter2",
                                       "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN"})
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("script", ["producer.py", "consumer.py"])
def test_help_documents_every_flag_with_its_key_and_default(script: str) -> None:
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=60)
    cls = ProducerSettings if script == "producer.py" else ConsumerSettings
    text = " ".join(out.stdout.split())
    for f in dataclasses.fields(cls):
        assert f.metadata["flag"] in text
        assert f.metadata["key"] in text
    assert "(default: localhost:9092)" in text


@pytest.mark.parametrize(("args", "needle"), [
    (["--jpeg-quality", "0"], "--jpeg-quality"),
    (["--max-fps", "-5"], "--max-fps"),
    (["--source", "rtsp//nohost"], "--source"),
    (["--source", "rtsp://"], "--source"),
    (["--no-such-flag"], "unrecognized"),
    (["--camera", "door"], "--camera"),
    (["--camera", "door=rtsp://h/1", "--camera", "door=rtsp://h/2"], "given twice"),
    (["--camera", "bad id=rtsp://h/1"], "--camera"),
    (["--kafka-client", "librdkafka"], "--kafka-client"),
])
def test_bad_producer_flags_exit_2_with_one_line(args: list[str], needle: str) -> None:
    out = subprocess.run([sys.executable, "producer.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in out.stderr


def test_readme_settings_table_lists_every_key() -> None:
    readme = (ROOT / "README.md").read_text()
    for key in dotenv_values(ROOT / "config.env"):
        assert f"| `{key}` |" in readme, key


def test_cameras_come_from_repeated_flags_or_one_config_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.env"
    cfg.write_text('CAMERAS="door=rtsp://10.0.0.5/s1 yard=rtsp://u:p@10.0.0.6:554/s2"\n')
    from_file = resolve(ProducerSettings, {"config": str(cfg)}, {})
    assert from_file.camera_sources() == [("door", "rtsp://10.0.0.5/s1"), ("yard", "rtsp://u:p@10.0.0.6:554/s2")]
    flags = {"config": str(cfg), "cameras": ["gate=rtsp://10.0.0.9/a", "shed=rtsp://10.0.0.9/b"]}
    assert [c for c, _ in resolve(ProducerSettings, flags, {}).camera_sources()] == ["gate", "shed"]


def test_one_camera_flags_on_the_command_line_outrank_cameras_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.env"
    cfg.write_text("CAMERAS=door=rtsp://10.0.0.5/s1\n")
    settings = resolve(ProducerSettings, {"config": str(cfg), "source": "rtsp://10.0.0.7/x", "camera_id": "porch"}, {})
    assert settings.camera_sources() == [("porch", "rtsp://10.0.0.7/x")]
    assert resolve(ProducerSettings, {"config": str(cfg)}, {"CAMERA_ID": "x"}).camera_sources()[0][0] == "door"
