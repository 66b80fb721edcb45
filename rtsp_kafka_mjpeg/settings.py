"""One typed settings object per CLI: defaults < config.env < environment < command-line flags.

Each field carries its config key, its flag and its help text, so `--help`, `config.env`, the
README table and validation all come from the same declaration.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the setting."""


# --- value parsers: each takes the raw text and returns the value or raises ValueError ----------


def text(raw: str) -> str:
    return raw.strip()


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


def float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside {low:g}..{high:g}")
        return value

    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise ValueError(f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}")

    return parse


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{raw!r} is not true/false")


_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def bootstrap_servers(raw: str) -> str:
    servers = [s.strip() for s in raw.split(",") if s.strip()]
    if not servers:
        raise ValueError("is empty")
    for server in servers:
        match = _HOSTPORT.match(server)
        if not match or not 0 < int(match[2]) < 65536:
            raise ValueError(f"{server!r} is not host:port")
    return ",".join(servers)


_CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def camera_id(raw: str) -> str:
    value = raw.strip()
    if not _CAMERA_ID.match(value):
        raise ValueError(f"{value!r} must be 1-64 of letters, digits, '_', '.', '-'")
    return value


def camera_specs(raw: str) -> str:
    """Space-separated `id=source` pairs (ids unique, sources as for CAMERA_SOURCE); normalised."""
    specs = []
    seen: set[str] = set()
    for item in raw.split():
        name, sep, source = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not id=source")
        name = camera_id(name)
        if name in seen:
            raise ValueError(f"camera id {name!r} given twice")
        seen.add(name)
        specs.append(f"{name}={video_source(source)}")
    return " ".join(specs)


