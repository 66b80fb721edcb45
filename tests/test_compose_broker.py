"""The Kafka services of docker-compose.yml, configured as the apache/kafka image configures them,
serve the host and the other containers at the addresses they advertise: the single broker
(harness/compose/broker.py) and the `cluster` profile's three nodes (harness/compose/cluster.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness.compose.broker import IMAGE_DEFAULTS, image_environment
from harness.compose.cluster import broker_settings
from harness.compose.file import ROOT, environment, load, profile_services
from harness.kafka_jars import fetch_kafka


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def documented_cluster_run() -> tuple[list[str], str]:
    """The compose variables of the README's `--profile cluster up` command, and the bootstrap it
    gives programs on the host."""
    section = readme_section("A real multi-broker cluster")
    up = re.search(r"^((?:[A-Z_]+=\S+ )*)docker compose --profile cluster up", section, re.MULTILINE)
    host = re.search(r"^KAFKA_BOOTSTRAP_SERVERS=(\S+) .*python producer\.py", section, re.MULTILINE)
    assert up and host, "the README shows how to start the cluster profile and reach it from the host"
    return up[1].split(), host[1]


def test_the_compose_broker_round_trips_a_record_through_its_host_and_in_network_listeners() -> None:
    version = load()["services"]["kafka"]["image"].split(":", 1)[1]
    libs = fetch_kafka(version)  # Maven needs the network: fetched before entering the namespace
    result = subprocess.run([sys.executable, "-m", "harness.compose.broker", "--libs", str(libs)], cwd=ROOT,
                            capture_output=True, text=True, timeout=150, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "view host: bootstrap localhost:9092, advertised localhost:9092, record round trip ok",
        "view network: bootstrap kafka:29092, advertised kafka:29092, record round trip ok",
    ]


def test_the_compose_cluster_forms_and_takes_acks_all_records_through_host_and_in_network_listeners() -> None:
    variables, host_bootstrap = documented_cluster_run()
    versions = {load()["services"][node]["image"].split(":", 1)[1] for node in profile_services(load(), "cluster")}
    assert len(versions) == 1
    libs = fetch_kafka(versions.pop())
    sets = [arg for pair in variables for arg in ("--set", pair)]
    result = subprocess.run([sys.executable, "-m", "harness.compose.cluster", "--libs", str(libs),
                             "--host-bootstrap", host_bootstrap, *sets], cwd=ROOT,
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    quorum = "quorum voters 1,2,3 with a leader"
    settings = "settings as composed on nodes 1,2,3"
    topic = "topic 6 partitions x 3 replicas, 3 in sync, min ISR 2, leaders on nodes 1,2,3; acks=all round trip ok"
    assert result.stdout.splitlines() == [
        "nodes kafka-1, kafka-2, kafka-3: configured by the image's setup, listeners open",
        "view host: bootstrap localhost:9192,localhost:9292,localhost:9392; brokers 1=localhost:9192 "
        f"2=localhost:9292 3=localhost:9392; {quorum}; {settings}; {topic}",
        "view network: bootstrap kafka-1:29092,kafka-2:29092,kafka-3:29092; brokers 1=kafka-1:29092 "
        f"2=kafka-2:29092 3=kafka-3:29092; {quorum}, each answering as a controller at its address; {settings}; "
        f"{topic}",
    ]


def test_only_the_log_dir_of_the_compose_environment_is_changed_for_the_run(tmp_path: Path) -> None:
    services = load()["services"]
    for name in ["kafka", *profile_services(load(), "cluster")]:
        compose_env = environment(services[name])
        run_env = image_environment(compose_env, tmp_path)
        assert {k for k in run_env.keys() | compose_env.keys() if run_env.get(k) != compose_env.get(k)} == {
            "KAFKA_LOG_DIRS"
        }, name
        assert run_env["KAFKA_LOG_DIRS"] == str(tmp_path)


def test_like_the_image_a_missing_cluster_id_gets_its_default_and_listeners_follow_the_advertised_ones(
    tmp_path: Path,
) -> None:
    run_env = image_environment({"KAFKA_PROCESS_ROLES": "broker,controller",
                                 "KAFKA_ADVERTISED_LISTENERS": "A://host-a:1,B://host-b:2"}, tmp_path)
    assert run_env["CLUSTER_ID"] == IMAGE_DEFAULTS["CLUSTER_ID"]
    assert run_env["KAFKA_LISTENERS"] == "A://0.0.0.0:1,B://0.0.0.0:2"


def test_a_node_is_checked_against_the_settings_its_variables_become_in_the_image() -> None:
    assert broker_settings({"KAFKA_MIN_INSYNC_REPLICAS": "2", "KAFKA_LISTENER_NAME_A__B___C": "x",
                            "KAFKA_HEAP_OPTS": "-Xmx1g", "KAFKA_LOG_DIRS": "/data", "CLUSTER_ID": "id"}) == {
        "min.insync.replicas": "2", "listener.name.a_b-c": "x"}
