"""Logging for the three CLIs, set up once: one line per event, secrets masked on every handler
(redact.SecretFilter), and kafka-python's per-reconnect ERROR lines silenced (our own code says
each state change once)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .redact import SecretFilter


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Configure root logging once: one line per event, secrets masked on every handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python logs every reconnect attempt at ERROR; we log each state change once instead.
    logging.getLogger("kafka").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.CRITICAL)
