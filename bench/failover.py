"""``python -m bench --failover [--runs N]``: rounds of node failures on a three-node cluster at
Kafka's production defaults, with each Kafka client, and the viewers' gap distribution per event.

Why a bench and not a test: the defaults users run with (``broker.session.timeout.ms`` 9 s, the
quorum's 2 s fetch / 1 s election timeouts) make each event cost ~10 s plus the node's return, and
a rare stall (one run in four) only shows over many rounds. tests/test_cluster.py keeps the short
timeouts and the regression tests.

One round = four events, each followed by the node's restart and full replication:
  leader_sigkill       SIGKILL of the leader of a watched camera's partition (not the controller)
  leader_shutdown      SIGTERM (controlled shutdown) of such a leader
  controller_sigkill   SIGKILL of the active controller (which also leads a watched camera)
  follower_sigkill     SIGKILL of a node that only follows the watched camera's partition
The stack: one RTSP camera at 15 fps fed to one producer.py as three cameras, chosen so that each
node leads one of their partitions (acks=all, replication 3, min ISR 2), one consumer.py with a
viewer per camera. Per event the gap is the longest wait between two frames of the affected
camera's viewer. At the end the producer stops and every seq it saw acknowledged must be on the
topic once, in order. Goal (issue 22): every SIGKILL gap <= session timeout + 3 s (the quorum's
failover on top for the controller), every controlled-shutdown gap <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

from harness import procs
from harness.kafka_cluster import PROD_SESSION_TIMEOUT_MS, KafkaCluster
from harness.mjpeg_client import BackgroundViewer
from harness.ports import free_port, port_open
from harness.rtsp_camera import RtspCamera
from harness.topic_tap import acked_seqs, topic_seqs
from rtsp_kafka_mjpeg.settings import KAFKA_CLIENTS

from . import stats
from .app_env import project_env
from .paths import RESULTS_DIR, ROOT

log = logging.getLogger("bench.failover")

EVENTS = ("leader_sigkill", "leader_shutdown", "controller_sigkill", "follower_sigkill")
FPS = 15
SESSION_S = PROD_SESSION_TIMEOUT_MS / 1000
QUORUM_FAILOVER_S = 2.0 + 1.0  # production controller.quorum.fetch.timeout.ms + election.timeout.ms
LIMITS_S = {"leader_sigkill": SESSION_S + 3, "leader_shutdown": 1.0,
            "controller_sigkill": SESSION_S + 3 + QUORUM_FAILOVER_S, "follower_sigkill": SESSION_S + 3}
RESUME_TIMEOUT_S = 90.0
# The nodes' lines that time an event's steps on the cluster's side (timeline()); WARN otherwise.
TIMELINE_LOGGERS = {"org.apache.kafka.controller.QuorumController": "INFO",
                    "org.apache.kafka.controller.ReplicationControlManager": "INFO",
                    "state.change.logger": "INFO"}
_LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\] \w+ (?:\[QuorumController id=\d+\] )?(.*)$")


def timeline(logs: list[Path], node: int, topic: str, partition: int, since_ns: int) -> dict[str, float | None]:
    """Seconds from `since_ns` (the kill) to each step the surviving nodes logged: a new active
    controller, the dead node fenced (its session timed out), the camera's partition given a new
    leader (that broker's state-change line). The viewer's gap less the last step is what
    the clients took to follow."""
    marks: dict[str, float | None] = {"controller_active_s": None, "fenced_s": None, "leader_elected_s": None}

    def new_leader(message: str) -> bool:  # the new leader's broker says it took the partition
        took = re.match(rf"\[Broker id=(\d+)\] Leader {re.escape(topic)}-{partition} with .* starts at leader epoch",
                        message)
        return took is not None and int(took[1]) != node

    wanted = {"controller_active_s": lambda m: m.startswith("Becoming the active controller"),
              "fenced_s": lambda m: m.startswith(f"Fencing broker {node} "),
              "leader_elected_s": new_leader}
    for path in logs:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            match = _LOG_LINE.match(line)
            if not match:
                continue
            at = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000
            after = at - since_ns / 1e9
            if after < 0:
                continue
            for key, test in wanted.items():
                if test(match[3]) and (marks[key] is None or after < marks[key]):
                    marks[key] = round(after, 2)
    return marks


def wait_for(ready: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return True
        except Exception:  # noqa: BLE001 - a cluster question asked while a node is going away
            pass
        time.sleep(interval)
    return False


def resumption(viewer: BackgroundViewer, since_ns: int) -> dict[str, float | None]:
    """When the viewer's longest gap since `since_ns` ended (seconds after it), and how old the
    frame that ended it was (capture to arrival): a backlog frame, or a live one."""
    gap = viewer.longest_gap(since_ns)
    if gap is None:
        return {"viewer_resumed_s": None, "first_frame_age_s": None}
    after = gap[1]
    return {"viewer_resumed_s": round((after.received_ns - since_ns) / 1e9, 2),
            "first_frame_age_s": round((after.received_ns - after.capture_ts_ns) / 1e9, 2)}


class Rig:
    """The cluster, camera, producer, consumer and viewers of one client's rounds."""

    def __init__(self, client: str, camera: RtspCamera, log_dir: Path, app_log_level: str = "INFO") -> None:
        self.client = client
        self.app_log_level = app_log_level
        self.camera = camera
        self.log_dir = log_dir
        self.cluster = KafkaCluster(n=3, session_timeout_ms=PROD_SESSION_TIMEOUT_MS, heartbeat_interval_ms=2000)
        for node in self.cluster.nodes.values():
            node.log_levels = TIMELINE_LOGGERS
        self.topic = f"failover-{uuid.uuid4().hex[:8]}"
        self.apps: dict[str, subprocess.Popen[bytes]] = {}
        self.viewers: dict[str, BackgroundViewer] = {}
        self.cams: dict[str, int] = {}  # camera id -> partition

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"failover-{self.client}-{name}.log"

    def start_app(self, name: str, script: str, env: dict[str, str], *args: str) -> None:
        with self.log_path(name).open("wb") as out:
            proc = subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        procs.track(proc)
        self.apps[name] = proc

    def start(self) -> None:
        self.cluster.start()
        self._create_topic()
        wait_for(lambda: all(p["leader_id"] >= 0 for p in self.cluster.partitions(self.topic)), 60)
        self.cams = self._one_camera_per_leader()
        env = project_env(self.cluster.bootstrap, self.topic)
        env.update(KAFKA_ACKS="all", KAFKA_REPLICATION_FACTOR="3", KAFKA_CLIENT=self.client, MAX_FPS=str(FPS),
                   LOG_LEVEL=self.app_log_level)
        cameras = [arg for cam in self.cams for arg in ("--camera", f"{cam}={self.camera.url}")]
        self.start_app("producer", "producer.py", env, *cameras)
        port = free_port()
        cenv = project_env(self.cluster.bootstrap, self.topic)
        cenv.update(KAFKA_CLIENT=self.client)
        self.start_app("consumer", "consumer.py", cenv, "--port", str(port))
        if not wait_for(lambda: port_open("127.0.0.1", port), 60):
            raise RuntimeError(f"consumer.py did not listen: {self.log_path('consumer').read_text()[-2000:]}")
        for cam in self.cams:  # a viewer of a camera the consumer has not seen yet is answered 404
            snapshot = f"http://127.0.0.1:{port}/snapshot.jpg?camera={cam}"
            if not wait_for(lambda u=snapshot: urllib.request.urlopen(u, timeout=2).status == 200, 90, 0.5):
                raise RuntimeError(f"no {cam} frames:\n{self.log_path('producer').read_text()[-3000:]}")
            self.viewers[cam] = BackgroundViewer(f"http://127.0.0.1:{port}/video_feed?camera={cam}", cam)
        if not wait_for(lambda: all(v.streaming_since(time.time_ns() - 10**10) for v in self.viewers.values()), 90):
            raise RuntimeError(f"no video from every camera:\n{self.log_path('producer').read_text()[-3000:]}")

    def _create_topic(self) -> None:
        from kafka.admin import NewTopic

        def create(admin: Any) -> None:
            admin.create_topics([NewTopic(self.topic, 6, 3, topic_configs={
                "min.insync.replicas": "2", "max.message.bytes": str(2 * 2**20), "retention.ms": "3600000"})])
        self.cluster.ask(create)

    def _one_camera_per_leader(self) -> dict[str, int]:
        """Camera ids whose partitions the three nodes lead one each (so every event has a camera)."""
        leaders = {p["partition_index"]: p["leader_id"] for p in self.cluster.partitions(self.topic)}
        chosen: dict[int, tuple[str, int]] = {}
        for i in range(200):
            cam = f"cam-{i}"
            partition = self.cluster.partition_for_key(self.topic, cam)
            chosen.setdefault(leaders[partition], (cam, partition))
            if len(chosen) == 3:
                break
        return {cam: partition for cam, partition in chosen.values()}

    def leader(self, cam: str) -> int | None:
        return self.cluster.leader_of(self.topic, self.cams[cam])

    def pick(self, event: str) -> tuple[int, str]:
        """(node to hit, camera whose gap counts) for an event, from who leads what now."""
        controller = self.cluster.active_controller()
        leads = {self.leader(cam): cam for cam in self.cams}
        if event == "controller_sigkill":
            return controller, leads.get(controller) or next(iter(self.cams))
        if event == "follower_sigkill":
            cam = leads.get(controller) or next(iter(self.cams))  # followed by both other nodes
            return next(n for n in self.cluster.nodes if n not in (controller, self.leader(cam))), cam
        node = next((n for n in leads if n is not None and n != controller), None)
        if node is None:
            raise RuntimeError(f"no watched camera led by a node other than the controller: {leads}")
        return node, leads[node]

    def round(self, event: str) -> dict[str, Any]:
        node, cam = self.pick(event)
        started = time.time_ns()
        if event == "leader_shutdown":
            self.cluster.stop(node)
        else:
            self.cluster.kill(node)
        back = wait_for(lambda: all(v.streaming_since(started) for v in self.viewers.values()), RESUME_TIMEOUT_S)
        figures = {"event": event, "node": node, "camera": cam, "gap_s": self.viewers[cam].gap_s(started),
                   "worst_camera_gap_s": max(v.gap_s(started) for v in self.viewers.values()), "resumed": back,
                   **timeline([n.log_path for i, n in self.cluster.nodes.items() if i != node], node,
                              self.topic, self.cams[cam], started),
                   **resumption(self.viewers[cam], started)}
        self.cluster.restart(node)
        figures["replicated"] = wait_for(lambda: self.cluster.under_replicated(self.topic) == 0, 120, 0.5)
        time.sleep(2)  # leadership settles (preferred leader election) before the next event
        log.info("%s %s: node %d, %s gap %.2f s (worst camera %.2f s)%s; after the kill: controller %s s, "
                 "fenced %s s, new leader %s s, viewer resumed %s s (a frame %s s old)",
                 self.client, event, node, cam, figures["gap_s"], figures["worst_camera_gap_s"],
                 "" if back else " NOT RESUMED", figures["controller_active_s"], figures["fenced_s"],
                 figures["leader_elected_s"], figures["viewer_resumed_s"], figures["first_frame_age_s"])
        return figures

    def acknowledged_check(self) -> dict[str, Any]:
        """Stop the producer; every seq it saw acknowledged is on the topic once, in order."""
        proc = self.apps.pop("producer")
        proc.terminate()
        proc.wait(60)
        text = self.log_path("producer").read_text()
        on_topic = topic_seqs(self.cluster.bootstrap, self.topic, self.cams)
        out: dict[str, Any] = {}
        for cam in self.cams:
            line = re.search(rf"camera {re.escape(cam)}: Kafka acknowledged (\d+) frames, seqs (\S+)", text)
            acked = acked_seqs(line[2]) if line else set()
            seqs = on_topic[cam]
            backwards = [(a, b) for a, b in pairwise(seqs) if a >= b]
            out[cam] = {"acknowledged": len(acked), "on_topic": len(seqs),
                        "missing": len(acked - set(seqs)), "in_order_once": not backwards,
                        "repeated": len(seqs) - len(set(seqs)), "out_of_order_examples": backwards[:10],
                        "closing_line": bool(line)}
        out["producer_replacements"] = text.count("Kafka producer replaced")
        return out

    def close(self) -> None:
        for viewer in self.viewers.values():
            viewer.close()
        for proc in self.apps.values():
            proc.terminate()
        for proc in self.apps.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.cluster.close()


def run(runs: int, clients: tuple[str, ...], events: tuple[str, ...], log_dir: Path,
        app_log_level: str = "INFO") -> dict[str, Any]:
    log_dir.mkdir(parents=True, exist_ok=True)
    camera = RtspCamera(width=640, height=360, fps=FPS)
    camera.start()
    results: dict[str, Any] = {"runs": runs, "session_timeout_s": SESSION_S, "limits_s": LIMITS_S, "clients": {}}
    try:
        for client in clients:
            rig = Rig(client, camera, log_dir, app_log_level)
            rounds: list[dict[str, Any]] = []
            try:
                rig.start()
                for i in range(runs):
                    for event in events:
                        log.info("--- %s round %d/%d: %s", client, i + 1, runs, event)
                        rounds.append(rig.round(event))
                check = rig.acknowledged_check()
            finally:
                rig.close()
            results["clients"][client] = {"rounds": rounds, "acknowledged": check}
    finally:
        camera.stop()
    return results


def summary(results: dict[str, Any]) -> tuple[str, bool]:
    """The gap table (p50 / max per event and client, how many rounds met the goal) and whether
    every goal and the acknowledged-frames check held."""
    lines = [f"failover at production defaults ({results['runs']} rounds, session timeout {SESSION_S:g} s)",
             f"{'client':16} {'event':20} {'p50 s':>7} {'max s':>7} {'limit s':>8} {'within':>8}"]
    ok = True
    for client, data in results["clients"].items():
        for event in EVENTS:
            gaps = [r["gap_s"] for r in data["rounds"] if r["event"] == event]
            if not gaps:
                continue
            within = sum(g <= LIMITS_S[event] for g in gaps)
            ok &= within == len(gaps) and all(r["resumed"] for r in data["rounds"] if r["event"] == event)
            lines.append(f"{client:16} {event:20} {stats.pct(gaps, 50):7.2f} {max(gaps):7.2f} "
                         f"{LIMITS_S[event]:8.1f} {within:>4}/{len(gaps):<3}")
        ack = data["acknowledged"]
        cams = {k: v for k, v in ack.items() if isinstance(v, dict)}
        lost = sum(v["missing"] for v in cams.values())
        ordered = all(v["in_order_once"] and v["closing_line"] for v in cams.values())
        ok &= lost == 0 and ordered
        repeated = sum(v.get("repeated", 0) for v in cams.values())
        examples = [e for v in cams.values() for e in v.get("out_of_order_examples", [])][:3]
        order = "once and in order" if ordered else f"REPEATED ({repeated}) OR OUT OF ORDER, e.g. {examples}"
        acked = sum(v["acknowledged"] for v in cams.values())
        lines.append(f"{client:16} acknowledged {acked} frames: {lost} missing from the topic, {order}, "
                     f"producer replaced {ack['producer_replacements']} time(s)")
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench --failover", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="rounds of the four events per client (default 20)")
    parser.add_argument("--clients", default=",".join(KAFKA_CLIENTS), help="comma list of Kafka clients")
    parser.add_argument("--events", default=",".join(EVENTS), help=f"comma list from {', '.join(EVENTS)}")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "failover.json")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--app-log-level", default="INFO",
                        help="producer.py's LOG_LEVEL (DEBUG: the Kafka client's own log, to find a stall's cause)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    clients = tuple(c for c in args.clients.split(",") if c)
    events = tuple(e for e in args.events.split(",") if e)
    bad = [x for x in (*clients, *events) if x not in (*KAFKA_CLIENTS, *EVENTS)]
    if bad or args.runs < 1:
        parser.error(f"unknown client or event {bad[0]!r}" if bad else "--runs must be >= 1")
    results = run(args.runs, clients, events, RESULTS_DIR / "logs", args.app_log_level.upper())
    text, ok = summary(results)
    results["ok"] = ok
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
