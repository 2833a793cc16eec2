# syntax=docker/dockerfile:1
# tickpipe's one image: every service is a subcommand of its entry point
# (`docker run tickpipe producer`, `... consume quotes`, `... api`, `... migrate`).
# docker-compose.yml builds it and runs each service from it; health checks live there
# (python urllib probes: the slim base has no curl).

# --- builder: a venv with the pinned dependencies and tickpipe itself -------------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# Dependencies first, from pyproject.toml pinned by constraints.txt: this layer is
# rebuilt only when one of those two files changes, not on every source edit.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt

# Then tickpipe, installed in place (editable) from /app: tickpipe/db.py finds the
# Alembic environment at <package>/../migrations, so the image keeps the source tree's
# layout and `tickpipe migrate` works. Every dependency is already there (--no-deps).
COPY README.md alembic.ini ./
COPY migrations ./migrations
COPY tickpipe ./tickpipe
COPY producer ./producer
COPY consumers ./consumers
COPY api ./api
COPY simulator ./simulator
RUN pip install --no-deps -c constraints.txt -e . \
    && python -m compileall -q /app \
    && tickpipe --help > /dev/null

# --- runtime: the venv and the source, run as an unprivileged user ---------------------
FROM python:3.11-slim AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/var/lib/tickpipe

# The producer's disk spool lives under DATA_DIR; compose mounts a named volume there,
# which Docker initialises from this directory (owner included) on first use.
RUN groupadd --system --gid 10001 tickpipe \
    && useradd --system --uid 10001 --gid tickpipe --home-dir /var/lib/tickpipe --shell /usr/sbin/nologin tickpipe \
    && mkdir -p /var/lib/tickpipe/spool \
    && chown -R tickpipe:tickpipe /var/lib/tickpipe

# Same paths as in the builder: the venv's scripts and the editable install point at them.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app

# Numeric, so orchestrators that enforce runAsNonRoot can verify it.
USER 10001:10001

# api, producer admin, consumer admin, simulator
EXPOSE 8000 8081 8082 8765
ENTRYPOINT ["tickpipe"]
CMD ["--help"]
