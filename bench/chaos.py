"""``python -m bench.chaos [--minutes 60] [--seed N]``: random faults every 30 s on the three-node
cluster, and at the end every viewer live, memory flat, nothing acknowledged lost.

The stack (all on this machine): a three-node KRaft cluster at Kafka's production defaults, two
RTSP cameras fed to one producer.py as four cameras (one per partition; acks=all, replication 3,
min ISR 2), two consumer.py with three viewers each, a worker group of two worker.py (motion).
Every `--every` seconds one fault from a schedule drawn with `--seed`, printed as it happens:
  camera_kill       SIGKILL of camera A, restarted 5 s later
  camera_pause      SIGSTOP of camera A for 5 s, then SIGCONT
  broker_kill       SIGKILL of a random node, restarted once the viewers are back
  broker_stop       SIGTERM (controlled shutdown) of a random node, restarted likewise
  consumer_kill     SIGKILL of consumer 1, restarted; its viewers reconnect
  worker_kill       SIGKILL of worker 1, restarted
  producer_restart  SIGTERM of producer.py (it flushes), started again
  viewer_drop       a viewer's connection closed, a new one opened
  junk              non-JPEG and over-limit records published onto the frames topic
  network_cut       every packet between the producer and a random node dropped for 20 s (the
                    producer reaches the nodes on a listener of its own; harness.netcut drops
                    that port's traffic on loopback: needs CAP_NET_ADMIN and tc, else left out
                    and said so): the cameras that node leads wait, the others must not
Consumer 0, worker 0 and camera B are never hit: they are the long-lived processes whose RSS, fds
and threads (summed over each process tree) must stay flat (first vs last tenth of the run), with
the producer and the cluster's nodes where they lived through. Recovery is counted from the fault
until every viewer shows frames captured after it was undone (the node faults: after the fault
itself, the other two nodes carry the video; worker_kill: until the group's results cover every
camera again; network_cut: from the heal). Consumer 1 has a fourth viewer that rewinds: it asks
for the last 30 s at 4x (`start=-30s&speed=4`), catches up and goes on live, again after every
reconnect; it must be live at the end like the others.

At the end, asserted and printed: every viewer live (newest frame captured < 2 s ago); flat
resources; per producer run every seq it logged as acknowledged on the topic, once, in order; every
frame below the worker group's committed offsets has a result; per fault kind the count, the
recovery time p50 / max (fault until every viewer shows frames captured after the fault was undone)
and the longest viewer gap. Results in bench/results/chaos.json; exit 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

import psutil
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from harness import procs
from harness.kafka_cluster import PROD_SESSION_TIMEOUT_MS, KafkaCluster
from harness.mjpeg_client import MjpegViewer
from harness.netcut import LoopbackCut
from harness.ports import free_port, port_open
from harness.rtsp_camera import RtspCamera
from harness.topic_tap import acked_seqs

from . import stats
from .app_env import project_env
from .failover import wait_for
from .paths import RESULTS_DIR, ROOT

log = logging.getLogger("bench.chaos")

FAULTS = ("camera_kill", "camera_pause", "broker_kill", "broker_stop", "consumer_kill", "worker_kill",
          "producer_restart", "viewer_drop", "junk", "network_cut")
FPS = 10
CUT_S = 20.0
OTHER_CAMERAS_GAP_S = 2.0  # during a cut, the cameras the cut node does not lead: no gap above this
PRODUCER_LISTENER = "PRODUCER"
REWIND = "start=-30s&speed=4"
LIVE_AGE_S = 2.0
RECOVERY_TIMEOUT_S = 90.0
# flat: last window's mean vs the first's
RSS_GROWTH = (1.25, 30 * 2**20)  # at most 25 % and 30 MB more
FDS_GROWTH = 10
THREADS_GROWTH = 8


class Viewer:
    """An MJPEG viewer that keeps only when each part was captured and arrived (an hour of JPEGs
    would not fit in memory); `reopen` drops the connection and opens a new one."""

    def __init__(self, url: str, name: str, camera: str, rewinds: bool = False) -> None:
        self.url, self.name, self.camera, self.rewinds = url, name, camera, rewinds
        self.arrivals: list[int] = []
        self.newest_capture_ns = 0
        self.captures: list[int] = []
        self._lock = threading.Lock()
        self._conn: MjpegViewer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"viewer-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._conn = MjpegViewer(self.url)
                conn.sock.settimeout(0.5)
            except OSError:
                self._stop.wait(0.5)
                continue
            while not self._stop.is_set() and self._conn is conn:
                try:
                    data = conn.sock.recv(1 << 20)
                except TimeoutError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    break
                now = time.time_ns()
                parts = conn.on_data(data)
                if conn.status and conn.status != 200:
                    break  # a camera the consumer has not seen yet (404), or it is starting: ask again
                with self._lock:
                    for part in parts:
                        self.arrivals.append(now)
                        self.captures.append(part.capture_ts_ns)
                        self.newest_capture_ns = max(self.newest_capture_ns, part.capture_ts_ns)
            conn.close()
            self._stop.wait(0.3)  # the server went away (consumer killed): reconnect as a page would

    def reopen(self) -> None:
        self._conn = None  # the reading loop closes it and connects again

    def shows_frames_after(self, ts_ns: int) -> bool:
        return self.newest_capture_ns > ts_ns

    def gap_s(self, since_ns: int, until_ns: int) -> float:
        with self._lock:
            arrivals = [t for t in self.arrivals if since_ns - 2 * 10**9 <= t <= until_ns]
        return round(max((b - a for a, b in pairwise(arrivals)), default=0) / 1e9, 2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class ResultsTap:
    """The newest analysed capture time per camera on the results topic, read in the background."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.newest: dict[str, int] = {}
        self._consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), auto_offset_reset="latest",
                                       enable_auto_commit=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="results-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batches = self._consumer.poll(timeout_ms=500)
            except Exception:  # noqa: BLE001 - a node going away; the next poll asks another
                continue
            for records in batches.values():
                for rec in records:
                    result = json.loads(rec.value)
                    cam = result.get("camera", "")
                    self.newest[cam] = max(self.newest.get(cam, 0), int(result.get("capture_ts_ns", 0)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


class Rig:
    """The stack and the faults; `apps` maps a role (producer, consumer0, ...) to its process."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.cluster = KafkaCluster(n=3, session_timeout_ms=PROD_SESSION_TIMEOUT_MS, heartbeat_interval_ms=2000,
                                    extra_listeners=(PRODUCER_LISTENER,))
        self.netcut = LoopbackCut()
        self.topic = f"chaos-{uuid.uuid4().hex[:8]}"
        self.results_topic = f"{self.topic}-results"
        self.group = f"chaos-{uuid.uuid4().hex[:6]}"
        self.cameras = {name: RtspCamera(width=320, height=240, fps=FPS) for name in ("A", "B")}
        self.apps: dict[str, subprocess.Popen[bytes]] = {}
        self.runs: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self.viewers: list[Viewer] = []
        self.cams: dict[str, tuple[str, int]] = {}  # camera id -> (RTSP camera, partition)
        self.samples: dict[str, list[tuple[float, int, int, int, int]]] = {}  # role -> (t, pid, rss, fds, threads)
        self.results: ResultsTap | None = None

    # -- the stack -----------------------------------------------------------------------------

    def log_path(self, role: str) -> Path:
        return self.log_dir / f"chaos-{role}-{self.runs.get(role, 0)}.log"

    def start_app(self, role: str, script: str, env: dict[str, str], *args: str) -> None:
        self.runs[role] = self.runs.get(role, 0) + 1
        with self.log_path(role).open("wb") as out:
            proc = subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        procs.track(proc)
        self.apps[role] = proc

    def start(self) -> None:
        for cam in self.cameras.values():
            cam.start()
        self.cluster.start()
        from kafka.admin import NewTopic

        self.cluster.ask(lambda admin: admin.create_topics([
            NewTopic(self.topic, 4, 3, topic_configs={"min.insync.replicas": "2", "max.message.bytes": str(2**20)}),
            NewTopic(self.results_topic, 1, 3, topic_configs={"min.insync.replicas": "2"})]))
        wait_for(lambda: all(p["leader_id"] >= 0 for p in self.cluster.partitions(self.topic)), 60)
        for partition in range(4):
            cam = next(f"cam-{i}" for i in range(500)
                       if self.cluster.partition_for_key(self.topic, f"cam-{i}") == partition)
            self.cams[cam] = ("A" if partition < 2 else "B", partition)
        self.start_producer()
        for i in range(2):
            self.start_consumer(i)
        for i in range(2):
            self.start_worker(i)
        self.results = ResultsTap(self.cluster.bootstrap, self.results_topic)
        for i in range(2):
            for cam in list(self.cams)[i:i + 3]:
                url = f"http://127.0.0.1:{self.ports[f'consumer{i}']}/video_feed?camera={cam}"
                self.viewers.append(Viewer(url, f"consumer{i}-{cam}", cam))
        cam = list(self.cams)[-1]
        url = f"http://127.0.0.1:{self.ports['consumer1']}/video_feed?camera={cam}&{REWIND}"
        self.viewers.append(Viewer(url, f"consumer1-{cam}-rewinding", cam, rewinds=True))
        if not wait_for(lambda: all(v.shows_frames_after(time.time_ns() - 10**9) for v in self.viewers), 120):
            raise RuntimeError(f"not every viewer shows video:\n{self.log_path('producer').read_text()[-3000:]}")

    def env(self) -> dict[str, str]:
        env = project_env(self.cluster.bootstrap, self.topic)
        env.update(KAFKA_RESULTS_TOPIC=self.results_topic, LOG_LEVEL="INFO")
        return env

    def start_producer(self) -> None:
        env = self.env()
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.cluster.bootstrap_via(PRODUCER_LISTENER)  # cuttable alone
        env.update(KAFKA_ACKS="all", KAFKA_REPLICATION_FACTOR="3", MAX_FPS=str(FPS))
        cams = [a for cam, (rtsp, _) in self.cams.items() for a in ("--camera", f"{cam}={self.cameras[rtsp].url}")]
        self.start_app("producer", "producer.py", env, *cams)

    def start_consumer(self, i: int) -> None:
        port = self.ports.setdefault(f"consumer{i}", free_port())
        self.start_app(f"consumer{i}", "consumer.py", self.env(), "--port", str(port))
        if not wait_for(lambda: port_open("127.0.0.1", port), 60):
            raise RuntimeError(f"consumer{i} did not listen: {self.log_path(f'consumer{i}').read_text()[-2000:]}")

    def start_worker(self, i: int) -> None:
        self.start_app(f"worker{i}", "worker.py", self.env(), "--processor", "motion", "--group-id", self.group)

    # -- faults --------------------------------------------------------------------------------

    def restart(self, role: str, sig: int) -> None:
        """Signal the role's whole process group (consumer.py's web workers too: a crash takes the
        container's every process), wait for it, start it again."""
        proc = self.apps[role]
        os.killpg(proc.pid, sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        {"producer": self.start_producer, "consumer1": lambda: self.start_consumer(1),
         "worker1": lambda: self.start_worker(1)}[role]()

    def fault(self, kind: str, rng: random.Random) -> dict[str, Any]:
        """Do one fault and undo it; returns what was hit and when it was undone."""
        t0 = time.time_ns()
        target = ""
        recovery: float | None = None
        if kind == "camera_kill":
            target = "camera A"
            self.cameras["A"].kill()
            time.sleep(5)
            self.cameras["A"].start()
        elif kind == "camera_pause":
            target = "camera A"
            pid = self.cameras["A"].pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            time.sleep(5)
            os.kill(pid, signal.SIGCONT)
        elif kind in ("broker_kill", "broker_stop"):
            node = rng.choice(sorted(self.cluster.nodes))
            target = f"node {node} ({self.node_role(node)})"
            t0 = time.time_ns()  # the question above is not part of the fault
            (self.cluster.kill if kind == "broker_kill" else self.cluster.stop)(node)
            # the other two nodes carry the video: recovery counts until then, not the node's return
            back = self.recovered(t0) is not None
            recovery = round((time.time_ns() - t0) / 1e9, 2) if back else None
            self.cluster.restart(node)
            wait_for(lambda: self.cluster.under_replicated(self.topic) == 0, 120, 0.5)
        elif kind == "consumer_kill":
            target = "consumer1"
            self.restart("consumer1", signal.SIGKILL)
            wait_for(lambda: port_open("127.0.0.1", self.ports["consumer1"]), 60)
        elif kind == "worker_kill":
            target = "worker1"
            self.restart("worker1", signal.SIGKILL)
        elif kind == "producer_restart":
            target = "producer"
            self.restart("producer", signal.SIGTERM)
        elif kind == "viewer_drop":
            viewer = rng.choice(self.viewers)
            target = viewer.name
            viewer.reopen()
        elif kind == "junk":
            target = "frames topic"
            self.publish_junk()
        elif kind == "network_cut":
            node = rng.choice(sorted(self.cluster.nodes))
            target = f"producer - node {node}"
            behind = self.cameras_led_by(node)
            self.netcut.cut(self.cluster.listener_ports[PRODUCER_LISTENER][node])
            try:
                time.sleep(CUT_S)
            finally:
                self.netcut.heal()
            others = [v for v in self.viewers if v.camera not in behind and not v.rewinds]
            extra = {"cameras_behind_cut": behind,
                     "other_cameras_gap_s": max((v.gap_s(t0, time.time_ns()) for v in others), default=0.0)}
        undone = time.time_ns()
        event = {"kind": kind, "target": target, "t_ns": t0, "undone_ns": undone}
        if kind == "network_cut":
            event.update(extra)
        if kind in ("broker_kill", "broker_stop"):
            event["recovery_s"] = recovery
        return event

    def cameras_led_by(self, node: int) -> list[str]:
        """The cameras whose partition the node leads now."""
        return sorted(cam for cam, (_, p) in self.cams.items() if self.cluster.leader_of(self.topic, p) == node)

    def node_role(self, node: int) -> str:
        """What a node does just before its fault: a crashed active controller costs the quorum's
        election on top of the session timeout, and only the cameras a node leads lose video."""
        from kafka.errors import KafkaError

        try:
            controller: int | None = self.cluster.active_controller()
        except (KafkaError, RuntimeError):
            controller = None
        leads = self.cameras_led_by(node)
        role = "active controller, " if controller == node else ""
        return role + (f"leads {', '.join(leads)}" if leads else "leads no camera")

    def recovered(self, since_ns: int, results: bool = False) -> float | None:
        """Seconds until every viewer shows a frame captured after `since_ns` (with `results`: until
        the worker group's results cover every camera's frames captured after it); None: not within
        the timeout."""
        start = time.monotonic()
        if results:
            ready = lambda: all(self.results.newest.get(cam, 0) > since_ns for cam in self.cams)  # noqa: E731
        else:
            # the rewinding viewer shows the past at first, by design: live only once it caught up
            ready = lambda: all(v.shows_frames_after(since_ns) for v in self.viewers if not v.rewinds)  # noqa: E731
        if not wait_for(ready, RECOVERY_TIMEOUT_S):
            return None
        return time.monotonic() - start

    def publish_junk(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.cluster.bootstrap.split(","), acks="all",
                                 max_request_size=2**20 + 4096)
        try:
            for cam in self.cams:
                producer.send(self.topic, value=b"not a jpeg", key=cam.encode())
            producer.send(self.topic, value=b"\xff\xd8" + os.urandom(1000), key=next(iter(self.cams)).encode(),
                          headers=[("seq", b"x")])
            producer.flush(30)
        finally:
            producer.close(5)

    # -- measurements --------------------------------------------------------------------------

    def sample(self) -> None:
        roles = {"consumer0": self.apps["consumer0"].pid, "worker0": self.apps["worker0"].pid,
                 "producer": self.apps["producer"].pid, "camera B": self.cameras["B"].pid,
                 **{f"node {n}": node.pid for n, node in self.cluster.nodes.items()}}
        now = time.monotonic()
        for role, pid in roles.items():
            if pid is None:
                continue
            try:
                tree = [psutil.Process(pid)]
                tree += tree[0].children(recursive=True)  # consumer.py's web workers
                row = (now, pid, sum(p.memory_info().rss for p in tree), sum(p.num_fds() for p in tree),
                       sum(p.num_threads() for p in tree))
            except psutil.Error:
                continue
            self.samples.setdefault(role, []).append(row)

    def stop_all(self) -> None:
        for role in ("producer", "worker0", "worker1"):
            proc = self.apps.get(role)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(60)

    def close(self) -> None:
        self.netcut.heal()
        for v in self.viewers:
            v.close()
        if self.results is not None:
            self.results.close()
        for proc in self.apps.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.cluster.close()
        for cam in self.cameras.values():
            cam.close()


# -- end checks -------------------------------------------------------------------------------


def topic_frames(rig: Rig) -> dict[str, list[tuple[int, int, int]]]:
    """Every record on the frames topic per camera, in log order: (seq or -1 for junk, capture ts, offset)."""
    consumer = KafkaConsumer(bootstrap_servers=rig.cluster.bootstrap.split(","), enable_auto_commit=False,
                             max_partition_fetch_bytes=2**21)
    try:
        tps = [TopicPartition(rig.topic, p) for p in range(4)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: dict[str, list[tuple[int, int, int]]] = {cam: [] for cam in rig.cams}
        deadline = time.monotonic() + 300
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                for rec in records:
                    h = dict(rec.headers)
                    valid = rec.value[:2] == b"\xff\xd8" and h.get("seq", b"x").isdigit() and "capture-ts-ns" in h
                    out.setdefault(rec.key.decode(), []).append(
                        (int(h["seq"]) if valid else -1, int(h["capture-ts-ns"]) if valid else 0, rec.offset))
        return out
    finally:
        consumer.close()


def acknowledged_check(rig: Rig, frames: dict[str, list[tuple[int, int, int]]]) -> dict[str, Any]:
    """Per producer run (its log; runs do not overlap in time): every acknowledged seq on the topic
    once, in order."""
    out: dict[str, Any] = {"runs": rig.runs.get("producer", 0), "cameras": {}}
    logs, starts = [], []
    for run in range(1, rig.runs.get("producer", 0) + 1):
        text = (rig.log_dir / f"chaos-producer-{run}.log").read_text()
        first = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+)", text, re.M)
        at = time.mktime(time.strptime(first[1], "%Y-%m-%d %H:%M:%S")) + int(first[2]) / 1000 if first else 0.0
        logs.append(text)
        starts.append(int(at * 1e9))
    for cam in rig.cams:
        per_cam = {"acknowledged": 0, "missing": 0, "repeated": 0, "backwards": 0, "runs_without_closing_line": 0}
        for i, text in enumerate(logs):
            # runs never overlap: a frame belongs to the run that had started when it was captured
            until = starts[i + 1] if i + 1 < len(starts) else 1 << 62
            seqs = [s for s, ts, _ in frames.get(cam, []) if s >= 0 and starts[i] <= ts < until]
            line = re.search(rf"camera {re.escape(cam)}: Kafka acknowledged (\d+) frames, seqs (\S+)", text)
            if line is None:
                per_cam["runs_without_closing_line"] += 1
                continue
            acked = acked_seqs(line[2])
            per_cam["acknowledged"] += len(acked)
            per_cam["missing"] += len(acked - set(seqs))
            per_cam["repeated"] += len(seqs) - len(set(seqs))
            per_cam["backwards"] += sum(1 for a, b in pairwise(seqs) if a >= b)
        out["cameras"][cam] = per_cam
    out["ok"] = all(c["missing"] == 0 and c["repeated"] == 0 and c["backwards"] == 0
                    and c["runs_without_closing_line"] == 0 for c in out["cameras"].values())
    return out


def worker_check(rig: Rig, frames: dict[str, list[tuple[int, int, int]]]) -> dict[str, Any]:
    """Every valid frame below the group's committed offset of its partition has a result."""
    consumer = KafkaConsumer(bootstrap_servers=rig.cluster.bootstrap.split(","), group_id=rig.group,
                             enable_auto_commit=False)
    try:
        committed = {p: consumer.committed(TopicPartition(rig.topic, p)) or 0 for p in range(4)}
    finally:
        consumer.close()
    reader = KafkaConsumer(bootstrap_servers=rig.cluster.bootstrap.split(","), enable_auto_commit=False,
                           auto_offset_reset="earliest", consumer_timeout_ms=5000)
    done: set[tuple[int, int]] = set()
    try:
        tp = TopicPartition(rig.results_topic, 0)
        reader.assign([tp])
        end = reader.end_offsets([tp])[tp]
        while reader.position(tp) < end:
            for records in reader.poll(timeout_ms=1000).values():
                for rec in records:
                    source = json.loads(rec.value).get("source", {})
                    done.add((source.get("partition"), source.get("offset")))
    finally:
        reader.close()
    missing = []
    for cam, rows in frames.items():
        partition = rig.cams[cam][1] if cam in rig.cams else None
        for seq, _, offset in rows:
            if seq >= 0 and partition is not None and offset < committed[partition] and (partition, offset) not in done:
                missing.append((partition, offset))
    return {"committed": committed, "results": len(done), "missing": len(missing), "missing_examples": missing[:10],
            "ok": not missing and all(committed.values())}


def flatness(rig: Rig, window: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for role, rows in rig.samples.items():
        pid = rows[-1][1]
        mine = [r for r in rows if r[1] == pid]
        if mine[-1][0] - mine[0][0] < 2 * window:
            out[role] = {"checked": False, "why": "restarted during the run"}
            continue
        first = [r for r in mine if r[0] - mine[0][0] <= window]
        last = [r for r in mine if mine[-1][0] - r[0] <= window]

        def mean(rs: list[tuple[float, int, int, int, int]], i: int) -> float:
            return sum(r[i] for r in rs) / len(rs)

        rss0, rss1 = mean(first, 2), mean(last, 2)
        fds0, fds1 = mean(first, 3), mean(last, 3)
        th0, th1 = mean(first, 4), mean(last, 4)
        ok = (rss1 <= max(rss0 * RSS_GROWTH[0], rss0 + RSS_GROWTH[1]) and fds1 - fds0 <= FDS_GROWTH
              and th1 - th0 <= THREADS_GROWTH)
        out[role] = {"checked": True, "rss_mb": [round(rss0 / 2**20, 1), round(rss1 / 2**20, 1)],
                     "fds": [round(fds0, 1), round(fds1, 1)], "threads": [round(th0, 1), round(th1, 1)], "ok": ok}
    return out


def run(minutes: float, every_s: float, seed: int, log_dir: Path, faults: tuple[str, ...] = FAULTS) -> dict[str, Any]:
    log_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rig = Rig(log_dir)
    events: list[dict[str, Any]] = []
    why_not = rig.netcut.available()
    kinds_here = [k for k in faults if k != "network_cut" or why_not is None]
    if why_not:
        log.warning("network_cut left out: %s", why_not)
    try:
        rig.start()
        log.info("stack up: topic %s, cameras %s; %g minutes of faults every %g s (seed %d)",
                 rig.topic, {c: p for c, (_, p) in rig.cams.items()}, minutes, every_s, seed)
        start = time.monotonic()
        next_fault = start + every_s
        schedule: list[str] = []  # rounds of every kind, each round in its own shuffled order
        while len(schedule) < minutes * 60 / every_s + 1:
            schedule += rng.sample(kinds_here, len(kinds_here))
        while time.monotonic() - start < minutes * 60:
            rig.sample()
            if time.monotonic() >= next_fault and schedule:
                kind = schedule.pop(0)
                log.info("fault %d: %s", len(events) + 1, kind)
                event = rig.fault(kind, rng)
                if "recovery_s" not in event:
                    back = rig.recovered(event["undone_ns"], results=kind == "worker_kill") is not None
                    event["recovery_s"] = round((time.time_ns() - event["t_ns"]) / 1e9, 2) if back else None
                event["longest_gap_s"] = max(v.gap_s(event["t_ns"], time.time_ns()) for v in rig.viewers)
                log.info("  %s %s: recovered in %s s, longest viewer gap %.2f s%s", kind, event["target"],
                         event["recovery_s"], event["longest_gap_s"],
                         f" (cameras behind it {event['cameras_behind_cut']}, the others' longest gap "
                         f"{event['other_cameras_gap_s']:.2f} s)" if kind == "network_cut" else "")
                events.append(event)
                next_fault = time.monotonic() + every_s
            time.sleep(1.0)
        now = time.time_ns()
        live = {v.name: round((now - v.newest_capture_ns) / 1e9, 2) for v in rig.viewers}
        window = max(60.0, minutes * 6)  # a tenth of the run
        flat = flatness(rig, window)
        rig.stop_all()
        frames = topic_frames(rig)
        acked = acknowledged_check(rig, frames)
        worker = worker_check(rig, frames)
    finally:
        rig.close()
    kinds: dict[str, Any] = {}
    for kind in kinds_here:
        mine = [e for e in events if e["kind"] == kind]
        rec = [e["recovery_s"] for e in mine if e["recovery_s"] is not None]
        kinds[kind] = {"count": len(mine), "not_recovered": len(mine) - len(rec),
                       "recovery_p50_s": round(stats.pct(rec, 50) or 0, 2) if rec else None,
                       "recovery_max_s": max(rec) if rec else None,
                       "longest_gap_s": max((e["longest_gap_s"] for e in mine), default=None)}
    checks = {"viewers_live": all(age < LIVE_AGE_S for age in live.values()),
              "resources_flat": all(f.get("ok", True) for f in flat.values()),
              "acknowledged_once_in_order": acked["ok"], "committed_have_results": worker["ok"],
              "every_fault_recovered": all(k["not_recovered"] == 0 for k in kinds.values()),
              "a_cut_spares_the_other_cameras": all(e["other_cameras_gap_s"] <= OTHER_CAMERAS_GAP_S
                                                    for e in events if e["kind"] == "network_cut")}
    return {"minutes": minutes, "every_s": every_s, "seed": seed, "network_cut": why_not or "done",
            "events": events, "kinds": kinds,
            "viewer_age_s": live, "flat": flat, "acknowledged": acked, "worker": worker, "checks": checks,
            "ok": all(checks.values())}


def report(r: dict[str, Any]) -> str:
    lines = [f"chaos: {r['minutes']:g} min, a fault every {r['every_s']:g} s, seed {r['seed']}", "",
             "| fault | count | recovery p50 / max (s) | longest viewer gap (s) |", "|---|---|---|---|"]
    for kind, k in r["kinds"].items():
        lost = f" (not recovered: {k['not_recovered']})" if k["not_recovered"] else ""
        lines.append(f"| {kind} | {k['count']} | {k['recovery_p50_s']} / {k['recovery_max_s']}{lost} | "
                     f"{k['longest_gap_s']} |")
    lines += ["", "| process | RSS MB first / last | fds | threads | flat |", "|---|---|---|---|---|"]
    for role, f in r["flat"].items():
        if f["checked"]:
            lines.append(f"| {role} | {f['rss_mb'][0]} / {f['rss_mb'][1]} | {f['fds'][0]:g} / {f['fds'][1]:g} | "
                         f"{f['threads'][0]:g} / {f['threads'][1]:g} | {'yes' if f['ok'] else 'NO'} |")
        else:
            lines.append(f"| {role} | - | - | - | not checked: {f['why']} |")
    ack = r["acknowledged"]
    cuts = [e for e in r["events"] if e["kind"] == "network_cut"]
    if cuts:
        lines += ["", "network cuts (producer - node, 20 s): cameras behind the cut; the other cameras' longest gap: "
                  + "; ".join(f"{e['target'].split(' - ')[1]}: {e['cameras_behind_cut']}, {e['other_cameras_gap_s']} s"
                              for e in cuts)]
    elif r["network_cut"] != "done":
        lines += ["", f"network_cut left out: {r['network_cut']}"]
    lines += ["", f"viewers' newest frame age at the end (s): {r['viewer_age_s']}",
              f"producer runs {ack['runs']}; per camera acknowledged / missing / repeated / backwards: "
              + ", ".join(f"{c} {v['acknowledged']}/{v['missing']}/{v['repeated']}/{v['backwards']}"
                          for c, v in ack["cameras"].items()),
              f"worker group: committed {r['worker']['committed']}, frames below them without a result: "
              f"{r['worker']['missing']}", "",
              "checks: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in r["checks"].items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description="Random faults every 30 s on a three-node cluster; at the end every viewer live, resources "
                    "flat, every acknowledged frame on the topic once and in order (results in --out).")
    parser.add_argument("--minutes", type=float, default=60.0, help="how long faults are made (default 60)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=None, help="the schedule's seed (default: random, printed)")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help="comma-separated kinds to draw from (default: all): " + ", ".join(FAULTS))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "chaos.json")
    args = parser.parse_args(argv)
    faults = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    if not faults or set(faults) - set(FAULTS):
        parser.error(f"--faults: unknown kind in {args.faults!r} (kinds: {', '.join(FAULTS)})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    result = run(args.minutes, args.every, seed, RESULTS_DIR / "logs", faults)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(report(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
