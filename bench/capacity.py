"""Capacity (issue 12): how many 720p30 cameras ONE producer.py process carries on this box.

For each (Kafka client, SOURCE_DECODER) pair of the plan (``capacity_pairs``: the first decoder,
opencv by default, with every client; the other decoders, pyav, with confluent-kafka only, which
keeps a default run near 10 minutes) and N in
``plan.capacity_levels``: N RTSP cameras, each its own clip server (``harness.clips`` clip
looped without re-encoding, ~1% of a core each, independent phases like real cameras), one
producer.py reading all N (``--camera camK=rtsp://...`` repeated), one consumer.py and
``plan.capacity_viewers`` MJPEG viewers spread over the cameras. Every process of a point is
stopped (by PID) before the next point starts.

Per point: each camera's published fps / source fps, counted on the topic itself: the topic gets
``KAFKA_PARTITIONS`` chosen so that every camera id hashes to a partition of its own under both
clients' partitioners (kafka-python's murmur2, librdkafka's CRC32 "consistent"), so a partition's
end offset is that camera's record count (checked: records outside those partitions are
reported). Also producer CPU per published frame / the 720p floor, capture -> viewer p50/p99
(and whether it grows), producer RSS (and per camera), consumer CPU, the cameras' own CPU and
how busy the whole machine was. The goal per point: min over cameras of the fps ratio >= 0.98 and
capture -> viewer latency flat; reported per client (and per decoder) as the largest N that holds it.

Camera codec (``plan.capacity_codecs``): ``h264`` cameras loop the H.264 clip; ``mjpeg`` cameras
loop ``harness.clips.make_mjpeg_clip``'s JPEGs as RTP/JPEG (an MJPEG IP camera, also ~free), which
the producer publishes unchanged (MJPEG passthrough): those run with ``capacity_decoder_client``
and the first decoder only. Each point records how many cameras the producer announced in
passthrough (its source log line), so a point that silently decoded is visible.

Results: ``points`` / ``max_cameras`` by client hold the first decoder's H.264 points;
``by_decoder[decoder]`` holds the same per decoder (H.264 cameras), and ``decoder_table`` renders
them; ``by_codec[codec][decoder]`` holds every series by camera codec (``by_codec["h264"]`` is
``by_decoder``). ``series`` lists them all for the report's table.
"""

from __future__ import annotations

import logging
import os
import re
import time
import zlib
from pathlib import Path
from typing import Any

from kafka.partitioner.default import murmur2

from harness.clips import clip_bytes, make_mjpeg_clip
from harness.rtsp_camera import RtspCamera

from .measure import (
    LATENCY_FLAT_ABS_MS,
    MB,
    BacklogSampler,
    Context,
    ProcTree,
    Window,
    hub_latency,
    in_window,
    latency_block,
    snapshot,
)
from .plan import Plan, Resolution
from .process import ServiceError
from .rtsp_backlog import RtspBacklog
from .scenarios import floor, producer_drop_reasons
from .scrape import http_json, metric_sum
from .stack import Stack
from .viewers import ViewerRun

log = logging.getLogger(__name__)

FPS_GOAL = 0.98
LIVE_TIMEOUT_S = 40.0


def camera_ids(n: int) -> list[str]:
    return [f"cam{i}" for i in range(n)]


def partition_of(key: bytes, partitions: int) -> dict[str, int]:
    """Where each client's default partitioner puts a key (kafka-python: murmur2 like Java;
    librdkafka: CRC32, its ``consistent_random`` default; ``murmur2_random`` equals the first)."""
    return {"murmur2": (murmur2(key) & 0x7FFFFFFF) % partitions, "crc32": zlib.crc32(key) % partitions}


def distinct_partitions(ids: list[str], limit: int = 512) -> int:
    """The fewest partitions (>= len(ids)) giving every id a partition of its own under both hashes."""
    for p in range(len(ids), limit):
        for kind in ("murmur2", "crc32"):
            if len({partition_of(i.encode(), p)[kind] for i in ids}) != len(ids):
                break
        else:
            return p
    raise ValueError(f"no partition count below {limit} separates {ids}")


