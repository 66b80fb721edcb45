"""The Kafka service of docker-compose.yml, configured as the apache/kafka image configures it, serves
the host and the other containers at the addresses it advertises (tests/compose_broker.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from compose_broker import IMAGE_DEFAULTS, image_environment
from compose_file import ROOT, environment, load

from harness.kafka_jars import fetch_kafka


def test_the_compose_broker_round_trips_a_record_through_its_host_and_in_network_listeners() -> None:
    version = load()["services"]["kafka"]["image"].split(":", 1)[1]
    libs = fetch_kafka(version)  # Maven needs the network: fetched before entering the namespace
    result = subprocess.run([sys.executable, "-m", "tests.compose_broker", "--libs", str(libs)], cwd=ROOT,
                            capture_output=True, text=True, timeout=150, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "view host: bootstrap localhost:9092, advertised localhost:9092, record round trip ok",
        "view network: bootstrap kafka:29092, advertised kafka:29092, record round trip ok",
    ]


def test_only_the_log_dir_of_the_compose_environment_is_changed_for_the_run(tmp_path: Path) -> None:
    compose_env = environment(load()["services"]["kafka"])
    run_env = image_environment(compose_env, tmp_path)
    assert {k for k in run_env.keys() | compose_env.keys() if run_env.get(k) != compose_env.get(k)} == {
        "KAFKA_LOG_DIRS"
    }
    assert run_env["KAFKA_LOG_DIRS"] == str(tmp_path)


def test_like_the_image_a_missing_cluster_id_gets_its_default_and_listeners_follow_the_advertised_ones(
    tmp_path: Path,
) -> None:
    run_env = image_environment({"KAFKA_PROCESS_ROLES": "broker,controller",
                                 "KAFKA_ADVERTISED_LISTENERS": "A://host-a:1,B://host-b:2"}, tmp_path)
    assert run_env["CLUSTER_ID"] == IMAGE_DEFAULTS["CLUSTER_ID"]
    assert run_env["KAFKA_LISTENERS"] == "A://0.0.0.0:1,B://0.0.0.0:2"
