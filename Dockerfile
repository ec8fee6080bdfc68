# syntax=docker/dockerfile:1
# The operator's image. The same image runs the backup and restore Jobs the operator creates
# (`python -m odoo_operator.backupjob create|restore …`, specs/backup.py), which call pg_dump and
# psql: PostgreSQL 15 client tools are installed from Debian bookworm (postgresql-client-15).
# Build: docker build -t odoo-db-operator:0.1.0 .   (tests/test_chart.py checks this file's shape)

# Pinned: Python 3.11 on Debian bookworm (bookworm carries postgresql-client-15; trixie does not).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# A regular (non-editable) install into a virtualenv, copied as is into the final image (same base
# image, same path: its scripts and compiled files stay valid).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
ARG PG_MAJOR=15
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/* \
 && "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version \
 && "/usr/lib/postgresql/${PG_MAJOR}/bin/psql" --version
COPY --from=build /opt/venv /opt/venv
# The venv first on PATH (`python` is its interpreter, as the Jobs' command expects), then
# pg_dump/psql of that major (not Debian's pg_wrapper). Nothing is written to the
# root filesystem: HOME and TMPDIR are /tmp, an emptyDir in the operator's Deployment.
ENV PATH="/opt/venv/bin:/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH}" \
    HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The entry point and the Jobs' module load (psycopg's bundled libpq included); the development harness
# (odoo_operator.devtools) is not installed.
RUN odoo-db-operator --help >/dev/null && python -c "import odoo_operator.backupjob.__main__, psycopg" \
 && ! python -c "import odoo_operator.devtools" 2>/dev/null
# The operator's Deployment and the backup/restore Jobs mount an emptyDir at /tmp (the root
# filesystem is read-only); the VOLUME keeps a plain `docker run` working the same way.
VOLUME ["/tmp"]
WORKDIR /tmp
# Non-root, numeric (runAsNonRoot can verify it). The backup Jobs run as uid 101 (Odoo's), which
# can read everything installed here too.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["odoo-db-operator"]
