# syntax=docker/dockerfile:1.7
# One image for every TaskPilot service. The service is the command:
#   docker run IMAGE taskpilot.ingest        (conversation, inference, knowledge, tools, analytics)
#   docker run IMAGE taskpilot.ingest.sandbox --port 8099   (the Graph API stand-in)
# It runs as an unprivileged user on a read-only root filesystem: nothing is written outside
# /tmp (mount a tmpfs or emptyDir there). See docs/operations.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

# ---- web: the dashboard (web/, React + Vite) built into web/dist ------------------------------
FROM ${NODE_IMAGE} AS web
WORKDIR /web
# Dependencies first, from the lock file only: this layer changes only when it does.
COPY web/package.json web/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# ---- builder: resolve from uv.lock into /app/.venv, nothing else ----------------------------
FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# Third-party dependencies first: this layer changes only when uv.lock does. --frozen, because
# the workspace members' pyproject files are not copied yet (uv cannot check the lock without
# them, and does not need to).
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-workspace

# Then the workspace itself, installed as regular (non-editable) packages so that the runtime
# stage needs /app/.venv only.
COPY . /src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# ---- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="taskpilot" \
      org.opencontainers.image.description="TaskPilot services (python -m taskpilot.<service>)" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid so that Kubernetes runAsNonRoot can verify it; no home, no shell.
RUN groupadd --system --gid 10001 taskpilot \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin taskpilot

COPY --from=builder /app/.venv /app/.venv
# Analytics serves the dashboard from TASKPILOT_ANALYTICS_WEB_DIR (static files, read-only).
COPY --from=web /web/dist /app/web/dist

# The code is owned by root and read-only for the service user. Bytecode was compiled at build
# time, so Python never needs to write next to it. TASKPILOT_DATA_DIR only matters for the
# embedded fallbacks (Qdrant local mode when QDRANT_URL is unset): keep it on the /tmp volume.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TASKPILOT_DATA_DIR=/tmp/taskpilot \
    TASKPILOT_ANALYTICS_WEB_DIR=/app/web/dist \
    TASKPILOT_LOG_JSON=true
WORKDIR /app
USER 10001:10001

# ingest 8000, conversation 8001, inference 8002, knowledge 8003, tools 8004, analytics 8005;
# every service binds 127.0.0.1 unless TASKPILOT_<SERVICE>_HTTP_HOST=0.0.0.0 is set.
EXPOSE 8000 8001 8002 8003 8004 8005

ENTRYPOINT ["python", "-m"]
CMD ["taskpilot.ingest"]
