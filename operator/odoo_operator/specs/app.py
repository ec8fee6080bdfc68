"""Pure builders of the Kubernetes objects an OdooDatabase owns, except its routes (Ingress/HTTPRoute: specs/routes.py)
and its backups (specs/backup.py). No I/O here."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.labels import CREDENTIALS_ANNOTATION, DATABASE_LABEL, MANAGED_BY, ODOO_CONF_ANNOTATION
from odoo_operator.api.model import OdooDatabase
from odoo_operator.config import Settings

ODOO_DATA_DIR = "/var/lib/odoo"
ODOO_SESSIONS_DIR = f"{ODOO_DATA_DIR}/sessions"  # odoo.tools.config.session_dir: <data_dir>/sessions
ODOO_CONF = "/etc/odoo/odoo.conf"
ODOO_EXTRA_ADDONS = "/mnt/extra-addons"  # a VOLUME of the official images 16.0-18.0
ODOO_HTTP_PORT = 8069
ODOO_LONGPOLLING_PORT = 8072  # gevent_port: only listens with workers > 0 (prefork)
SESSIONS_SIZE = "1Gi"  # HTTP session files of a few kB each, removed by Odoo after a week

# Initialise once: install `base` and `auth_signup` (Odoo's invitations for spec.users: +16 s here, 25 s ->
# 41 s, against 70 s and a registry reload in the live app when the users' sync installs it later)
# without demo data, then give the admin user the random password kept in <name>-admin (never
# Odoo's default admin/admin). A shell only because `odoo shell` reads
# its script from stdin; the connection comes from odoo.conf and PGPASSWORD, not from the shell.
INIT_SCRIPT = """set -eu
odoo -c /etc/odoo/odoo.conf -d "$PGDATABASE" -i base,auth_signup --without-demo=all --stop-after-init --no-http
odoo shell -c /etc/odoo/odoo.conf -d "$PGDATABASE" --no-http <<'PY'
import os
env.ref('base.user_admin').write({'password': os.environ['ODOO_ADMIN_PASSWORD']})
env.cr.commit()
PY
"""


def labels(db: OdooDatabase, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "odoo",
        "app.kubernetes.io/instance": db.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        DATABASE_LABEL: db.name,
    }


def selector_labels(db: OdooDatabase) -> dict[str, str]:
    return {"app.kubernetes.io/instance": db.name, "app.kubernetes.io/component": "app", DATABASE_LABEL: db.name}


def owner_reference(db: OdooDatabase) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "OdooDatabase",
        "name": db.name,
        "uid": db.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(db: OdooDatabase, name: str, component: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": db.namespace,
        "labels": labels(db, component),
        "ownerReferences": [owner_reference(db)],
        **extra,
    }


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


# Longest names the API server takes: a Job's name is copied into its Pods' job-name label (63), and a
# CronJob's name gets an 11-character suffix on its Jobs (52). Secrets, PVCs, ConfigMaps and DatabaseBackups
# take 253, which <OdooDatabase name (at most 63)>-<suffix> never reaches.
JOB_NAME_MAX = 63
CRONJOB_NAME_MAX = 52


def child_name(base: str, suffix: str = "", limit: int = JOB_NAME_MAX) -> str:
    """<base>-<suffix>, or, when that is longer than limit, <base cut>-<8 hex of sha256(base)>-<suffix>: the
    same for the same base (so found again), different for different bases, and still a valid name."""
    name = f"{base}-{suffix}" if suffix else base
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    tail = f"-{digest}-{suffix}" if suffix else f"-{digest}"
    return base[: limit - len(tail)].rstrip("-.") + tail


def db_secret_name(db: OdooDatabase) -> str:
    return f"{db.name}-db"


def admin_secret_name(db: OdooDatabase) -> str:
    return f"{db.name}-admin"


def filestore_pvc_name(db: OdooDatabase) -> str:
    return f"{db.name}-filestore"


def sessions_pvc_name(db: OdooDatabase) -> str:
    return f"{db.name}-sessions"


def init_job_name(db: OdooDatabase) -> str:
    return child_name(db.name, "init")


def neutralize_job_name(db: OdooDatabase) -> str:
    return child_name(db.name, "neutralize")


@dataclass(frozen=True)
class DatabaseEndpoint:
    """Where Odoo reaches its PostgreSQL server (the PostgresServer's address and sslMode). Written
    into odoo.conf; the password never is: it reaches Odoo as PGPASSWORD from <name>-db."""
    host: str
    port: int
    ssl_mode: str


def credentials_fingerprint(db: OdooDatabase, password: str) -> str:
    """Changes when the password changes, so app pods restart; reveals nothing of it."""
    return hashlib.sha256(f"{db.uid}:{password}".encode()).hexdigest()[:16]


def build_db_secret(db: OdooDatabase, host: str, port: int, ssl_mode: str, password: str) -> dict[str, Any]:
    values = {
        "host": host,
        "port": str(port),
        "database": db.database_name,
        "user": db.role_name,
        "password": password,
        "sslmode": ssl_mode,
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(db, db_secret_name(db), "credentials"),
        "type": "Opaque",
        "data": {key: _b64(value) for key, value in values.items()},
    }


def build_admin_secret(db: OdooDatabase, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(db, admin_secret_name(db), "admin-credentials"),
        "type": "Opaque",
        "data": {"username": _b64("admin"), "password": _b64(password)},
    }


def build_pvc(db: OdooDatabase, name: str, component: str, size: str, settings: Settings,
              data_source: str | None = None) -> dict[str, Any]:
    """A volume of the database's (filestore's access mode and storage class), optionally cloned from a PVC."""
    spec: dict[str, Any] = {
        "accessModes": [settings.filestore_access_mode],
        "resources": {"requests": {"storage": size}},
    }
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    if data_source:
        spec["dataSource"] = {"kind": "PersistentVolumeClaim", "name": data_source}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(db, name, component),
        "spec": spec,
    }


def build_filestore_pvc(db: OdooDatabase, settings: Settings) -> dict[str, Any]:
    # A duplicate's: a CSI clone of the source's filestore, made by the storage driver at provisioning time.
    clone = f"{db.duplicate_from.name}-filestore" if db.duplicate_from and settings.filestore_clone == "csi" else None
    return build_pvc(db, filestore_pvc_name(db), "filestore", settings.filestore_size, settings, clone)


def build_sessions_pvc(db: OdooDatabase, settings: Settings) -> dict[str, Any]:
    """Odoo's HTTP sessions (files under data_dir/sessions), shared by every replica and kept across
    restarts. Never cloned or backed up: a copy starts with nobody logged in."""
    return build_pvc(db, sessions_pvc_name(db), "sessions", SESSIONS_SIZE, settings)


def render_odoo_conf(db: OdooDatabase, endpoint: DatabaseEndpoint) -> str:
    """Everything Odoo needs to reach its database except the password (no db_password: Odoo then
    passes none and libpq takes PGPASSWORD). Read with `-c`: no Odoo container runs the image's
    entrypoint, which would add its own --db_* defaults to the command line."""
    options = {
        "db_host": endpoint.host,
        "db_port": str(endpoint.port),
        "db_user": db.role_name,
        "db_sslmode": endpoint.ssl_mode,
        # What the official image's own odoo.conf (which this one replaces) says: modules of images built
        # FROM odoo live there, and `odoo neutralize` must see their neutralize.sql too.
        "addons_path": ODOO_EXTRA_ADDONS,
        "data_dir": ODOO_DATA_DIR,
        "proxy_mode": "True",
        "list_db": "False",
        "dbfilter": f"^{db.database_name}$",
        "db_name": db.database_name,
        "workers": str(db.app.workers),
        "http_port": str(ODOO_HTTP_PORT),
        "gevent_port": str(ODOO_LONGPOLLING_PORT),
    }
    user = {key: value for key, value in sorted(db.app.config.items()) if key not in options}
    lines = ["[options]"] + [f"{key} = {value}" for key, value in {**options, **user}.items()]
    return "\n".join(lines) + "\n"


# odoo.conf travels in the pod template (ODOO_CONF_ANNOTATION, projected into /etc/odoo by the downward API): no
# ConfigMap per database to write and watch, and a Pod always reads the configuration of its own template
# (a move or an upgrade switches server and config with the rollout, never under a running Pod).


def pod_annotations(db: OdooDatabase, endpoint: DatabaseEndpoint) -> dict[str, str]:
    return {ODOO_CONF_ANNOTATION: render_odoo_conf(db, endpoint)}


def _secret_env(env: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _db_env(db: OdooDatabase) -> list[dict[str, Any]]:
    """The role's password for libpq (odoo.conf has the rest); never on a command line."""
    return [_secret_env("PGPASSWORD", db_secret_name(db), "password")]


