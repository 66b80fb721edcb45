"""Is the cluster answering? KafkaHealth is what /healthz reports about the frame subscriber;
BrokerProbe asks the brokers from its own thread and client, so the frame thread never blocks on
a node that is going away."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

log = logging.getLogger(__name__)

PROBE_EVERY_S = 1.0
# Asks in one probe before "not answering". kafka-python sends each ask to a node picked at random
# among those not in reconnect backoff, so a node that just died can be asked twice in a row (CI
# saw it once: a crashed leader counted as an outage); each refused connect lengthens its backoff,
# so the next asks go to the nodes that live. A whole cluster down refuses all four in milliseconds.
ASKS_PER_PROBE = 4


@dataclasses.dataclass(frozen=True)
class KafkaHealth:
    """What /healthz says about the subscriber: are the brokers answering, and does an unexpected
    error (`error`, its exception type) keep failing the polls. Only the type is kept: /healthz is
    open without auth, and an error's text may hold anything; the log has the details."""

    connected: bool
    error: str = ""
    failures: int = 0

    @property
    def ok(self) -> bool:
        return self.connected and not self.error

    @property
    def reason(self) -> str | None:
        if self.error:
            return f"the Kafka subscriber failed {self.failures} time(s) in a row: {self.error}"
        if not self.connected:
            return "the Kafka brokers are not answering"
        return None


class BrokerProbe:
    """Asks the cluster for its topics every `interval_s` from its own thread and Kafka client and
    reports (answered, why-not) to `report`. Any live broker can answer, so one node of three down
    is not an outage; frames not arriving is no proof either way (an idle camera sends none)."""

    def __init__(self, new_client: Callable[[], Any], report: Callable[[bool, str], None],
                 stop: threading.Event, interval_s: float = PROBE_EVERY_S) -> None:
        self._new_client = new_client
        self._report = report
        self._stop = stop
        self._interval = interval_s
        self._client: Any = None
        self._thread = threading.Thread(target=self._run, name="kafka-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def check(self) -> None:
        """One probe, reported. A failed ask is tried again at once, up to ASKS_PER_PROBE asks,
        before it counts: the node asked may be the one that just died."""
        for attempt in range(1, ASKS_PER_PROBE + 1):
            try:
                self._client = self._client or self._new_client()
                self._client.topics()
                self._report(True, "")
                return
            except KafkaError as err:
                if attempt == ASKS_PER_PROBE:
                    self._report(False, type(err).__name__)
            except Exception:  # health only; the frame loop reports real failures
                log.debug("broker probe failed", exc_info=True)
                return

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self._interval)
        if self._client is not None:
            self._client.close()
