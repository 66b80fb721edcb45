"""The harness's loopback network cut (bench.chaos's network_cut): one port's traffic dropped in
both directions, every other port untouched, and an open connection carrying on once healed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from harness.netcut import LoopbackCut

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