def viewer_split(cameras: int, viewers: int) -> list[int]:
    """``viewers`` spread as evenly as possible over the cameras (10 over 4: 3, 3, 2, 2)."""
    return [viewers // cameras + (1 if i < viewers % cameras else 0) for i in range(cameras)]


def wait_all_live(stack: Stack, ids: list[str], timeout: float = LIVE_TIMEOUT_S) -> None:
    """Until the consumer lists every camera with a frame rate (each has sent frames through Kafka)."""
    deadline = time.monotonic() + timeout
    while True:
        if not stack.producer.alive():
            raise stack.producer.fail("exited")
        try:
            data = http_json(f"{stack.consumer.url}/api/cameras")
            rows = data.get("cameras", []) if isinstance(data, dict) else []
            live = {c["id"] for c in rows if c.get("fps", 0) > 0}
        except OSError:
            live = set()
        if live >= set(ids):
            return
        if time.monotonic() > deadline:
            raise stack.consumer.fail(f"listed only {sorted(live)} of {ids} as live after {timeout:.0f}s")
        time.sleep(0.3)


def runs_librdkafka(pid: int) -> bool:
    """Whether the process runs librdkafka's threads (``rdk:main``, ``rdk:broker...``): which client
    it really uses (confluent-kafka's module is imported, hence mapped, whichever client is chosen)."""
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            if comm.read_text().startswith("rdk:"):
                return True
        except OSError:
            continue
    return False


def capacity_pairs(plan: Plan) -> list[tuple[str, str]]:
    """(client, decoder) pairs to run: the first decoder with every client, the others with
    ``plan.capacity_decoder_client`` (or the first client, if that one is not in the plan)."""
    first, *others = plan.capacity_decoders
    clients = plan.capacity_clients
    other_client = plan.capacity_decoder_client if plan.capacity_decoder_client in clients else clients[0]
    return [(client, first) for client in clients] + [(other_client, decoder) for decoder in others]


def capacity_series(plan: Plan) -> list[tuple[str, str, str]]:
    """(codec, client, decoder) series to run: H.264 cameras with every pair of ``capacity_pairs``,
    other codecs with ``capacity_decoder_client`` (or the first client) and the first decoder."""
    clients = plan.capacity_clients
    other_client = plan.capacity_decoder_client if plan.capacity_decoder_client in clients else clients[0]
    out: list[tuple[str, str, str]] = []
    for codec in plan.capacity_codecs:
        if codec == "h264":
            out += [(codec, client, decoder) for client, decoder in capacity_pairs(plan)]
        else:
            out.append((codec, other_client, plan.capacity_decoders[0]))
    return out


def decoder_mode(log_text: str) -> str:
    """How the producer really decoded: PyAV logs its mode line (source.py's _MODES); OpenCV's
    decode is the starting mode, which is not logged."""
    return "pyav" if "to YUV (PyAV)" in log_text else "opencv"


PASSTHROUGH_LINE = re.compile(r"camera (\S+): [^,\n]*, passing the camera's JPEGs through undecoded")


def passthrough_cameras(log_text: str) -> int:
    """How many cameras the producer announced in MJPEG passthrough (source.py's mode line, once
    per camera and open): distinct camera names, so a reconnect is not counted twice."""
    return len(set(PASSTHROUGH_LINE.findall(log_text)))


def start_cameras(res: Resolution, codec: str, n: int, h264_clip: Path) -> list[RtspCamera]:
    """``n`` clip cameras of ``codec``, started; idle until a producer connects (no client: no cost)."""
    cameras: list[RtspCamera] = []
    clip = make_mjpeg_clip(res.width, res.height, res.fps) if codec == "mjpeg" else None
    try:
        for _ in range(n):
            if clip is not None:
                cam = RtspCamera(width=res.width, height=res.height, fps=res.fps, mjpeg_clip=clip)
            else:
                cam = RtspCamera(width=res.width, height=res.height, fps=res.fps, clip=h264_clip)
            cameras.append(cam)
            cam.start()
    except BaseException:
        for cam in cameras:
            cam.close()
        raise
    return cameras


def point(ctx: Context, res: Resolution, cameras: list[RtspCamera], client: str, partitions: int,
          decoder: str = "opencv", codec: str = "h264") -> dict[str, Any]:
    """One (codec, client, decoder, N) point: start producer + consumer, one window with the viewers, stop both."""
    plan = ctx.plan
    n = len(cameras)
    ids = camera_ids(n)
    owner = {cid: partition_of(cid.encode(), partitions) for cid in ids}
    hashes = {kind: {cid: owner[cid][kind] for cid in ids} for kind in ("murmur2", "crc32")}
    args = [a for cid, cam in zip(ids, cameras, strict=True) for a in ("--camera", f"{cid}={cam.url}")]
    name = f"{'' if codec == 'h264' else codec + '-'}{client}-{decoder}-{n}"
    stack = Stack(ctx.services, res, cameras[0], producer_args=[*args, "--kafka-client", client, "--decoder", decoder],
                  label=f"capacity-{name}", KAFKA_CLIENT=client, KAFKA_PARTITIONS=str(partitions))
    runs: list[ViewerRun] = []
    clip = cameras[0].mjpeg_clip or cameras[0].clip or ctx.services.clip(res)
    byte_rate = clip_bytes(clip) / 10  # harness clips are 10 s
    backlog: BacklogSampler | None = None
    try:
        stack.start()
        wait_all_live(stack, ids)
        stack.settle(plan.settle_s)
        assert stack.counter is not None
        backlog = BacklogSampler({cid: RtspBacklog(stack.producer.pid, cam.port, byte_rate)
                                  for cid, cam in zip(ids, cameras, strict=True)})
        backlog.start()
        warmup = plan.warmup_s + 0.5  # every viewer process up before any window opens
        for cid, k in zip(ids, viewer_split(n, plan.capacity_viewers), strict=True):
            if k:
                runs.append(ViewerRun(f"{stack.feed_url}?camera={cid}", k, plan.capacity_s, warmup=warmup,
                                      log_path=ctx.viewer_log(f"capacity-{name}-{cid}")).start())
        trees = {"producer": stack.producer.tree(), "consumer": stack.consumer.tree(),
                 **{f"camera:{cid}": ProcTree(cam.pid or 0) for cid, cam in zip(ids, cameras, strict=True)},
                 **{f"viewers:{i}": ProcTree(r.pid) for i, r in enumerate(runs)}}
        broker = ctx.services.broker.pid if ctx.services.broker is not None else None
        if broker:
            trees["broker"] = ProcTree(broker)
        for r in runs:
            r.wait_line("window-start")
        metrics_before = stack.consumer_metrics()
        parts_before = stack.counter.partition_counts()
        start = snapshot(trees, {})
        for r in runs:
            r.wait_line("window-end")
        end = snapshot(trees, {})
        librdkafka = runs_librdkafka(stack.producer.pid)
        mode = decoder_mode(stack.producer.log_text())
        passed = passthrough_cameras(stack.producer.log_text())
        parts_after = stack.counter.partition_counts()
        metrics_after = stack.consumer_metrics()
        w = Window(start, end)
        data = [r.result() for r in runs]
        runs = []
    finally:
        for r in runs:
            r.kill()
        if backlog is not None:
            backlog.stop()
        stack.stop()
    per_partition = {p: parts_after.get(p, 0) - parts_before.get(p, 0) for p in parts_after}
    published_total = sum(per_partition.values())
    expected = res.fps * w.seconds
    # which hash the client used: the one whose partitions hold the records ("either": same partitions)
    held = {kind: sum(per_partition.get(p, 0) for p in hashes[kind].values()) for kind in hashes}
    used = max(held, key=lambda kind: held[kind])
    seen = used if len(set(held.values())) > 1 else "either"
    per_camera = {cid: per_partition.get(hashes[used][cid], 0) for cid in ids}
    elsewhere = published_total - sum(per_camera.values())
    ratios = {cid: count / expected for cid, count in per_camera.items()}
    # viewers: latency over the span every viewer process was measuring; fps per viewer in its own window
    span_start = max(d["window_start_ns"] for d in data)
    span_end = min(d["window_end_ns"] for d in data)
    parts = [p for d in data for v in d["viewers"] for p in in_window(v["parts"], span_start, span_end)]
    viewer_fps = [len(in_window(v["parts"], d["window_start_ns"], d["window_end_ns"]))
                  / ((d["window_end_ns"] - d["window_start_ns"]) / 1e9) for d in data for v in d["viewers"]]
    lat = latency_block(parts, span_start, span_end, plan.edge((span_end - span_start) / 1e9), LATENCY_FLAT_ABS_MS)
    del lat["per_s"]
    cpu_s = w.cpu_s("producer")
    floor_cpu = ctx.results["floor"][res.name]["cpu_s_per_frame"]
    per_frame = cpu_s / published_total if published_total else None
    rss = end.rss["producer"]
    backlogs = {cid: backlog.block(cid, w.start.t_ns, w.end.t_ns, plan.edge(w.seconds)) for cid in ids}
    min_ratio = min(ratios.values())
    result: dict[str, Any] = {
        "client": client,
        "decoder": decoder,
        "codec": codec,
        "producer_decoded_with": mode,
        "passthrough_cameras": passed,
        "cameras": n,
        "window_s": w.seconds,
        "source_fps": res.fps,
        "published_per_camera": per_camera,
        "fps_ratio_per_camera": ratios,
        "fps_ratio_min": min_ratio,
        "records_outside_camera_partitions": elsewhere,
        "partitioner_seen": seen,
        "producer_loaded_librdkafka": librdkafka,
        "producer_cpu_pct": w.cpu_pct("producer"),
        "producer_cpu_s_per_frame": per_frame,
        "floor_cpu_s_per_frame": floor_cpu,
        "cpu_vs_floor": per_frame / floor_cpu if per_frame else None,
        "producer_rss_mb": rss / MB,
        "producer_rss_per_camera_mb": rss / MB / n,
        "consumer_cpu_pct": w.cpu_pct("consumer"),
        "consumer_rss_mb": end.rss["consumer"] / MB,
        "consumer_lag_end": metric_sum(metrics_after, "mjpeg_consumer_lag_records"),
        "broker_cpu_pct": w.cpu_pct("broker") if "broker" in trees else None,
        "cameras_cpu_pct": sum(w.cpu_pct(k) for k in trees if k.startswith("camera:")),
        "viewer_clients_cpu_pct": sum(w.cpu_pct(k) for k in trees if k.startswith("viewers:")),
        "machine_busy_pct": w.machine_busy_pct,
        # the shared machine's other tenants: all cores' busy time minus every process of this point
        "others_cpu_pct": w.machine_busy_pct * (os.cpu_count() or 1) - sum(w.cpu_pct(k) for k in trees),
        "viewers": len(viewer_fps),
        "viewer_fps_ratio_min": min(viewer_fps) / res.fps if viewer_fps else 0.0,
        "latency": lat,
        "capture_to_hub_ms": hub_latency(metrics_before, metrics_after),
        "rtsp_backlog_max_ms": max((b["max_ms"] or 0.0) for b in backlogs.values()),
        "rtsp_backlog_growth_max_ms": max((b["growth_ms"] or 0.0) for b in backlogs.values()),
        "producer_log": producer_drop_reasons(stack.producer.log_text()),
        "lifetime": stack.lifetime,
    }
    result["holds"] = min_ratio >= FPS_GOAL and bool(lat["flat"])
    log.info("capacity %s %s/%s N=%d: fps min %.3f, %.2f ms/frame (%.2fx floor), %d of %d cameras passed through, "
             "producer %.0f%% (%.0f MB), consumer %.0f%%, machine %.0f%%, latency p50 %.1f p99 %.1f ms (%s) -> %s",
             codec, client, decoder, n, min_ratio, (per_frame or 0) * 1e3, result["cpu_vs_floor"] or 0, passed, n,
             result["producer_cpu_pct"], result["producer_rss_mb"],
             result["consumer_cpu_pct"], w.machine_busy_pct, lat["ms"]["p50"] or 0, lat["ms"]["p99"] or 0,
             "flat" if lat["flat"] else "grows", "holds" if result["holds"] else "misses")
    return result


def capacity(ctx: Context, res: Resolution) -> dict[str, Any]:
    """Every (codec, client, decoder, N) point of the plan, then the largest N that holds the goal per series."""
    plan = ctx.plan
    if res.name not in ctx.results["floor"]:
        floor(ctx, res)
    ctx.services.release(res.name)  # nothing of the other scenarios may share the CPU
    top = max(plan.capacity_levels)
    partitions = distinct_partitions(camera_ids(top))
    result: dict[str, Any] = {"resolution": res.name, "window_s": plan.capacity_s, "viewers": plan.capacity_viewers,
                              "partitions": partitions, "fps_goal": FPS_GOAL, "points": {}, "max_cameras": {},
                              "errors": {}, "decoders": list(plan.capacity_decoders), "by_decoder": {},
                              "codecs": list(plan.capacity_codecs), "by_codec": {}, "series": []}
    if "h264" in plan.capacity_codecs:
        first = result["by_decoder"][plan.capacity_decoders[0]] = {"points": {}, "max_cameras": {}}
        result["points"], result["max_cameras"] = first["points"], first["max_cameras"]  # the report's table
        result["by_codec"]["h264"] = result["by_decoder"]
    ctx.results["capacity"] = result
    series = capacity_series(plan)
    for codec in dict.fromkeys(c for c, _, _ in series):
        cameras = start_cameras(res, codec, top, ctx.services.clip(res))
        try:
            for _, client, decoder in (s for s in series if s[0] == codec):
                blocks = result["by_codec"].setdefault(codec, {})
                block = blocks.setdefault(decoder, {"points": {}, "max_cameras": {}})
                points: dict[str, Any] = {}
                block["points"][client] = points
                result["series"].append({"codec": codec, "client": client, "decoder": decoder})
                for n in plan.capacity_levels:
                    try:
                        points[str(n)] = point(ctx, res, cameras[:n], client, partitions, decoder, codec)
                    except (ServiceError, RuntimeError, OSError) as err:  # recorded; the next point still runs
                        log.exception("capacity %s %s/%s N=%d failed", codec, client, decoder, n)
                        key = f"{client}:{decoder}:{n}" if codec == "h264" else f"{codec}:{client}:{decoder}:{n}"
                        result["errors"][key] = f"{type(err).__name__}: {str(err)[:400]}"
                held = [int(k) for k, p in points.items() if p["holds"]]
                block["max_cameras"][client] = max(held, default=0)
        finally:
            for cam in cameras:
                cam.close()
    rss1 = {c: get_rss(result, c, 1) for c in plan.capacity_clients}
    result["producer_rss_one_camera_mb"] = rss1
    log.info("capacity: largest N holding the goal %s",
             {c: {d: b["max_cameras"] for d, b in blocks.items()} for c, blocks in result["by_codec"].items()})
    return result


def decoder_table(c: dict[str, Any]) -> list[str]:
    """The points side by side per SOURCE_DECODER (lines for the text report; [] without decoders)."""
    blocks = c.get("by_decoder") or {}
    if not blocks:
        return []
    head = ("decoder", "client", "N", "fps/src min", "ms CPU/frame", "vs floor", "p50/p99 ms", "latency",
            "producer CPU", "machine busy", "others", "goal")
    rows: list[tuple[Any, ...]] = [head]
    for decoder, block in blocks.items():
        for client, points in block["points"].items():
            for n, p in points.items():
                per_frame = p["producer_cpu_s_per_frame"]
                lat = p["latency"]
                shown = decoder if p.get("producer_decoded_with") in (decoder, None) else f"{decoder} (NOT in use)"
                rows.append((shown, client, n, f"{p['fps_ratio_min']:.3f}",
                             f"{per_frame * 1e3:.2f}" if per_frame else "-",
                             f"{p['cpu_vs_floor']:.2f}x" if p["cpu_vs_floor"] else "-",
                             f"{lat['ms']['p50'] or 0:.1f} / {lat['ms']['p99'] or 0:.1f}",
                             "flat" if lat["flat"] else "grows", f"{p['producer_cpu_pct']:.0f}%",
                             f"{p['machine_busy_pct']:.0f}%", f"{p.get('others_cpu_pct') or 0:.0f}%",
                             "PASS" if p["holds"] else "FAIL"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = [" | ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    floor_ms = next((p["floor_cpu_s_per_frame"] * 1e3 for b in blocks.values() for pts in b["points"].values()
                     for p in pts.values()), None)
    most = "; ".join(f"{d}: " + ", ".join(f"{k} {v}" for k, v in b["max_cameras"].items()) for d, b in blocks.items())
    return [f"Capacity by SOURCE_DECODER, H.264 cameras @{c['resolution']} (floor: OpenCV decode + cv2.imencode = "
            f"{floor_ms or 0:.2f} ms/frame)", *lines, f"Largest N holding the goal per decoder: {most}"]


def get_rss(result: dict[str, Any], client: str, n: int) -> float | None:
    p = result["points"].get(client, {}).get(str(n))
    return p["producer_rss_mb"] if p else None
