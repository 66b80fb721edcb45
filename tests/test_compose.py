"""docker-compose.yml, the Dockerfile and the demo camera's config agree with config.env, the test
harness and the images they name (Docker itself is not needed to check; the broker's configuration
is run for real in test_compose_broker.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_file import Binding, environment, interpolate, load, published, variables_used
from dotenv import dotenv_values

from harness.kafka_broker import DEFAULT_VERSION
from rtsp_kafka_mjpeg.settings import ConsumerSettings, ProducerSettings, resolve

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = load()
SERVICES: dict[str, Any] = COMPOSE["services"]
CONFIG = dotenv_values(ROOT / "config.env")
APPS = {"producer": ProducerSettings, "consumer": ConsumerSettings}
MEDIAMTX = yaml.safe_load((ROOT / "docker" / "mediamtx.yml").read_text())
APP_IMAGE = SERVICES["consumer"]["image"]


def env(service: str) -> dict[str, str]:
    return environment(SERVICES[service])


def container_ports(service: str, variables: dict[str, str] | None = None) -> dict[int, Binding]:
    """container port -> its host binding, with the given compose variables set."""
    return {b.container_port: b for b in published(load(variables)["services"][service])}


def listeners(key: str) -> dict[str, tuple[str, int]]:
    """KAFKA_*LISTENERS of the kafka service as {name: (host, port)}."""
    found = re.findall(r"(\w+)://([^:,]*):(\d+)", env("kafka")[key])
    return {name: (host, int(port)) for name, host, port in found}


def config_port(key: str) -> int:
    return int(str(CONFIG[key]).rsplit(":", 1)[-1])


def dockerfile_steps() -> list[tuple[str, str]]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [tuple(line.split(None, 1)) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def readme_docker_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("\n## Docker\n", 1)[1].split("\n## ", 1)[0]


def mediamtx_release_keys(version: str) -> dict[str, set[str]]:
    """The vendored key list of that MediaMTX release, by section (see the file's header)."""
    sections: dict[str, set[str]] = {}
    for line in (ROOT / "tests" / f"mediamtx_v{version}_keys.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            section, key = line.split(" ", 1)
            sections.setdefault(section, set()).add(key)
    return sections


# --- the services -------------------------------------------------------------------------------


def test_the_stack_is_kafka_a_camera_a_producer_and_a_consumer() -> None:
    assert set(SERVICES) >= {"kafka", "camera", "producer", "consumer"}


def test_exactly_one_service_builds_the_app_image_and_rebuilds_it_on_every_up() -> None:
    # Two services building one tag race in Compose's bake build ("image already exists").
    assert [name for name, service in SERVICES.items() if "build" in service] == ["consumer"]
    assert SERVICES["consumer"]["build"] == "."
    assert SERVICES["consumer"]["pull_policy"] == "build"


def test_the_producer_runs_the_built_image_without_pulling_it_and_after_its_build() -> None:
    producer = SERVICES["producer"]
    assert producer["image"] == APP_IMAGE
    assert producer["pull_policy"] == "never"
    assert "consumer" in producer["depends_on"]


@pytest.mark.parametrize("service", APPS)
def test_app_service_runs_its_script(service: str) -> None:
    assert SERVICES[service]["command"] == ["python", f"{service}.py"]


def test_long_running_services_restart_and_kafka_and_consumer_report_health() -> None:
    for name, service in SERVICES.items():
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name
    for name in ("kafka", "consumer"):
        assert SERVICES[name]["healthcheck"]["test"], name


@pytest.mark.parametrize("service", APPS)
def test_apps_start_only_once_kafka_is_healthy(service: str) -> None:
    assert SERVICES[service]["depends_on"]["kafka"]["condition"] == "service_healthy"


# --- Kafka --------------------------------------------------------------------------------------


def test_kafka_runs_the_version_the_tests_run() -> None:
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{DEFAULT_VERSION}"


def test_kafka_is_the_official_image_in_kraft_combined_mode_without_zookeeper() -> None:
    kafka = env("kafka")
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    controller_port = listeners("KAFKA_LISTENERS")[kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]][1]
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:{controller_port}"
    assert SERVICES["kafka"]["hostname"] == "kafka"
    assert "zookeeper" not in COMPOSE_TEXT.lower()


def test_every_kafka_listener_has_a_security_protocol_and_brokers_talk_on_an_advertised_one() -> None:
    kafka = env("kafka")
    protocols = dict(pair.split(":") for pair in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners("KAFKA_LISTENERS")) <= set(protocols)
    assert kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners("KAFKA_ADVERTISED_LISTENERS")


def test_host_clients_reach_kafka_at_the_config_env_default_on_loopback_only() -> None:
    port = config_port("KAFKA_BOOTSTRAP_SERVERS")
    advertised = listeners("KAFKA_ADVERTISED_LISTENERS")
    name = next(n for n, (host, _) in advertised.items() if host == "localhost")
    assert advertised[name][1] == port
    assert container_ports("kafka")[listeners("KAFKA_LISTENERS")[name][1]] == Binding("127.0.0.1", port, port)


def test_containers_reach_kafka_at_its_in_network_listener() -> None:
    in_network = [f"kafka:{p}" for host, p in listeners("KAFKA_ADVERTISED_LISTENERS").values() if host == "kafka"]
    assert len(in_network) == 1
    for service in APPS:
        assert env(service)["KAFKA_BOOTSTRAP_SERVERS"] == in_network[0]


def test_the_broker_accepts_the_largest_frame_config_env_allows() -> None:
    largest = int(str(CONFIG["KAFKA_MAX_MESSAGE_BYTES"]))
    assert int(env("kafka")["KAFKA_MESSAGE_MAX_BYTES"]) > largest
    assert int(env("kafka")["KAFKA_REPLICA_FETCH_MAX_BYTES"]) > largest


# --- published ports ----------------------------------------------------------------------------


def test_every_published_port_is_bound_to_loopback_unless_told_otherwise() -> None:
    for name in SERVICES:
        for binding in container_ports(name).values():
            assert binding.host_ip == "127.0.0.1", name


def test_the_viewer_page_is_published_on_a_chosen_host_port_and_address() -> None:
    http_port = int(str(CONFIG["HTTP_PORT"]))
    assert env("consumer")["HTTP_HOST"] == "0.0.0.0"  # inside the container; `ports` binds the host side
    assert env("consumer")["HTTP_PORT"] == str(http_port)
    assert container_ports("consumer") == {http_port: Binding("127.0.0.1", http_port, http_port)}
    chosen = container_ports("consumer", {"HTTP_HOST_PORT": "5050", "HTTP_BIND": "0.0.0.0"})
    assert chosen == {http_port: Binding("0.0.0.0", 5050, http_port)}
    assert f"http://127.0.0.1:{http_port}/" in " ".join(SERVICES["consumer"]["healthcheck"]["test"])


def test_the_camera_is_published_on_loopback_at_a_chosen_host_port() -> None:
    assert container_ports("camera") == {8554: Binding("127.0.0.1", 8554, 8554)}
    assert container_ports("camera", {"RTSP_HOST_PORT": "8555", "HTTP_BIND": "0.0.0.0"}) == {
        8554: Binding("127.0.0.1", 8555, 8554)
    }


def test_compose_variables_fall_back_to_their_documented_defaults_when_empty() -> None:
    assert interpolate("${HTTP_HOST_PORT:-5000}", {"HTTP_HOST_PORT": ""}) == "5000"


# --- settings: config.env mounted at run time, never baked into the image -----------------------


@pytest.mark.parametrize("service", APPS)
def test_app_environment_uses_only_config_env_keys_with_valid_values(service: str) -> None:
    assert set(env(service)) <= set(CONFIG)
    resolve(APPS[service], {}, {"CONFIG_FILE": str(ROOT / "config.env"), **env(service)})


@pytest.mark.parametrize("service", APPS)
def test_app_services_mount_config_env_read_only_where_the_app_looks_for_it(service: str) -> None:
    workdir = [args for op, args in dockerfile_steps() if op == "WORKDIR"][-1]
    assert SERVICES[service]["volumes"] == [f"./config.env:{workdir}/config.env:ro"]


@pytest.mark.parametrize("service", APPS)
def test_the_image_runs_on_built_in_defaults_without_config_env(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # like the image's /app: no config.env there
    settings = resolve(APPS[service], {}, env(service))
    assert settings.bootstrap_servers == env(service)["KAFKA_BOOTSTRAP_SERVERS"]


def test_the_image_copies_the_app_but_never_config_env() -> None:
    steps = dockerfile_steps()
    copied = " ".join(args for op, args in steps if op in {"COPY", "ADD"})
    for needed in ("requirements.txt", "producer.py", "consumer.py", "rtsp_kafka_mjpeg"):
        assert needed in copied
    assert "config.env" not in copied
    assert not any(op in {"COPY", "ADD"} and args.split()[0] == "." for op, args in steps)
    assert any(op == "RUN" and "pip install -r requirements.txt" in args for op, args in steps)
    assert [args for op, args in steps if op == "EXPOSE"] == [str(CONFIG["HTTP_PORT"])]
    assert [args for op, args in steps if op == "USER"][-1] not in {"root", "0"}


def test_the_build_context_leaves_out_settings_and_local_state_but_not_the_app() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {"config.env", ".env", ".venv", ".cache", "artifacts", "tests", "bench", ".git"} <= ignored
    assert not ignored & {"requirements.txt", "producer.py", "consumer.py", "rtsp_kafka_mjpeg"}


# --- the demo camera ----------------------------------------------------------------------------


def mediamtx_version() -> str:
    match = re.fullmatch(r"bluenviron/mediamtx:(\d+\.\d+\.\d+)-ffmpeg", SERVICES["camera"]["image"])
    assert match, "the camera must be an exact MediaMTX release with FFmpeg"
    return match[1]


def test_the_camera_is_an_exact_mediamtx_release_whose_config_keys_are_known() -> None:
    assert (ROOT / "tests" / f"mediamtx_v{mediamtx_version()}_keys.txt").is_file()


def test_every_key_of_the_camera_config_exists_in_that_mediamtx_release() -> None:
    known = mediamtx_release_keys(mediamtx_version())
    assert set(MEDIAMTX) <= known["top"]
    for path in MEDIAMTX["paths"].values():
        assert set(path) <= known["path"]
    for user in MEDIAMTX.get("authInternalUsers", []):
        assert set(user) <= known["user"]
        for permission in user["permissions"]:
            assert set(permission) <= known["permission"]


def test_the_camera_serves_rtsp_only_every_other_server_of_that_release_off() -> None:
    servers = {entry.split()[0] for entry in mediamtx_release_keys(mediamtx_version())["server"]}
    others = servers - {"rtsp"}
    assert MEDIAMTX["rtsp"] is True
    assert {name: MEDIAMTX.get(name) for name in others} == dict.fromkeys(others, False)


def test_only_the_camera_itself_may_publish_its_stream() -> None:
    publishers = [u for u in MEDIAMTX["authInternalUsers"] if any(p["action"] == "publish" for p in u["permissions"])]
    assert [set(u["ips"]) for u in publishers] == [{"127.0.0.1", "::1"}]


def test_the_producer_reads_the_camera_service_at_a_port_and_path_it_serves() -> None:
    source = urlsplit(env("producer")["CAMERA_SOURCE"])
    assert (source.scheme, source.hostname) == ("rtsp", "camera")
    assert source.port == int(MEDIAMTX["rtspAddress"].rsplit(":", 1)[-1])
    assert source.port in container_ports("camera")
    assert source.path.strip("/") in MEDIAMTX["paths"]


# --- the README ---------------------------------------------------------------------------------


def test_the_readme_docker_section_documents_every_compose_variable() -> None:
    section = readme_docker_section()
    for name in variables_used(COMPOSE_TEXT):
        assert name in section, name


def test_readme_commands_that_start_the_apps_rebuild_them() -> None:
    commands = re.findall(r"docker compose up[^\n#`]*", readme_docker_section())
    assert commands
    for command in commands:
        named = set(command.split()) & set(SERVICES)
        assert "--build" in command or (named and not named & set(APPS)), command


def test_the_readme_says_how_to_expose_the_viewer_with_authentication() -> None:
    section = readme_docker_section()
    assert "HTTP_BIND=0.0.0.0" in section
    assert "VIEWER_TOKEN" in section and "config.env" in section
