"""What a run measures and for how long: resolutions, scenario names and window lengths.

Three presets share one shape so that ``--smoke`` exercises exactly the code of a full run, only
with shorter windows and fewer levels (CI checks that numbers come out, never their values).
"""

from __future__ import annotations

import dataclasses

from rtsp_kafka_mjpeg.settings import KAFKA_CLIENTS


@dataclasses.dataclass(frozen=True)
class Resolution:
    """A camera mode; the clip for it is encoded once and cached (``harness.clips``)."""

    name: str
    width: int
    height: int
    fps: int


RESOLUTIONS: dict[str, Resolution] = {
    r.name: r
    for r in (
        Resolution("720p30", 1280, 720, 30),
        Resolution("1080p30", 1920, 1080, 30),
        Resolution("2160p15", 3840, 2160, 15),
    )
}

SCENARIOS = ("floor", "pipeline", "fanout", "slow", "baseline")
# profile needs py-spy and perturbs CPU; acks starts a 3-node cluster (three more JVMs) for minutes;
# worker (bench.worker) runs worker.py beside its own stack and a four-camera publisher for a minute;
# capacity (bench.capacity) runs up to 8 cameras through one producer per Kafka client, ~10 minutes
OPTIONAL_SCENARIOS = ("profile", "acks", "worker", "capacity")
DECODERS = ("opencv", "pyav")  # SOURCE_DECODER
CODECS = ("h264", "mjpeg")  # what the capacity cameras send: H.264 clips or MJPEG clips (passed through)
JPEG_QUALITY = 80  # the producer's default (config.env JPEG_QUALITY); the floor uses the same


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a run does. Windows are seconds of steady state, after ``settle_s``."""

    mode: str
    scenarios: tuple[str, ...] = SCENARIOS
    resolutions: tuple[str, ...] = tuple(RESOLUTIONS)
    floor_frames: int = 300  # per resolution, capped at 10 s of the clip
    pipeline_s: float = 60.0  # per resolution; latency first-vs-last 10 s comes from this window
    fanout_levels: tuple[int, ...] = (1, 10, 50, 100)
    fanout_s: float = 25.0
    slow_s: float = 60.0
    slow_normal_viewers: int = 10
    share_s: float = 30.0
    baseline_latency_s: float = 60.0
    baseline_latency_res: str = "2160p15"
    fanout_res: str = "720p30"
    settle_s: float = 3.0  # after start: the RTSP burst of buffered frames is over (REAL-PARTS)
    warmup_s: float = 1.0  # viewers connected before their window opens (first part, TCP ramp-up)
    edge_s: float = 10.0  # "first/last 10 s": shrunk to a third of a shorter window
    profile_s: float = 20.0
    profile_res: str = "1080p30"
    acks_res: str = "1080p30"  # the figure: acks=1 vs acks=all at 1080p30
    acks_rounds: int = 4  # rounds of one acks=1 and one acks=all window, order flipped each round
    acks_s: float = 20.0
    worker_res: str = "720p30"  # the worker figures are at 720p30
    worker_s: float = 25.0  # each of the worker's two windows (one camera, four cameras)
    worker_frames: int = 300  # recorded from the topic: the worker floor's frames and the publisher's
    worker_cameras: int = 4
    worker_detectors: bool = True  # people/faces floors and people with 1 vs 2 processes (~1.5 min)
    capacity_res: str = "720p30"  # the goal: 8 cameras at 720p30 on this 2-core box
    capacity_levels: tuple[int, ...] = (1, 2, 4, 6, 8)  # cameras in one producer.py
    capacity_clients: tuple[str, ...] = KAFKA_CLIENTS
    # SOURCE_DECODER per point: the first decoder runs with every client, the others only with
    # capacity_decoder_client (or the first client listed if it is not run): every (client, decoder)
    # pair would double a ~7 min scenario; the decoder's cost does not depend on the Kafka client.
    capacity_decoders: tuple[str, ...] = DECODERS
    capacity_decoder_client: str = "confluent-kafka"
    # the cameras' codec: h264 runs every (client, decoder) pair above; the others (mjpeg: the
    # producer publishes the camera's JPEGs unchanged, no decoder in play) run only with
    # capacity_decoder_client and the first decoder, ~3 min more
    capacity_codecs: tuple[str, ...] = CODECS
    capacity_viewers: int = 10  # MJPEG viewers of one consumer.py, spread over the cameras
    capacity_s: float = 20.0  # per (client, cameras) point

    def edge(self, window_s: float) -> float:
        """Length of the first/last slice compared for flatness: 10 s, or a third of a short window."""
        return min(self.edge_s, window_s / 3)


FULL = Plan(mode="full")
QUICK = dataclasses.replace(FULL, mode="quick", pipeline_s=15.0, fanout_s=10.0, slow_s=15.0, share_s=15.0,
                            baseline_latency_s=15.0, floor_frames=150, profile_s=10.0, acks_rounds=2, acks_s=10.0,
                            worker_s=10.0, worker_frames=150, capacity_s=10.0)
SMOKE = dataclasses.replace(
    FULL, mode="smoke", resolutions=("720p30",), floor_frames=30, pipeline_s=3.0, fanout_levels=(5,),
    fanout_s=2.5, warmup_s=0.5, slow_s=4.0, slow_normal_viewers=2, share_s=3.0, baseline_latency_s=3.0,
    baseline_latency_res="720p30", settle_s=1.0, profile_s=3.0, profile_res="720p30", acks_res="720p30",
    acks_rounds=1, acks_s=3.0, worker_s=3.0, worker_frames=30, capacity_levels=(1, 2), capacity_s=3.0)
PRESETS = {p.mode: p for p in (FULL, QUICK, SMOKE)}