def _volumes(db: OdooDatabase, sessions: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The data dir, the filestore, odoo.conf (from the pod's annotation: pod_annotations) and the sessions."""
    conf = {"path": "odoo.conf", "fieldRef": {"fieldPath": f"metadata.annotations['{ODOO_CONF_ANNOTATION}']"}}
    volumes: list[dict[str, Any]] = [
        {"name": "data", "emptyDir": {}},
        {"name": "filestore", "persistentVolumeClaim": {"claimName": filestore_pvc_name(db)}},
        {"name": "config", "downwardAPI": {"items": [conf]}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "data", "mountPath": ODOO_DATA_DIR},
        # The filestore lives at <data_dir>/filestore/<db>: a rename only changes this path.
        {"name": "filestore", "mountPath": f"{ODOO_DATA_DIR}/filestore/{db.database_name}"},
        {"name": "config", "mountPath": "/etc/odoo", "readOnly": True},
    ]
    if sessions:
        volumes.append({"name": "sessions", "persistentVolumeClaim": {"claimName": sessions_pvc_name(db)}})
        mounts.append({"name": "sessions", "mountPath": ODOO_SESSIONS_DIR})
    return volumes, mounts


CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY_CONTEXT = {"runAsUser": 101, "runAsGroup": 101, "fsGroup": 101, "runAsNonRoot": True}


def _odoo_job(db: OdooDatabase, endpoint: DatabaseEndpoint, name: str, component: str, command: list[str],
              env: list[dict[str, Any]]) -> dict[str, Any]:
    """A Job running the database's own Odoo image, with its odoo.conf, data dir and filestore."""
    volumes, mounts = _volumes(db)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(db, name, component),
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": labels(db, component), "annotations": pod_annotations(db, endpoint)},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": POD_SECURITY_CONTEXT,
                    "containers": [{
                        "name": component,
                        "image": db.image,
                        "command": command,
                        "env": env,
                        "volumeMounts": mounts,
                        "securityContext": CONTAINER_SECURITY_CONTEXT,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def build_init_job(db: OdooDatabase, endpoint: DatabaseEndpoint) -> dict[str, Any]:
    env = _db_env(db) + [
        _secret_env("PGDATABASE", db_secret_name(db), "database"),
        _secret_env("ODOO_ADMIN_PASSWORD", admin_secret_name(db), "password"),
    ]
    return _odoo_job(db, endpoint, init_job_name(db), "init", ["/bin/bash", "-c", INIT_SCRIPT], env)


def build_neutralize_job(db: OdooDatabase, endpoint: DatabaseEndpoint) -> dict[str, Any]:
    """Odoo's own neutralization of a copy for testing: the data/neutralize.sql of every installed
    module (custom ones included), in one transaction, exit status 1 if anything failed."""
    command = ["odoo", "neutralize", "-c", ODOO_CONF, "-d", db.database_name]
    return _odoo_job(db, endpoint, neutralize_job_name(db), "neutralize", command, _db_env(db))


# Entry by entry: a volume's root belongs to root (fsGroup makes it writable), so the app's user cannot set
# its times, as `cp -a /source/. /target/` would try to (and fail).
COPY_ENTRIES = "find /source -mindepth 1 -maxdepth 1 -exec cp -a {} /target/ \\;"


def filestore_copy_job_name(db: OdooDatabase) -> str:
    return child_name(db.name, "filestore-copy")


def build_filestore_copy_job(db: OdooDatabase, image: str) -> dict[str, Any]:
    """Where the storage cannot clone volumes: copy the source's filestore files into the new PVC."""
    assert db.duplicate_from is not None
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(db, filestore_copy_job_name(db), "filestore-copy"),
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": labels(db, "filestore-copy")},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": POD_SECURITY_CONTEXT,
                    "containers": [{
                        "name": "copy",
                        "image": image,
                        "command": ["/bin/sh", "-c", COPY_ENTRIES],
                        "volumeMounts": [
                            {"name": "source", "mountPath": "/source", "readOnly": True},
                            {"name": "target", "mountPath": "/target"},
                        ],
                        "securityContext": CONTAINER_SECURITY_CONTEXT,
                    }],
                    "volumes": [
                        {"name": "source", "persistentVolumeClaim": {
                            "claimName": f"{db.duplicate_from.name}-filestore", "readOnly": True}},
                        {"name": "target", "persistentVolumeClaim": {"claimName": filestore_pvc_name(db)}},
                    ],
                },
            },
        },
    }


