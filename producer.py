"""producer.py: read cameras with OpenCV, JPEG-encode each frame, publish it to Kafka.

Thin CLI: settings -> sources -> encoders -> one publisher -> run. One camera (--source,
--camera-id) or many in one process (repeated --camera id=source, or CAMERAS): each camera has
its own capture and encode threads, all share one Kafka client. See `python producer.py --help`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from rtsp_kafka_mjpeg.broker_check import BrokerUnavailable
from rtsp_kafka_mjpeg.encoder import JpegEncoder
from rtsp_kafka_mjpeg.metrics import serve_producer_metrics
from rtsp_kafka_mjpeg.pipeline import ProducerPipeline, StatusLine
from rtsp_kafka_mjpeg.publisher import FramePublisher, prepare_topic
from rtsp_kafka_mjpeg.redact import setup_logging
from rtsp_kafka_mjpeg.settings import ProducerSettings, fail, load
from rtsp_kafka_mjpeg.source import FrameSource, SourceError

PROG = "producer.py"
log = logging.getLogger("producer")


def url_password(source: str) -> str:
    return (urlsplit(source).password or "") if "://" in source else ""


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


def main(argv: Sequence[str] | None = None) -> int:
    settings = load(ProducerSettings, argv, PROG, "Publish cameras' frames as JPEG records to a Kafka topic.")
    cameras = settings.camera_sources()
    setup_logging(settings.log_level, [*settings.secrets(), *(url_password(src) for _, src in cameras)])

    stop = threading.Event()
    try:
        frame_limit = prepare_topic(settings)
        publisher = FramePublisher(settings)
    except BrokerUnavailable as err:
        fail(PROG, str(err))
    sources = {camera: FrameSource(src, settings.rtsp_transport, settings.open_timeout_s, settings.read_timeout_s,
                                   stop, settings.decode_threads, mjpeg_passthrough=settings.mjpeg_passthrough,
                                   max_fps=settings.max_fps, keyframes=settings.keyframe_decode,
                                   decoder=settings.decoder)
               for camera, src in cameras}
    failed = open_all(sources)
    if len(failed) == len(sources):
        publisher.close(timeout_s=1)
        where = "CAMERAS / --camera" if settings.cameras else "CAMERA_SOURCE / --source"
        fail(PROG, "; ".join(f"{err}" for err in failed.values()) + f" (check {where})")
    for camera, err in failed.items():
        log.warning("camera %s: %s; retrying in the background while the other cameras stream", camera, err)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    pipelines = []
    for camera, source in sources.items():
        source.start(open_first=False)
        encoder = JpegEncoder(settings.jpeg_quality, settings.width, settings.height, frame_limit)
        pipelines.append(ProducerPipeline(camera, source, encoder, publisher, stop, settings.max_fps))
    StatusLine(pipelines, stop).start()
    if settings.metrics_port:
        try:
            serve_producer_metrics(pipelines, settings.metrics_port, settings.metrics_host)
        except OSError as err:
            stop.set()
            for source in sources.values():
                source.stop()
            publisher.close(timeout_s=1)
            fail(PROG, f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: {err.strerror} "
                       "(check PRODUCER_METRICS_PORT)")
    for pipeline in pipelines:
        log.info("publishing camera %s from %s to topic %s at %s", pipeline.camera_id, pipeline.source.display,
                 settings.topic, settings.bootstrap_servers)
    threads = [pipeline.start() for pipeline in pipelines]
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(timeout=2)
    for source in sources.values():
        source.stop()
    publisher.close()
    log.info("stopped: %d frames published, %d dropped", publisher.sent, sum(p.dropped_total() for p in pipelines))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
