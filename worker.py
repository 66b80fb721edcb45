"""worker.py: an analytics worker: frames from Kafka, in a consumer group, through a processor,
JSON results back to Kafka (key = camera id).

Thin CLI: settings -> processor -> broker check -> worker loop. See `python worker.py --help`.
Several (or --processes N) with one --group-id share the cameras; another group gets every frame.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from kafka.errors import KafkaError

from rtsp_kafka_mjpeg.analytics.metrics import WorkerMetrics
from rtsp_kafka_mjpeg.analytics.processes import run_processes
from rtsp_kafka_mjpeg.analytics.processors import ProcessorLoadError, load_processor
from rtsp_kafka_mjpeg.analytics.worker import AnalyticsWorker, WorkerStatusLine
from rtsp_kafka_mjpeg.kafka.broker_check import BrokerUnavailable, check_brokers, explained_failures
from rtsp_kafka_mjpeg.logging_setup import setup_logging
from rtsp_kafka_mjpeg.settings import WorkerSettings, fail, load

PROG = "worker.py"
log = logging.getLogger("worker")


def main(argv: Sequence[str] | None = None) -> int:
    settings = load(WorkerSettings, argv, PROG,
                    "Run a processor (brightness, motion, people, faces, onnx or module:function) on every "
                    "frame of a Kafka topic of JPEG frames, in a consumer group, and publish one JSON result "
                    "per frame.")
    setup_logging(settings.log_level, settings.secrets())
    try:
        name, processor = load_processor(settings.processor, settings.model, settings.threads)
    except ProcessorLoadError as err:
        fail(PROG, f"{err} (check WORKER_PROCESSOR / --processor)", status=2)
    if settings.processes > 1:  # the processor checked once here; each child is a whole worker
        return run_processes(Path(__file__), argv, settings.processes, settings.metrics_port, settings.threads)
    metrics = WorkerMetrics()
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port, settings.metrics_host)
        except OSError as err:
            fail(PROG, f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: {err.strerror} "
                       "(check WORKER_METRICS_PORT)")
    stop = threading.Event()
    try:
        check_brokers(settings)
        with explained_failures(settings):
            worker = AnalyticsWorker(settings, name, processor, metrics, stop)
            worker.producer.partitions_for(settings.results_topic)  # metadata now: the first send never waits
    except BrokerUnavailable as err:
        fail(PROG, str(err))
    except KafkaError as err:
        fail(PROG, f"cannot use results topic {settings.results_topic!r}: {type(err).__name__} (create it, or "
                   "let the brokers create topics; check KAFKA_RESULTS_TOPIC)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    WorkerStatusLine(worker, stop).start()
    log.info("worker %s: processor %s, group %s, topic %s -> %s at %s (commit %s, lag policy %s%s, threads %s)",
             worker.worker, name, settings.group, settings.topic, settings.results_topic,
             settings.bootstrap_servers, settings.commit, settings.lag_policy,
             f", cameras {settings.cameras}" if settings.cameras else "", settings.threads or "all cores")
    worker.run()
    m = metrics
    log.info("stopped: %d frames processed, %d skipped, %d failed, %d invalid records, %d results published",
             m.total(m.processed), m.total(m.skipped), m.total(m.failed), m.total(m.invalid), m.total(m.results))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
