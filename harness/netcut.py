"""A network cut on this machine's loopback: every packet to or from one TCP port is dropped.

Why: a crashed node refuses connections at once, but a cut network answers nothing, and clients
learn of it only through their timeouts: a different failure, and the one a wire or a switch
gives. Loopback carries every service of the harness, so the cut selects by port; with a node
listening for one client on its own port (``KafkaCluster(extra_listeners=...)``), that client
alone loses its path to that node while replication and the other clients go on.

How: Linux traffic control on ``lo``: an htb root qdisc that sends unclassified traffic straight
through, and a class whose leaf is the ``blackhole`` qdisc, fed by u32 filters on the port
(both directions). Set up at the cut and removed at the heal, so ``lo`` is untouched between
cuts. Needs CAP_NET_ADMIN and ``tc`` (iproute2); no iptables, no kernel modules beyond these.

Use::

    cut = LoopbackCut()
    if cut.available():
        cut.cut(port); ...; cut.heal()
"""

from __future__ import annotations

import logging
import shutil
import subprocess

log = logging.getLogger(__name__)

DEVICE = "lo"


class NetCutError(RuntimeError):
    """tc refused a step (no CAP_NET_ADMIN, no tc, a qdisc already on lo)."""


class LoopbackCut:
    """At most one cut at a time, of one or more ports."""

    def __init__(self) -> None:
        self.ports: tuple[int, ...] = ()

    @staticmethod
    def _tc(*args: str) -> None:
        result = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise NetCutError(f"tc {' '.join(args)}: {result.stderr.strip() or result.returncode}")

    def available(self) -> str | None:
        """None when a cut can be made here, else why not (one line)."""
        if shutil.which("tc") is None:
            return "no tc (iproute2) on PATH"
        try:
            self._setup()
        except NetCutError as err:
            return str(err)
        self._teardown()
        return None

    def _setup(self) -> None:
        self._tc("qdisc", "add", "dev", DEVICE, "root", "handle", "1:", "htb", "default", "99")
        try:
            self._tc("class", "add", "dev", DEVICE, "parent", "1:", "classid", "1:2", "htb", "rate", "8bit")
            self._tc("qdisc", "add", "dev", DEVICE, "parent", "1:2", "handle", "20:", "blackhole")
        except NetCutError:
            self._teardown()
            raise

    def _teardown(self) -> None:
        subprocess.run(["tc", "qdisc", "del", "dev", DEVICE, "root"], capture_output=True, timeout=10)

    def cut(self, *ports: int) -> None:
        """Drop every packet to or from each of ``ports`` until `heal`."""
        if self.ports:
            raise NetCutError(f"ports {self.ports} are cut already")
        self._setup()
        try:
            for port in ports:
                for field in ("dport", "sport"):
                    self._tc("filter", "add", "dev", DEVICE, "parent", "1:", "pref", "10", "protocol", "ip",
                             "u32", "match", "ip", field, str(port), "0xffff", "flowid", "1:2")
        except NetCutError:
            self._teardown()
            raise
        self.ports = ports
        log.info("loopback cut: ports %s", ports)

    def heal(self) -> None:
        """Let traffic through again (TCP retransmits what was dropped); a no-op without a cut."""
        if self.ports:
            self._teardown()
            log.info("loopback healed: ports %s", self.ports)
            self.ports = ()

    def __enter__(self) -> LoopbackCut:
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal()
