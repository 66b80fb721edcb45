"""kafka-python's idempotent producer, made to ask for a new producer id after it drops its own.

The cause of issue 22's stalls, found in the producer's DEBUG log at production defaults: when a
node dies, a frame batch that was already sent once (its request timed out waiting for acks=all)
expires in the retry queue; kafka-python 3.0.12's sender then calls
``TransactionManager.reset_producer_id()``, as Java does, because the batch's sequence number may
or may not have been written. Java's reset also moves the manager back to UNINITIALIZED, so the
next sender loop asks the cluster for a new id. kafka-python's keeps it READY with no id:
``init_producer_id()`` is a no-op outside UNINITIALIZED, the sender waits for an id it never asks
for, and every later frame of every camera waits with it. FramePublisher's stuck-producer check
then replaced the whole producer (every leader SIGKILL in the failover bench, 4 of 4), dropping
the frames in flight on the healthy partitions too, and a replacement that met the cluster
mid-election is what turned a ~9 s gap into 24 s.

``ask_again_after_reset`` restores Java's transition on one producer's manager; the next sender
loop then sends InitProducerId to a live node and frames flow as soon as the partitions have
leaders.

The second defect the same log showed once the first was fixed: that InitProducerId request often
goes out on a connection whose earlier produce request is about to time out (acks=all waits for
the dead node until it is fenced); kafka-python then closes the connection and fails every
request on it with RequestTimedOutError, and its transactional handler treats any error but a
disconnect as fatal, so the new producer id is never taken and the producer is dead again.
Java retries the request after a disconnect or a timeout alike; ``retry_timed_out_requests`` has
kafka-python do the same (a retriable error is handled as the disconnect it is).

The third, found by bench.chaos's network cut between the producer and a partition's leader: a
new producer id lets frames the producer gave up on land after newer ones. An expired request
can still reach the broker after the cut heals (its bytes wait in the kernel's buffer of the
connection kafka-python closed at the request timeout), under the old id, whose sequence it
continues: the broker writes it, behind the frames the new id sent meanwhile. Java's idempotent
producer does not take a new id there: it bumps the epoch of the one it has, locally, and starts
every partition's sequence at 0 (``bumpIdempotentProducerEpoch``); a broker that has seen the
new epoch rejects anything older, so late frames are fenced, never reordered. ``bump_epoch_on_reset``
does the same (a new id only when the epoch is spent or there is no id).

The first two fixes apply only while the installed kafka-python still has its defect (checked once,
on a manager of its own), so an upgrade that fixes them upstream turns them off by itself.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from kafka import errors as kerr
from kafka.producer.transaction_manager import (
    ProducerIdAndEpoch,
    TransactionManager,
    TransactionState,
    TxnRequestHandler,
)

log = logging.getLogger(__name__)


def reset_leaves_producer_stuck() -> bool:
    """Whether this kafka-python's reset_producer_id() leaves an idempotent producer unable to ask
    for a new id (state still READY, so init_producer_id() does nothing)."""
    probe = TransactionManager()
    probe._current_state = TransactionState.READY
    probe.set_producer_id_and_epoch(ProducerIdAndEpoch(1, 0))
    probe.reset_producer_id()
    probe.init_producer_id()
    return not probe._pending_requests


@functools.cache
def _defect_present() -> bool:
    present = reset_leaves_producer_stuck()
    if present:
        log.debug("kafka-python's reset_producer_id keeps the producer READY: patched per producer")
    return present


def timeout_is_fatal() -> bool:
    """Whether this kafka-python fails an idempotent producer for good when its InitProducerId
    request times out (instead of sending it again)."""
    probe = TransactionManager()
    probe.init_producer_id()
    handler = probe.next_request_handler(has_incomplete_batches=False)
    if handler is None:
        return False
    handler.on_complete(probe.next_in_flight_request_correlation_id(), kerr.RequestTimedOutError("probe"))
    return probe.has_fatal_error()


@functools.cache
def retry_timed_out_requests() -> None:
    """Once per process: kafka-python's transactional handlers retry a request that failed with a
    retriable error (a timeout, a closed connection), as Java's do, instead of failing the producer."""
    if not timeout_is_fatal():
        return
    on_complete = TxnRequestHandler.on_complete

    def retrying_on_complete(self: Any, correlation_id: int, response_or_exc: Any) -> Any:
        if (isinstance(response_or_exc, kerr.KafkaError) and response_or_exc.retriable
                and not isinstance(response_or_exc, kerr.KafkaConnectionError)):
            log.debug("%s failed (%s); sending it again", type(self).__name__, response_or_exc)
            response_or_exc = kerr.KafkaConnectionError(str(response_or_exc))  # kafka-python retries these
        return on_complete(self, correlation_id, response_or_exc)

    TxnRequestHandler.on_complete = retrying_on_complete


MAX_EPOCH = 32767  # the epoch is an int16


def ask_again_after_reset(manager: Any) -> None:
    """Make `manager` (an idempotent producer's TransactionManager) go back to UNINITIALIZED after
    reset_producer_id(), as Java's does, so the sender asks for a new producer id."""
    if manager is None or manager.is_transactional():
        return
    retry_timed_out_requests()
    if not _defect_present():
        return
    reset = manager.reset_producer_id

    def reset_and_reinitialize() -> None:
        reset()
        with manager._lock:
            # Not via _transition_to: kafka-python lists no transition back to UNINITIALIZED.
            manager._current_state = TransactionState.UNINITIALIZED

    manager.reset_producer_id = reset_and_reinitialize


def bump_epoch_on_reset(manager: Any) -> None:
    """Make `manager`'s reset_producer_id() (called when a frame that was sent once is given up on)
    keep the producer id and bump its epoch, sequences back to 0, as Java's idempotent producer
    does; a new id (via ask_again_after_reset's reset) only when there is none or the epoch is spent."""
    if manager is None or manager.is_transactional():
        return
    ask_again_after_reset(manager)
    reset = manager.reset_producer_id

    def bump_or_reset() -> None:
        with manager._lock:
            current = manager.producer_id_and_epoch
            if current.is_valid and 0 <= current.epoch < MAX_EPOCH:
                manager.set_producer_id_and_epoch(ProducerIdAndEpoch(current.producer_id, current.epoch + 1))
                manager._sequence_numbers.clear()
                getattr(manager, "_last_acked_offset", {}).clear()
                return
        reset()

    manager.reset_producer_id = bump_or_reset
