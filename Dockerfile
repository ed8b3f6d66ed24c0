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

# VARIANT=cpu (default) or gpu: the image of a Ray GPU worker node (docker build --build-arg VARIANT=gpu).
# The gpu variant swaps ONNX Runtime's CPU package for the `gpu` extra's onnxruntime-gpu; the two must never
# be installed side by side (they share the onnxruntime module).
ARG VARIANT=cpu
WORKDIR /app
# CPU build of torch first (pinned), so no CUDA build is pulled in.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
 && if [ "$VARIANT" = "gpu" ]; then \
      pip uninstall -y onnxruntime \
      && pip install --no-deps --force-reinstall "$(python -c 'import tomllib; print([d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gpu"] if d.startswith("onnxruntime-gpu")][0])')"; \
    elif [ "$VARIANT" != "cpu" ]; then echo "VARIANT must be cpu or gpu" >&2; exit 1; fi
COPY configs ./configs
COPY pipelines ./pipelines
COPY models ./models
COPY drl ./drl
COPY recognition ./recognition

RUN useradd --system --uid 10001 --home-dir /data --no-create-home radtriage \
 && mkdir -p /data && chown radtriage /data
USER radtriage
VOLUME ["/data"]
# DICOM listener, HTTP API. With no allowed_peers configured only local
# associations are accepted: set RADTRIAGE_ALLOWED_PEERS for your scanners.
EXPOSE 11112 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["radtriage", "serve"]
