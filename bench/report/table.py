"""The report's main table: every figure, ours next to the tutorial's where there is one.

One row per figure, grouped by scenario (floor, producer, latency, fan-out, slow viewer, acks,
worker, vs tutorial); a row with a goal carries its PASS / FAIL beside the figure.
"""

from __future__ import annotations

from typing import Any

from .cells import Row, get, ms, num, pass_fail
from .goals import WORKER_LATENCY

SHORT_THREAD = {
    "native (ffmpeg/opencv workers)": "ffmpeg decode workers",
    "MainThread": "main (encode+send)",
    "capture": "capture (rtsp read+convert)",
    "rtsp-kafka-mjpeg-network-thread": "kafka-io",
}


def rows(results: dict[str, Any]) -> list[Row]:
    """The table body: every figure, ours next to the tutorial's where there is one."""
    out: list[Row] = []

    def add(*cells: object) -> None:
        out.append(tuple(str(c) for c in cells))  # type: ignore[arg-type]

    for name, f in results.get("floor", {}).items():
        add("floor", f"{name} decode+imencode q80, 1 core, CPU/frame",
            f"{f['cpu_s_per_frame'] * 1e3:.2f} ms (dec {f['decode_cpu_s_per_frame'] * 1e3:.2f} + "
            f"enc {f['encode_cpu_s_per_frame'] * 1e3:.2f})", "", "", "")
    for name, p in results.get("pipeline", {}).items():
        lat, ratio, per_frame = p["latency"], p["cpu_vs_floor"], p["producer_cpu_s_per_frame"]
        add("producer", f"{name} CPU/published frame vs floor",
            f"{num(ratio, suffix='x')} ({num(per_frame and per_frame * 1e3, suffix=' ms')})", "", "<= 1.25x",
            pass_fail(ratio is not None and ratio <= 1.25))
        fps_goal = name != "720p30"  # the issue sets the fps goal at 1080p30 and 2160p15
        add("producer", f"{name} published fps / source fps",
            f"{p['fps_ratio']:.3f} ({p['published_fps']:.1f}/{p['source_fps']})", "",
            ">= 0.98x" if fps_goal else "", pass_fail(p["fps_ratio"] >= 0.98) if fps_goal else "")
        d = p["dropped"]
        why = "; ".join(f"{k} x{v}" for k, v in d["producer_log"].items()) or "no producer warnings: newest-frame skips"
        add("producer", f"{name} frames not published in window (why)", f"{d['not_published']} ({why})", "", "", "")
        threads = p.get("producer_threads_ms_per_frame") or {}
        add("producer", f"{name} producer CPU ms/frame by thread",
            ", ".join(f"{SHORT_THREAD.get(k, k)} {v:.2f}" for k, v in threads.items() if v >= 0.05) or "-",
            "", "", "")
        add("producer", f"{name} producer / consumer CPU (machine busy)",
            f"{p['producer_cpu_pct']:.0f}% / {p['consumer_cpu_pct']:.0f}% of a core "
            f"({p.get('machine_busy_pct', 0):.0f}% of all cores)", "", "", "")
        lat_goal = name == "1080p30" and lat["ms"]["n"] > 0  # the latency goal is at 1080p30
        add("latency", f"{name} capture->viewer p50/p99/max",
            f"{ms(lat['ms']['p50'])} / {ms(lat['ms']['p99'])} / {ms(lat['ms']['max'])}", "",
            "p50<=15, p99<=50" if lat_goal else "",
            pass_fail(lat["ms"]["p50"] <= 15 and lat["ms"]["p99"] <= 50) if lat_goal else "")
        hub = p.get("capture_to_hub_ms") or {}
        add("latency", f"{name} of which capture->consumer hub p50/p99",
            f"{ms(hub.get('p50'))} / {ms(hub.get('p99'))} (consumer's histogram)", "", "", "")
        bl = p.get("rtsp_backlog") or {}
        add("latency", f"{name} before capture: RTSP backlog p50/max, first->last",
            f"{ms(bl.get('p50_ms'))} / {ms(bl.get('max_ms'))}, {ms(bl.get('first_ms'))} -> {ms(bl.get('last_ms'))}",
            "", "", "")
        add("latency", f"{name} p50 first vs last {lat['edge_s']:.0f} s",
            f"{ms(lat['first_ms']['p50'])} -> {ms(lat['last_ms']['p50'])}", "", "flat", pass_fail(lat["flat"]))
        add("latency", f"{name} viewer frames / source, frames skipped on the way, superseded in consumer",
            f"{p['viewer_fps_ratio']:.3f}, {d['capture_gaps_at_viewer']}, {d['superseded_in_consumer']:.0f}",
            "", "", "")
    fan = results.get("fanout", {})
    for n, lv in fan.get("levels", {}).items():
        add("fan-out", f"{n} viewers: fps/source min, median",
            f"{lv['fps_ratio_min']:.3f}, {lv['fps_ratio_median']:.3f} ({lv['connected_ok']}/{n} connected)", "",
            ">= 0.95x", pass_fail(lv["fps_ratio_min"] >= 0.95))
        add("fan-out", f"{n} viewers: latency p50/p99/max",
            f"{ms(lv['latency_ms']['p50'])} / {ms(lv['latency_ms']['p99'])} / {ms(lv['latency_ms']['max'])}", "",
            "p99 <= 100 ms", pass_fail(lv["latency_ms"]["p99"] is not None and lv["latency_ms"]["p99"] <= 100))
        add("fan-out", f"{n} viewers: consumer CPU, RSS start->end",
            f"{lv['consumer_cpu_pct']:.0f}%, {lv['consumer_rss_start_mb']:.1f}->{lv['consumer_rss_end_mb']:.1f} MB", "",
            "RSS flat", pass_fail(not lv["consumer_rss_growing"]))
        add("fan-out", f"{n} viewers: client process CPU (machine busy)",
            f"{lv['client_cpu_pct']:.0f}% of a core ({lv.get('machine_busy_pct', 0):.0f}% of all cores)", "", "", "")
    slow = results.get("slow", {})
    if slow:
        age = slow["age"]
        add("slow viewer", f"frame age p50/max ({slow['slow_rate_kb_s']:.0f} KB/s, {slow['slow_fps']:.1f} fps)",
            f"{ms(age['ms']['p50'])} / {ms(age['ms']['max'])}", "", "<= 1 s", pass_fail(
                age["ms"]["max"] is not None and age["ms"]["max"] <= 1000))
        add("slow viewer", f"age p50 first vs last {age['edge_s']:.0f} s",
            f"{ms(age['first_ms']['p50'])} -> {ms(age['last_ms']['p50'])}", "", "flat", pass_fail(age["flat"]))
        add("slow viewer", f"{slow['normal_viewers']} normal viewers fps/source min",
            f"{slow['normal_fps_ratio_min']:.3f}", "", ">= 0.95x", pass_fail(slow["normal_fps_ratio_min"] >= 0.95))
    ack = results.get("acks")
    if ack:
        for setting, block in ack["by_acks"].items():
            lat = block["latency_ms"]
            add("acks", f"{ack['resolution']} acks={setting}, RF 3 / min ISR 2: capture->viewer p50/p99/max",
                f"{ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['max'])} (n={lat['n']})", "", "", "")
        diff = ack["all_minus_1_ms"]
        add("acks", f"{ack['resolution']} acks=all minus acks=1, p50 / p99",
            f"{ms(diff['p50'])} / {ms(diff['p99'])}", "", "", "")
    out.extend(worker_rows(results.get("worker") or {}))
    share = get(results, "baseline", "share")
    if share:
        o, tu = share["ours"], share["tutorial"]
        add("vs tutorial", f"{share['resolution']} 2 viewers: parts per viewer / topic frames",
            " ".join(f"{s:.3f}" for s in o["shares"]),
            " ".join(f"{s:.3f}" for s in tu["shares"]) + f" (HTTP {', '.join(str(s) for s in tu['statuses'])})",
            ">= 0.95", pass_fail(o["min_share"] >= 0.95))
        for err, count in (tu.get("consumer_log_errors") or {}).items():
            add("vs tutorial", f"{share['resolution']} tutorial consumer log", "", f"{err} (x{count})", "", "")
    bl = get(results, "baseline", "latency")
    if bl:
        res = bl["resolution"]
        alone, side = bl.get("alone") or {}, bl.get("side_by_side") or {}
        oa = bl.get("ours_alone_latency") or {}
        if alone:
            lag = alone["tutorial_producer_lag"]
            add("vs tutorial", f"{res} alone: latency p50 first->last {alone['window_s']:.0f} s",
                f"{ms(oa.get('first_p50_ms'))} -> {ms(oa.get('last_p50_ms'))} (pipeline run)",
                f"lag {ms(lag['first_ms'])} -> {ms(lag['last_ms'])} ({num(lag['slope_ms_per_s'], '{:+.1f}')} ms/s)",
                "", "")
            tb = alone.get("tutorial_rtsp_backlog") or {}
            add("vs tutorial", f"{res} alone: RTSP backlog before capture first->last",
                ms(get(results, "pipeline", res, "rtsp_backlog", "first_ms")) + " -> "
                + ms(get(results, "pipeline", res, "rtsp_backlog", "last_ms")),
                f"{ms(tb.get('first_ms'))} -> {ms(tb.get('last_ms'))} (max {ms(tb.get('max_ms'))})", "", "")
            add("vs tutorial", f"{res} alone: published fps / source",
                num(get(results, "pipeline", res, "fps_ratio"), "{:.3f}"),
                num(alone["tutorial_published_fps_ratio"], "{:.3f}"), "", "")
        if side and side.get("ours"):
            lag, ol = side["tutorial_producer_lag"], side["ours"]["latency"]
            add("vs tutorial", f"{res} side by side: latency p50 first->last",
                f"{ms(ol['first_ms']['p50'])} -> {ms(ol['last_ms']['p50'])} ({num(ol['growth_ms'], '{:+.1f}')} ms)",
                f"lag {ms(lag['first_ms'])} -> {ms(lag['last_ms'])} ({num(lag['growth_ms'], '{:+.0f}')} ms, "
                f"{num(lag['slope_ms_per_s'], '{:+.1f}')} ms/s)", "ours flat", pass_fail(ol["flat"]))
            ob, tb = side["ours"].get("rtsp_backlog") or {}, side.get("tutorial_rtsp_backlog") or {}
            add("vs tutorial", f"{res} side by side: RTSP backlog before capture first->last",
                f"{ms(ob.get('first_ms'))} -> {ms(ob.get('last_ms'))} (max {ms(ob.get('max_ms'))})",
                f"{ms(tb.get('first_ms'))} -> {ms(tb.get('last_ms'))} (max {ms(tb.get('max_ms'))})", "", "")
            add("vs tutorial", f"{res} side by side: latency p50/p99 (ours) | published fps / source",
                f"{ms(ol['ms']['p50'])} / {ms(ol['ms']['p99'])} | {side['ours']['published_fps_ratio']:.3f}",
                f"{num(side['tutorial_published_fps_ratio'], '{:.3f}')}", "", "")
    return out


