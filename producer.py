"""producer.py: read cameras with OpenCV, JPEG-encode each frame, publish it to Kafka.

Thin CLI: settings -> logging -> the producer service (capture/producer_service.py wires the
sources, encoders and the one publisher) -> run. One camera (--source, --camera-id) or many in one
process (repeated --camera id=source, or CAMERAS): each camera has its own capture and encode
threads, all share one Kafka client. See `python producer.py --help`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rtsp_kafka_mjpeg.capture.producer_service import ProducerService, StartError, log_secrets
from rtsp_kafka_mjpeg.logging_setup import setup_logging
from rtsp_kafka_mjpeg.settings import ProducerSettings, fail, load

PROG = "producer.py"


def main(argv: Sequence[str] | None = None) -> int:
    settings = load(ProducerSettings, argv, PROG, "Publish cameras' frames as JPEG records to a Kafka topic.")
    setup_logging(settings.log_level, log_secrets(settings))
    service = ProducerService(settings)
    try:
        service.start()
    except StartError as err:
        fail(PROG, str(err))
    service.run()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
