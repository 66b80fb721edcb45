"""What Docker does for a Compose project's network, done with Linux namespaces, for checks that
run a compose file's services without Docker (harness/compose/cluster.py).

Why: several services each listening on the same container ports (every Kafka node's `:29092`,
`:9093`) only work as they do under Docker if each has its own network stack. So, as Docker does:
- the project's network is a Linux bridge; every container gets its own network namespace with an
  `eth0` on that bridge and its own address, hostname (UTS namespace) and /etc/hosts (mount
  namespace) where the other services' names resolve (Docker's embedded DNS answers those);
- a published port (`127.0.0.1:9192:9192`) is a listener on the host that relays each connection
  to the container's address (Docker's userland proxy, docker-proxy, does exactly that).
All of it runs inside one private user + network namespace (`unshare --map-root-user`), the
"host": no real root, nothing visible outside.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.compose.broker import CheckFailed, ns_inode, run_command
from harness.compose.file import ROOT, Binding

BRIDGE = "compose0"
SUBNET = "172.18.0"  # the first network Docker gives a Compose project; its gateway is .1
GATEWAY = f"{SUBNET}.1"
ATTACH_TIMEOUT_S = 10.0


def create_bridge() -> None:
    """The project's network, with the host's end of it (the gateway address), and the host's lo."""
    run_command("ip", "link", "set", "lo", "up")
    run_command("ip", "link", "add", BRIDGE, "type", "bridge")
    run_command("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    run_command("ip", "link", "set", BRIDGE, "up")


def hosts_file(members: dict[str, str], own: str | None) -> str:
    """/etc/hosts of a container (``own``) or of the host (None): a container resolves every
    service of the network by name, the host none of them."""
    lines = ["127.0.0.1 localhost"]
    if own is not None:
        lines += [f"{ip} {name}" for name, ip in members.items()]
    return "\n".join(lines) + "\n"


class Container:
    """One process tree in its own network, mount and UTS namespaces, attached to the bridge at
    ``ip``; with ip None, a process of the host (the host's network, its own /etc/hosts).

    The step it runs waits for one line on stdin ("network ready") before it starts, as a
    container's process only starts once Docker has set up its network.
    """

    def __init__(self, name: str, ip: str | None, step: list[str], log: Path) -> None:
        self.name, self.ip, self.log = name, ip, log
        namespaces = ["--net", "--mount", "--uts"] if ip else ["--mount"]
        # --pdeathsig: should this engine die, the container dies too; --kill-child passes that on.
        cmd = ["setpriv", "--pdeathsig", "SIGTERM", "--", "unshare", *namespaces, "--fork",
               "--kill-child=SIGTERM", "--", sys.executable, "-m", *step]
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        if ip:
            self._attach(ip)
        self._start()

    def _start(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"network ready\n")
        self.proc.stdin.flush()

    def _attach(self, ip: str) -> None:
        """veth pair: one end on the bridge, the other the container's eth0 with its address."""
        deadline = time.monotonic() + ATTACH_TIMEOUT_S
        own_net = ns_inode("net")
        while _net_inode(self.proc.pid) in {own_net, None}:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise CheckFailed(f"container {self.name} did not get its own network namespace")
            time.sleep(0.02)
        veth = f"veth-{self.name}"[:15]  # IFNAMSIZ
        run_command("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(self.proc.pid))
        run_command("ip", "link", "set", veth, "master", BRIDGE, "up")
        inside = ("nsenter", "--target", str(self.proc.pid), "--net")
        run_command(*inside, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        run_command(*inside, "ip", "link", "set", "eth0", "up")
        run_command(*inside, "ip", "link", "set", "lo", "up")
        run_command(*inside, "ip", "route", "add", "default", "via", GATEWAY)

    def signal_stop(self) -> None:
        """Close its stdin: the step's signal to stop."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def stop(self) -> None:
        """Close its stdin, wait for the step to end, then SIGTERM, then SIGKILL."""
        self.signal_stop()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def last_error(self) -> str:
        """Its last stderr line: a step's one-line failure."""
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exited with {self.proc.returncode}"


def stop_all(containers: list[Container]) -> None:
    """Stop them all at once (a node stopping alone would wait for the others)."""
    for container in containers:
        container.signal_stop()
    for container in containers:
        container.stop()


def _net_inode(pid: int) -> str | None:
    try:
        return str(os.stat(f"/proc/{pid}/ns/net").st_ino)
    except OSError:
        return None


def await_network_ready(stdin_timeout: float) -> None:
    """In a container's step: block until the engine says its network is set up."""
    ready = selectors.DefaultSelector()
    ready.register(sys.stdin, selectors.EVENT_READ)
    if not ready.select(timeout=stdin_timeout) or sys.stdin.readline().strip() != "network ready":
        raise CheckFailed("the network was not set up in time")


class PortProxy(threading.Thread):
    """Published ports: each listener on the host relays its connections to a container's port,
    as docker-proxy does. One thread, every socket with a timeout; stopped by ``close``."""

    def __init__(self, routes: dict[Binding, str]) -> None:
        super().__init__(name="port-proxy", daemon=True)
        self._stop_event = threading.Event()
        self._selector = selectors.DefaultSelector()
        for binding, container_ip in routes.items():
            try:
                listener = socket.create_server((binding.host_ip, binding.host_port))
            except OSError as err:
                raise CheckFailed(f"cannot publish {binding.host_ip}:{binding.host_port}: {err}") from err
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, (container_ip, binding.container_port))

    def run(self) -> None:
        while not self._stop_event.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                if isinstance(key.data, tuple):
                    self._accept(key.fileobj, key.data)  # type: ignore[arg-type]
                else:
                    self._relay(key.fileobj, key.data)  # type: ignore[arg-type]
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _accept(self, listener: socket.socket, target: tuple[str, int]) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            client.close()  # like docker-proxy: the container refused, so does the published port
            return
        for sock, peer in ((client, upstream), (upstream, client)):
            sock.settimeout(10)
            self._selector.register(sock, selectors.EVENT_READ, peer)

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            data = source.recv(65536)
            if data:
                sink.sendall(data)
                return
        except OSError:
            pass
        for sock in (source, sink):
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()

    def close(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
