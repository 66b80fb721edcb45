"""consumer.py with KAFKA_CLIENT=confluent-kafka on the real broker: it serves a real producer's
frames, skips a bad record with the same log line and metric as kafka-python, counts its lag from
librdkafka's highwater marks, and its /healthz follows the broker down and back up."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from typing import Any

from conftest import app_env, read_parts, wait_for
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from harness.kafka_broker import KafkaBroker
from rtsp_kafka_mjpeg.frame import Frame
from rtsp_kafka_mjpeg.kafka.confluent.consumer import ConfluentConsumer
from rtsp_kafka_mjpeg.kafka.subscriber import FrameSubscriber, consumer_config
from rtsp_kafka_mjpeg.metrics import ConsumerMetrics
from rtsp_kafka_mjpeg.settings import ConsumerSettings

CLIENTS = ("kafka-python", "confluent-kafka")
SCRAM_USER, SCRAM_PASSWORD = "viewer", "Scr4m-consumer-s3cret"
SKIP_LINE = re.compile(r"skipping record at \S+: .*")


def frame(camera: str, seq: int) -> Frame:
    """A small frame captured now (the consumer checks JPEG markers, it does not decode)."""
    return Frame(camera, time.time_ns(), seq, 64, 48, b"\xff\xd8" + bytes([seq % 256]) * 500 + b"\xff\xd9")


def send(bootstrap: str, topic: str, *records: tuple[bytes, bytes, list[tuple[str, bytes]]],
         **client: Any) -> None:
    """Records through kafka-python; `client`: KafkaBroker.client_config() for a secured listener."""
    producer = KafkaProducer(**{"bootstrap_servers": bootstrap, **client}, acks=1, linger_ms=0, max_block_ms=10_000)
    for key, value, headers in records:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush(10)
    producer.close()


def send_frames(bootstrap: str, topic: str, frames: list[Frame], **client: Any) -> None:
    send(bootstrap, topic, *[(f.kafka_key(), f.jpeg, f.kafka_headers()) for f in frames], **client)


def metric(url: str, name: str, **labels: str) -> float:
    body = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return sum(s.value for family in text_string_to_metric_families(body) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as res:
            return res.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def test_both_clients_serve_a_real_producers_frames_and_skip_a_bad_record_alike(
        kafka, camera, topic, start_app) -> None:
    env = app_env(kafka.bootstrap, topic)
    producer = start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumers = {client: start_app("consumer.py", {**env, "KAFKA_CLIENT": client}) for client in CLIENTS}
    for client, consumer in consumers.items():
        assert wait_for(lambda c=consumer: len(read_parts(f"{c.url}/video_feed?camera=door", 3, 5)) == 3, 40), \
            f"{client}: no frames\n--- producer ---\n{producer.log()}\n--- consumer ---\n{consumer.log()}"
        parts = read_parts(f"{consumer.url}/video_feed?camera=door", 5, 10)
        assert len({p.headers["x-sequence"] for p in parts}) == 5, f"{client}: the stream is not live"
        assert all(p.body[:2] == b"\xff\xd8" for p in parts)

    good = frame("door", 1)
    send(kafka.bootstrap, topic, (b"door", b"not a jpeg at all", good.kafka_headers()))
    skipped = {client: lambda c=consumer: metric(c.url, "mjpeg_records_skipped_total", reason="not_jpeg")
               for client, consumer in consumers.items()}
    assert wait_for(lambda: all(count() == 1 for count in skipped.values()), 15), \
        {client: count() for client, count in skipped.items()}
    lines = {client: SKIP_LINE.findall(consumer.log()) for client, consumer in consumers.items()}
    assert lines["confluent-kafka"] == lines["kafka-python"] and len(lines["kafka-python"]) == 1, lines
    assert "value is not a complete JPEG" in lines["kafka-python"][0]
    for client, consumer in consumers.items():
        assert len(read_parts(f"{consumer.url}/video_feed?camera=door", 3, 10)) == 3, f"{client} stalled"
        assert metric(consumer.url, "mjpeg_consumer_lag_records") < 30, f"{client}: a live stream lags a second"
        assert "Traceback" not in consumer.log()


def test_lag_is_the_records_between_the_last_handed_on_and_librdkafkas_highwater_mark(kafka, topic) -> None:
    send_frames(kafka.bootstrap, topic, [frame("door", seq) for seq in range(10)])
    settings = ConsumerSettings(bootstrap_servers=kafka.bootstrap, topic=topic, kafka_client="confluent-kafka",
                                start_from="earliest")
    metrics = ConsumerMetrics()
    sub = FrameSubscriber(settings, lambda _: None, metrics,  # three records a poll: the rest is lag
                          consumer_factory=lambda: ConfluentConsumer(topic, **{**consumer_config(settings),
                                                                             "max_poll_records": 3}))
    value = metrics.registry.get_sample_value

    def consumed() -> float:
        return value("mjpeg_frames_in_total", {"camera": "door"}) or 0.0

    try:
        assert wait_for(lambda: sub.poll_once() and consumed() > 0, 15, 0), "no record consumed"
        time.sleep(1.1)  # the lag is worked out once a second
        assert sub.poll_once()
        assert 0 < consumed() < 10
        assert value("mjpeg_consumer_lag_records") == 10 - consumed()
        assert sub.health().ok
    finally:
        sub.stop()


def test_healthz_says_503_while_the_broker_is_down_and_200_with_frames_again_when_it_returns(
        crash_broker, topic, start_app) -> None:
    broker = crash_broker
    consumer = start_app("consumer.py", app_env(broker.bootstrap, topic, KAFKA_CLIENT="confluent-kafka"))
    healthz = f"{consumer.url}/healthz"
    feed = f"{consumer.url}/video_feed?camera=door"

    def frame_after(ts_ns: int, seq: int) -> bool:
        send_frames(broker.bootstrap, topic, [frame("door", seq)])
        return any(p.capture_ts_ns > ts_ns for p in read_parts(feed, 1, 1))

    started_ns = time.time_ns()
    assert wait_for(lambda: frame_after(started_ns, 1), 30, 0), consumer.log()
    assert http_status(healthz) == 200

    broker.kill()
    assert wait_for(lambda: http_status(healthz) == 503, 20), consumer.log()
    broker.start()
    assert wait_for(lambda: http_status(healthz) == 200, 30), consumer.log()
    back_ns = time.time_ns()
    assert wait_for(lambda: frame_after(back_ns, 2), 30, 0), f"no frame after the broker returned\n{consumer.log()}"

    log = consumer.log()
    assert "Kafka subscriber lost the brokers" in log
    assert log.count("Kafka subscriber connected") >= 2
    assert "Traceback" not in log


def test_over_sasl_ssl_with_scram_it_serves_frames_and_never_logs_the_password(topic, start_app) -> None:
    with KafkaBroker(ssl=True, scram_users={SCRAM_USER: SCRAM_PASSWORD}) as broker:
        client = broker.client_config(listener="sasl_ssl")
        consumer = start_app("consumer.py", app_env(
            broker.sasl_ssl_bootstrap, topic, KAFKA_CLIENT="confluent-kafka", LOG_LEVEL="DEBUG",
            KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
            KAFKA_SASL_USERNAME=SCRAM_USER, KAFKA_SASL_PASSWORD=SCRAM_PASSWORD, KAFKA_SSL_CAFILE=str(broker.ca_file)))
        started_ns = time.time_ns()

        def a_fresh_frame() -> bool:
            send_frames(broker.sasl_ssl_bootstrap, topic, [frame("door", 1)], **client)
            return any(p.capture_ts_ns > started_ns for p in read_parts(f"{consumer.url}/video_feed?camera=door", 1, 1))

        assert wait_for(a_fresh_frame, 30, 0), consumer.log()
        assert SCRAM_PASSWORD not in consumer.log()
