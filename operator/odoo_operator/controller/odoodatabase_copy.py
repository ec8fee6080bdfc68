"""Databases made from another: a duplicate (spec.duplicateFrom, copied on the server by
odoodatabase_create.ensure_database) and a restore (spec.restoreFrom, loaded by a Job). Here: resolving the
source before anything is created, then what makes the copy usable, in Odoo's order (`exp_duplicate_database`,
`exp_restore`): the filestore, a fresh identity (neutralize.reset_identity, once, recorded in the database's
marker), Odoo's own neutralization in a Job when asked, then the "initialized" mark.

Not here: creating the database itself (odoodatabase_create.py), the restore Job's program (backupjob/),
its manifest (specs/backup.py).
"""

from __future__ import annotations

from typing import Any

from odoo_operator import API_VERSION, failpoints, neutralize, pg, specs
from odoo_operator.api.conditions import now_iso
from odoo_operator.api.model import (
    DuplicateSource,
    RestoreSource,
    choose_artifact,
    duplicate_source_name,
    is_copy_for_testing,
    parse_database_backup,
    role_name,
)
from odoo_operator.controller import plans
from odoo_operator.controller.base import PHASE_FAILED, PHASE_PENDING, NotReady
from odoo_operator.controller.odoodatabase_create import DatabasePass, mark_initialized

# ---- duplicates ---------------------------------------------------------------------------------


