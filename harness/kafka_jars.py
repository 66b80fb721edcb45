"""Fetch an Apache Kafka broker's jars from Maven Central with Maven, cached under .cache/kafka.

Why Maven and not the release tarball: the workplace reaches Maven Central but not the Apache
download mirrors, and Docker is not available. ``kafka_2.13`` and its runtime dependencies are
everything ``kafka.Kafka`` needs, except an SLF4J binding: Kafka 4.x brings ``slf4j-api`` 1.7
plus ``log4j-core`` but leaves the binding to its distribution, and without one every broker log
line is dropped. So ``log4j-slf4j-impl`` of the same version as the ``log4j-core`` that came
along is copied in a second step (same version, so log4j's api/core/binding never disagree).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache" / "kafka"
# The version the harness runs (env KAFKA_VERSION overrides it). 4.4.0 was checked with
# kafka-python 3.0.12: admin create/list topics, produce/consume with headers, SASL/PLAIN, TLS,
# SASL_SSL with SCRAM-SHA-256. docker-compose.yml's images name the same version.
DEFAULT_VERSION = "4.4.0"

POM_TEMPLATE = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <!-- Written by harness/kafka_jars.py: only used to copy Kafka's jars, never built. -->
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.harness</groupId>
  <artifactId>kafka-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <properties><kafka.version>4.4.0</kafka.version></properties>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${kafka.version}</version>
    </dependency>
  </dependencies>
</project>
"""


def kafka_version(explicit: str | None = None) -> str:
    """The Kafka version to run: ``explicit``, else env ``KAFKA_VERSION``, else ``DEFAULT_VERSION``."""
    return explicit or os.environ.get("KAFKA_VERSION") or DEFAULT_VERSION


def libs_dir(version: str) -> Path:
    """Return the folder holding the jars of Kafka ``version`` (it may not exist yet)."""
    return CACHE_DIR / version / "libs"


def _is_complete(libs: Path, version: str) -> bool:
    """Both the broker jar and the logging binding present means a finished earlier fetch."""
    return (libs / f"kafka_2.13-{version}.jar").is_file() and any(libs.glob("log4j-slf4j-impl-*.jar"))


class ToolMissing(RuntimeError):
    """A program the broker needs (java, mvn) is not installed; the message says what to install."""


def require_tools() -> None:
    """Fail with one line naming what to install, instead of a FileNotFoundError traceback."""
    missing = [name for name in ("java", "mvn") if shutil.which(name) is None]
    if missing:
        raise ToolMissing(f"{' and '.join(missing)} not found: install Java 17+ and Maven "
                          "(Debian: apt-get install default-jre-headless maven, or run scripts/setup.sh)")


def _mvn(args: list[str], cwd: Path) -> None:
    """Run Maven quietly in batch mode; raise with its output when it fails."""
    require_tools()
    cmd = ["mvn", "-q", "-B", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{tail}")


def fetch_kafka(version: str) -> Path:
    """Make sure the jars of Kafka ``version`` are cached and return their folder.

    Downloads into a temporary sibling folder and renames it into place at the end, so an
    interrupted fetch or two test processes fetching at once never leave a half-filled cache
    that the next run would trust.
    """
    libs = libs_dir(version)
    if _is_complete(libs, version):
        return libs
    if not re.fullmatch(r"[0-9A-Za-z.\-]+", version):
        raise ValueError(f"suspicious Kafka version {version!r}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    pom = CACHE_DIR / "pom.xml"
    pom.write_text(POM_TEMPLATE)
    log.info("fetching Kafka %s jars from Maven Central into %s", version, libs)
    tmp = Path(tempfile.mkdtemp(prefix=f"libs-{version}-", dir=CACHE_DIR))
    try:
        _mvn(
            [
                "dependency:copy-dependencies",
                f"-Dkafka.version={version}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ],
            cwd=CACHE_DIR,
        )
        cores = sorted(tmp.glob("log4j-core-*.jar"))
        if not cores:
            raise RuntimeError(f"Kafka {version} brought no log4j-core; cannot bind SLF4J")
        log4j_version = cores[0].name.removeprefix("log4j-core-").removesuffix(".jar")
        _mvn(
            [
                "dependency:copy",
                f"-Dartifact=org.apache.logging.log4j:log4j-slf4j-impl:{log4j_version}",
                f"-DoutputDirectory={tmp}",
            ],
            cwd=CACHE_DIR,
        )
        if not _is_complete(tmp, version):
            raise RuntimeError(f"Maven ran but {tmp} lacks kafka_2.13-{version}.jar")
        libs.parent.mkdir(parents=True, exist_ok=True)
        if libs.exists():  # someone else finished first, or a broken leftover
            if _is_complete(libs, version):
                return libs
            shutil.rmtree(libs)
        os.rename(tmp, libs)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return libs


LOG4J2_TEMPLATE = """# Written by harness/kafka_broker.py: broker logs to a file in its data dir, WARN and up,
# plus the one INFO line per start/stop that tells when the broker was really up.
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""


def write_log4j2_config(path: Path, log_file: Path, levels: dict[str, str] | None = None) -> None:
    """Write a log4j2 properties file sending the broker's logs to ``log_file``; ``levels`` (logger
    name -> level) adds loggers above WARN, e.g. the controller's lines a failover timeline reads."""
    extra = "".join(f"logger.extra{i}.name = {name}\nlogger.extra{i}.level = {level}\n"
                    for i, (name, level) in enumerate((levels or {}).items()))
    path.write_text(LOG4J2_TEMPLATE.format(log_file=str(log_file).replace("\\", "/")) + extra)


def main() -> int:
    """``python -m harness.kafka_jars``: cache the broker's jars (scripts/setup.sh); one line on failure."""
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    version = kafka_version()
    try:
        print(f"kafka {version} jars in {fetch_kafka(version)}", flush=True)
    except ToolMissing as err:
        sys.stderr.write(f"setup: error: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
