"""rtsp-kafka-mjpeg: live camera frames carried through Apache Kafka and served as MJPEG.

Data flows one way, and the folders show it: capture/ (source -> encoder -> pipeline) ->
kafka/ (publisher -> Kafka -> subscriber) -> web/ (hub -> HTTP clients) and analytics/ (the
workers). settings, frame, results, metrics and logging sit below them all (README "Layout").
"""

import os

# Quiet FFmpeg/OpenCV before any module imports cv2: their messages can carry a camera URL with
# its password, and they bypass our logging (and its secret filter). Assigned, not defaulted: a
# verbose level exported in the user's shell must not put the password on stderr. Every module
# of the package imports this file first, so cv2 never loads before these are set.
os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"
os.environ["OPENCV_LOG_LEVEL"] = "OFF"

__version__ = "0.1.0"
