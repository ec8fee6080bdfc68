"""Pure builders of the objects behind backups and restores: Jobs and CronJobs that run the
operator's own image (`python -m odoo_operator.backupjob …`), the daily DatabaseBackup of a database,
the default backup PVC and the ServiceAccount the Jobs report with. No I/O here."""

from __future__ import annotations

from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.labels import BACKUP_LABEL, FINALIZER, OWNER_UID_LABEL
from odoo_operator.api.model import DatabaseBackup, OdooDatabase, Retention, Storage, quantity_bytes
from odoo_operator.config import Settings
from odoo_operator.specs.app import (
    CONTAINER_SECURITY_CONTEXT,
    CRONJOB_NAME_MAX,
    DATABASE_LABEL,
    MANAGED_BY,
    POD_SECURITY_CONTEXT,
    child_name,
    db_secret_name,
    filestore_pvc_name,
    owner_reference,
)

BACKUP_TMP_SIZE = "1Gi"  # a backup Job's /tmp holds pg_dump's stderr only
REPORTER = "odoo-backup"
FILESTORE_MOUNT = "/filestore"
BACKUPS_MOUNT = "/backups"


def daily_backup_name(db: OdooDatabase) -> str:
    """A DatabaseBackup's name is a label value on its Jobs: at most 63 characters."""
    return child_name(db.name, "daily")


def backup_cronjob_name(backup: DatabaseBackup) -> str:
    return child_name(backup.name, limit=CRONJOB_NAME_MAX)


def restore_job_name(db: OdooDatabase) -> str:
    return child_name(db.name, "restore")


def final_backup_job_name(db_name: str) -> str:
    return child_name(db_name, "final-backup")


def _labels(component: str, database: str, backup: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "odoo",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        DATABASE_LABEL: database,
    }
    if backup:
        labels[BACKUP_LABEL] = backup
    return labels


def _backup_owner(backup: DatabaseBackup) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DatabaseBackup", "name": backup.name, "uid": backup.uid,
            "controller": True, "blockOwnerDeletion": True}


def build_daily_backup(db: OdooDatabase) -> dict[str, Any]:
    assert db.backup is not None
    storage: dict[str, Any]
    s = db.backup.storage
    if s.s3_bucket:
        s3: dict[str, Any] = {"bucket": s.s3_bucket, "prefix": s.s3_prefix}
        if s.s3_endpoint:
            s3["endpoint"] = s.s3_endpoint
        if s.s3_region:
            s3["region"] = s.s3_region
        if s.s3_credentials_secret:
            s3["credentialsSecret"] = {"name": s.s3_credentials_secret}
        storage = {"s3": s3}
    else:
        storage = {"pvc": {"claimName": s.pvc_claim}}
    r = db.backup.retention
    return {
        "apiVersion": API_VERSION,
        "kind": "DatabaseBackup",
        "metadata": {"name": daily_backup_name(db), "namespace": db.namespace,
                     "labels": _labels("backup", db.name), "ownerReferences": [owner_reference(db)],
                     "finalizers": [FINALIZER]},  # kopf's, for the backup's daemon: no PATCH to add it
        "spec": {
            "databaseRef": {"name": db.name},
            "schedule": db.backup.schedule,
            "format": "zip",
            "storage": storage,
            "retention": {"keepLast": r.keep_last, "keepDaily": r.keep_daily, "keepWeekly": r.keep_weekly,
                          "keepMonthly": r.keep_monthly},
        },
    }