def duplicate_source(r: DatabasePass) -> DuplicateSource:
    """The source of a duplicate, once it is usable; enforces the duplicates-per-source limit."""
    db = r.obj
    assert db.duplicate_from is not None
    name = db.duplicate_from.name
    if r.status.get("createdAt"):  # already copied: only the source's facts are needed
        return DuplicateSource(db.duplicate_from, r.status.get("server"), r.status.get("sourceDatabase"),
                               role_name(db.namespace, name))
    siblings = r.kube.list(API_VERSION, "OdooDatabase", db.namespace)
    source = next((o for o in siblings if o["metadata"]["name"] == name), None)
    if source is None or source["metadata"].get("deletionTimestamp"):
        raise NotReady("SourceNotFound", f"OdooDatabase {name!r} (spec.duplicateFrom) does not exist in this "
                       "namespace; create it or fix the name", retry_after=30)
    source_status = source.get("status") or {}
    if not source_status.get("initializedAt") or not source_status.get("databaseName"):
        raise NotReady("SourceNotReady", f"OdooDatabase {name!r} is not initialised yet; the copy waits for it",
                       retry_after=15, warning=False)
    plans.refuse_when_over_quota(source, "a new duplicate")
    plan = plans.plan_for(r.ctx, db.namespace)
    limit, kind = r.ctx.settings.max_duplicates, "duplicates"
    testing_only = db.duplicate_from.for_testing and plan is not None and plan.max_test_copies is not None
    if testing_only:
        assert plan is not None and plan.max_test_copies is not None
        limit, kind = plan.max_test_copies, f"copies for testing ({plan.describe()})"
    duplicates = sorted(
        (o for o in siblings if duplicate_source_name(o) == name and not o["metadata"].get("deletionTimestamp")
         and (not testing_only or is_copy_for_testing(o))),
        key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"]))
    rank = next((i for i, o in enumerate(duplicates) if o["metadata"]["uid"] == db.uid), len(duplicates))
    if rank >= limit:
        raise NotReady("DuplicateLimit", f"{name!r} already has {limit} {kind}, the most allowed; delete one "
                       "of them (no database was created)", stalled=True, phase=PHASE_FAILED, retry_after=60)
    return DuplicateSource(db.duplicate_from, source_status.get("server"), source_status["databaseName"],
                           source_status.get("roleName") or role_name(db.namespace, name),
                           source_status.get("version"))


def finish_duplicate(r: DatabasePass, admin: pg.ServerAddress, tenant: pg.ServerAddress,
                     source: DuplicateSource) -> bool:
    """Filestore copied, fresh identity, then for a copy for testing Odoo's own neutralization — then (only
    then) usable. Returns whether it is; `initialized` is written only once every step succeeded."""
    db = r.obj
    assert db.duplicate_from is not None
    if r.ctx.settings.filestore_clone == "copy" and not _filestore_copied(r):
        return False
    for_testing = db.duplicate_from.for_testing
    if not _make_own(r, admin, tenant, reassign_from=source.role_name, fresh_identity=True,
                     neutralize_it=for_testing, failpoint="duplicate-before-neutralize"):
        return False
    with pg.connect(admin) as conn:
        mark_initialized(conn, db, neutralized=for_testing)
    r.new_status.update({"initializedAt": now_iso(), "neutralized": for_testing})
    if for_testing:
        r.events.append(("Normal", "Neutralized", "test copy neutralized by odoo neutralize (Job "
                         f"{specs.app.neutralize_job_name(db)}: every installed module's data/neutralize.sql)"))
    return True


def _filestore_copied(r: DatabasePass) -> bool:
    db = r.obj
    run = r.ensure_job(specs.app.filestore_copy_job_name(db), lambda: specs.app.build_filestore_copy_job(db, db.image))
    if run.state == "Failed":
        raise NotReady("FilestoreCopyFailed", f"Job {run.name} failed to copy the filestore ({run.failure}); "
                       "delete the Job to retry", stalled=True, phase=PHASE_FAILED)
    return run.state == "Complete"


# ---- restores -----------------------------------------------------------------------------------

def restore_source(r: DatabasePass) -> RestoreSource:
    """The DatabaseBackup and artifact, or the file, to restore from; checked before anything is created."""
    db = r.obj
    spec = db.restore_from
    assert spec is not None
    if spec.file is not None:
        return _restore_file_source(r)
    name = spec.backup
    assert name is not None
    backup = r.kube.get(API_VERSION, "DatabaseBackup", name, db.namespace)
    if backup is None:
        raise NotReady("BackupNotFound", f"DatabaseBackup {name!r} (spec.restoreFrom) does not exist in this "
                       "namespace", retry_after=30)
    artifacts = (backup.get("status") or {}).get("artifacts") or []
    wanted = spec.artifact
    artifact = choose_artifact(artifacts, wanted)
    if artifact is None:
        what = f"artifact {wanted!r}" if wanted else "any artifact"
        raise NotReady("ArtifactNotFound", f"DatabaseBackup {name!r} has no {what}; see its status.artifacts",
                       stalled=bool(wanted), retry_after=30, phase=PHASE_FAILED if wanted else PHASE_PENDING)
    parsed = parse_database_backup(backup, r.ctx.settings)
    backed_up = r.ctx.registry.database(db.namespace, parsed.database) or r.kube.get(
        API_VERSION, "OdooDatabase", parsed.database, db.namespace)
    plans.refuse_when_over_quota(backed_up, "a restore of the backups")
    return RestoreSource(spec, parsed.storage, label=f"{name}/{artifact['id']}", verified=True,
                         artifact=artifact["id"], source_database=parsed.database)


def _restore_file_source(r: DatabasePass) -> RestoreSource:
    """A file on a backup storage that the operator did not write (an Odoo ZIP, a dump): the Job reads it;
    here only its volume can be checked. Without spec.restoreFrom.sha256 nothing can verify its bytes."""
    db = r.obj
    spec = db.restore_from
    assert spec is not None and spec.file is not None and spec.storage is not None
    storage = spec.storage
    if storage.pvc_claim and r.kube.get("v1", "PersistentVolumeClaim", storage.pvc_claim, db.namespace) is None:
        raise NotReady("StorageNotFound", f"PersistentVolumeClaim {storage.pvc_claim!r} (the storage of "
                       "spec.restoreFrom.file) does not exist in this namespace", retry_after=30)
    return RestoreSource(spec, storage, label=f"file {spec.file} on {storage.describe()}",
                         verified=spec.sha256 is not None)


def run_restore(r: DatabasePass, admin: pg.ServerAddress, tenant: pg.ServerAddress, restore: RestoreSource) -> bool:
    """The restore Job loads the backup; then a fresh identity unless identity: keep (Odoo's "moved"), and
    Odoo's neutralization when asked. Returns whether the database is usable."""
    db = r.obj
    spec = restore.spec
    run = r.ensure_job(specs.backup.restore_job_name(db), lambda: specs.backup.build_restore_job(
        db, restore.storage, r.ctx.settings, source_database=restore.source_database, artifact=restore.artifact,
        file=spec.file, sha256=spec.sha256), failpoint="restore-job-created")
    if run.state == "Failed":
        raise NotReady("RestoreFailed", f"Job {run.name} failed to restore {restore.label} ({run.failure}; "
                       f"its log says why); nothing of it is served. Fix the cause, then delete the Job "
                       "to retry", stalled=True, phase=PHASE_FAILED)
    if run.state != "Complete":
        return False
    if not _make_own(r, admin, tenant, reassign_from=None, fresh_identity=not spec.keep_identity,
                     neutralize_it=spec.neutralize, failpoint=None):
        return False
    failpoints.hit("restore-before-marker", db.namespace)
    with pg.connect(admin) as conn:
        mark_initialized(conn, db)
    checked = "" if restore.verified else " (unverified: no checksum)"
    r.new_status.update({"initializedAt": now_iso(), "neutralized": spec.neutralize,
                         "source": f"restored from {restore.label}{checked}"})
    identity = "its identity kept (moved)" if spec.keep_identity else "a fresh identity"
    r.events.append(("Normal", "Restored", f"restored from {restore.label}{checked} with {identity}"
                     + ("; neutralized by odoo neutralize" if spec.neutralize else "")))
    if not restore.verified:
        r.events.append(("Warning", "RestoreUnverified", f"{restore.label} was restored unverified: no "
                         "checksum (set spec.restoreFrom.sha256 to have its bytes checked)"))
    return True


# ---- what a copy needs before it is used ----------------------------------------------------------

def _make_own(r: DatabasePass, admin: pg.ServerAddress, tenant: pg.ServerAddress, *, reassign_from: str | None,
              fresh_identity: bool, neutralize_it: bool, failpoint: str | None) -> bool:
    """A copied or restored database made this object's, in Odoo's order: its objects reassigned to its role
    (a duplicate), a fresh identity (Odoo's `init(force=True)`), then Odoo's neutralization when asked.
    The identity step is recorded in the database's marker (identityReset), so a pass after a crash, or
    while the neutralize Job runs, does not repeat it. Returns whether every step is done."""
    db = r.obj
    if fresh_identity or reassign_from:
        with pg.connect(admin) as conn:
            marker = (pg.database_info(conn, db.database_name).marker or {}) | db.owner_marker
        if not marker.get("identityReset"):
            if reassign_from:
                with pg.connect(admin, db.database_name) as conn:
                    pg.reassign_owned(conn, reassign_from, db.role_name)
            if fresh_identity:
                # As the database's own role: the tables (and any trigger on them) are the tenant's.
                with pg.connect(tenant, db.database_name) as conn:
                    neutralize.reset_identity(conn, specs.routes.database_url(db, r.ctx.settings))
            with pg.connect(admin) as conn:
                pg.set_database_marker(conn, db.database_name, marker | {"identityReset": True})
    if failpoint:
        failpoints.hit(failpoint, db.namespace)
    return not neutralize_it or _neutralized(r, admin)


def _neutralized(r: DatabasePass, admin: pg.ServerAddress) -> bool:
    """Odoo's own `odoo neutralize`, in a Job of the image of the version the data is at (a test upgrade's
    copy asks for the target version, and is neutralized before it is upgraded)."""
    db = r.obj

    def build() -> dict[str, Any]:
        with pg.connect(admin) as conn:
            version = (pg.database_info(conn, db.database_name).marker or {}).get("version") or db.version
        image = db.image if version == db.version else r.ctx.settings.images.get(version, db.image)
        return specs.app.build_neutralize_job(specs.upgrade.serving(db, version, image), r.endpoint)

    run = r.ensure_job(specs.app.neutralize_job_name(db), build, failpoint="neutralize-job-created")
    if run.state == "Failed":
        raise NotReady("NeutralizeFailed", f"Job {run.name} failed to neutralize the database ({run.failure}); "
                       "the app is not started on a copy that is not neutralized. Fix the cause, then delete "
                       "the Job to retry", stalled=True, phase=PHASE_FAILED)
    return run.state == "Complete"
