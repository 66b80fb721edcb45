"""Start real services (Kafka broker, RTSP camera) for the demo, tests and benchmark."""
