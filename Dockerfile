# syntax=docker/dockerfile:1
# Two stages: `build` installs the package and its dependencies into a virtualenv; `run` is a
# slim image holding only that virtualenv, running as an unprivileged user. The source tree,
# tests, benchmarks and docs never reach the final image (see also .dockerignore).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
ENV PATH=/venv/bin:$PATH
WORKDIR /src
# Metadata first, so the dependency layer is rebuilt only when setup.cfg changes.
COPY pyproject.toml setup.cfg README.md ./
COPY calltracking ./calltracking
COPY agi ./agi
COPY ami_listener ./ami_listener
COPY web ./web
RUN pip install .

FROM python:3.11-slim AS run
RUN groupadd --system --gid 10001 calltracking \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin calltracking \
 && mkdir -p /app /recordings \
 && chown calltracking:calltracking /app
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CALLTRACKING_HTTP_HOST=0.0.0.0 \
    CALLTRACKING_AGI_HOST=0.0.0.0
WORKDIR /app
USER calltracking:calltracking
# 8080 web (/ws, API, pages, /healthz, /metrics), 4573 FastAGI, 9100 health and metrics of a
# process without the web part (CALLTRACKING_METRICS_PORT).
EXPOSE 8080 4573 9100
# SIGTERM: sockets closed 1012, FastAGI dialogues finished, outbox flushed, exit 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=4)"]
ENTRYPOINT ["calltracking"]
CMD ["serve"]
