"""The Kafka service of docker-compose.yml, configured as the apache/kafka image configures it, serves
the host and the other containers at the addresses it advertises (tests/compose_broker.py)."""

from __future__ import annotations

import subprocess
import sys

from compose_file import ROOT, load

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
