"""An idempotent kafka-python producer that drops its producer id asks the cluster for a new one.

The failover bench's DEBUG log showed kafka-python 3.0.12 resetting the id after a retried batch
expired (a node died) and then never asking again, so every camera's frames waited until the
publisher replaced the whole producer. These check the state machine itself (kafka-python's own
TransactionManager, no broker); tests/test_cluster.py checks that a leader's crash no longer
replaces the producer on a real cluster.
"""

from __future__ import annotations

from kafka import TopicPartition
from kafka.errors import ClusterAuthorizationFailedError, RequestTimedOutError
from kafka.producer.transaction_manager import ProducerIdAndEpoch, TransactionManager, TransactionState

from rtsp_kafka_mjpeg.kafka.producer_id import (
    MAX_EPOCH,
    ask_again_after_reset,
    bump_epoch_on_reset,
    retry_timed_out_requests,
)


def ready_manager() -> TransactionManager:
    manager = TransactionManager()
    manager._current_state = TransactionState.READY
    manager.set_producer_id_and_epoch(ProducerIdAndEpoch(7, 0))
    return manager


def test_after_a_reset_the_producer_asks_for_a_new_id() -> None:
    manager = ready_manager()
    ask_again_after_reset(manager)
    manager.reset_producer_id()  # what the sender does when a batch that was sent once expires
    assert not manager.has_producer_id()
    manager.init_producer_id()  # what the sender's next loop does without an id
    assert manager._pending_requests, "no InitProducerId request was queued: the sender would wait for ever"
    assert manager._current_state == TransactionState.INITIALIZING


def test_the_new_id_is_taken_and_frames_flow_under_it() -> None:
    manager = ready_manager()
    ask_again_after_reset(manager)
    manager.reset_producer_id()
    manager.init_producer_id()
    handler = manager.next_request_handler(has_incomplete_batches=True)
    assert handler is not None and type(handler.request).__name__.startswith("InitProducerIdRequest")
    manager.set_producer_id_and_epoch(ProducerIdAndEpoch(8, 0))  # the broker's answer, as the handler sets it
    manager._transition_to(TransactionState.READY)
    assert manager.has_producer_id() and manager.producer_id_and_epoch.producer_id == 8


def test_giving_up_on_a_sent_frame_bumps_the_epoch_of_the_same_id_and_restarts_the_sequences() -> None:
    # a new id would let the given-up frame, arriving late under the old id, be written after newer
    # frames; a higher epoch of the same id makes the broker reject it (tests/test_netcut.py)
    manager = ready_manager()
    bump_epoch_on_reset(manager)
    tp = TopicPartition("frames", 0)
    manager.sequence_number(tp)  # the drain reads it first (a defaultdict: 0)
    manager.increment_sequence_number(tp, 5)
    assert manager.sequence_number(tp) == 5
    manager.reset_producer_id()  # what the sender does when a batch that was sent once expires
    assert manager.producer_id_and_epoch == ProducerIdAndEpoch(7, 1)
    assert manager.sequence_number(tp) == 0
    assert manager._current_state == TransactionState.READY and not manager._pending_requests


def test_with_its_epoch_spent_the_producer_asks_for_a_new_id() -> None:
    manager = ready_manager()
    manager.set_producer_id_and_epoch(ProducerIdAndEpoch(7, MAX_EPOCH))
    bump_epoch_on_reset(manager)
    manager.reset_producer_id()
    assert not manager.has_producer_id()
    manager.init_producer_id()
    assert manager._pending_requests and manager._current_state == TransactionState.INITIALIZING


def test_a_transactional_producer_is_left_as_kafka_python_made_it() -> None:
    manager = TransactionManager(transactional_id="tx", transaction_timeout_ms=60_000)
    before = manager.reset_producer_id
    ask_again_after_reset(manager)
    bump_epoch_on_reset(manager)
    assert manager.reset_producer_id == before


def test_an_init_producer_id_request_that_times_out_is_sent_again_not_fatal() -> None:
    # The same cluster log: InitProducerId went out on a connection whose earlier produce request
    # timed out (acks=all waiting for the dead node); kafka-python failed it with the connection
    # and called that fatal, so the new id was never taken.
    retry_timed_out_requests()
    manager = TransactionManager()
    manager.init_producer_id()
    handler = manager.next_request_handler(has_incomplete_batches=True)
    handler.on_complete(manager.next_in_flight_request_correlation_id(),
                        RequestTimedOutError("Request timed out after 2499 ms"))
    assert not manager.has_fatal_error()
    again = manager.next_request_handler(has_incomplete_batches=True)
    assert again is handler, "the same InitProducerId request is queued to be sent again"


def test_a_non_retriable_answer_still_fails_the_producer() -> None:
    retry_timed_out_requests()
    manager = TransactionManager()
    manager.init_producer_id()
    handler = manager.next_request_handler(has_incomplete_batches=True)
    handler.on_complete(manager.next_in_flight_request_correlation_id(), ClusterAuthorizationFailedError("no"))
    assert manager.has_fatal_error()