def video_source(raw: str) -> str:
    """An RTSP/HTTP URL, a camera index or a file path; URLs must have a scheme and a host."""
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    if value.isdigit():
        return value
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme.lower() not in {"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "file"}:
            raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
        if parts.scheme.lower() != "file" and not parts.hostname:
            raise ValueError("URL has no host")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError("URL has an invalid port") from None
        return value
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/", value) or not Path(value).exists():
        raise ValueError(f"{value!r} is not a URL (scheme://host/...), a camera index or an existing file")
    return value


# --- declarations -------------------------------------------------------------------------------


def option(default: Any, key: str, flag: str, help: str, parse: Callable[[str], Any] = text,
           secret: bool = False, repeat: bool = False) -> Any:
    """A settings field: its default, config key, CLI flag, help and parser. A `repeat` flag may be
    given many times; its values are joined by spaces, as the config key lists them."""
    return dataclasses.field(
        default=default,
        metadata={"key": key, "flag": flag, "help": help, "parse": parse, "secret": secret, "repeat": repeat},
    )


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
    """What both CLIs need to reach the topic."""

    bootstrap_servers: str = option("localhost:9092", "KAFKA_BOOTSTRAP_SERVERS", "--bootstrap-servers",
                                    "Kafka brokers, comma-separated host:port", bootstrap_servers)
    topic: str = option("camera-frames", "KAFKA_TOPIC", "--topic", "topic carrying the JPEG frames")
    security_protocol: str = option("PLAINTEXT", "KAFKA_SECURITY_PROTOCOL", "--security-protocol",
                                    "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                                    choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    sasl_mechanism: str = option("", "KAFKA_SASL_MECHANISM", "--sasl-mechanism",
                                 "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)",
                                 choice("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    sasl_username: str = option("", "KAFKA_SASL_USERNAME", "--sasl-username", "SASL user name")
    sasl_password: str = option("", "KAFKA_SASL_PASSWORD", "--sasl-password", "SASL password (never logged)",
                                secret=True)
    ssl_cafile: str = option("", "KAFKA_SSL_CAFILE", "--ssl-cafile", "CA bundle to verify the brokers (SSL)")
    connect_timeout_s: float = option(10.0, "KAFKA_CONNECT_TIMEOUT_S", "--connect-timeout",
                                      "seconds to wait for the brokers at start-up", float_range(0.5, 600))
    max_message_bytes: int = option(8 * 1024 * 1024, "KAFKA_MAX_MESSAGE_BYTES", "--max-message-bytes",
                                    "largest frame record (topic max.message.bytes, fetch sizes)",
                                    int_range(64 * 1024, 256 * 1024 * 1024))
    log_level: str = option("INFO", "LOG_LEVEL", "--log-level", "DEBUG, INFO, WARNING or ERROR",
                            choice("DEBUG", "INFO", "WARNING", "ERROR"))

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line."""
        return [getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("secret")]

    def kafka_client_config(self) -> dict[str, Any]:
        """Connection settings shared by kafka-python's producer, consumer and admin client."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            "bootstrap_timeout_ms": int(self.connect_timeout_s * 1000),
            "client_id": "rtsp-kafka-mjpeg",
        }
        if self.sasl_mechanism:
            config.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        if self.ssl_cafile:
            config["ssl_cafile"] = self.ssl_cafile
        return config


# The Kafka client libraries KAFKA_CLIENT may name, the default first (kafka/clients.py builds them).
KAFKA_CLIENTS = ("kafka-python", "confluent-kafka")


def kafka_client_option() -> Any:
    """Which Kafka client library producer.py, consumer.py and worker.py use (one key)."""
    return option(KAFKA_CLIENTS[0], "KAFKA_CLIENT", "--kafka-client",
                  "kafka-python (pure Python) or confluent-kafka (librdkafka: a fraction of the CPU per record, "
                  "for many cameras)", choice(*KAFKA_CLIENTS))


@dataclasses.dataclass(frozen=True)
class ProducerSettings(KafkaSettings):
    """producer.py: camera -> JPEG -> Kafka."""

    source: str = option("rtsp://127.0.0.1:8554/cam", "CAMERA_SOURCE", "--source",
                         "RTSP/HTTP URL, video file or camera index", video_source)
    camera_id: str = option("cam1", "CAMERA_ID", "--camera-id", "camera id: the record key", camera_id)
    cameras: str = option("", "CAMERAS", "--camera",
                          "many cameras in one process: id=source, repeat the flag (in config.env: "
                          "space-separated); when set, CAMERA_SOURCE and CAMERA_ID are not used",
                          camera_specs, repeat=True)
    kafka_client: str = kafka_client_option()
    rtsp_transport: str = option("tcp", "RTSP_TRANSPORT", "--rtsp-transport", "tcp or udp", choice("tcp", "udp"))
    open_timeout_s: float = option(10.0, "SOURCE_OPEN_TIMEOUT_S", "--open-timeout",
                                   "seconds to wait for the camera to open", float_range(0.5, 300))
    read_timeout_s: float = option(5.0, "SOURCE_READ_TIMEOUT_S", "--read-timeout",
                                   "seconds without a frame before the camera counts as lost", float_range(0.5, 300))
    decode_threads: int = option(1, "SOURCE_DECODE_THREADS", "--decode-threads",
                                 "FFmpeg decoder threads: 1 is cheapest per frame and adds no frame of delay; "
                                 "0 lets FFmpeg choose (needed for 4K at 25-30 fps)", int_range(0, 64))
    max_fps: float = option(0.0, "MAX_FPS", "--max-fps", "publish at most this many frames/s (0: camera rate)",
                            float_range(0, 1000))
    decoder: str = option("opencv", "SOURCE_DECODER", "--decoder",
                          "opencv (OpenCV's FFmpeg capture, decoded to BGR) or pyav (FFmpeg through PyAV: "
                          "H.264/H.265 decoded to YUV and JPEG-encoded from YUV; measured about the same CPU per "
                          "frame, less memory per camera)", choice("opencv", "pyav"))
    hwaccel: str = option("none", "HWACCEL", "--hwaccel",
                          "with SOURCE_DECODER=pyav, decode video on this device: none, auto (the first of cuda, "
                          "vaapi, qsv that opens, else software, said in one line), cuda (NVIDIA NVDEC), vaapi "
                          "(Intel/AMD) or qsv (Intel); a named device that cannot open stops the producer",
                          choice("none", "auto", "cuda", "vaapi", "qsv"))
    hwaccel_device: str = option("", "HWACCEL_DEVICE", "--hwaccel-device",
                                 "which device HWACCEL opens: a GPU index for cuda (0, 1, ...), a render node for "
                                 "vaapi (/dev/dri/renderD128); empty: the default one")
    mjpeg_passthrough: bool = option(True, "MJPEG_PASSTHROUGH", "--mjpeg-passthrough",
                                     "publish an MJPEG camera's own JPEGs unchanged (re-encoded only to resize or "
                                     "fit the record limit)", boolean)
    keyframe_decode: str = option("auto", "KEYFRAME_DECODE", "--keyframe-decode",
                                  "auto: when MAX_FPS is at most a third of the camera's rate and key frames come "
                                  "at least every ~1/MAX_FPS, decode key frames only; off: decode every frame",
                                  choice("auto", "off"))
    width: int = option(0, "FRAME_WIDTH", "--width", "resize to this width (0: keep; height follows)",
                        int_range(0, 16384))
    height: int = option(0, "FRAME_HEIGHT", "--height", "resize to this height (0: keep; width follows)",
                         int_range(0, 16384))
    jpeg_quality: int = option(80, "JPEG_QUALITY", "--jpeg-quality", "JPEG quality 1-100", int_range(1, 100))
    acks: str = option("1", "KAFKA_ACKS", "--acks", "0, 1 (leader, lowest latency with durability) or all",
                       choice("0", "1", "all"))
    linger_ms: int = option(0, "KAFKA_LINGER_MS", "--linger-ms", "producer batching delay (0: send at once)",
                            int_range(0, 10_000))
    delivery_timeout_ms: int = option(5000, "KAFKA_DELIVERY_TIMEOUT_MS", "--delivery-timeout-ms",
                                      "give up on a frame not delivered within this (live video ages fast)",
                                      int_range(1000, 600_000))
    max_inflight_bytes: int = option(32 * 1024 * 1024, "PRODUCER_MAX_INFLIGHT_BYTES", "--max-inflight-bytes",
                                     "frames awaiting the broker beyond this are dropped, not queued",
                                     int_range(1024 * 1024, 2 * 1024 * 1024 * 1024))
    create_topic: bool = option(True, "KAFKA_CREATE_TOPIC", "--create-topic",
                                "create the topic at start-up if missing", boolean)
    partitions: int = option(6, "KAFKA_PARTITIONS", "--partitions", "partitions of a created topic",
                             int_range(1, 10_000))
    replication_factor: int = option(1, "KAFKA_REPLICATION_FACTOR", "--replication-factor",
                                     "replication factor of a created topic", int_range(1, 100))
    min_insync_replicas: int = option(0, "KAFKA_MIN_INSYNC_REPLICAS", "--min-insync-replicas",
                                      "min.insync.replicas of a created topic: replicas that must have a frame "
                                      "before acks=all acknowledges it (0: replication factor - 1, at least 1, "
                                      "at most 2)", int_range(0, 100))
    retention_ms: int = option(3_600_000, "KAFKA_RETENTION_MS", "--retention-ms",
                               "retention.ms of a created topic: how far back rewind reaches",
                               int_range(60_000, 10**12))
    retention_bytes: int = option(-1, "KAFKA_RETENTION_BYTES", "--retention-bytes",
                                  "retention.bytes of a created topic, per partition (-1: no size limit)",
                                  int_range(-1, 10**15))
    metrics_port: int = option(0, "PRODUCER_METRICS_PORT", "--metrics-port",
                               "serve Prometheus /metrics on this port (0: off)", int_range(0, 65535))
    metrics_host: str = option("127.0.0.1", "PRODUCER_METRICS_HOST", "--metrics-host",
                               "address for the producer's /metrics (0.0.0.0 exposes it)")

    def topic_min_insync_replicas(self) -> int:
        """KAFKA_MIN_INSYNC_REPLICAS, or for 0 the usual choice: one replica may be down and
        acks=all writes still succeed, while each acknowledged frame is on two nodes from RF 3 on."""
        if self.min_insync_replicas:
            return self.min_insync_replicas
        return max(1, min(2, self.replication_factor - 1))

    def camera_sources(self) -> list[tuple[str, str]]:
        """(camera id, source) of every camera this process reads: CAMERAS, else the single one."""
        if self.cameras:
            return [(name, source) for name, _, source in (s.partition("=") for s in self.cameras.split())]
        return [(self.camera_id, self.source)]


def results_topic_option() -> Any:
    """The analytics results topic: worker.py writes it, consumer.py reads it (one key, one default)."""
    return option("camera-events", "KAFKA_RESULTS_TOPIC", "--results-topic",
                  "topic of the analytics workers' JSON results (worker.py writes, consumer.py shows)")


def camera_list(raw: str) -> str:
    """Comma-separated camera ids (empty: every camera); returned normalised."""
    cameras = [c.strip() for c in raw.split(",") if c.strip()]
    return ",".join(camera_id(c) for c in cameras)


@dataclasses.dataclass(frozen=True)
class ConsumerSettings(KafkaSettings):
    """consumer.py: Kafka -> hub -> MJPEG over HTTP."""

    host: str = option("127.0.0.1", "HTTP_HOST", "--host", "address to bind (0.0.0.0 exposes it)")
    port: int = option(5000, "HTTP_PORT", "--port", "HTTP port", int_range(1, 65535))
    group_id: str = option("", "KAFKA_GROUP_ID", "--group-id",
                           "consumer group (empty: every consumer process reads every camera)")
    start_from: str = option("latest", "CONSUMER_START", "--start-from", "latest or earliest",
                             choice("latest", "earliest"))
    fetch_max_wait_ms: int = option(100, "KAFKA_FETCH_MAX_WAIT_MS", "--fetch-max-wait-ms",
                                    "longest a fetch waits on the broker when no frame is there",
                                    int_range(0, 10_000))
    stale_after_s: float = option(5.0, "CAMERA_STALE_S", "--stale-after",
                                  "a camera with no frame for this long shows 'no signal'", float_range(0.5, 3600))
    max_viewers: int = option(1000, "MAX_VIEWERS", "--max-viewers", "concurrent HTTP connections at most",
                              int_range(1, 100_000))
    socket_lowat_bytes: int = option(65536, "VIEWER_SOCKET_LOWAT_BYTES", "--socket-lowat-bytes",
                                     "unsent bytes kept per viewer socket (TCP_NOTSENT_LOWAT)",
                                     int_range(4096, 16 * 1024 * 1024))
    viewer_token: str = option("", "VIEWER_TOKEN", "--viewer-token",
                               "require this token (?token= or 'Authorization: Bearer') on every route but /healthz",
                               secret=True)
    viewer_username: str = option("", "VIEWER_USERNAME", "--viewer-username",
                                  "require HTTP basic auth with this user (and VIEWER_PASSWORD)")
    viewer_password: str = option("", "VIEWER_PASSWORD", "--viewer-password", "HTTP basic auth password",
                                  secret=True)
    results_topic: str = results_topic_option()
    kafka_client: str = kafka_client_option()
    clip_max_s: float = option(600.0, "CLIP_MAX_DURATION_S", "--clip-max-duration",
                               "longest span /get exports as one clip, in seconds", float_range(1, 86_400))
    rewind_gap_s: float = option(5.0, "REWIND_GAP_S", "--rewind-gap",
                                 "a camera silent this long starts a new span in /list and is a gap for replay",
                                 float_range(0.5, 3600))


@dataclasses.dataclass(frozen=True)
class WorkerSettings(KafkaSettings):
    """worker.py: frames -> a processor, in a consumer group -> JSON results on a topic."""

    group_id: str = option("", "WORKER_GROUP_ID", "--group-id",
                           "consumer group: workers of one group share the cameras, each group gets every "
                           "frame (empty: analytics-<processor>)")
    kafka_client: str = kafka_client_option()
    processor: str = option("motion", "WORKER_PROCESSOR", "--processor",
                            "brightness, motion, people (HOG), faces (cascade), onnx (--model), or your own "
                            "as module:function")
    model: str = option("", "WORKER_MODEL", "--model",
                        "onnx: the model file (.onnx); faces: another cascade XML (default: OpenCV's "
                        "haarcascade_frontalface_default.xml from opencv-data)")
    processes: int = option(1, "WORKER_PROCESSES", "--processes",
                            "worker processes of the group on this box (a detector needs more than one core: "
                            "each process takes its share of the cameras; metrics on --metrics-port + i)",
                            int_range(1, 64))
    threads: int = option(0, "WORKER_THREADS", "--threads",
                          "threads each worker process gives OpenCV and onnxruntime (0: their default, all "
                          "cores; with --processes N each process gets cores / N, so they do not fight over them)",
                          int_range(0, 256))
    results_topic: str = results_topic_option()
    cameras: str = option("", "WORKER_CAMERAS", "--cameras",
                          "process only these camera ids, comma-separated (empty: all)", camera_list)
    commit: str = option("after-processing", "WORKER_COMMIT", "--commit",
                         "after-processing (commit what was processed and its result acknowledged: "
                         "at-least-once) or auto (periodic auto-commit: at-most-once flavoured)",
                         choice("after-processing", "auto"))
    lag_policy: str = option("every", "WORKER_LAG_POLICY", "--lag-policy",
                             "every (process every frame; lag is reported) or newest (only each camera's "
                             "newest frame; skip ahead when behind)", choice("every", "newest"))
    lag_threshold: int = option(30, "WORKER_LAG_THRESHOLD", "--lag-threshold",
                                "newest: a partition more records behind than this jumps to its newest ones",
                                int_range(1, 1_000_000))
    session_timeout_ms: int = option(10_000, "WORKER_SESSION_TIMEOUT_MS", "--session-timeout-ms",
                                     "a worker silent this long leaves the group and its cameras move on",
                                     int_range(3000, 300_000))
    metrics_port: int = option(0, "WORKER_METRICS_PORT", "--metrics-port",
                               "serve Prometheus /metrics on this port (0: off)", int_range(0, 65535))
    metrics_host: str = option("127.0.0.1", "WORKER_METRICS_HOST", "--metrics-host",
                               "address for the worker's /metrics (0.0.0.0 exposes it)")

    @property
    def group(self) -> str:
        return self.group_id or f"analytics-{self.processor.replace(':', '-')}"

    @property
    def camera_filter(self) -> frozenset[str]:
        return frozenset(self.cameras.split(",")) if self.cameras else frozenset()


S = TypeVar("S", bound=KafkaSettings)
ALL_KEYS = frozenset(
    f.metadata["key"] for cls in (ProducerSettings, ConsumerSettings, WorkerSettings)
    for f in dataclasses.fields(cls)
) | {"CONFIG_FILE"}


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if value != "" else "(empty)"


def build_parser(cls: type[KafkaSettings], prog: str, description: str) -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=prog, description=description,
                            epilog="Each flag can also be set in config.env or the environment under the "
                                   "KEY shown; flags win over the environment, which wins over config.env.")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="settings file (env CONFIG_FILE, default: config.env)")
    for f in dataclasses.fields(cls):
        meta = f.metadata
        shown = "(secret)" if meta["secret"] and f.default else _shown(f.default)
        parser.add_argument(meta["flag"], dest=f.name, default=None, metavar=meta["key"],
                            action="append" if meta["repeat"] else "store",
                            help=f"{meta['help']} (default: {shown})")
    return parser


