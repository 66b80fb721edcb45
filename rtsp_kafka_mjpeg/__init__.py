"""rtsp-kafka-mjpeg: live camera frames carried through Apache Kafka and served as MJPEG.

Data flows one way: source -> encoder -> publisher -> Kafka -> subscriber -> hub -> web.
"""

__version__ = "0.1.0"
