"""The benchmark: real camera -> producer.py -> Kafka -> consumer.py -> real socket viewers.

Run with ``python -m bench`` (``make bench``); ``--smoke`` is the few-second CI version. Every
figure is a ratio or a percentile measured side by side in one run, because the machine (2 cores,
shared) is too noisy for absolute numbers to mean anything from one run to the next.
"""