def load(cls: type[S], argv: Sequence[str] | None, prog: str, description: str,
         environ: dict[str, str] | None = None) -> S:
    """Build `cls` from flags, environment and the config file; exit with one line on a bad value."""
    parser = build_parser(cls, prog, description)
    args = parser.parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        return resolve(cls, vars(args), env)
    except SettingsError as err:
        parser.error(str(err))


def resolve(cls: type[S], flags: dict[str, Any], env: dict[str, str]) -> S:
    """Merge the four layers and parse each value; raises SettingsError naming the setting."""
    config_path = flags.get("config") or env.get("CONFIG_FILE") or "config.env"
    file_values: dict[str, str | None] = {}
    if Path(config_path).is_file():
        try:
            file_values = dict(dotenv_values(config_path))
        except OSError as err:  # e.g. mode 600 and owned by another user (a container's uid)
            raise SettingsError(f"config file {config_path!r} not readable: {err.strerror}") from None
    elif flags.get("config") or env.get("CONFIG_FILE"):
        raise SettingsError(f"config file {config_path!r} not found")
    unknown = sorted(set(file_values) - ALL_KEYS)
    if unknown:
        raise SettingsError(f"unknown key {unknown[0]!r} in {config_path}")

    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key, flag = f.metadata["key"], f.metadata["flag"]
        if flags.get(f.name) is not None:
            raw, origin = flags[f.name], flag
            if isinstance(raw, list):  # a repeated flag
                raw = " ".join(raw)
        elif key in env:
            raw, origin = env[key], key
        elif file_values.get(key) is not None:
            raw, origin = file_values[key], f"{key} in {config_path}"
        else:
            continue
        try:
            values[f.name] = f.metadata["parse"](str(raw))
        except ValueError as err:
            detail = "is invalid" if f.metadata["secret"] else str(err)
            raise SettingsError(f"invalid {origin}: {detail}") from None
    if "cameras" in values and flags.get("cameras") is None and (flags.get("source") or flags.get("camera_id")):
        values["cameras"] = ""  # --source/--camera-id on the command line outrank CAMERAS from config
    settings = cls(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: KafkaSettings) -> None:
    if settings.sasl_mechanism and not settings.security_protocol.startswith("SASL"):
        raise SettingsError("KAFKA_SASL_MECHANISM needs KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL")
    if settings.security_protocol.startswith("SASL") and not settings.sasl_mechanism:
        raise SettingsError("KAFKA_SECURITY_PROTOCOL is SASL_* but KAFKA_SASL_MECHANISM is empty")
    if settings.sasl_mechanism and not (settings.sasl_username and settings.sasl_password):
        raise SettingsError("KAFKA_SASL_MECHANISM needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    if isinstance(settings, ProducerSettings) and settings.min_insync_replicas > settings.replication_factor:
        raise SettingsError(f"KAFKA_MIN_INSYNC_REPLICAS ({settings.min_insync_replicas}) exceeds "
                            f"KAFKA_REPLICATION_FACTOR ({settings.replication_factor}): no write could succeed")
    if isinstance(settings, ConsumerSettings) and bool(settings.viewer_username) != bool(settings.viewer_password):
        raise SettingsError("VIEWER_USERNAME and VIEWER_PASSWORD must be set together")


def fail(prog: str, message: str, status: int = 1) -> NoReturn:
    """The one-line exit for a user-caused error at the CLI edge."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.exit(status)
