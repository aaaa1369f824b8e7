# syntax=docker/dockerfile:1
# monitor: one container per replica. Build: docker build -t monitor .
# Dependencies come only from uv.lock (uv sync --locked); the final image has no uv and no
# compiler, runs as UID 10001 under tini, and keeps its SQLite database on the /data volume.
#
# BASE and UV_IMAGE are build arguments so the image builds where public registries cannot be
# reached: any Debian bookworm image with python3 (3.11) and apt works as BASE (both stages use
# it, so the venv's interpreter path is the same in each); UV_IMAGE is any image holding the uv
# binary at /uv. scripts/test-container builds both from Debian packages and the local uv.
ARG PYTHON_VERSION=3.11
ARG BASE=python:${PYTHON_VERSION}-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${BASE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# UV_NATIVE_TLS: trust the base image's CA store (a build behind a TLS-inspecting proxy adds
# its CA to the base), not only uv's bundled roots.
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=0 UV_NATIVE_TLS=1
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --locked --no-dev --no-install-project
COPY monitor/ ./monitor/
COPY alembic.ini ./
COPY migrations/ ./migrations/
COPY watchlists/ ./watchlists/
RUN --mount=type=cache,target=/root/.cache/uv uv sync --locked --no-dev --no-editable

FROM ${BASE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 monitor \
 && useradd --system --uid 10001 --gid monitor --no-create-home --shell /usr/sbin/nologin monitor \
 && mkdir -p /data /config \
 && chown 10001:10001 /data
WORKDIR /app
COPY --from=build --chown=root:root /app/.venv /app/.venv
COPY --from=build --chown=root:root /app/alembic.ini /app/alembic.ini
COPY --from=build --chown=root:root /app/migrations /app/migrations
COPY --from=build --chown=root:root /app/watchlists /config/watchlists
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MONITOR_DATABASE_URL=sqlite:////data/monitor.db \
    MONITOR_WATCHLISTS_DIR=/config/watchlists \
    MONITOR_HTTP_HOST=0.0.0.0 \
    MONITOR_HTTP_PORT=8080
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["monitor", "health", "--quiet"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "monitor"]
CMD ["run"]
