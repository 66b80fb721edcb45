#!/usr/bin/env bash
# Installs everything the demo, the tests and the benchmark need on a fresh Debian machine:
# system packages (RTSP camera, Chromium, ffmpeg), a virtualenv from requirements*.txt and
# Apache Kafka's jars from Maven Central. Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-plugins-bad gstreamer1.0-x chromium ffmpeg iproute2
  opencv-data
)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The Kafka broker needs Java 17+ (a JRE is enough; keytool for the TLS tests comes with it) and
# Maven fetches its jars. Either may come from elsewhere (SDKMAN, a Temurin JDK): only install
# Debian's when the command is missing or too old.
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
java_version=$(java_major 2>/dev/null || true)
[ "${java_version:-0}" -ge 17 ] || missing+=(default-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
if [ "${#missing[@]}" -gt 0 ] && ! command -v apt-get >/dev/null; then
  echo "setup: error: not a Debian/Ubuntu machine; install these yourself, then rerun: ${missing[*]}" >&2
  exit 1
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages"
  # opencv-contrib-python-headless replaced opencv-python-headless (OpenCV 5 keeps HOG and the
  # cascade detector there); both own cv2/, so the old one goes first.
  if .venv/bin/pip show -q opencv-python-headless 2>/dev/null; then
    .venv/bin/pip uninstall -y -q opencv-python-headless
    .venv/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps \
      "$(grep '^opencv-contrib-python-headless==' requirements.txt)"
  fi
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

.venv/bin/python -m harness.kafka_jars
.venv/bin/python -m harness.media
