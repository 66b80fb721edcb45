"""The environments the measured apps start with: ours and the tutorial's, both sealed.

Apart from the process launcher because these are the benchmark's half of a promise
``tests/test_harness_hygiene.py`` checks: a setting exported in the developer's shell never
reaches an app, so it can never change a figure.
"""

from __future__ import annotations

from harness.sealed_env import sealed_environ

from .paths import ROOT


def project_env(bootstrap: str, topic: str) -> dict[str, str]:
    """The environment tests/conftest.py gives producer.py / consumer.py: the shell sealed
    (harness.sealed_env), so a developer's exported settings never change the figures."""
    env = sealed_environ()
    env.update(CONFIG_FILE=str(ROOT / "config.env"), KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TOPIC=topic,
               PYTHONUNBUFFERED="1")
    return env


def baseline_env(bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    """The tutorial reads BOOTSTRAP, TOPIC, RTSP_URL and PORT; its OpenCV and Python are sealed
    like ours, so both sides of the comparison run in the same environment."""
    env = sealed_environ()
    env.update(BOOTSTRAP=bootstrap, TOPIC=topic, PYTHONUNBUFFERED="1", **extra)
    return env
