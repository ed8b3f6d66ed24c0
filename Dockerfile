# One image; the role is chosen by the command (default: the whole service).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ORT_DISABLE_TELEMETRY=1 \
    RADTRIAGE_ENVIRONMENT=production \
    RADTRIAGE_DATA_DIR=/data \
    RADTRIAGE_HTTP_HOST=0.0.0.0
# Production refuses to start until these are given (it names each one missing):
#   RADTRIAGE_AUTH__SECRET_KEY, RADTRIAGE_DATABASE_URL, and the secrets that
#   configs/alerting.yaml names (RADTRIAGE_ALERT_WEBHOOK_SECRET, RADTRIAGE_SMTP_PASSWORD, ...).

WORKDIR /app
# CPU build of torch first (pinned), so no CUDA build is pulled in.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .
COPY configs ./configs
COPY pipelines ./pipelines
COPY models ./models

RUN useradd --system --uid 10001 --home-dir /data --no-create-home radtriage \
 && mkdir -p /data && chown radtriage /data
USER radtriage
VOLUME ["/data"]
# DICOM listener, HTTP API. With no allowed_peers configured only local
# associations are accepted: set RADTRIAGE_ALLOWED_PEERS for your scanners.
EXPOSE 11112 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["radtriage", "serve"]