def worker_rows(w: dict[str, Any]) -> list[Row]:
    """The analytics worker's figures (bench.worker), when that scenario ran."""
    out: list[Row] = []
    if not w:
        return out
    res, one, four, fl = w["resolution"], w.get("one_camera") or {}, w.get("four_cameras") or {}, w.get("floor")

    def add(*cells: object) -> None:
        out.append(tuple(str(c) for c in cells))  # type: ignore[arg-type]

    if fl:
        add("worker", f"{res} floor: decode {fl['decode_flag']} + {fl['processor']}, 1 core, CPU/frame",
            f"{fl['cpu_s_per_frame'] * 1e3:.2f} ms (dec {fl['decode_cpu_s_per_frame'] * 1e3:.2f} + "
            f"{fl['processor']} {fl['processor_cpu_s_per_frame'] * 1e3:.2f})", "", "", "")
        if fl.get("paced_cpu_s_per_frame"):
            add("worker", f"{res} the same paced at {fl['pace_fps']} frames/s (a live worker's rate: idle between)",
                f"{fl['paced_cpu_s_per_frame'] * 1e3:.2f} ms", "", "", "")
    if one:
        per_frame, ratio = one.get("worker_cpu_s_per_frame"), w.get("cpu_vs_floor")
        add("worker", f"{res} worker.py CPU/processed frame vs floor (1 camera, unpinned)",
            f"{num(ratio, suffix='x')} ({num(per_frame and per_frame * 1e3, suffix=' ms')}, "
            f"{num(one.get('worker_cpu_pct'), '{:.0f}', '%')} of a core)", "", "<= 1.3x",
            pass_fail(None if ratio is None else ratio <= 1.3))
        kafka = one.get("kafka_consumer_cpu_s_per_frame")
        add("worker", f"{res} of which a bare kafka-python KafkaConsumer fetching the same topic, CPU/frame",
            num(kafka and kafka * 1e3, suffix=" ms"), "", "", "")
        add("worker", f"{res} 1 camera: processed / published (machine busy)",
            f"{num(one.get('processed_share'), '{:.3f}')} ({one.get('processed', 0):.0f}/{one.get('published', 0)}, "
            f"{num(one.get('machine_busy_pct'), '{:.0f}', '%')} of all cores, worker waited for a CPU "
            f"{num(one.get('waited_for_cpu_pct'), '{:.0f}', '%')})", "", "", "")
        for label, key in (("results topic", "results_topic_ms"), ("/api/events", "events_ms")):
            lat = one.get(key) or {}
            g50, g99 = WORKER_LATENCY[label]
            ok = None if lat.get("p50") is None else lat["p50"] <= g50 and lat["p99"] <= g99
            add("worker", f"{res} capture->result on {label} p50/p99/max",
                f"{ms(lat.get('p50'))} / {ms(lat.get('p99'))} / {ms(lat.get('max'))} (n={lat.get('n', 0)})", "",
                f"p50<={g50:.0f}, p99<={g99:.0f}", pass_fail(ok))
        hist, hub = one.get("worker_capture_to_ack_ms") or {}, one.get("capture_to_hub_ms") or {}
        add("worker", f"{res} of which capture->result acked (worker's histogram) p50/p99",
            f"{ms(hist.get('p50'))} / {ms(hist.get('p99'))}", "", "", "")
        add("worker", f"{res} frame path alone: capture->consumer.py hub (its histogram) p50/p99",
            f"{ms(hub.get('p50'))} / {ms(hub.get('p99'))}", "", "", "")
    if four:
        share, pub = four.get("processed_share"), four.get("publisher") or {}
        add("worker", f"{four['cameras']} x {res} cameras, worker on CPU {four['pinned_cpu']}: processed / published",
            f"{num(share, '{:.3f}')} ({four['processed']:.0f}/{four['published']}, lag at end {four['lag_end']:.0f})",
            "", ">= 0.98", pass_fail(None if share is None else share >= 0.98))
        add("worker", f"{four['cameras']} x {res}: published fps/camera, worker CPU, CPU/frame vs floor",
            f"{four['published_fps_per_camera']:.1f} (late ticks {pub.get('late_ticks', '-')}), "
            f"{num(four.get('worker_cpu_pct'), '{:.0f}', '%')} of its core, "
            f"{num(four.get('cpu_vs_floor'), suffix='x')} (machine {num(four.get('machine_busy_pct'), '{:.0f}', '%')})",
            "", "", "")
        add("worker", f"{four['cameras']} x {res}: worker runnable but waiting for its CPU (run queue)",
            num(four.get("waited_for_cpu_pct"), "{:.0f}", "% of the window"),
            "", "", "")
    for client, fig in (w.get("four_cameras_by_client") or {}).items():
        per_frame, alone = fig.get("worker_cpu_s_per_frame"), fig.get("clients_cpu_s_per_frame")
        add("worker", f"{fig['cameras']} x {res}, {client}: worker CPU/frame vs floor; the client alone "
                      "(consume + a result produced per frame, same frames, same CPU)",
            f"{num(fig.get('cpu_vs_floor'), suffix='x')} ({num(per_frame and per_frame * 1e3, suffix=' ms')}); "
            f"client {num(alone and alone * 1e3, suffix=' ms')}, floor + client "
            f"{num(fig.get('floor_and_clients_vs_floor'), suffix='x')}, floor paced at the live rate + client "
            f"{num(fig.get('paced_floor_and_clients_vs_floor'), suffix='x')}", "", "", "")
    return out
