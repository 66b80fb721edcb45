"""`make demo`: a local Kafka broker, a demo RTSP camera, producer.py, a motion worker.py and consumer.py.

Everything runs on loopback with config.env's defaults (broker localhost:9092, camera
rtsp://127.0.0.1:8554/cam, viewer http://127.0.0.1:5000/), so what the demo shows is exactly
what a user gets running the CLIs by hand: the page shows the camera with the motion worker's
boxes drawn over it. Ctrl-C stops them all.

`--cluster` (`make demo-cluster`) swaps the broker for a three-node KRaft cluster on ports
9092-9094 (Kafka's default 9 s broker session) and runs the producer with replication factor 3,
min ISR 2 and acks=all, as on a production cluster.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness import procs
from harness.kafka_broker import KafkaBroker
from harness.kafka_cluster import PROD_SESSION_TIMEOUT_MS, KafkaCluster
from harness.ports import port_open
from harness.rtsp_camera import RtspCamera

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("demo")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kafka-port", type=int, default=9092)
    parser.add_argument("--camera-port", type=int, default=8554)
    parser.add_argument("--http-port", type=int, default=5000)
    parser.add_argument("--size", default="1280x720", help="camera picture size WxH")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--cluster", action="store_true",
                        help="three KRaft nodes on KAFKA_PORT..KAFKA_PORT+2, replication 3, acks=all")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    width, height = (int(v) for v in args.size.split("x"))

    kafka_ports = [args.kafka_port + i for i in range(3 if args.cluster else 1)]
    for port, what in (*((p, "Kafka") for p in kafka_ports), (args.camera_port, "camera"), (args.http_port, "viewer")):
        if port_open("127.0.0.1", port):
            sys.exit(f"demo: port {port} ({what}) is already in use; stop what runs there or pick another port")

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    broker: KafkaBroker | KafkaCluster
    replication: list[str] = []
    if args.cluster:
        broker = KafkaCluster(n=3, session_timeout_ms=PROD_SESSION_TIMEOUT_MS, heartbeat_interval_ms=2000,
                              ports=kafka_ports)
        replication = ["--replication-factor", "3", "--min-insync-replicas", "2", "--acks", "all"]
    else:
        broker = KafkaBroker(port=args.kafka_port, data_dir=ROOT / ".cache" / "demo-kafka")
    camera = RtspCamera(port=args.camera_port, width=width, height=height, fps=args.fps)
    apps: list[subprocess.Popen[bytes]] = []
    try:
        log.info("starting Kafka %s on 127.0.0.1:%s", "cluster" if args.cluster else "broker",
                 ",".join(map(str, kafka_ports)))
        broker.start()
        camera.start()
        log.info("demo camera streaming at %s", camera.url)
        common = ["--bootstrap-servers", ",".join(f"127.0.0.1:{p}" for p in kafka_ports)]
        for argv in (["producer.py", *common, *replication, "--source", camera.url, "--camera-id", "demo"],
                     ["worker.py", *common, "--processor", "motion"],
                     ["consumer.py", *common, "--port", str(args.http_port)]):
            proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT)
            procs.track(proc)
            apps.append(proc)
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", args.http_port) and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.2)
        print(f"\n  Open http://127.0.0.1:{args.http_port}/  (stream: http://127.0.0.1:{args.http_port}/video_feed)"
              "\n  Ctrl-C stops the demo.\n", flush=True)
        while not stop.wait(1.0):
            for proc in apps:
                if proc.poll() is not None:
                    log.error("%s exited with status %s", proc.args[1], proc.returncode)
                    stop.set()
    finally:
        for proc in reversed(apps):
            procs.terminate(proc)
        camera.stop()
        broker.close()  # the single broker keeps its data dir (passed in); the cluster's is a temp dir
    return 0


if __name__ == "__main__":
    sys.exit(main())
