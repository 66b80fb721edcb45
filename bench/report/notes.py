"""The report's closing Notes: how each figure is measured, in words.

Text only, apart from the code that prints it; the worker's and the capacity scenario's notes
are added only when those optional scenarios ran.
"""

from __future__ import annotations

NOTES = """\
Notes
- Every figure is a ratio or a percentile from this one run; the machine is shared, so absolute
  ms and % drift between runs. Source fps is the camera's nominal rate (the RTSP server paces the
  clip at it). Floor: OpenCV decode of the same clip from the file + cv2.imencode q80, in a child
  pinned to one CPU; producer CPU = psutil user+system of producer.py over the window / records
  that entered its topic over the same window (end offsets).
- Latency (ours) = the moment the viewer has a part's last byte - its X-Capture-Timestamp-Ns.
  The capture timestamp is taken after decode; published fps ~1.0x shows no decode queue builds
  up ahead of it. "Flat" = last-slice p50 - first-slice p50 <= max(abs tol, 25% of first).
- Tutorial latency: its parts carry no timestamp and its producer sends every frame it reads
  (no skipping), so record n of its topic left it when the topic count reached n (sampled 4x/s,
  end offsets); a real-time camera had frame n at t_ref + (n - n_ref)/fps. The difference is its
  producer's lag behind the camera: a lower bound of its latency; growth = last-slice p50 -
  first-slice p50. "alone": the tutorial with the machine to itself (ours' figure from its own
  pipeline window); "side by side": both on the same camera in one window, CPU contended.
- RTSP backlog = bytes the kernel holds unread in the producer's camera socket (/proc/net/tcp
  rx_queue) / the clip's byte rate: video waiting *before* decode and before any capture
  timestamp, for either producer. It is the hidden part of latency when decoding falls behind.
- Share at 2 viewers: parts each viewer received / records that entered the topic in the same
  window; ours and the tutorial's run at the same time on the same camera and broker.
"""


CAPACITY_NOTES = """\
- Capacity: N clip cameras (an RTSP server each, no re-encoding), ONE producer.py with --camera
  camK=URL per camera and --kafka-client (KAFKA_CLIENT in both processes' environment), one
  consumer.py, the viewers spread over the cameras (?camera=camK). fps/src per camera = records of
  its own partition (the topic's partition count gives every camera id a partition of its own under
  murmur2 and CRC32) over the window / (30 x window); "min" is the goal's figure. CPU/frame = the
  producer's CPU / all its records over the window, against the 720p floor (decode + encode of one
  frame). RSS /cam = producer RSS / N. Cameras CPU = the N camera servers together. Machine busy
  = all cores (100% = both); others = % of one core used by processes not of this point (the
  shared machine's other tenants: a figure measured while it is high is pessimistic).
- Codec: h264 cameras loop a pre-encoded H.264 clip (the producer decodes and JPEG-encodes every
  frame); mjpeg cameras loop the same frames as q80 4:2:0 JPEGs over RTP/JPEG (no encoding in the
  camera), which the producer publishes unchanged. "passed through" = cameras whose passthrough
  the producer announced in its log / N; CPU/frame is still shown against the decode+encode floor.
"""


WORKER_NOTES = """\
- Worker (motion, lag policy every): floor = cv2.imdecode with the processor's flag + the
  processor, in a child pinned to one CPU, over JPEGs recorded from the 720p30 topic; worker CPU
  = psutil user+system of worker.py over the window / worker_frames_processed over the same
  window. Capture -> result: arrival at a plain KafkaConsumer of the results topic, or of the
  `data:` line at an /api/events client of consumer.py, minus the result's capture_ts_ns. Four
  cameras: the recorded JPEGs published at the source fps per camera id by a publisher process on
  the other CPU(s), the worker pinned (taskset) to one CPU; share = frames processed / records
  that entered the topic over the same window.
"""
