"""The report's capacity table: one line per (camera codec, Kafka client, cameras) point.

Its own section because the capacity scenario's points have more columns than the main table's
six; ``capacity_series`` is also how the Goals section finds each series' largest N.
"""

from __future__ import annotations

from typing import Any

from .cells import num


def capacity_series(c: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any], int | None]]:
    """(codec, client, decoder, points, largest N) per series of the report's table: H.264 cameras with
    the first decoder (``points``; the others are in ``capacity.decoder_table``), then every series of
    the other camera codecs (``by_codec``; absent in results from before the codec dimension)."""
    decoder = (c.get("decoders") or ["opencv"])[0]
    out = [("h264", client, decoder, points, (c.get("max_cameras") or {}).get(client))
           for client, points in (c.get("points") or {}).items()]
    for codec, blocks in (c.get("by_codec") or {}).items():
        if codec != "h264":
            out += [(codec, client, dec, points, block["max_cameras"].get(client))
                    for dec, block in blocks.items() for client, points in block["points"].items()]
    return out


CAPACITY_HEAD = ("codec", "client", "N", "passed through", "fps/src min", "CPU/frame vs floor",
                 "capture->viewer p50/p99 ms", "latency", "producer CPU", "RSS MB (/cam)", "consumer CPU",
                 "cameras CPU", "machine busy", "others", "goal")


def capacity_table(c: dict[str, Any]) -> list[str]:
    """The capacity points as their own table: one line per (client, cameras)."""
    if not c:
        return []
    table = [CAPACITY_HEAD]
    for codec, client, _, points, _ in capacity_series(c):
        for n, p in points.items():
            lat = p["latency"]
            per_frame = p["producer_cpu_s_per_frame"]
            loaded = p.get("producer_loaded_librdkafka")
            shown = client if loaded is None or loaded == (client == "confluent-kafka") else f"{client} (NOT in use)"
            passed = p.get("passthrough_cameras")
            table.append((
                codec, shown, n, "-" if codec == "h264" or passed is None else f"{passed}/{n}",
                f"{p['fps_ratio_min']:.3f}",
                f"{num(p['cpu_vs_floor'], suffix='x')} ({num(per_frame and per_frame * 1e3, suffix=' ms')})",
                f"{num(lat['ms']['p50'], '{:.1f}')} / {num(lat['ms']['p99'], '{:.1f}')}",
                f"{'flat' if lat['flat'] else 'grows'} ({num(lat['growth_ms'], '{:+.1f}')})",
                f"{p['producer_cpu_pct']:.0f}%", f"{p['producer_rss_mb']:.0f} ({p['producer_rss_per_camera_mb']:.0f})",
                f"{p['consumer_cpu_pct']:.0f}%", f"{p['cameras_cpu_pct']:.0f}%", f"{p['machine_busy_pct']:.0f}%",
                num(p.get("others_cpu_pct"), "{:.0f}", "%"),
                "PASS" if p["holds"] else "FAIL"))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(CAPACITY_HEAD))]
    lines = [" | ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    most = ", ".join(f"{codec} {client}/{dec}: {n}" for codec, client, dec, _, n in capacity_series(c))
    errors = [f"  {k}: {v}" for k, v in (c.get("errors") or {}).items()]
    return [f"Capacity @{c['resolution']}: one producer.py for N cameras, {c['viewers']} viewers, "
            f"{c['window_s']:.0f} s per point, topic of {c['partitions']} partitions (a camera per partition)",
            *lines, f"Largest N holding the goal (fps/src >= {c['fps_goal']} for every camera, latency flat): {most}",
            *(["Points that failed:", *errors] if errors else [])]
