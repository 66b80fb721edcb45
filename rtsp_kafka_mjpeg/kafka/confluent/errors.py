"""librdkafka's errors and log lines in kafka-python's terms, for both adapters: each librdkafka
error becomes the kafka.errors class kafka-python raises for the same failure, so the publisher's
and the subscriber's rules (and their log lines) are the same whichever client carries the frames."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError as RdError
from confluent_kafka import KafkaException
from kafka import errors as kerr

FORCED_CLOSE = "Producer is closed forcefully."  # kafka-python's words for frames failed at a forced close

_LOCAL_ERRORS: dict[int, type[kerr.KafkaError]] = {
    RdError._MSG_TIMED_OUT: kerr.KafkaTimeoutError,
    RdError._TIMED_OUT: kerr.KafkaTimeoutError,
    RdError._TIMED_OUT_QUEUE: kerr.KafkaTimeoutError,
    RdError._QUEUE_FULL: kerr.KafkaTimeoutError,
    RdError._TRANSPORT: kerr.KafkaConnectionError,
    RdError._ALL_BROKERS_DOWN: kerr.KafkaConnectionError,
    RdError._RESOLVE: kerr.KafkaConnectionError,
    RdError._NODE_UPDATE: kerr.KafkaConnectionError,
    RdError._DESTROY_BROKER: kerr.KafkaConnectionError,
    RdError._SSL: kerr.KafkaConnectionError,
    RdError._AUTHENTICATION: kerr.SaslAuthenticationFailedError,
    RdError._UNKNOWN_TOPIC: kerr.UnknownTopicOrPartitionError,
    RdError._UNKNOWN_PARTITION: kerr.UnknownTopicOrPartitionError,
    RdError._INVALID_ARG: kerr.IllegalArgumentError,
    RdError._FENCED: kerr.ProducerFencedError,
    RdError._GAPLESS_GUARANTEE: kerr.OutOfOrderSequenceNumberError,
    RdError._FATAL: kerr.IllegalStateError,
    RdError._INCONSISTENT: kerr.IllegalStateError,
    RdError._STATE: kerr.IllegalStateError,
    RdError._DESTROY: kerr.IllegalStateError,
    RdError._PURGE_QUEUE: kerr.IllegalStateError,
    RdError._PURGE_INFLIGHT: kerr.IllegalStateError,
}
# Errors after which the producer's id or sequence state is broken: publisher.STATE_ERRORS (not
# imported: the publisher sits above the adapters). A fatal librdkafka error becomes one of them.
_STATE_CLASSES = (kerr.IllegalStateError, kerr.ProducerFencedError, kerr.OutOfOrderSequenceNumberError,
                  kerr.UnknownProducerIdError, kerr.InvalidProducerEpochError)
CONNECTION_CODES = frozenset(code for code, cls in _LOCAL_ERRORS.items() if cls is kerr.KafkaConnectionError)


def kafka_error(err: RdError, fatal_cause: RdError | None = None) -> kerr.KafkaError:
    """The kafka.errors exception kafka-python raises for the failure librdkafka reports as `err`.

    librdkafka's positive codes are the broker's own (kafka.errors.for_code); its negative codes
    are local. A fatal error (the producer can never deliver again) is always one of the state
    errors, so FramePublisher replaces the producer as it does for kafka-python's fatal state.
    `fatal_cause`: for _FATAL, the underlying error error_cb reported."""
    code = err.code()
    if code == RdError._FATAL and fatal_cause is not None:
        err, code = fatal_cause, fatal_cause.code()
    text = err.str()
    if code in (RdError._PURGE_QUEUE, RdError._PURGE_INFLIGHT, RdError._DESTROY):
        return kerr.IllegalStateError(FORCED_CLOSE)
    if code > 0:
        cls: type[kerr.KafkaError] = kerr.for_code(code)
    else:
        cls = _LOCAL_ERRORS.get(code, kerr.UnknownError)
        if cls is kerr.UnknownError:
            text = f"{err.name()}: {text}"
    if err.fatal() and not issubclass(cls, _STATE_CLASSES):
        return kerr.IllegalStateError(f"fatal {err.name()}: {text}")
    out = cls(text)
    if err.fatal():
        out.fatal = True  # type: ignore[attr-defined]  # publisher.needs_new_producer: never recovers
    return out


def raised_error(exc: Exception, fatal_cause: RdError | None = None) -> kerr.KafkaError:
    """kafka.errors for what a librdkafka call raised (KafkaException, BufferError)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], RdError):
        return kafka_error(exc.args[0], fatal_cause)
    if isinstance(exc, BufferError):  # librdkafka's queue is full (its bounds are at their maximum)
        return kerr.KafkaTimeoutError(f"librdkafka queue full: {exc}")
    return kerr.KafkaError(str(exc))


class RdkafkaLog:
    """librdkafka's log lines into Python logging (`logger=` config of the producer and the
    consumer): connection failures at DEBUG, since our own code says once that delivery fails or
    the brokers are lost and once that they are back; its other warnings at WARNING."""

    # GETPID: an idempotent producer's id request retried (e.g. the coordinator still loading)
    NOISE = frozenset({"FAIL", "ERROR", "BROKERFAIL", "REQTMOUT", "DISCONNECT", "TERMINATE", "GETPID"})

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def log(self, level: int, fmt: str, *args: Any) -> None:
        facility = args[0] if args else ""
        demoted = facility in self.NOISE or level < logging.WARNING
        self._logger.log(logging.DEBUG if demoted else logging.WARNING, fmt, *args)
