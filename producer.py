"""producer.py: read a camera with OpenCV, JPEG-encode each frame, publish it to Kafka.

Thin CLI: settings -> source -> encoder -> publisher -> run. See `python producer.py --help`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
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


def main(argv: Sequence[str] | None = None) -> int:
    settings = load(ProducerSettings, argv, PROG, "Publish a camera's frames as JPEG records to a Kafka topic.")
    url_password = urlsplit(settings.source).password if "://" in settings.source else None
    setup_logging(settings.log_level, [*settings.secrets(), url_password or ""])

    stop = threading.Event()
    try:
        frame_limit = prepare_topic(settings)
        publisher = FramePublisher(settings)
    except BrokerUnavailable as err:
        fail(PROG, str(err))
    source = FrameSource(settings.source, settings.rtsp_transport, settings.open_timeout_s,
                         settings.read_timeout_s, stop, settings.decode_threads)
    try:
        source.start()
    except SourceError as err:
        publisher.close(timeout_s=1)
        fail(PROG, f"{err} (check CAMERA_SOURCE / --source)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    encoder = JpegEncoder(settings.jpeg_quality, settings.width, settings.height, frame_limit)
    pipeline = ProducerPipeline(settings.camera_id, source, encoder, publisher, stop, settings.max_fps)
    StatusLine(pipeline, stop).start()
    if settings.metrics_port:
        try:
            serve_producer_metrics(pipeline, settings.metrics_port, settings.metrics_host)
        except OSError as err:
            source.stop()
            publisher.close(timeout_s=1)
            fail(PROG, f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: {err.strerror} "
                       "(check PRODUCER_METRICS_PORT)")
    log.info("publishing camera %s from %s to topic %s at %s", settings.camera_id, source.display,
             settings.topic, settings.bootstrap_servers)
    pipeline.run()
    source.stop()
    publisher.close()
    log.info("stopped: %d frames published, %d dropped", publisher.sent, pipeline.dropped_total())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
