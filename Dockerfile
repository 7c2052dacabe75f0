# agent-runtime container image: multi-stage, uv-built virtualenv, non-root, read-only-root friendly.
#
#   docker build -t agent-runtime .
#   docker run --rm -p 8080:8080 --read-only --tmpfs /tmp -v agent-runtime-data:/app/data agent-runtime
#
# Build arguments:
#   PYTHON_IMAGE  Debian-based Python 3.11 image for both stages (the virtualenv links to its python)
#   UV_VERSION    uv, installed from PyPI into the builder stage only
#   EXTRAS        optional extras to install, space separated, e.g. --build-arg EXTRAS=otel
#
# Only /app/data (SQLite database, task workspaces) and /tmp are written at run time: run with a
# read-only root filesystem, a volume on /app/data and a tmpfs on /tmp.
#
# Node.js is not included: the default tool registry (tool_registry.yaml) starts a Python MCP server
# with the service's own interpreter. To run Node-based MCP servers, derive an image that adds Node
# and installs the servers at build time (see docs/deploying.md, "Node-based MCP servers").

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src
ARG EXTRAS=""

# 1. Dependencies only, from the lock file: this layer is rebuilt only when pyproject.toml or
#    uv.lock change, not on every source edit.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    set -- && for extra in ${EXTRAS}; do set -- "$@" --extra "${extra}"; done \
    && uv sync --frozen --no-dev --no-install-project "$@"

# 2. The project itself, installed as a regular (non-editable) package: the runtime stage needs
#    only /app/.venv, not the source tree.
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    set -- && for extra in ${EXTRAS}; do set -- "$@" --extra "${extra}"; done \
    && uv sync --frozen --no-dev --no-editable "$@"

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# tini as PID 1: forwards SIGTERM to the service (which then drains) and reaps orphaned
# grandchildren of MCP server processes (npx -> node, shell wrappers), which Python as PID 1 would not.
ARG TINI_VERSION=0.19.0-1+b3
RUN apt-get update \
    && apt-get install -y --no-install-recommends "tini=${TINI_VERSION}" \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY tool_registry.yaml ./
COPY examples ./examples
# The only directory the service writes (besides /tmp); owned by the app user so a fresh named
# volume mounted here inherits that ownership.
RUN mkdir -p /app/data && chown app:app /app/data

# HOME=/tmp: libraries that cache under ~ write to the tmpfs, not the read-only root.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

VOLUME ["/app/data"]
USER 10001:10001
EXPOSE 8080

# Liveness only (/healthz); readiness (/readyz) is for load balancers and would mark the container
# unhealthy during a drain or a database outage. No curl in the slim image: Python's urllib is.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["tini", "--", "agent-runtime"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
