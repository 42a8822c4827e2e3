# syntax=docker/dockerfile:1
# upload-gateway as a container: runtime dependencies only, a non-root user, the config mounted
# at /etc/upload-gateway/config.yaml and every secret taken from the environment through the
# config's ${NAME} references. README.md, "Docker", says how to build and run it.
#
#   docker build -t upload-gateway .
#   docker run -p 8080:8080 -v "$PWD/gateway.yaml:/etc/upload-gateway/config.yaml:ro" \
#       -e GATEWAY_SESSION_KEY -e GATEWAY_WEBHOOK_SECRET \
#       -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY upload-gateway

# The Python the test suite runs on; another 3.11+ works (--build-arg PYTHON_VERSION=3.12)
# but is not what the tests prove.
ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------------------------- build
# Installs the package and its runtime dependencies (no test or demo extras, no Node) into a
# virtualenv; only that virtualenv is copied into the final image, not the sources or pip's
# build tools.
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/upload-gateway
WORKDIR /src
# pyproject.toml names README.md as the package's readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN /opt/upload-gateway/bin/pip install --no-cache-dir . \
    && /opt/upload-gateway/bin/python -c "import gateway.cli, uvloop"

# -------------------------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/upload-gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UPLOAD_GATEWAY_CONFIG=/etc/upload-gateway/config.yaml \
    HEALTHCHECK_URL=http://127.0.0.1:8080/-/healthz
# A fixed uid, so a mounted config only has to be readable by 10001 (or by everyone).
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
    && mkdir -p /etc/upload-gateway
COPY --from=build /opt/upload-gateway /opt/upload-gateway
USER 10001:10001
EXPOSE 8080

# Liveness only (/-/healthz asks no dependency). The image has no curl: Python's urllib does
# it, with proxies ignored so an HTTP_PROXY in the environment cannot send the probe elsewhere.
# Set HEALTHCHECK_URL when the port or ops_prefix differs from the defaults.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(os.environ['HEALTHCHECK_URL'], timeout=4)"]

# `upload-gateway serve` handles SIGTERM itself: it stops accepting, lets running requests
# finish, and with --workers N stops every worker before it exits.
ENTRYPOINT ["upload-gateway"]
# --host 0.0.0.0: the config's default (127.0.0.1) would be unreachable from outside the
# container. --port 8080: fixed here so EXPOSE and the health check match whatever the
# mounted config says. Add --workers N to run N processes on the port.
CMD ["serve", "-c", "/etc/upload-gateway/config.yaml", "--host", "0.0.0.0", "--port", "8080"]
