"""docker-compose.yml, the Dockerfile and the demo camera's config agree with config.env, the test
harness and the images they name (Docker itself is not needed to check; the brokers' configuration,
single and `cluster` profile, is run for real in test_compose_broker.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from dotenv import dotenv_values

from harness.compose.file import (
    Binding,
    enabled_services,
    environment,
    interpolate,
    load,
    profile_services,
    published,
    variables_used,
)
from harness.kafka_jars import DEFAULT_VERSION
from rtsp_kafka_mjpeg.settings import ConsumerSettings, ProducerSettings, WorkerSettings, resolve

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = load()
SERVICES: dict[str, Any] = COMPOSE["services"]
CONFIG = dotenv_values(ROOT / "config.env")
APPS = {"producer": ProducerSettings, "consumer": ConsumerSettings, "worker": WorkerSettings}
MEDIAMTX = yaml.safe_load((ROOT / "docker" / "mediamtx.yml").read_text())
APP_IMAGE = SERVICES["consumer"]["image"]


def env(service: str) -> dict[str, str]:
    return environment(SERVICES[service])


def container_ports(service: str, variables: dict[str, str] | None = None) -> dict[int, Binding]:
    """container port -> its host binding, with the given compose variables set."""
    return {b.container_port: b for b in published(load(variables)["services"][service])}


def listeners(key: str, service: str = "kafka") -> dict[str, tuple[str, int]]:
    """KAFKA_*LISTENERS of a Kafka service as {name: (host, port)}."""
    found = re.findall(r"(\w+)://([^:,]*):(\d+)", env(service)[key])
    return {name: (host, int(port)) for name, host, port in found}


def config_port(key: str) -> int:
    return int(str(CONFIG[key]).rsplit(":", 1)[-1])


def dockerfile_steps() -> list[tuple[str, str]]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [tuple(line.split(None, 1)) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def readme_docker_section() -> str:
    return readme_section("Docker")


CLUSTER = profile_services(COMPOSE, "cluster")


def mediamtx_release_keys(version: str) -> dict[str, set[str]]:
    """The vendored key list of that MediaMTX release, by section (see the file's header)."""
    sections: dict[str, set[str]] = {}
    for line in (ROOT / "tests" / f"mediamtx_v{version}_keys.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            section, key = line.split(" ", 1)
            sections.setdefault(section, set()).add(key)
    return sections


# --- the services -------------------------------------------------------------------------------


def test_the_stack_is_kafka_a_camera_a_producer_a_consumer_and_a_motion_worker() -> None:
    assert set(enabled_services(COMPOSE)) == {"kafka", "camera", "producer", "consumer", "worker"}
    assert environment(SERVICES["worker"])["WORKER_PROCESSOR"] == "motion"
    assert SERVICES["worker"]["image"] == SERVICES["producer"]["image"] and SERVICES["worker"]["pull_policy"] == "never"


def test_the_cluster_profile_adds_three_brokers_and_nothing_else() -> None:
    assert set(enabled_services(COMPOSE, {"cluster"})) - set(enabled_services(COMPOSE)) == set(CLUSTER)
    assert CLUSTER == ["kafka-1", "kafka-2", "kafka-3"]


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


@pytest.mark.parametrize("service", APPS)
def test_apps_wait_for_the_cluster_nodes_only_when_the_profile_runs_them(service: str) -> None:
    # required: false: without the profile the nodes are left out and Compose drops the dependency.
    for node in CLUSTER:
        assert SERVICES[service]["depends_on"][node] == {"condition": "service_healthy", "required": False}


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


# --- the cluster profile -------------------------------------------------------------------------


def node_ids() -> dict[str, int]:
    return {node: int(env(node)["KAFKA_NODE_ID"]) for node in CLUSTER}


def test_cluster_nodes_run_the_single_brokers_image_in_combined_kraft_mode_as_one_cluster() -> None:
    assert {SERVICES[node]["image"] for node in CLUSTER} == {SERVICES["kafka"]["image"]}
    assert sorted(node_ids().values()) == [1, 2, 3]
    assert len({env(node)["CLUSTER_ID"] for node in CLUSTER}) == 1
    for node in CLUSTER:
        assert set(env(node)["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert SERVICES[node]["hostname"] == node


def controller_port(node: str) -> int:
    return listeners("KAFKA_LISTENERS", node)[env(node)["KAFKA_CONTROLLER_LISTENER_NAMES"]][1]


def test_every_node_names_all_three_controllers_at_their_service_names_and_controller_ports() -> None:
    expected = ",".join(f"{node_ids()[peer]}@{peer}:{controller_port(peer)}" for peer in CLUSTER)
    for node in CLUSTER:
        assert env(node)["KAFKA_CONTROLLER_QUORUM_VOTERS"] == expected, node


def test_each_node_advertises_its_service_name_in_the_network_and_its_own_published_port_to_the_host() -> None:
    host_ports = set()
    for node in CLUSTER:
        advertised, bound = listeners("KAFKA_ADVERTISED_LISTENERS", node), listeners("KAFKA_LISTENERS", node)
        assert advertised["DOCKER"] == (node, bound["DOCKER"][1])
        host, port = advertised["HOST"]
        assert host == "localhost"
        assert container_ports(node)[bound["HOST"][1]] == Binding("127.0.0.1", port, bound["HOST"][1])
        assert f"localhost:{port}" in SERVICES[node]["healthcheck"]["test"]
        assert env(node)["KAFKA_INTER_BROKER_LISTENER_NAME"] == "DOCKER"
        host_ports.add(port)
    assert len(host_ports) == len(CLUSTER) and config_port("KAFKA_BOOTSTRAP_SERVERS") not in host_ports


def test_cluster_topics_internal_and_default_keep_three_replicas_and_need_two_in_sync() -> None:
    for node in CLUSTER:
        kafka = env(node)
        for key in ("OFFSETS_TOPIC", "TRANSACTION_STATE_LOG", "SHARE_COORDINATOR_STATE_TOPIC"):
            assert kafka[f"KAFKA_{key}_REPLICATION_FACTOR"] == "3", key
        assert kafka["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        for key in ("KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
                    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR"):
            assert kafka[key] == "2", key


def test_cluster_followers_retry_a_moved_leader_as_fast_as_on_the_measured_cluster() -> None:
    from harness.kafka_cluster import REPLICA_FETCH_BACKOFF_MS

    for node in CLUSTER:
        assert env(node)["KAFKA_REPLICA_FETCH_BACKOFF_MS"] == REPLICA_FETCH_BACKOFF_MS, node


def test_cluster_nodes_accept_the_largest_frame_and_shape_topics_like_the_single_broker() -> None:
    same = ("KAFKA_MESSAGE_MAX_BYTES", "KAFKA_REPLICA_FETCH_MAX_BYTES", "KAFKA_NUM_PARTITIONS",
            "KAFKA_LOG_RETENTION_MS", "KAFKA_LOG_ROLL_MS", "KAFKA_LOG_DIRS")
    for node in CLUSTER:
        assert {key: env(node)[key] for key in same} == {key: env("kafka")[key] for key in same}, node


def test_each_node_keeps_its_data_in_its_own_volume() -> None:
    volumes = [SERVICES[node]["volumes"] for node in CLUSTER]
    assert volumes == [[f"{node}-data:{env(node)['KAFKA_LOG_DIRS']}"] for node in CLUSTER]
    assert {f"{node}-data" for node in CLUSTER} <= set(COMPOSE["volumes"])


def test_the_apps_use_the_cluster_through_one_variable() -> None:
    cluster = ",".join(f"{node}:{listeners('KAFKA_ADVERTISED_LISTENERS', node)['DOCKER'][1]}" for node in CLUSTER)
    for service in APPS:
        variables = {"KAFKA_DOCKER_BOOTSTRAP": cluster}
        assert environment(load(variables)["services"][service])["KAFKA_BOOTSTRAP_SERVERS"] == cluster


def test_the_readme_starts_the_cluster_without_the_single_broker_and_with_the_apps_pointed_at_it() -> None:
    section = readme_section("A real multi-broker cluster")
    command = re.search(r"^(\S+=\S+) docker compose --profile cluster up ([^\n`]*)", section, re.MULTILINE)
    assert command
    assert command[1] == "KAFKA_DOCKER_BOOTSTRAP=" + ",".join(f"{node}:29092" for node in CLUSTER)
    assert "--scale kafka=0" in command[2] and "--build" in command[2]


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
    for needed in ("requirements.txt", *(f"{service}.py" for service in APPS), "rtsp_kafka_mjpeg"):
        assert needed in copied, needed
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
    sections = readme_docker_section() + readme_section("A real multi-broker cluster")
    commands = re.findall(r"docker compose (?:--profile \S+ )?up[^\n#`]*", sections)
    assert commands
    for command in commands:
        named = set(command.split()) & set(SERVICES)
        assert "--build" in command or (named and not named & set(APPS)), command


def test_the_readme_says_how_to_expose_the_viewer_with_authentication() -> None:
    section = readme_docker_section()
    assert "HTTP_BIND=0.0.0.0" in section
    assert "VIEWER_TOKEN" in section and "config.env" in section
