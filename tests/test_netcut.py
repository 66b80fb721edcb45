"""A network cut: the harness's loopback cut (bench.chaos's network_cut) drops one port's traffic
in both directions and nothing else; a producer cut off from its partition's leader for longer than
its delivery timeout drops frames while cut, and what it gave up on never lands behind newer frames."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise

import pytest
from conftest import App, app_env, wait_for

from harness.kafka_cluster import KafkaCluster
from harness.netcut import LoopbackCut
from harness.rtsp_camera import RtspCamera
from harness.topic_tap import acked_seqs, topic_seqs

CUT = LoopbackCut()
WHY_NOT = CUT.available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"no loopback cut here: {WHY_NOT}")


def echo_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return

            def echo(c: socket.socket = conn) -> None:
                with c:
                    while data := c.recv(100):
                        c.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    (a, port_a), (b, port_b) = echo_server(), echo_server()
    yield port_a, port_b
    CUT.heal()
    a.close()
    b.close()


def echoes(conn: socket.socket, data: bytes, timeout: float) -> bool:
    conn.settimeout(timeout)
    conn.sendall(data)
    try:
        return conn.recv(100) == data
    except TimeoutError:
        return False


def test_a_cut_port_answers_nothing_others_answer_and_the_open_connection_resumes_when_healed(
        servers: tuple[int, int]) -> None:
    cut_port, other_port = servers
    conn = socket.create_connection(("127.0.0.1", cut_port), timeout=2)
    other = socket.create_connection(("127.0.0.1", other_port), timeout=2)
    assert echoes(conn, b"before", 2)

    CUT.cut(cut_port)
    assert not echoes(conn, b"during", 1)  # no refusal, no reset: silence, as a cut wire gives
    with pytest.raises(TimeoutError):
        socket.create_connection(("127.0.0.1", cut_port), timeout=1)
    assert echoes(other, b"other port", 2)

    CUT.heal()
    conn.settimeout(5)
    assert conn.recv(100) == b"during"  # TCP retransmitted what the cut dropped
    assert echoes(conn, b"after", 2)
    conn.close()
    other.close()


@pytest.fixture
def cuttable_broker() -> Iterator[KafkaCluster]:
    """One node with a second client listener (CUT) that only the producer is given."""
    with KafkaCluster(n=1, extra_listeners=("CUT",)) as node:
        yield node


def test_frames_a_cut_producer_gave_up_on_never_land_behind_newer_ones(
        cuttable_broker: KafkaCluster, camera: RtspCamera, start_app: Callable[..., App], kafka_client: str) -> None:
    # Found by bench.chaos: kafka-python dropped its producer id when a sent frame expired and took a
    # new one; the expired request, still in the kernel's buffer of a closed connection, reached the
    # broker after the cut under the old id, which the broker could not fence: old frames written
    # after newer ones. Java (and librdkafka) bump the epoch of the same id instead.
    topic = "cut-frames"
    env = app_env(cuttable_broker.bootstrap_via("CUT"), topic, KAFKA_CLIENT=kafka_client, KAFKA_ACKS="all",
                  MAX_FPS="10")
    producer = start_app("producer.py", env, "--source", camera.url, "--camera-id", "cam")
    frames = lambda: topic_seqs(cuttable_broker.bootstrap, topic, {"cam": 0})["cam"]  # noqa: E731
    assert wait_for(lambda: len(frames()) > 20, 60), producer.log()

    port = cuttable_broker.listener_ports["CUT"][1]
    CUT.cut(port)
    time.sleep(12)  # past the 5 s delivery timeout and several request timeouts (closed connections)
    during = len(frames())
    CUT.heal()
    assert wait_for(lambda: len(frames()) > during + 30, 60), producer.log()
    time.sleep(15)  # TCP's retransmission backoff: what the cut held back reaches the broker by now
    assert producer.stop() == 0
    line = re.search(r"camera cam: Kafka acknowledged (\d+) frames, seqs (\S+)", producer.log())
    assert line, producer.log()[-3000:]

    seqs = frames()
    backwards = [(a, b) for a, b in pairwise(seqs) if b <= a]
    assert not backwards, f"frames written behind newer ones: {backwards[:10]}"
    assert acked_seqs(line[2]) <= set(seqs)
    assert "Kafka delivery failing" in producer.log()
