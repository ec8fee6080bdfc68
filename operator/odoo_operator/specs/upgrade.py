"""What an upgrade creates: the upgrade Job (the version table's method, run on the database, with the
filestore copied aside first), the Job that puts the files back after a failed upgrade, the volume of the
pre-upgrade copy, and the neutralized test copy `<name>-upgrade-test`. Pure builders; the flow lives in
controller/odoodatabase_upgrade.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.labels import TEST_COPY_LABEL
from odoo_operator.api.model import OdooDatabase
from odoo_operator.config import Settings, UpgradeMethod
from odoo_operator.specs.app import (
    CONTAINER_SECURITY_CONTEXT,
    ODOO_CONF,
    ODOO_DATA_DIR,
    POD_SECURITY_CONTEXT,
    DatabaseEndpoint,
    _db_env,
    _metadata,
    _volumes,
    build_pvc,
    child_name,
    filestore_pvc_name,
    labels,
    owner_reference,
    pod_annotations,
)

# The upgrade Job's own output, kept where the kubelet reads a termination message from (the data dir is
# the Pod's emptyDir): the operator shows its tail in status.upgrade.logTail.
TERMINATION_LOG = f"{ODOO_DATA_DIR}/upgrade-termination-log"
LOG_TAIL_BYTES = 2000
PRE_UPGRADE_MOUNT = "/pre-upgrade"

# Runs the method (its argv after "--") with its output both streamed (kubectl logs) and kept, then leaves the
# tail as the container's termination message; exits with the method's status.
_WRAPPER = (
    'log="$ODOO_UPGRADE_LOG"; { "$@"; echo $? > "$log.rc"; } 2>&1 | tee "$log"; '
    'rc=$(cat "$log.rc" 2>/dev/null || echo 1); '
    f'tail -c {LOG_TAIL_BYTES} "$log" > {TERMINATION_LOG}; exit "$rc"'
)
# The filestore copied aside before the method may touch it; `.complete` says the copy is whole (a rollback
# puts files back only from a whole copy: a method never ran before it exists).
_SNAPSHOT = (
    f"set -e; rm -f {PRE_UPGRADE_MOUNT}/.complete; rm -rf {PRE_UPGRADE_MOUNT}/files; "
    f"mkdir -p {PRE_UPGRADE_MOUNT}/files; cp -a /filestore/. {PRE_UPGRADE_MOUNT}/files/; sync; "
    f"touch {PRE_UPGRADE_MOUNT}/.complete"
)
# Entry by entry: the volume's root belongs to root (fsGroup makes it writable), so its own times cannot be
# set by the app's user, as `cp -a files/. /filestore/` would try to.
_RESTORE_FILES = (
    f"set -e; if [ -f {PRE_UPGRADE_MOUNT}/.complete ]; then find /filestore -mindepth 1 -delete; "
    f"find {PRE_UPGRADE_MOUNT}/files -mindepth 1 -maxdepth 1 -exec cp -a {{}} /filestore/ \\; ; sync; fi"
)


def version_slug(version: str) -> str:
    """"17.0" -> "17-0", "saas~17.2" -> "saas-17-2": a version inside a Kubernetes name."""
    return re.sub(r"[^a-z0-9]+", "-", version.lower()).strip("-")


def _attempt(started_at: str) -> str:
    return hashlib.sha256(started_at.encode()).hexdigest()[:6]


def upgrade_job_name(db: OdooDatabase, to: str, started_at: str) -> str:
    """One Job per attempt (the upgrade's start time in its name): a Job is never run twice, and an
    earlier attempt's Job (kept, with its log) is never taken for this one."""
    return child_name(db.name, f"upgrade-{version_slug(to)}-{_attempt(started_at)}")


def files_rollback_job_name(db: OdooDatabase, to: str, started_at: str) -> str:
    return child_name(db.name, f"rollback-{version_slug(to)}-{_attempt(started_at)}")


def pre_upgrade_pvc_name(db: OdooDatabase) -> str:
    return f"{db.name}-pre-upgrade"


def test_copy_name(db: OdooDatabase) -> str:
    return child_name(db.name, "upgrade-test")


def default_command(db: OdooDatabase) -> list[str]:
    """Odoo's own update of every installed module, as `odoo -u all --stop-after-init` does."""
    return ["odoo", "-c", ODOO_CONF, "-d", db.database_name, "-u", "all", "--stop-after-init", "--no-http"]


def build_upgrade_job(db: OdooDatabase, endpoint: DatabaseEndpoint, name: str, to: str, method: UpgradeMethod,
                      target_image: str, *, snapshot: bool) -> dict[str, Any]:
    """The method's command in its image on the database (as the database's own role: PGPASSWORD), never
    retried (a second run on a half-migrated database could do harm). With `snapshot`, an init container
    first copies the filestore to the pre-upgrade volume."""
    volumes, mounts = _volumes(db)
    env = _db_env(db) + [
        {"name": "ODOO_DATABASE", "value": db.database_name},
        {"name": "ODOO_RC", "value": ODOO_CONF},
        {"name": "ODOO_UPGRADE_FROM", "value": db.version},
        {"name": "ODOO_UPGRADE_TO", "value": to},
        {"name": "ODOO_UPGRADE_LOG", "value": f"{ODOO_DATA_DIR}/upgrade.log"},
    ]
    command = list(method.command) if method.command else default_command(db)
    container: dict[str, Any] = {
        "name": "upgrade",
        "image": method.image or target_image,
        "command": ["/bin/sh", "-c", _WRAPPER, "upgrade", *command],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [container],
        "volumes": volumes,
    }
    if snapshot:
        spec["volumes"] = volumes + [{"name": "pre-upgrade",
                                      "persistentVolumeClaim": {"claimName": pre_upgrade_pvc_name(db)}}]
        spec["initContainers"] = [{
            "name": "copy-filestore",
            "image": db.image,
            "command": ["/bin/sh", "-c", _SNAPSHOT],
            "volumeMounts": [{"name": "filestore", "mountPath": "/filestore", "readOnly": True},
                             {"name": "pre-upgrade", "mountPath": PRE_UPGRADE_MOUNT}],
            "securityContext": CONTAINER_SECURITY_CONTEXT,
        }]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(db, name, "upgrade"),
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels(db, "upgrade"), "annotations": pod_annotations(db, endpoint)}, "spec": spec}},
    }


