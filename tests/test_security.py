"""Kafka security settings against a real SASL_PLAINTEXT (PLAIN) broker (TLS and SCRAM: test_tls.py)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from conftest import app_env, read_parts, wait_for

from harness.kafka_broker import KafkaBroker
from harness.ports import port_open

SASL_PASSWORD = "S4sl-p4ss-never-logged"


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(sasl_users={"camuser": SASL_PASSWORD})
    broker.start()
    yield broker
    broker.close()


def sasl_env(broker: KafkaBroker, topic: str, password: str = SASL_PASSWORD, **extra: str) -> dict[str, str]:
    return app_env(broker.bootstrap, topic, KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_MECHANISM="PLAIN",
                   KAFKA_SASL_USERNAME="camuser", KAFKA_SASL_PASSWORD=password, **extra)


def test_producer_and_consumer_work_through_a_sasl_plain_listener(
        sasl_kafka, camera, topic, start_app, kafka_client) -> None:
    env = sasl_env(sasl_kafka, topic, LOG_LEVEL="DEBUG", KAFKA_CLIENT=kafka_client)
    producer = start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    assert wait_for(lambda: len(read_parts(f"{consumer.url}/video_feed", 3, 5)) == 3, 40), consumer.log()
    health = urllib.request.urlopen(f"{consumer.url}/healthz", timeout=5).read().decode()
    metrics = urllib.request.urlopen(f"{consumer.url}/metrics", timeout=5).read().decode()
    for text in (producer.log(), consumer.log(), health, metrics):
        assert SASL_PASSWORD not in text


@pytest.mark.parametrize("script", ["producer.py", "consumer.py"])
def test_a_wrong_sasl_password_gives_one_clear_line(sasl_kafka, topic, start_app, script) -> None:
    app = start_app(script, sasl_env(sasl_kafka, topic, "Wr0ng-s4sl-pass", KAFKA_CONNECT_TIMEOUT_S="8"),
                    wait_http=False)
    assert app.wait(30) == 1
    lines = app.log().strip().splitlines()
    assert len(lines) == 1 and "authentication failed" in lines[0], lines
    assert "Wr0ng-s4sl-pass" not in app.log()


def test_exposing_the_viewer_without_authentication_logs_a_warning(kafka, topic, start_app) -> None:
    exposed = start_app("consumer.py", app_env(kafka.bootstrap, topic, HTTP_HOST="0.0.0.0"), wait_http=False)
    assert wait_for(lambda: port_open("127.0.0.1", exposed.port), 30)
    assert "without authentication" in exposed.log()
    private = start_app("consumer.py", app_env(kafka.bootstrap, topic))
    assert "without authentication" not in private.log()

