"""Loopback port helpers.

Every service the harness starts listens on 127.0.0.1 on a port the kernel picked, so parallel
test runs and a developer's own services on 9092/8554 never collide.
"""

from __future__ import annotations

import random
import socket
import time


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0); there is a small race until the caller binds it,
    which is acceptable for tests on one machine.
    """
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago.

    Each is held until the last is picked: one free_port() after another may be handed the same
    port twice (7 in 5,000 draws of a cluster's nine ports here), and a node then fails at start
    with "Address already in use" on a port its neighbour took (it did in bench.chaos). So a
    service that needs several ports, or several started together, draws them here.
    """
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


def free_port_range(count: int) -> int:
    """Return the first of ``count`` consecutive TCP ports on 127.0.0.1 that were free a moment ago.

    For a CLI that serves on port, port + 1, ... (worker.py --processes N --metrics-port P).
    Picked below the kernel's ephemeral range: Linux hands connect() the even ephemeral ports
    and bind(0) the odd ones, so a run of consecutive ports inside that range collides with the
    outgoing connections of the Kafka clients on this machine (it did in CI: "Address already
    in use" on P + 1).
    """
    low = ephemeral_range()[0]
    for _ in range(200):
        start = random.randrange(10000, low - count)
        held: list[socket.socket] = []
        try:
            for port in range(start, start + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports below {low}")


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux default 32768-60999)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = f.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True when a TCP connect to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until host:port accepts TCP connections.

    Raises TimeoutError after ``timeout`` seconds, so a service that never comes up fails the
    caller quickly instead of hanging a test run.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_open(host, port):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept connections within {timeout:.1f}s")
        time.sleep(0.05)


def tcp_send_queue(local_port: int, remote_port: int) -> int | None:
    """Bytes the kernel holds unacknowledged or unsent on the IPv4 connection from ``local_port``
    to ``remote_port`` on this machine (/proc/net/tcp's tx_queue), or None if there is none.

    Tells from outside a process whether its writes to a peer are stuck: the queue stays full
    while the peer does not read.
    """
    with open("/proc/net/tcp") as table:
        next(table)  # header
        for row in table:
            fields = row.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
                return int(queues.split(":")[0], 16)
    return None
