"""rtsp-kafka-mjpeg: live camera frames carried through Apache Kafka and served as MJPEG.

Data flows one way: source -> encoder -> publisher -> Kafka -> subscriber -> hub -> web.
"""

import os

# Quiet FFmpeg/OpenCV before any module imports cv2: their messages can carry a camera URL with
# its password, and they bypass our logging (and its secret filter).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

__version__ = "0.1.0"
