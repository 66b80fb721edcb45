"""Kafka over TLS against a real broker: an SSL listener and a SASL_SSL listener with SCRAM-SHA-256.

Both CLIs stream through each, verifying the broker with KAFKA_SSL_CAFILE; a wrong SCRAM password
and a missing CA file each end in one line that names the cause, never a timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import App, app_env, read_parts, wait_for

from harness.kafka_broker import KafkaBroker
from harness.mjpeg_client import Part
from harness.rtsp_camera import RtspCamera

SCRAM_USER = "camscram"
SCRAM_PASSWORD = "Scr4m-p4ss-never-logged"
WRONG_SCRAM_PASSWORD = "Wr0ng-scr4m-pass"
JPEG_START = b"\xff\xd8"


@pytest.fixture(scope="module")
def tls_kafka() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(ssl=True, scram_users={SCRAM_USER: SCRAM_PASSWORD})
    broker.start()
    yield broker
    broker.close()


def ssl_env(broker: KafkaBroker, topic: str, **extra: str) -> dict[str, str]:
    return app_env(broker.ssl_bootstrap, topic, **{"KAFKA_SECURITY_PROTOCOL": "SSL",
                                                   "KAFKA_SSL_CAFILE": str(broker.ca_file), **extra})


def scram_env(broker: KafkaBroker, topic: str, password: str = SCRAM_PASSWORD, **extra: str) -> dict[str, str]:
    return app_env(broker.sasl_ssl_bootstrap, topic, KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                   KAFKA_SASL_MECHANISM="SCRAM-SHA-256", KAFKA_SASL_USERNAME=SCRAM_USER, KAFKA_SASL_PASSWORD=password,
                   KAFKA_SSL_CAFILE=str(broker.ca_file), **extra)


def assert_camera_streams_through(env: dict[str, str], camera: RtspCamera, start_app: Callable[..., App]) -> str:
    """Producer publishes the camera as "door", the consumer serves its JPEGs; returns both logs."""
    producer = start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    parts: list[Part] = []

    def three_jpegs_from_door() -> bool:
        parts[:] = read_parts(f"{consumer.url}/video_feed?camera=door", 3, 5)
        return len(parts) == 3

    assert wait_for(three_jpegs_from_door, 40), f"{producer.log()}\n{consumer.log()}"
    assert all(part.body.startswith(JPEG_START) for part in parts)
    return producer.log() + consumer.log()


def test_producer_and_consumer_stream_over_tls_verifying_the_broker_with_the_ca_file(
        tls_kafka, camera, topic, start_app) -> None:
    assert_camera_streams_through(ssl_env(tls_kafka, topic), camera, start_app)


def test_producer_and_consumer_stream_over_sasl_ssl_with_scram_sha_256(
        tls_kafka, camera, topic, start_app, kafka_client) -> None:
    env = scram_env(tls_kafka, topic, LOG_LEVEL="DEBUG", KAFKA_CLIENT=kafka_client)
    logs = assert_camera_streams_through(env, camera, start_app)
    assert SCRAM_PASSWORD not in logs


@pytest.mark.parametrize("script", ["producer.py", "consumer.py"])
def test_a_wrong_scram_password_gives_one_clear_line(tls_kafka, topic, start_app, script) -> None:
    app = start_app(script, scram_env(tls_kafka, topic, WRONG_SCRAM_PASSWORD, KAFKA_CONNECT_TIMEOUT_S="5"),
                    wait_http=False)
    assert app.wait(30) == 1
    lines = app.log().strip().splitlines()
    assert len(lines) == 1 and "authentication failed" in lines[0], lines
    assert WRONG_SCRAM_PASSWORD not in app.log()


@pytest.mark.parametrize("script", ["producer.py", "consumer.py"])
def test_tls_without_the_ca_file_gives_one_line_naming_certificate_verification(
        tls_kafka, topic, start_app, script) -> None:
    app = start_app(script, ssl_env(tls_kafka, topic, KAFKA_SSL_CAFILE="", KAFKA_CONNECT_TIMEOUT_S="5"),
                    wait_http=False)
    assert app.wait(30) == 1
    lines = app.log().strip().splitlines()
    assert len(lines) == 1, lines
    assert "certificate verification failed" in lines[0] and "KAFKA_SSL_CAFILE" in lines[0], lines


@pytest.mark.parametrize("script", ["producer.py", "consumer.py"])
def test_an_unreadable_ca_file_gives_one_line_naming_it(tls_kafka, topic, start_app, tmp_path, script) -> None:
    missing = tmp_path / "no-such-ca.pem"
    app = start_app(script, ssl_env(tls_kafka, topic, KAFKA_SSL_CAFILE=str(missing), KAFKA_CONNECT_TIMEOUT_S="3"),
                    wait_http=False)
    assert app.wait(30) == 1
    lines = app.log().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"cannot load the CA file {missing}" in lines[0] and "KAFKA_SSL_CAFILE" in lines[0], lines
