"""The analytics worker's figures (issue 11), in one run side by side:

1. worker.py's CPU per processed frame against its own floor: JPEG decode with the flag the
   processor asks for (gray/4 for motion) + the processor alone, timed in a child pinned to one
   CPU over JPEGs recorded from the 720p30 topic (the same frames the worker got).
2. One worker (motion, lag policy `every`) pinned to one CPU, four 720p30 cameras: frames
   processed / frames published over a window. The four cameras are the recorded 720p JPEGs
   published at 30 fps each by a small publisher process (``feed.publish``, pinned to the other
   CPUs): four producer.py with four RTSP cameras would need more than the 2-core box has.
3. Capture -> result at 720p30: a plain KafkaConsumer on the results topic (arrival - the
   result's capture_ts_ns), the worker's own histogram (capture -> result acknowledged), and an
   SSE client of consumer.py's /api/events (arrival of the `data:` line - capture_ts_ns).

A package because those are separate jobs, one module each: ``scenario`` (the run itself),
``launch`` (worker.py and its topics), ``probe`` (a window's CPU and /metrics), ``collectors``
(results as they arrive), ``frames`` (the recorded JPEGs), and the children the parent runs in
processes of their own: ``floor``, ``feed`` (the publisher), ``drain`` (kafka-python's fetch alone, one
camera) and ``clients`` (each Kafka client alone as the worker uses it, four cameras: consume in a
group and produce a result per frame, pinned to the worker's CPU right after the worker's window).

Run alone: ``python -m bench.worker floor DIR`` / ``python -m bench.worker publish DIR ...``
print one JSON object each; the scenario runs them as children (``cli``).
"""

from __future__ import annotations

from .scenario import worker_bench

__all__ = ["worker_bench"]
