"""Starting worker.py under test, and the topics it reads and writes.

Apart from the scenario because both windows (one camera, four cameras) start a worker the same
way: a fresh consumer group, optionally pinned with taskset, ready once it logs its offsets.
"""

from __future__ import annotations

import sys
import time
import uuid

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from ..app_env import project_env
from ..measure import Context
from ..process import Service
from .common import PROCESSOR


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1,
                                     "configs": {"max.message.bytes": str(16 * 1024 * 1024)}}})
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def start_worker(ctx: Context, name: str, bootstrap: str, frames_topic: str, results_topic: str,
                 pin: int | None = None, client: str = "kafka-python", processor: str = PROCESSOR,
                 processes: int = 1) -> Service:
    """worker.py (`processor`, every, after-processing) in a fresh group with Kafka client `client`,
    ready once each of its `processes` knows its offsets."""
    from harness.ports import free_port

    port = free_port()
    env = {**project_env(bootstrap, frames_topic), "KAFKA_RESULTS_TOPIC": results_topic,
           "WORKER_GROUP_ID": f"bench-{uuid.uuid4().hex[:8]}", "WORKER_PROCESSOR": processor,
           "WORKER_LAG_POLICY": "every", "WORKER_METRICS_PORT": str(port), "KAFKA_CLIENT": client,
           "WORKER_PROCESSES": str(processes)}
    argv = [sys.executable, "worker.py"]
    if pin is not None:  # taskset execs python: same PID, every thread on that CPU from the start
        argv = ["taskset", "-c", str(pin), *argv]
    service = Service(name, argv, env, ctx.services.log_dir, port=port).start()
    service.wait_http()
    deadline = time.monotonic() + 60
    while service.log_text().count(" from offsets ") < processes:
        if not service.alive():
            raise service.fail("exited")
        if time.monotonic() > deadline:
            service.stop()
            raise service.fail("never reported its start offsets")
        time.sleep(0.2)
    return service