def build_deployment(db: OdooDatabase, replicas: int, credentials_hash: str,
                     endpoint: DatabaseEndpoint) -> dict[str, Any]:
    volumes, mounts = _volumes(db, sessions=True)
    container: dict[str, Any] = {
        "name": "odoo",
        "image": db.image,
        "command": ["odoo", "-c", ODOO_CONF],
        "args": [
            "--database", db.database_name,
            "--db-filter", f"^{db.database_name}$",
            "--proxy-mode",
            "--no-database-list",
        ],
        "env": _db_env(db),
        "ports": [
            {"name": "http", "containerPort": ODOO_HTTP_PORT},
            {"name": "longpolling", "containerPort": ODOO_LONGPOLLING_PORT},
        ],
        # Every 2 s: a Pod serves within 2 s of Odoo answering (a new database, the end of an upgrade's downtime).
        "readinessProbe": {"httpGet": {"path": "/web/health", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {
            "httpGet": {"path": "/web/health", "port": "http"},
            "initialDelaySeconds": 60,
            "periodSeconds": 20,
        },
        "volumeMounts": mounts,
        "securityContext": CONTAINER_SECURITY_CONTEXT,
    }
    if db.app.workers > 0:
        # Prefork: /websocket is served by Odoo's gevent process on its own port, which starts after the HTTP
        # workers answer: the Pod is not Ready (readiness is only probed once started) until that port listens.
        container["startupProbe"] = {"tcpSocket": {"port": "longpolling"}, "periodSeconds": 1,
                                     "failureThreshold": 300}
    if db.app.resources:
        container["resources"] = dict(db.app.resources)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(db, db.name, "app"),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(db)},
            "template": {
                "metadata": {
                    "labels": labels(db, "app"),
                    "annotations": {CREDENTIALS_ANNOTATION: credentials_hash, **pod_annotations(db, endpoint)},
                },
                "spec": {
                    "securityContext": POD_SECURITY_CONTEXT,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def build_service(db: OdooDatabase) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(db, db.name, "app"),
        "spec": {
            "selector": selector_labels(db),
            "ports": [
                {"name": "http", "port": ODOO_HTTP_PORT, "targetPort": "http"},
                {"name": "longpolling", "port": ODOO_LONGPOLLING_PORT, "targetPort": "longpolling"},
            ],
        },
    }

