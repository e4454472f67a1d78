# syntax=docker/dockerfile:1
# Chatbrush as a container: `chatbrush web` on $PORT (8080), everything it keeps in /data.
#
#   docker build -t chatbrush .                      # or: docker compose build
#   docker run -p 8080:8080 -v chatbrush-data:/data --env-file .env chatbrush
#
# BASE is any Debian-based image with python3 (>= 3.11) and its venv module. CI, which
# reaches no image registry, passes a Debian bookworm root it made with debootstrap
# (.ci/container); both stages must use the same BASE, since the virtualenv copied from
# the first refers to the interpreter of the second by its path.
ARG BASE=python:3.12-slim

# ---------------------------------------------------------------- build: a virtualenv
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# The dependencies first, read from pyproject.toml alone: this layer is rebuilt only when
# they change, not on every change of the code.
COPY pyproject.toml /src/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/chatbrush \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /src/requirements.txt \
    && /opt/chatbrush/bin/pip install -r /src/requirements.txt
COPY README.md /src/
COPY bot /src/bot
COPY adapters /src/adapters
COPY storage /src/storage
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/chatbrush/bin/pip install --no-deps /src \
    && /opt/chatbrush/bin/python -m compileall -q /opt/chatbrush

# ---------------------------------------------------------------- runtime
FROM ${BASE} AS runtime
ARG UID=10001
RUN groupadd --system --gid ${UID} chatbrush \
    && useradd --system --uid ${UID} --gid chatbrush --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin chatbrush \
    && mkdir -p /data && chown chatbrush:chatbrush /data && chmod 0750 /data
COPY --from=build /opt/chatbrush /opt/chatbrush
# /data holds everything the bot keeps: the SQLite file, its picture folder
# (chatbrush.db-images/) and the C2PA signing key (chatbrush-c2pa/); back up all of it.
ENV PATH=/opt/chatbrush/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PORT=8080 \
    CHATBRUSH_DB=/data/chatbrush.db \
    CHATBRUSH_C2PA_DIR=/data/chatbrush-c2pa
VOLUME ["/data"]
WORKDIR /data
# numeric, so that runAsNonRoot-style checks can see it is not root
USER ${UID}:${UID}
EXPOSE 8080
# No curl in the image: the interpreter asks /readyz itself (a non-2xx answer raises):
# `web` serves it on $PORT, `run` on CHATBRUSH_HEALTH_PORT when that is set.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % (os.environ.get('CHATBRUSH_HEALTH_PORT') or os.environ.get('PORT', '8080')), timeout=4)"
CMD ["chatbrush", "web"]
