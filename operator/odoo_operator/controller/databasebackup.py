"""Converging one DatabaseBackup: a Job now (no schedule) or a CronJob, plus what they need.

The Job runs `python -m odoo_operator.backupjob create … --report <ns>/<name>`: it streams the backup to
the storage, prunes by retention, and writes the resulting artifact list (or its failure) into this
object's status itself (backupjob/report.py). Here the operator only reads it back, with the Job's
state, into conditions. Not here: what the Jobs run (backupjob/), their manifests (specs/backup.py),
the final backup of a deleted OdooDatabase (odoodatabase_delete.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odoo_operator import API_VERSION, specs
from odoo_operator.api.conditions import get_condition, summary
from odoo_operator.api.model import (
    DatabaseBackup,
    SpecError,
    database_name,
    parse_database_backup,
    parse_odoo_database,
)
from odoo_operator.controller import base, plans
from odoo_operator.controller.base import PHASE_FAILED, Context, JobRun, NotReady, Outcome


class BackupReconciler(base.Reconciler[DatabaseBackup]):
    noun = "backup"

    def parse(self) -> DatabaseBackup:
        return parse_database_backup(self.body, self.ctx.settings)

    @property
    def backup(self) -> DatabaseBackup:
        return self.obj

    def converge(self) -> Outcome:
        backup = self.backup
        db_body = self._database()
        if db_body is None:
            raise NotReady("DatabaseNotFound", f"OdooDatabase {backup.database!r} (spec.databaseRef) does not exist "
                           "in this namespace", retry_after=30)
        db_status = db_body.get("status") or {}
        if not db_status.get("initializedAt") or not db_status.get("databaseName"):
            raise NotReady("DatabaseNotReady", f"OdooDatabase {backup.database!r} is not initialised yet; backups "
                           "start once it is", retry_after=30, warning=False)
        try:
            db = parse_odoo_database(db_body, self.ctx.settings)
        except SpecError as exc:
            raise NotReady("DatabaseInvalid", f"OdooDatabase {backup.database!r}: {exc}", retry_after=60) from None
        ensure_namespace_backup_support(self.ctx, backup.namespace, backup.storage.pvc_claim)
        name = database_name(db_body)  # its name in PostgreSQL now (status), whatever a pending rename says
        over_quota = get_condition(db_status, "OverQuota") or {}
        if backup.schedule:
            paused = over_quota.get("status") == "True"
            cron = self.apply(specs.backup.build_backup_cronjob(backup, db, name, self.ctx.settings, paused=paused))
            last = (cron.get("status") or {}).get("lastScheduleTime")
            if last:
                self.new_status["lastScheduleTime"] = last
            if paused:  # its CronJob is suspended meanwhile; it resumes by itself once the database is below
                plans.refuse_when_over_quota(db_body, "a backup")
            return self._scheduled_outcome()
        if not self.status.get("lastScheduleTime"):  # a one-off backup not started yet
            plans.refuse_when_over_quota(db_body, "a backup")
        run = self.ensure_job(backup.name, lambda: specs.backup.build_backup_job(backup, db, name, self.ctx.settings))
        if run.created:
            self.new_status["lastScheduleTime"] = run.job.get("metadata", {}).get("creationTimestamp")
        return self._one_shot_outcome(run)

    def _database(self) -> dict[str, Any] | None:
        """Its OdooDatabase as the watch shows it (no request); read from the API server when no loop of it
        runs here, or while the watch may not have brought its initialisation yet (it wakes us right after)."""
        backup = self.backup
        seen = self.ctx.registry.database(backup.namespace, backup.database)
        status = (seen or {}).get("status") or {}
        if seen is not None and status.get("initializedAt") and status.get("databaseName"):
            return seen
        return self.kube.get(API_VERSION, "OdooDatabase", backup.database, backup.namespace)

    def _latest(self) -> tuple[str | None, dict[str, Any]]:
        last_success = self.status.get("lastSuccessfulTime")
        failure = self.status.get("lastFailure") or {}
        return last_success, failure

    def _scheduled_outcome(self) -> Outcome:
        last_success, failure = self._latest()
        if self.backup.suspend:
            return _ready("Suspended", "Suspended", "scheduled backups are suspended (spec.suspend)", self.new_status)
        if failure.get("time") and (not last_success or failure["time"] > last_success):
            return self.failed(NotReady("BackupFailed", f"the last backup failed at {failure['time']}: "
                                        f"{failure.get('message', '')}; the next scheduled run retries, earlier "
                                        "artifacts are kept", retry_after=None))
        message = f"scheduled ({self.backup.schedule})"
        if last_success:
            message += f"; last success {last_success}, {len(self.status.get('artifacts') or [])} artifact(s) kept"
        return _ready("Scheduled", "Scheduled", message, self.new_status)

    def _one_shot_outcome(self, run: JobRun) -> Outcome:
        state = run.state
        last_success, failure = self._latest()
        if state == "Complete" and last_success:
            artifacts = self.status.get("artifacts") or []
            newest = artifacts[0] if artifacts else {}
            return _ready("Succeeded", "Succeeded", f"backup {newest.get('id', '')} taken "
                          f"({newest.get('sizeBytes', 0)} bytes)", self.new_status)
        if state == "Failed":
            why = failure.get("message") or run.failure
            return self.failed(NotReady("BackupFailed", f"the backup failed: {why}; delete this DatabaseBackup and "
                                        "create it again to retry", stalled=True, phase=PHASE_FAILED))
        return Outcome(
            "Running", *summary("progressing", "BackingUp", f"Job {self.backup.name} is taking the backup"),
            status=self.new_status,
            retry_after=60,
        )


def ensure_namespace_backup_support(ctx: Context, namespace: str, claim: str | None) -> None:
    """Once per namespace and operator run: the reporting ServiceAccount/Role/RoleBinding and, when the
    default storage is used, the backup PVC (created only if missing, owned by nothing)."""
    if ctx.registry.changed_token(("backup-rbac", namespace), True):
        try:
            for obj in specs.backup.build_reporter_rbac(namespace):
                ctx.kube.apply(obj)
        except Exception:
            ctx.registry.tokens.pop(("backup-rbac", namespace), None)
            raise
    if claim == ctx.settings.backup_pvc and ctx.registry.changed_token(("backup-pvc", namespace), True):
        try:
            if ctx.kube.get("v1", "PersistentVolumeClaim", claim, namespace) is None:
                ctx.kube.create(specs.backup.build_backup_pvc(namespace, ctx.settings))
        except Exception:
            ctx.registry.tokens.pop(("backup-pvc", namespace), None)
            raise


def _ready(phase: str, reason: str, message: str, status: dict[str, Any]) -> Outcome:
    return Outcome(phase, *summary("ready", reason, message), status=status, retry_after=None)


def reconcile(body: Mapping[str, Any], ctx: Context, live: Mapping[str, Any] | None = None) -> Outcome:
    return BackupReconciler(body, ctx, live).run()
