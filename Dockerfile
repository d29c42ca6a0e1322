# syntax=docker/dockerfile:1
# Digital Twin Energy: multi-stage image. The build stage installs the package into a virtualenv;
# the runtime stage copies only that virtualenv and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip
COPY pyproject.toml README.md NOTICE ./
COPY src ./src
RUN /opt/venv/bin/pip install .

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="digitaltwin" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# libgomp1: OpenMP runtime of LightGBM
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
 && mkdir -p /app/data/backtests /app/models /app/logs /tmp/prometheus-multiproc \
 && chown -R app:app /app /tmp/prometheus-multiproc
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production \
    DATA_DIR=/app/data \
    MODELS_DIR=/app/models \
    LOG_DIR=/app/logs \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc \
    BACKEND_WORKERS=4
WORKDIR /app
USER app:app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# Several workers; their metrics are aggregated through PROMETHEUS_MULTIPROC_DIR.
# With MQTT_BROKER set, serve runs exactly one MQTT subscriber (one ingest process next to the
# BACKEND_WORKERS API processes); docker-compose.prod.yml turns it off (MQTT_API_SUBSCRIBER=false)
# because its ingest service subscribes.
CMD ["sh", "-c", "exec digitaltwin serve --host 0.0.0.0 --port 8000 --workers \"${BACKEND_WORKERS}\""]