def build_backup_pvc(namespace: str, settings: Settings) -> dict[str, Any]:
    """Backups outlive their databases: this PVC is owned by nothing."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": settings.backup_pvc_size}}}
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": settings.backup_pvc, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": MANAGED_BY,
                                    "app.kubernetes.io/component": "backup-storage"}},
            "spec": spec}


def build_reporter_rbac(namespace: str) -> list[dict[str, Any]]:
    """The Jobs' identity: it may only write the status of DatabaseBackups in its namespace."""
    meta = {"name": REPORTER, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": dict(meta),
         "rules": [{"apiGroups": ["odoo.dbmanager.io"], "resources": ["databasebackups/status"],
                    "verbs": ["get", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(meta),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": REPORTER},
         "subjects": [{"kind": "ServiceAccount", "name": REPORTER, "namespace": namespace}]},
    ]


def _connection_env(db: OdooDatabase) -> list[dict[str, Any]]:
    def from_secret(env: str, key: str) -> dict[str, Any]:
        return {"name": env, "valueFrom": {"secretKeyRef": {"name": db_secret_name(db), "key": key}}}

    return [from_secret("PGHOST", "host"), from_secret("PGPORT", "port"), from_secret("PGUSER", "user"),
            from_secret("PGPASSWORD", "password"), from_secret("PGSSLMODE", "sslmode")]


def _storage_env_and_volumes(storage: Storage) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                            list[dict[str, Any]]]:
    if storage.s3_bucket:
        env: list[dict[str, Any]] = []
        if storage.s3_endpoint:
            env.append({"name": "S3_ENDPOINT", "value": storage.s3_endpoint})
        if storage.s3_region:
            env.append({"name": "AWS_REGION", "value": storage.s3_region})
        if storage.s3_credentials_secret:
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                env.append({"name": key, "valueFrom": {"secretKeyRef": {
                    "name": storage.s3_credentials_secret, "key": key}}})
        return env, [], []
    volume = {"name": "backups", "persistentVolumeClaim": {"claimName": storage.pvc_claim}}
    return [], [volume], [{"name": "backups", "mountPath": BACKUPS_MOUNT}]


def _retention_args(r: Retention) -> list[str]:
    return ["--keep-last", str(r.keep_last), "--keep-daily", str(r.keep_daily),
            "--keep-weekly", str(r.keep_weekly), "--keep-monthly", str(r.keep_monthly)]


def _pod_spec(db: OdooDatabase, storage: Storage, args: list[str], image: str, filestore_read_only: bool,
              extra_env: list[dict[str, Any]] | None = None, reports: bool = True,
              tmp_size: str = BACKUP_TMP_SIZE) -> dict[str, Any]:
    env, volumes, mounts = _storage_env_and_volumes(storage)
    volumes = [{"name": "filestore", "persistentVolumeClaim": {"claimName": filestore_pvc_name(db),
                                                               "readOnly": filestore_read_only}}] + volumes
    mounts = [{"name": "filestore", "mountPath": FILESTORE_MOUNT, "readOnly": filestore_read_only}] + mounts
    # The root filesystem is read-only: pg_dump's stderr and a restore's downloaded artifact go to /tmp, bounded
    # (a node's disk is shared; a restore refuses a larger download itself, with a clear message).
    volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": tmp_size}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    # A Job that reports writes a DatabaseBackup's status as REPORTER; one that does not (a restore) gets no
    # token at all: it reads tenant-controlled files, and needs nothing from the API server.
    identity: dict[str, Any] = {"serviceAccountName": REPORTER} if reports else {
        "serviceAccountName": "default", "automountServiceAccountToken": False}
    return {
        "restartPolicy": "Never",
        **identity,
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [{
            "name": "backup",
            "image": image,
            "command": ["python", "-m", "odoo_operator.backupjob"],
            "args": args,
            "env": _connection_env(db) + env + (extra_env or []),
            "volumeMounts": mounts,
            "securityContext": {**CONTAINER_SECURITY_CONTEXT, "readOnlyRootFilesystem": True},
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
        "volumes": volumes,
    }


def backup_args(db: OdooDatabase, database_name: str, fmt: str, storage: Storage, retention: Retention,
                report: str | None, owner: str, adopt_unowned: bool = False) -> list[str]:
    """Every backup of a database writes to its one folder; `owner` (the DatabaseBackup) scopes the retention to
    the artifacts it made itself. The daily backup also prunes those made before owners were recorded."""
    args = ["create", "--format", fmt, "--database", database_name, "--odoo-version", db.version,
            "--filestore", FILESTORE_MOUNT, "--storage", storage.url(db.namespace, db.name),
            *_retention_args(retention), "--owner", owner]
    if adopt_unowned:
        args.append("--adopt-unowned")
    return args + (["--report", report] if report else [])


def _job(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any] | None,
         pod_spec: dict[str, Any], backoff_limit: int = 0) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
            "spec": {"backoffLimit": backoff_limit, "template": {"metadata": {"labels": labels}, "spec": pod_spec}}}


def build_backup_job(backup: DatabaseBackup, db: OdooDatabase, database_name: str, settings: Settings
                     ) -> dict[str, Any]:
    daily = bool(backup.schedule) and backup.name == daily_backup_name(db)
    args = backup_args(db, database_name, backup.format, backup.storage, backup.retention,
                       f"{backup.namespace}/{backup.name}", backup.name, adopt_unowned=daily)
    labels = _labels("backup", db.name, backup.name)
    return _job(backup.name, backup.namespace, labels, _backup_owner(backup),
                _pod_spec(db, backup.storage, args, settings.operator_image, True))


def build_backup_cronjob(backup: DatabaseBackup, db: OdooDatabase, database_name: str, settings: Settings,
                         paused: bool = False) -> dict[str, Any]:
    job = build_backup_job(backup, db, database_name, settings)
    labels = job["metadata"]["labels"]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": backup_cronjob_name(backup), "namespace": backup.namespace, "labels": labels,
                     "ownerReferences": [_backup_owner(backup)]},
        "spec": {
            "schedule": backup.schedule,
            "suspend": backup.suspend or paused,  # paused: the database is over its plan's storage limit
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": labels}, "spec": job["spec"]},
        },
    }


