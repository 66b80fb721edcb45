"""docker-compose.yml and the Dockerfile agree with config.env (Docker itself is not needed to check)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from dotenv import dotenv_values

from rtsp_kafka_mjpeg.settings import ConsumerSettings, ProducerSettings, resolve

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
CONFIG = dotenv_values(ROOT / "config.env")
APPS = {"producer": ProducerSettings, "consumer": ConsumerSettings}


def env(service: str) -> dict[str, str]:
    raw = SERVICES[service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


def published(service: str) -> dict[int, int]:
    """container port -> host port, from the short "[ip:]host:container" syntax."""
    pairs = (str(p).split(":")[-2:] for p in SERVICES[service].get("ports", []))
    return {int(container): int(host) for host, container in pairs}


def listeners(key: str) -> dict[str, tuple[str, int]]:
    """KAFKA_*LISTENERS of the kafka service as {name: (host, port)}."""
    found = re.findall(r"(\w+)://([^:,]*):(\d+)", env("kafka")[key])
    return {name: (host, int(port)) for name, host, port in found}


def config_port(key: str) -> int:
    return int(str(CONFIG[key]).rsplit(":", 1)[-1])


def test_the_stack_is_kafka_a_camera_a_producer_and_a_consumer() -> None:
    assert set(SERVICES) >= {"kafka", "camera", "producer", "consumer"}


def test_kafka_is_the_official_image_in_kraft_combined_mode_without_zookeeper() -> None:
    kafka = env("kafka")
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    controller_port = listeners("KAFKA_LISTENERS")[kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]][1]
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:{controller_port}"
    assert "zookeeper" not in COMPOSE_TEXT.lower()


def test_every_kafka_listener_has_a_security_protocol_and_brokers_talk_on_an_advertised_one() -> None:
    kafka = env("kafka")
    protocols = dict(pair.split(":") for pair in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners("KAFKA_LISTENERS")) <= set(protocols)
    assert kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners("KAFKA_ADVERTISED_LISTENERS")


def test_host_clients_reach_kafka_at_the_config_env_default() -> None:
    port = config_port("KAFKA_BOOTSTRAP_SERVERS")
    advertised = listeners("KAFKA_ADVERTISED_LISTENERS")
    name = next(n for n, (host, _) in advertised.items() if host == "localhost")
    assert advertised[name][1] == port
    assert published("kafka").get(listeners("KAFKA_LISTENERS")[name][1]) == port


def test_containers_reach_kafka_at_its_in_network_listener() -> None:
    in_network = [f"kafka:{p}" for host, p in listeners("KAFKA_ADVERTISED_LISTENERS").values() if host == "kafka"]
    assert len(in_network) == 1
    for service in APPS:
        assert env(service)["KAFKA_BOOTSTRAP_SERVERS"] == in_network[0]


def test_the_broker_accepts_the_largest_frame_config_env_allows() -> None:
    largest = int(str(CONFIG["KAFKA_MAX_MESSAGE_BYTES"]))
    assert int(env("kafka")["KAFKA_MESSAGE_MAX_BYTES"]) > largest
    assert int(env("kafka")["KAFKA_REPLICA_FETCH_MAX_BYTES"]) > largest


@pytest.mark.parametrize("service", APPS)
def test_app_environment_uses_only_config_env_keys_with_valid_values(service: str) -> None:
    assert set(env(service)) <= set(CONFIG)
    resolve(APPS[service], {}, {"CONFIG_FILE": str(ROOT / "config.env"), **env(service)})


@pytest.mark.parametrize("service", APPS)
def test_app_service_runs_its_script_from_the_project_image(service: str) -> None:
    assert SERVICES[service]["build"] == "."
    assert f"{service}.py" in " ".join(SERVICES[service]["command"])


def test_the_consumer_listens_on_every_interface_at_the_published_config_env_port() -> None:
    port = int(str(CONFIG["HTTP_PORT"]))
    assert env("consumer")["HTTP_HOST"] == "0.0.0.0"
    assert published("consumer") == {port: port}
    assert f"http://127.0.0.1:{port}/" in " ".join(SERVICES["consumer"]["healthcheck"]["test"])


def test_the_producer_reads_the_camera_service_at_a_port_and_path_it_serves() -> None:
    source = urlsplit(env("producer")["CAMERA_SOURCE"])
    mediamtx = yaml.safe_load((ROOT / "docker" / "mediamtx.yml").read_text())
    assert (source.scheme, source.hostname) == ("rtsp", "camera")
    assert source.port == int(mediamtx["rtspAddress"].rsplit(":", 1)[-1])
    assert source.port in published("camera")
    assert source.path.strip("/") in mediamtx["paths"]


def test_long_running_services_restart_and_kafka_and_consumer_report_health() -> None:
    for name, service in SERVICES.items():
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name
    for name in ("kafka", "consumer"):
        assert SERVICES[name]["healthcheck"]["test"], name


@pytest.mark.parametrize("service", APPS)
def test_apps_start_only_once_kafka_is_healthy(service: str) -> None:
    assert SERVICES[service]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_the_image_installs_the_requirements_copies_the_app_and_exposes_http_port() -> None:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    steps = [line.split(None, 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    copied = " ".join(args for op, args in steps if op == "COPY")
    for needed in ("requirements.txt", "producer.py", "consumer.py", "config.env", "rtsp_kafka_mjpeg"):
        assert needed in copied
    assert any(op == "RUN" and "pip install -r requirements.txt" in args for op, args in steps)
    assert [args for op, args in steps if op == "EXPOSE"] == [str(CONFIG["HTTP_PORT"])]
    assert [args for op, args in steps if op == "USER"][-1] not in {"root", "0"}


def test_the_build_context_leaves_out_local_state_but_not_what_the_image_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".venv", ".cache", "artifacts", "tests", "bench", ".git"} <= ignored
    assert not ignored & {"requirements.txt", "producer.py", "consumer.py", "config.env", "rtsp_kafka_mjpeg"}
