"""Start-up contact with the brokers, turned into one clear line when it fails.

kafka-python 3 retries a refused login or a failed TLS handshake until its bootstrap deadline and
then reports only ``KafkaTimeoutError``. So when a start-up call fails, we make one dedicated
connection attempt (TCP, TLS, ApiVersions, SASL: what every client does first) and read how that
connection itself failed. The diagnosis never depends on log output.

One trap: the broker answers a refused login (or mechanism) and closes the socket; kafka-python
3.0.12 drops bytes read together with the EOF, so the same refusal shows up either as
``SaslAuthenticationFailedError`` or as a bare disconnect, at random. The connection's protocol
state says which request went unanswered: a hang-up with our credentials in flight is a refusal.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaAdminClient
from kafka.errors import (
    AuthorizationError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)
from kafka.future import Future
from kafka.net.connection import KafkaConnection
from kafka.net.manager import KafkaConnectionManager
from kafka.net.selector import NetworkSelector
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from ..settings import KafkaSettings

PROBE_MAX_S = 5.0  # the probe only has to see the first failure; a silent host is already known


class BrokerUnavailable(RuntimeError):
    """The brokers could not be reached or refused us (auth, TLS)."""


def probe(settings: KafkaSettings, timeout_s: float) -> BaseException | None:
    """Open one connection to each bootstrap server in turn, as every client does first; return the
    first error that names a cause (auth, TLS, SASL mechanism), else the last error, or None
    once a connection is fully set up."""
    config = settings.kafka_client_config()
    net = NetworkSelector(**config)
    manager = KafkaConnectionManager(net, **config)
    last: BaseException | None = None
    try:
        for node in manager.cluster.bootstrap_brokers():
            last = _connect_once(net, manager, node.node_id, timeout_s)
            if last is None or _tls_error(last) or isinstance(last, _AUTH_ERRORS):
                return last
    finally:
        manager.close()
        net.close()
    return last


def _connect_once(net: NetworkSelector, manager: KafkaConnectionManager, node_id: str,
                  timeout_s: float) -> BaseException | None:
    """How one connection attempt ended, read off its future rather than re-raised: a re-raise
    while the caller handles an error would overwrite the ssl error chained under kafka-python's."""
    conn = manager.get_connection(node_id, timeout_ms=timeout_s * 1000, pop_on_close=False,
                                  refresh_metadata_on_err=False)
    settled = Future()
    conn.init_future.add_both(lambda _: settled.success(None))
    try:
        net.run(manager.wait_for, settled, timeout_s * 1000)
    except KafkaTimeoutError as err:
        return err
    err = conn.init_future.exception
    if isinstance(err, KafkaConnectionError):
        return _hang_up_cause(conn) or err
    return err


_AUTH_ERRORS = (SaslAuthenticationFailedError, UnsupportedSaslMechanismError, AuthorizationError)


def _hang_up_cause(conn: KafkaConnection) -> KafkaError | None:
    """What the broker meant by closing the connection during SASL: the unanswered request says."""
    unanswered = getattr(conn.parser, "in_flight_requests", None)
    api_key = unanswered[0].request_api_key if unanswered else None
    if api_key == SaslAuthenticateRequest.API_KEY:
        return SaslAuthenticationFailedError("broker closed the connection on our SASL credentials")
    if api_key == SaslHandshakeRequest.API_KEY:
        return UnsupportedSaslMechanismError("broker closed the connection on our SASL mechanism")
    return None


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The error and what it was raised from (kafka-python wraps the ssl error in its own)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _tls_error(err: BaseException) -> ssl.SSLError | None:
    return next((e for e in _chain(err) if isinstance(e, ssl.SSLError)), None)


def _unusable_ca_file(settings: KafkaSettings) -> str | None:
    """Why KAFKA_SSL_CAFILE cannot be loaded (kafka-python loads it per connection, then retries)."""
    if not settings.ssl_cafile or "SSL" not in settings.security_protocol:
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(settings.ssl_cafile)
    except OSError as err:  # ssl.SSLError is an OSError too
        return getattr(err, "reason", None) or err.strerror or type(err).__name__
    return None


def describe(err: BaseException, settings: KafkaSettings, cause: BaseException | None = None) -> str:
    """One line for a start-up failure; ``cause`` is what the probe connection failed with."""
    servers = settings.bootstrap_servers
    for found in (err, cause):
        if isinstance(found, UnsupportedSaslMechanismError):
            return (f"Kafka at {servers} does not offer SASL mechanism {settings.sasl_mechanism}; "
                    "check KAFKA_SASL_MECHANISM")
        if isinstance(found, SaslAuthenticationFailedError):
            return (f"Kafka authentication failed at {servers}; "
                    "check KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM")
        if isinstance(found, AuthorizationError):
            return (f"Kafka refused access at {servers} ({type(found).__name__}); "
                    "check the ACLs of KAFKA_SASL_USERNAME")
    ca_problem = _unusable_ca_file(settings)
    if ca_problem:
        return f"cannot load the CA file {settings.ssl_cafile} ({ca_problem}); check KAFKA_SSL_CAFILE"
    tls = _tls_error(cause) if cause else None
    if isinstance(tls, ssl.SSLCertVerificationError):
        return (f"TLS certificate verification failed for Kafka at {servers} ({tls.verify_message}); "
                "set KAFKA_SSL_CAFILE to the CA file that signed the broker's certificate")
    if tls is not None:
        return (f"TLS handshake with Kafka at {servers} failed ({tls.reason or type(tls).__name__}); "
                "check KAFKA_SECURITY_PROTOCOL matches the listener and KAFKA_SSL_CAFILE")
    return (f"cannot reach Kafka at {servers} within {settings.connect_timeout_s:g} s "
            f"({type(err).__name__}); check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL")


@contextmanager
def explained_failures(settings: KafkaSettings) -> Iterator[None]:
    """Run start-up Kafka calls; any KafkaError leaves as BrokerUnavailable with a clear message."""
    try:
        yield
    except KafkaError as failure:
        cause = None
        if not isinstance(failure, _AUTH_ERRORS):
            cause = probe(settings, min(settings.connect_timeout_s, PROBE_MAX_S))
        raise BrokerUnavailable(describe(failure, settings, cause)) from None


def check_brokers(settings: KafkaSettings) -> None:
    """Connect once (bootstrap + metadata) and disconnect; raises BrokerUnavailable."""
    with explained_failures(settings):
        KafkaAdminClient(**settings.kafka_client_config()).close()