def build_final_backup_job(db: OdooDatabase, database_name: str, storage: Storage, retention: Retention,
                           settings: Settings) -> dict[str, Any]:
    """deletionPolicy Snapshot: owned by nothing, since its database is being deleted; labelled with the uid of
    the OdooDatabase it is for (a Job of that name made for another, or by someone else, is not trusted)."""
    # Its owner is no DatabaseBackup name ("/" is not allowed in one): no DatabaseBackup prunes final backups.
    args = backup_args(db, database_name, "zip", storage, retention, None, f"{db.name}/final-backup")
    labels = {**_labels("final-backup", db.name), OWNER_UID_LABEL: db.uid}
    return _job(final_backup_job_name(db.name), db.namespace, labels, None,
                _pod_spec(db, storage, args, settings.operator_image, True))


def restore_args(db: OdooDatabase, storage: Storage, settings: Settings, *, source_database: str | None = None,
                 artifact: str | None = None, file: str | None = None, sha256: str | None = None) -> list[str]:
    """An artifact of `source_database`'s backups (checked against its sidecar), or any `file` under the
    storage's root (checked against `sha256` when given). A backup of a newer Odoo than db's is refused, so is
    a ZIP that expands beyond the settings' limits, or an S3 download larger than the Job's /tmp."""
    if file is not None:
        source = ["--storage", storage.root_url(), "--file", file] + (["--sha256", sha256] if sha256 else [])
    else:
        assert source_database is not None and artifact is not None
        source = ["--storage", storage.url(db.namespace, source_database), "--artifact", artifact]
    spool = max(quantity_bytes(settings.restore_spool_size) - (16 << 20), 0)  # what psql's stderr needs stays free
    return ["restore", *source, "--database", db.database_name, "--filestore", FILESTORE_MOUNT,
            "--odoo-version", db.version, "--max-bytes", str(settings.restore_max_bytes),
            "--max-members", str(settings.restore_max_members), "--spool-limit", str(spool)]


def build_restore_job(db: OdooDatabase, storage: Storage, settings: Settings, *, source_database: str | None = None,
                      artifact: str | None = None, file: str | None = None, sha256: str | None = None
                      ) -> dict[str, Any]:
    """Loads a backup into this (new, empty) database and filestore, connected as the database's own role
    (its Secret): the SQL of a dump is the user's, never run as an administrator."""
    args = restore_args(db, storage, settings, source_database=source_database, artifact=artifact, file=file,
                        sha256=sha256)
    return _job(restore_job_name(db), db.namespace, _labels("restore", db.name), owner_reference(db),
                _pod_spec(db, storage, args, settings.operator_image, False, reports=False,
                          tmp_size=settings.restore_spool_size))

