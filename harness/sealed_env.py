"""The environment our apps get in tests and the benchmark: the caller's shell, minus everything
that would change what producer.py / consumer.py do.

Why: a developer with VIEWER_TOKEN, JPEG_QUALITY or LOG_LEVEL exported, or an OpenCV/FFmpeg
option set for another project, must get the same results as CI. Dropped:

- every settings key (``rtsp_kafka_mjpeg.settings.ALL_KEYS``, CONFIG_FILE included), taken from
  the settings declaration itself so a new setting is sealed without touching this file;
- OpenCV/FFmpeg (``OPENCV_*``): capture options, log levels (a verbose FFmpeg prints the camera
  URL with its password), backend order;
- the Python interpreter's own switches (``PYTHON*``: PYTHONPATH could shadow our packages,
  PYTHONWARNINGS=error turns a warning into a crash, PYTHONOPTIMIZE strips asserts);
- the libraries' switches: gunicorn (GUNICORN_*, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS,
  SCRIPT_NAME, SENDFILE, PORT, systemd socket activation), gevent (GEVENT_*: resolver, loop),
  prometheus-client (multiprocess mode, _created series), Flask/Werkzeug (FLASK_*, WERKZEUG_*);
- proxies (``*_proxy`` in any case): FFmpeg and urllib would send loopback traffic through them.

Kept: what a process needs to run at all and does not change our code's decisions (PATH, HOME,
LANG/LC_*, TZ, TMPDIR, LD_*, coverage hooks).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from rtsp_kafka_mjpeg.settings import ALL_KEYS

DROPPED_PREFIXES = ("OPENCV_", "PYTHON", "GUNICORN_", "GEVENT_", "PROMETHEUS_", "FLASK_", "WERKZEUG_")
DROPPED_NAMES = frozenset({
    "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "SCRIPT_NAME", "SENDFILE", "PORT",
    "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
})
PROXY_NAMES = frozenset({"http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy"})


def changes_app_behaviour(key: str) -> bool:
    """True for a variable that would make our apps behave differently from CI."""
    return (key in ALL_KEYS or key in DROPPED_NAMES or key.upper().startswith(DROPPED_PREFIXES)
            or key.lower() in PROXY_NAMES)


def sealed_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default: this process's) without what ``changes_app_behaviour``."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if not changes_app_behaviour(k)}
