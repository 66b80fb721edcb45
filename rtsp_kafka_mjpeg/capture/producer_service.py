"""The producer's composition root: settings -> one source, encoder and pipeline per camera ->
one shared publisher, and the order things start and stop in (the consumer's is web.server).

Policy that lives here and nowhere else: every camera is opened at once; if none opens the
producer refuses to start, if some do the others retry in the background while those stream;
at shutdown the pipelines stop first, then the cameras, then the publisher, which waits for the
frames already handed to Kafka (nothing acknowledged is lost to a Ctrl-C).
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from ..kafka.broker_check import BrokerUnavailable
from ..kafka.publisher import FramePublisher
from ..kafka.topics import prepare_topic
from ..metrics import serve_producer_metrics
from ..settings import ProducerSettings
from .encoder import JpegEncoder
from .hwaccel import HwaccelError, HwDecoder, choose
from .pipeline import ProducerPipeline, StatusLine
from .source import FrameSource, SourceError

log = logging.getLogger("producer")


class StartError(Exception):
    """The producer cannot start: one line for the user, already naming the setting to check."""


def url_password(source: str) -> str:
    """The password in a camera URL, so the log filter can mask it wherever it appears."""
    return (urlsplit(source).password or "") if "://" in source else ""


def log_secrets(settings: ProducerSettings) -> list[str]:
    """Every secret the producer holds (Kafka credentials, camera passwords): masked in its log."""
    return [*settings.secrets(), *(url_password(src) for _, src in settings.camera_sources())]


def camera_source(settings: ProducerSettings, source: str, stop: threading.Event,
                  hw: HwDecoder | None = None) -> FrameSource:
    """One camera's reader, configured from the settings (not yet opened)."""
    return FrameSource(source, settings.rtsp_transport, settings.open_timeout_s, settings.read_timeout_s, stop,
                       settings.decode_threads, mjpeg_passthrough=settings.mjpeg_passthrough,
                       max_fps=settings.max_fps, keyframes=settings.keyframe_decode, decoder=settings.decoder, hw=hw)


def hardware_decoder(settings: ProducerSettings) -> HwDecoder | None:
    """HWACCEL's device, opened once before any camera (hwaccel.py); StartError for a named device
    that cannot decode here, or one named without the pyav decoder that would use it."""
    if settings.hwaccel == "none" or (settings.hwaccel == "auto" and settings.decoder != "pyav"):
        return None
    if settings.decoder != "pyav":
        raise StartError(f"HWACCEL={settings.hwaccel} needs SOURCE_DECODER=pyav (OpenCV's capture decodes in "
                         "software)")
    try:
        return choose(settings.hwaccel, settings.hwaccel_device)
    except HwaccelError as err:
        raise StartError(f"{err}; check HWACCEL / --hwaccel") from None


def open_all(sources: dict[str, FrameSource]) -> dict[str, SourceError]:
    """Open every camera at once (a dead one costs its open timeout once, not once per camera
    before it); the errors of those that could not be opened, by camera id."""
    def try_open(source: FrameSource) -> SourceError | None:
        try:
            source.open()
        except SourceError as err:
            return err
        return None

    with ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="open") as pool:
        results = dict(zip(sources, pool.map(try_open, sources.values()), strict=True))
    return {camera: err for camera, err in results.items() if err is not None}


class ProducerService:
    """Cameras -> JPEG -> Kafka for one producer.py process. start() raises StartError with the
    line to print; run() blocks until SIGINT/SIGTERM (or `stop`), then shuts down in order."""

    def __init__(self, settings: ProducerSettings, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.publisher: FramePublisher | None = None
        self.sources: dict[str, FrameSource] = {}
        self.pipelines: list[ProducerPipeline] = []

    def start(self) -> None:
        s = self.settings
        hw = hardware_decoder(s)
        try:
            frame_limit = prepare_topic(s)
            self.publisher = FramePublisher(s)
        except BrokerUnavailable as err:
            raise StartError(str(err)) from None
        self.sources = {camera: camera_source(s, src, self.stop, hw) for camera, src in s.camera_sources()}
        failed = open_all(self.sources)
        if len(failed) == len(self.sources):
            self.publisher.close(timeout_s=1)
            where = "CAMERAS / --camera" if s.cameras else "CAMERA_SOURCE / --source"
            raise StartError("; ".join(f"{err}" for err in failed.values()) + f" (check {where})")
        for camera, err in failed.items():
            log.warning("camera %s: %s; retrying in the background while the other cameras stream", camera, err)

        for camera, source in self.sources.items():
            source.start(open_first=False)
            encoder = JpegEncoder(s.jpeg_quality, s.width, s.height, frame_limit)
            self.pipelines.append(ProducerPipeline(camera, source, encoder, self.publisher, self.stop, s.max_fps))
        StatusLine(self.pipelines, self.stop).start()
        if s.metrics_port:
            try:
                serve_producer_metrics(self.pipelines, s.metrics_port, s.metrics_host)
            except OSError as err:
                self.stop.set()
                for source in self.sources.values():
                    source.stop()
                self.publisher.close(timeout_s=1)
                raise StartError(f"cannot serve metrics on {s.metrics_host}:{s.metrics_port}: {err.strerror} "
                                 "(check PRODUCER_METRICS_PORT)") from None

    def run(self) -> None:
        """Publish until stopped, then stop in order: pipelines, cameras, publisher (flushes)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        for pipeline in self.pipelines:
            log.info("publishing camera %s from %s to topic %s at %s", pipeline.camera_id, pipeline.source.display,
                     self.settings.topic, self.settings.bootstrap_servers)
        threads = [pipeline.start() for pipeline in self.pipelines]
        while not self.stop.wait(1.0):
            pass
        for thread in threads:
            thread.join(timeout=2)
        for source in self.sources.values():
            source.stop()
        assert self.publisher is not None
        self.publisher.close()
        log.info("stopped: %d frames published, %d dropped", self.publisher.sent,
                 sum(p.dropped_total() for p in self.pipelines))
