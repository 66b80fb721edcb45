# One image for both halves of the pipeline: `python consumer.py` (the default) and `python producer.py`.
# config.env is never copied in (secrets would stay in a layer): the image runs on the built-in
# defaults, and docker-compose.yml mounts ./config.env at /app/config.env read-only at run time.
# Environment variables override both.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so editing the code does not reinstall them. All are binary wheels
# (opencv-contrib-python-headless bundles its own FFmpeg), so no compiler is needed; opencv-data
# holds the face cascade of `worker.py --processor faces`.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends opencv-data \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY producer.py consumer.py worker.py ./
COPY rtsp_kafka_mjpeg/ ./rtsp_kafka_mjpeg/

# The code stays root-owned and read-only to the process that runs it.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER app

# In a container the consumer must listen on every interface to be reachable through a published
# port (the default 127.0.0.1 would only answer inside the container).
ENV HTTP_HOST=0.0.0.0
EXPOSE 5000

# Checks the consumer (the default command); the producer service turns it off in docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '5000'), timeout=4)"]

CMD ["python", "consumer.py"]
