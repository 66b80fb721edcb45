"""Find secrets in an app's log: the values it was handed, and any URL password left unmasked.

The secrets are read from what the app was started with, so a new secret setting (declared with
``option(..., secret=True)``) or a new credential in a test's camera URL is checked without
anyone updating a list here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import unquote

from rtsp_kafka_mjpeg.settings import ConsumerSettings, ProducerSettings

# Values the suite's tests hand to the apps; kept so a leak is caught even if the value reached
# the app some other way than its environment or flags.
KNOWN_TEST_SECRETS = ("S4sl-p4ss-never-logged", "Sup3r-S3cret-pw", "Wr0ng-pa55word", "tok-3x4mpl3-value",
                      "pw-3x4mpl3-value", "Wr0ng-s4sl-pass")
# scheme://user:password@ with a password other than the mask "***".
UNMASKED_URL_PASSWORD = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:(?!\*\*\*@)[^/\s@]+@")
_URL_PASSWORD = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:(?P<pw>[^/@\s]+)@")
# The apps mask values of 3+ characters (redact.SecretFilter); shorter ones would match by chance.
MIN_SECRET_LEN = 3

_SECRET_FIELDS = [f for cls in (ProducerSettings, ConsumerSettings) for f in dataclasses.fields(cls)
                  if f.metadata.get("secret")]
SECRET_KEYS = frozenset(f.metadata["key"] for f in _SECRET_FIELDS)
SECRET_FLAGS = frozenset(f.metadata["flag"] for f in _SECRET_FIELDS)


def url_passwords(text: str) -> set[str]:
    """Passwords embedded in URLs in ``text``, as written and percent-decoded."""
    found = {m["pw"] for m in _URL_PASSWORD.finditer(text)}
    return found | {unquote(pw) for pw in found}


def secrets_given(env: Mapping[str, str], args: Sequence[str]) -> set[str]:
    """Every secret an app started with ``env`` and ``args`` knows."""
    found = {v for k, v in env.items() if k in SECRET_KEYS}
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag in SECRET_FLAGS:
            found.add(value if eq else (args[i + 1] if i + 1 < len(args) else ""))
    for text in [*env.values(), *args]:
        found |= url_passwords(text)
    return {s for s in found if len(s) >= MIN_SECRET_LEN}


def leaks(log_text: str, secrets: Iterable[str]) -> list[str]:
    """Each place in ``log_text`` that gives a secret away (empty: none). A secret is named by its
    first two characters and length only, so the failure report does not spread it further."""
    found = []
    for number, line in enumerate(log_text.splitlines(), 1):
        found += [f"line {number}: secret {s[:2]}... ({len(s)} chars)" for s in sorted(set(secrets)) if s in line]
        if UNMASKED_URL_PASSWORD.search(line):
            found.append(f"line {number}: a URL with an unmasked password")
    return found
