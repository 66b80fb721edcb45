"""Start-up contact with the brokers, turned into one clear line when it fails.

kafka-python 3 reports a refused SASL login as a bootstrap timeout; the real cause only shows in
its connection log. We listen to that log while connecting so the user reads "authentication
failed" rather than "unreachable".
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from .settings import KafkaSettings

_AUTH_MARKERS = ("SaslAuthenticationFailed", "Authentication failed", "AuthenticationFailed")


class BrokerUnavailable(RuntimeError):
    """The brokers could not be reached or refused us (auth, TLS)."""


class _AuthFailureSpotter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.auth_failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if any(marker in record.getMessage() for marker in _AUTH_MARKERS):
            self.auth_failed = True


def describe(err: Exception, settings: KafkaSettings, auth_failed: bool = False) -> str:
    """One line for a start-up failure to reach the brokers."""
    name = type(err).__name__
    if auth_failed or "Sasl" in name or "Authentication" in name:
        return (f"Kafka authentication failed at {settings.bootstrap_servers}; "
                "check KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM")
    return (f"cannot reach Kafka at {settings.bootstrap_servers} within {settings.connect_timeout_s:g} s "
            f"({name}); check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL")


@contextmanager
def explained_failures(settings: KafkaSettings) -> Iterator[None]:
    """Run start-up Kafka calls; any KafkaError leaves as BrokerUnavailable with a clear message."""
    kafka_log = logging.getLogger("kafka")
    spotter = _AuthFailureSpotter()
    old_level, old_propagate = kafka_log.level, kafka_log.propagate
    quiet = kafka_log.getEffectiveLevel() > logging.WARNING
    kafka_log.addHandler(spotter)
    if quiet:  # hear the warnings ourselves without printing them
        kafka_log.setLevel(logging.WARNING)
        kafka_log.propagate = False
    try:
        yield
    except KafkaError as err:
        raise BrokerUnavailable(describe(err, settings, spotter.auth_failed)) from None
    finally:
        kafka_log.removeHandler(spotter)
        kafka_log.setLevel(old_level)
        kafka_log.propagate = old_propagate


def check_brokers(settings: KafkaSettings) -> None:
    """Connect once (bootstrap + metadata) and disconnect; raises BrokerUnavailable."""
    with explained_failures(settings):
        KafkaAdminClient(**settings.kafka_client_config()).close()
