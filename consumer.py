"""consumer.py: read the frames topic and stream it to browsers as MJPEG (plus an index page).

Thin CLI: settings -> pre-flight checks -> gunicorn (gevent) serving the Flask app, whose worker
runs the one Kafka subscriber. See `python consumer.py --help`.
"""

from gevent import monkey

monkey.patch_all()  # first: kafka-python's IO thread and our hub must cooperate with gevent

import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from rtsp_kafka_mjpeg.kafka.broker_check import BrokerUnavailable, check_brokers  # noqa: E402
from rtsp_kafka_mjpeg.logging_setup import setup_logging  # noqa: E402
from rtsp_kafka_mjpeg.settings import ConsumerSettings, fail, load  # noqa: E402
from rtsp_kafka_mjpeg.web.auth import is_loopback  # noqa: E402
from rtsp_kafka_mjpeg.web.server import BindError, StreamServer, check_bindable  # noqa: E402

PROG = "consumer.py"
log = logging.getLogger("consumer")


def main(argv: Sequence[str] | None = None) -> int:
    settings = load(ConsumerSettings, argv, PROG, "Serve a Kafka topic of JPEG frames as live MJPEG over HTTP.")
    setup_logging(settings.log_level, settings.secrets())
    try:
        check_bindable(settings.host, settings.port)
    except BindError as err:
        fail(PROG, f"{err} (check HTTP_HOST / HTTP_PORT)")
    try:
        check_brokers(settings)
    except BrokerUnavailable as err:
        fail(PROG, str(err))
    if not is_loopback(settings.host) and not (settings.viewer_token or settings.viewer_username):
        log.warning("HTTP_HOST %s exposes the video to the network without authentication; "
                    "set VIEWER_TOKEN or VIEWER_USERNAME/VIEWER_PASSWORD", settings.host)
    log.info("serving topic %s from %s at http://%s:%d/", settings.topic, settings.bootstrap_servers,
             settings.host, settings.port)
    StreamServer(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