def build_files_rollback_job(db: OdooDatabase, name: str) -> dict[str, Any]:
    """After a failed upgrade (or for kubectl odoo upgrade --rollback): the filestore as it was before."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(db, name, "upgrade-rollback"),
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": labels(db, "upgrade-rollback")},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": POD_SECURITY_CONTEXT,
                    "containers": [{
                        "name": "restore-filestore",
                        "image": db.image,
                        "command": ["/bin/sh", "-c", _RESTORE_FILES],
                        "volumeMounts": [{"name": "filestore", "mountPath": "/filestore"},
                                         {"name": "pre-upgrade", "mountPath": PRE_UPGRADE_MOUNT,
                                          "readOnly": True}],
                        "securityContext": CONTAINER_SECURITY_CONTEXT,
                    }],
                    "volumes": [
                        {"name": "filestore", "persistentVolumeClaim": {"claimName": filestore_pvc_name(db)}},
                        {"name": "pre-upgrade", "persistentVolumeClaim": {"claimName": pre_upgrade_pvc_name(db)}},
                    ],
                },
            },
        },
    }


def build_pre_upgrade_pvc(db: OdooDatabase, settings: Settings) -> dict[str, Any]:
    return build_pvc(db, pre_upgrade_pvc_name(db), "pre-upgrade", settings.filestore_size, settings)


def build_test_copy(db: OdooDatabase, to: str, server: str | None) -> dict[str, Any]:
    """The test upgrade: a neutralized duplicate asking for the target version (it upgrades itself, with no
    pre-upgrade copy: it is disposable), owned by its source, expiring like any duplicate, no daily backup."""
    spec: dict[str, Any] = {
        "version": to,
        "duplicateFrom": {"name": db.name, "forTesting": True},
        "upgrade": {"testFirst": False},
        "backup": {"enabled": False},
    }
    if server:
        spec["server"] = server
    return {
        "apiVersion": API_VERSION,
        "kind": "OdooDatabase",
        "metadata": {"name": test_copy_name(db), "namespace": db.namespace,
                     "labels": {TEST_COPY_LABEL: db.name}, "ownerReferences": [owner_reference(db)]},
        "spec": spec,
    }


def serving(db: OdooDatabase, version: str, image: str) -> OdooDatabase:
    """The database as its app runs it: on the version its data is at, with that version's image."""
    return db if (version, image) == (db.version, db.image) else dataclasses.replace(db, version=version,
                                                                                    image=image)
