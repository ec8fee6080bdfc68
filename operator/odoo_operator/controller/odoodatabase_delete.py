"""Deleting one OdooDatabase: its spec.deletionPolicy (Delete drops the database and its role, Retain keeps
them, Snapshot takes a final backup first, with the app stopped).

Works from the object as deleted (api.model.parse_deletion: an object whose spec no longer parses can
still go). Not here: the entry point that also releases the host's claim (odoodatabase.delete), the
Kubernetes children (they go with their owner, by owner reference), the backup Job's program (backupjob/).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odoo_operator import API_VERSION, failpoints, pg, specs
from odoo_operator.api.conditions import now_iso
from odoo_operator.api.labels import OWNER_UID_LABEL
from odoo_operator.api.model import (
    OdooDatabase,
    SpecError,
    parse_backup_settings,
    parse_deletion,
    parse_odoo_database,
    pre_upgrade_database_name,
    role_name,
)
from odoo_operator.controller.base import PHASE_DELETING, Context, NotReady, job_failure, job_state
from odoo_operator.controller.postgresserver import resolve_server_name, server_address


@dataclass
class DeletionResult:
    dropped: bool
    message: str


def honour_policy(body: Mapping[str, Any], ctx: Context) -> DeletionResult:
    """Drop, keep or back up then drop the PostgreSQL database. Raises pg.PostgresUnavailable / NotReady
    to be retried."""
    deletion = parse_deletion(body)
    database_name, policy = deletion.database_name, deletion.policy
    if policy == "Snapshot" and deletion.created:
        _final_backup(body, database_name, ctx)
        policy = "Delete"
    if policy != "Delete":
        # Retain (and anything not understood, so data is never dropped by mistake).
        return DeletionResult(False, f"database {database_name!r} retained (deletionPolicy {policy})")
    try:
        server_name = resolve_server_name(None, deletion.server, (body.get("status") or {}).get("server"), ctx,
                                          uid=deletion.uid, database_name=database_name)
        address, _ = server_address(server_name, ctx)
    except NotReady as exc:
        if not deletion.created and exc.reason == "ServerNotFound":
            # Its server never existed (or is gone) and nothing was recorded as created: nothing to drop.
            return DeletionResult(False, f"no PostgreSQL database had been created ({exc.message})")
        raise
    owner = {"managedBy": pg.MARKER_VALUE, "namespace": deletion.namespace, "name": deletion.name}
    role = role_name(deletion.namespace, deletion.name)
    with pg.connect(address) as conn:
        info = pg.database_info(conn, database_name)
        if info.exists and not info.owned_by(owner, role):
            message = f"database {database_name!r} on {server_name} is not ours; left untouched"
            pg.drop_role(conn, role, owner)
            return DeletionResult(False, message)
        earlier = (info.marker or {}).get("uid")
        if info.exists and earlier not in (None, deletion.uid or None) and not deletion.created:
            # Kept (Retain) by an earlier object of this name, and never taken over by this one (a
            # duplicate refuses it: DatabaseExists): not this object's to drop, nor is its role.
            return DeletionResult(False, f"database {database_name!r} on {server_name} was kept by an earlier "
                                  "OdooDatabase of this name and never used by this one; left untouched")
        dropped = pg.drop_database(conn, database_name) if info.exists else False
        copy = pg.database_info(conn, pre_upgrade_database_name(deletion.uid)) if deletion.uid else None
        if copy is not None and copy.exists and copy.owned_by(owner, role):  # the pre-upgrade copy goes too
            pg.drop_database(conn, pre_upgrade_database_name(deletion.uid))
        failpoints.hit("delete-after-drop", deletion.namespace)
        pg.drop_role(conn, role, owner)
    _drop_other_end_of_move(body, ctx, server_name, database_name, owner, role, deletion.uid)
    if dropped:
        return DeletionResult(True, f"database {database_name!r} and its role dropped from {server_name}")
    return DeletionResult(False, f"database {database_name!r} did not exist on {server_name}")


# ---- deletionPolicy Snapshot --------------------------------------------------------------------

def _final_backup(body: Mapping[str, Any], database_name: str, ctx: Context) -> None:
    """deletionPolicy Snapshot: a final backup must succeed before the drop; NotReady until then.

    The app is stopped first (nothing writes during the backup). The Job is trusted only if it is the one
    the operator created for this object: labelled with its uid, and with the Job uid recorded in its
    status when it was created. Completion is recorded in status.finalBackup before the drop, so a deletion
    resumed after the drop (operator killed) goes on to the end instead of backing a missing database up."""
    meta = body["metadata"]
    live = ctx.kube.get(API_VERSION, "OdooDatabase", meta["name"], meta["namespace"]) or body  # the newest record
    record = (live.get("status") or {}).get("finalBackup") or {}
    if record.get("completedAt"):
        if record.get("job") and record.get("jobUid"):  # killed before it was removed: remove it now
            ctx.kube.delete("batch/v1", "Job", record["job"], meta["namespace"],
                            preconditions={"uid": record["jobUid"]})
        return
    try:
        db = parse_odoo_database(body, ctx.settings)
    except SpecError as exc:
        raise NotReady("FinalBackupFailed", f"cannot take the final backup: {exc}; the database is not dropped",
                       stalled=True, retry_after=60) from None
    _stop_app(db, ctx)
    name = specs.backup.final_backup_job_name(db.name)
    # Not base.ensure_job: this Job is trusted only if it is the one recorded (see above), and it outlives
    # its owner (no owner reference: it runs while the object is being deleted).
    job = ctx.kube.get("batch/v1", "Job", name, db.namespace)
    if job is not None and not _final_backup_job_trusted(job, db, record):
        ctx.kube.delete("batch/v1", "Job", name, db.namespace, preconditions={"uid": job["metadata"]["uid"]})
        raise NotReady("FinalBackup", f"Job {name} was not created by the operator for this object (another uid); "
                       f"removed, a new final backup of {database_name!r} follows", retry_after=5, phase=PHASE_DELETING)
    if job is None:
        settings = db.backup or parse_backup_settings({}, ctx.settings)
        assert settings is not None
        for obj in specs.backup.build_reporter_rbac(db.namespace):
            ctx.kube.apply(obj)
        if settings.storage.pvc_claim == ctx.settings.backup_pvc and ctx.kube.get(
                "v1", "PersistentVolumeClaim", settings.storage.pvc_claim, db.namespace) is None:
            ctx.kube.create(specs.backup.build_backup_pvc(db.namespace, ctx.settings))
        created = ctx.kube.create(specs.backup.build_final_backup_job(db, database_name, settings.storage,
                                                                      settings.retention, ctx.settings))
        failpoints.hit("snapshot-job-created", db.namespace)
        if created is not None:
            _record_final_backup(ctx, meta, {"job": name, "jobUid": created["metadata"]["uid"], "completedAt": None})
        raise NotReady("FinalBackup", f"taking the final backup (Job {name}) before dropping {database_name!r}",
                       retry_after=5, warning=False, phase=PHASE_DELETING)
    state = job_state(job)
    if state == "Failed":
        raise NotReady("FinalBackupFailed", f"the final backup (Job {name}) failed: {job_failure(job)}; the database "
                       f"{database_name!r} is NOT dropped. Fix the cause and delete the Job to retry, or change "
                       "spec.deletionPolicy to Delete or Retain", stalled=True, retry_after=15, phase=PHASE_DELETING)
    if state != "Complete":
        raise NotReady("FinalBackup", f"taking the final backup (Job {name}) before dropping {database_name!r}",
                       retry_after=5, warning=False, phase=PHASE_DELETING)
    _record_final_backup(ctx, meta, {"job": name, "jobUid": job["metadata"]["uid"], "completedAt": now_iso()})
    failpoints.hit("snapshot-backup-recorded", db.namespace)
    ctx.kube.delete("batch/v1", "Job", name, meta["namespace"], preconditions={"uid": job["metadata"]["uid"]})


def _final_backup_job_trusted(job: Mapping[str, Any], db: OdooDatabase, record: Mapping[str, Any]) -> bool:
    labels = job["metadata"].get("labels") or {}
    return (labels.get(OWNER_UID_LABEL) == db.uid and bool(db.uid)
            and job["metadata"].get("uid") == record.get("jobUid"))


def _record_final_backup(ctx: Context, meta: Mapping[str, Any], record: Mapping[str, Any]) -> None:
    ctx.kube.patch_status(API_VERSION, "OdooDatabase", meta["name"], meta["namespace"], {"finalBackup": dict(record)})


def _stop_app(db: OdooDatabase, ctx: Context) -> None:
    """Scale the app (the Deployments this object owns) to 0 and wait until the Deployment controller reports
    no pod left: a backup taken while Odoo writes misses the last writes, or holds a filestore that no longer
    matches the dump."""
    running = 0
    for deployment in ctx.kube.list("apps/v1", "Deployment", db.namespace):
        meta, spec, status = deployment["metadata"], deployment.get("spec") or {}, deployment.get("status") or {}
        if db.uid not in {ref.get("uid") for ref in meta.get("ownerReferences") or []}:
            continue
        if spec.get("replicas") != 0:
            ctx.kube.scale("apps/v1", "Deployment", meta["name"], db.namespace, 0)
            running += 1
        elif int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0) or status.get("replicas"):
            running += int(status.get("replicas") or 1)
    if running:
        raise NotReady("StoppingApp", "stopping the app (scaled to 0) before the final backup", retry_after=3,
                       warning=False, phase=PHASE_DELETING)


def _drop_other_end_of_move(body: Mapping[str, Any], ctx: Context, server_name: str, database_name: str,
                            owner: dict[str, str], role: str, uid: str) -> None:
    """Deleted while a move ran (or before its source was dropped): the database of this object on the move's
    other server (its marker names the object's uid) goes too, and its role there."""
    move = (body.get("status") or {}).get("move") or {}
    for other in {move.get("from"), move.get("to")} - {None, server_name}:
        try:
            address, _ = server_address(str(other), ctx)
        except NotReady as exc:
            if exc.reason == "ServerNotFound":
                continue
            raise
        with pg.connect(address) as conn:
            info = pg.database_info(conn, database_name)
            if info.exists and info.owned_by(owner, role) and uid and (info.marker or {}).get("uid") == uid:
                pg.drop_database(conn, database_name)
            pg.drop_role(conn, role, owner)
