"""The PostgreSQL side of one OdooDatabase: its role's Secret, the database itself (created empty or as a copy
of its source, adopted after a crash, renamed, reported missing) and the initialisation of a fresh one (the
init Job installing Odoo's base module), with the "initialized" mark every way of making a database ends on.

Each step is a function of the pass (a base.Reconciler of an OdooDatabase, odoodatabase.py runs them in
order). Not here: what follows a copy or a restore before it is usable (odoodatabase_copy.py), the
Kubernetes children of the app (odoodatabase.py), deletion (odoodatabase_delete.py).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from odoo_operator import failpoints, pg, specs
from odoo_operator.api.conditions import now_iso
from odoo_operator.api.model import DuplicateSource, OdooDatabase
from odoo_operator.controller import templates
from odoo_operator.controller.base import PHASE_FAILED, Context, NotReady, Reconciler, decode, password
from odoo_operator.kube import KubeError

log = logging.getLogger(__name__)

class DatabasePass(Reconciler[OdooDatabase]):
    """One pass over an OdooDatabase (odoodatabase.Reconciler): what its steps here read of it, set by its
    converge() once the server is resolved."""
    admin: pg.ServerAddress  # the server's admin login
    tenant: pg.ServerAddress  # the database's own role: work inside its database runs as it
    endpoint: specs.app.DatabaseEndpoint  # where odoo.conf (in each pod's template) sends Odoo


def ensure_db_secret(r: DatabasePass, host: str, port: int, ssl_mode: str) -> tuple[str, bool]:
    """The Secret is the source of truth of the role's password: write it before the role. Returns the password
    and whether it is new.

    Secrets are not watched (the operator may not list them, see the chart's ClusterRole): it is read by name,
    at most once per resync interval while nothing else happens to its database (a new generation of the
    OdooDatabase, or a child deleted, makes the next pass read it again). A deleted or edited Secret is so
    repaired at the latest at the next periodic pass, as before, without a GET at each of the ~5 passes of a
    database being made. A new database's Secret is created without a GET first (a 409 says it exists)."""
    db = r.obj
    name = specs.app.db_secret_name(db)
    registry, max_age = r.ctx.registry, r.ctx.settings.resync_seconds
    existing = registry.known_secret(db.namespace, name, db.generation, max_age)
    if existing is None and not r.status.get("createdAt"):
        fresh = password()
        r.refuse_when_deleting()
        created = r.kube.create(specs.app.build_db_secret(db, host, port, ssl_mode, fresh))
        if created is not None:
            registry.remember_secret(created, db.generation)
            return fresh, True
    if existing is None:
        existing = r.kube.get("v1", "Secret", name, db.namespace)
        if existing is not None:
            registry.remember_secret(existing, db.generation)
    secret_password = decode(existing, "password")
    recreated = secret_password is None or decode(existing, "user") != db.role_name
    if recreated:
        secret_password = password()
    assert secret_password is not None
    secret = specs.app.build_db_secret(db, host, port, ssl_mode, secret_password)
    seen_data, seen_labels = (existing or {}).get("data") or {}, ((existing or {}).get("metadata") or {}).get(
        "labels") or {}
    if {k: seen_data.get(k) for k in secret["data"]} != secret["data"] or \
            not secret["metadata"]["labels"].items() <= seen_labels.items():
        r.refuse_when_deleting()
        registry.remember_secret(r.kube.apply(secret), db.generation)
    return secret_password, recreated


def ensure_database(r: DatabasePass, conn: Any, admin: pg.ServerAddress, server_name: str,
                    source: DuplicateSource | None) -> bool:
    """Create (empty, or as a copy of the source), adopt or rename the database; returns whether it is
    initialised."""
    db = r.obj
    current = r.status.get("databaseName")
    target = pg.database_info(conn, db.database_name)
    if current and current != db.database_name and r.status.get("createdAt"):
        target = _rename(r, conn, current, target)
    if not target.exists:
        if r.status.get("createdAt"):
            raise NotReady(
                "DatabaseMissing",
                f"database {db.database_name!r} was created on {server_name} at {r.status['createdAt']} and "
                "no longer exists; it is not re-created empty. Restore it, or delete this OdooDatabase",
                stalled=True, phase=PHASE_FAILED)
        _check_quota(r.ctx, conn, server_name)
        new_marker: dict[str, Any] = db.owner_marker | {"uid": db.uid}
        if source is not None:
            assert source.database_name is not None  # known until copied (status.sourceDatabase after)
            # The copy's data is at its source's version (an upgrade test copy is upgraded after). Never a copy of
            # a source being upgraded or rolled back: its data is half-migrated, and the copy's brief disconnection
            # of its sessions would cut the upgrade Job.
            source_marker = pg.database_info(conn, source.database_name).marker or {}
            if source_marker.get("upgrade"):
                raise NotReady("SourceNotReady", f"OdooDatabase {source.spec.name!r} is being upgraded or rolled "
                               "back; the copy waits until its data is at one version", retry_after=15, warning=False)
            source_version = source_marker.get("version")
            if source_version or source.version:
                new_marker["version"] = source_version or source.version
            terminated = pg.copy_database(conn, source.database_name, db.database_name, db.role_name, new_marker)
            r.new_status.update({"source": f"duplicate of {source.spec.name}",
                                 "sourceDatabase": source.database_name})
            failpoints.hit("duplicate-after-copy", db.namespace)
            r.events.append(("Normal", "Copied", f"copied from {source.spec.name!r} (database "
                             f"{source.database_name!r}); its {terminated} session(s) were briefly "
                             "disconnected, as Odoo does"))
        else:
            new_marker["version"] = db.version  # initialised (or restored) by this version's image
            key = templates.key_for(server_name, db, r.ctx) if not db.restore_from else None
            template = templates.ready(conn, key) if key else None
            if template is not None:  # Odoo's init done once, copied: made its own by initialise()
                # WAL_LOG: for a template of ~34 MB 0.16 s against FILE_COPY's 0.38 s (median of 5, quiet machine),
                # and no checkpoint forced on the shared server for each new database.
                pg.copy_database(conn, template, db.database_name, db.role_name, new_marker | {"template": template},
                                 strategy=pg.WAL_LOG)
                failpoints.hit("create-after-database", db.namespace)
            else:
                pg.create_database(conn, db.database_name, db.role_name, new_marker)
                failpoints.hit("create-after-database", db.namespace)
                pg.create_odoo_extensions(admin, db.database_name, db.role_name)
                if key is not None:
                    _request_template(r, conn, admin, server_name)
        r.new_status["createdAt"] = now_iso()
        return False
    if not target.owned_by(db.owner_marker, db.role_name):
        raise pg.OwnershipConflict(
            f"database {db.database_name!r} already exists on {server_name} and belongs to something else")
    marker: dict[str, Any] | None = target.marker
    made_from = "spec.duplicateFrom" if db.duplicate_from else "spec.restoreFrom" if db.restore_from else None
    if made_from and marker is not None and marker.get("uid") != db.uid and not r.status.get("createdAt"):
        # Left by an earlier object of this name (deletionPolicy Retain): not the copy or the restore
        # this one asks for, possibly never neutralized or given a fresh identity. Never adopted.
        what = "a fresh copy of its source" if db.duplicate_from else "restored from what it names"
        raise NotReady("DatabaseExists", f"database {db.database_name!r} already exists on {server_name}, kept by "
                       f"an earlier OdooDatabase of this name; a database made from {made_from} is always "
                       f"{what} and never adopts an existing one. Drop or rename that database, or set another "
                       f"spec.databaseName (removing {made_from} adopts it as it is)",
                       stalled=True, phase=PHASE_FAILED, retry_after=60)  # dropped outside Kubernetes
    if marker is None:  # created by us, comment lost to a crash: write it now
        marker = db.owner_marker | {"uid": db.uid}
        pg.set_database_marker(conn, db.database_name, marker)
    r.new_status["createdAt"] = r.status.get("createdAt") or now_iso()
    initialized = bool(r.status.get("initializedAt")) or bool(marker.get("initialized"))
    if initialized and not marker.get("initialized"):  # the status says so: the marker did not get it
        mark_initialized(conn, db)
    if initialized:
        r.new_status["initializedAt"] = r.status.get("initializedAt") or now_iso()
    return initialized


def _rename(r: DatabasePass, conn: Any, current: str, target: pg.DatabaseInfo) -> pg.DatabaseInfo:
    """spec.databaseName changed: ALTER DATABASE … RENAME, after terminating its sessions."""
    db = r.obj
    old = pg.database_info(conn, current)
    if not old.exists:
        return target  # renamed before a crash (target exists), or missing (reported by the caller)
    if not old.owned_by(db.owner_marker, db.role_name):
        raise pg.OwnershipConflict(f"database {current!r} is not managed for this object")
    if (old.marker or {}).get("upgrade"):  # its sessions terminated would cut the upgrade Job
        raise NotReady("Renaming", f"database {current!r} is being upgraded or rolled back; renamed to "
                       f"{db.database_name!r} once that is over", retry_after=15, warning=False)
    if target.exists:
        raise NotReady("NameConflict", f"cannot rename {current!r} to {db.database_name!r}: that name is taken on "
                       "the server; choose another spec.databaseName (nothing was changed)",
                       stalled=True, phase=PHASE_FAILED)
    terminated = pg.rename_database(conn, current, db.database_name)
    failpoints.hit("rename-after-alter", db.namespace)
    r.events.append(("Normal", "Renamed", f"database renamed from {current!r} to {db.database_name!r} "
                     f"({terminated} session(s) disconnected); filestore path and URL follow"))
    return pg.database_info(conn, db.database_name)


def _check_quota(ctx: Context, conn: Any, server_name: str) -> None:
    server = ctx.registry.server(server_name)
    if server and server.max_databases is not None:
        _, count = pg.server_info(conn)
        if count >= server.max_databases:
            raise NotReady("QuotaExceeded", f"PostgresServer {server_name} holds {count} databases, its "
                           f"maxDatabases is {server.max_databases}", retry_after=60)


def _request_template(r: DatabasePass, conn: Any, admin: pg.ServerAddress, server_name: str) -> None:
    """The first fresh database of its version on the server asks for the template the next ones are copied
    from; it is initialised by its own Job meanwhile. Whatever goes wrong here is the template's
    (reported on the PostgresServer), never this database's."""
    db = r.obj
    server = r.ctx.registry.server(server_name)
    if server is None:
        return
    endpoint = specs.app.DatabaseEndpoint(server.host, server.port, server.ssl_mode)
    try:
        if templates.request(r.ctx, conn, server, admin, endpoint, db.version, db.image):
            log.info("template of Odoo %s on %s: building (asked for by %s/%s)", db.version, server_name,
                     db.namespace, db.name)
    except (KubeError, psycopg.Error) as exc:
        log.warning("template of Odoo %s on %s not started: %s", db.version, server_name, exc)


def initialise(r: DatabasePass, admin: pg.ServerAddress, tenant: pg.ServerAddress) -> bool:
    """A fresh database: made its own when it is a copy of a template, else Odoo's init Job. Returns
    whether it is initialised."""
    db = r.obj
    with pg.connect(admin) as conn:
        template = (pg.database_info(conn, db.database_name).marker or {}).get("template")
    if not template:
        return run_init_job(r, admin)
    r.refuse_when_deleting()
    templates.make_own(admin, tenant, db, str(template), specs.routes.database_url(db, r.ctx.settings),
                       _admin_password(r))
    failpoints.hit("template-before-marker", db.namespace)
    with pg.connect(admin) as conn:
        mark_initialized(conn, db)
    r.new_status["initializedAt"] = now_iso()
    return True


def _admin_password(r: DatabasePass) -> str:
    """The password of <name>-admin, generated once: an existing Secret is never overwritten."""
    db = r.obj
    name = specs.app.admin_secret_name(db)
    existing = r.ctx.registry.child("Secret", db.namespace, name) or r.kube.get("v1", "Secret", name, db.namespace)
    value = decode(existing, "password")
    if value is not None:
        return value
    value = password()
    created = r.kube.create(specs.app.build_admin_secret(db, value))
    if created is None:  # lost a race with another pass: theirs
        return decode(r.kube.get("v1", "Secret", name, db.namespace), "password") or value
    r.ctx.registry.record_child("Secret", created, deleted=False)
    return value


def run_init_job(r: DatabasePass, admin: pg.ServerAddress) -> bool:
    """A fresh database: Odoo's base module installed by the init Job (Odoo's `-i base` in the database's
    image). Returns whether it is initialised."""
    db = r.obj
    r.refuse_when_deleting()
    # The admin password is generated once; an existing Secret is never overwritten.
    if r.ctx.registry.child("Secret", db.namespace, specs.app.admin_secret_name(db)) is None:
        created = r.kube.create(specs.app.build_admin_secret(db, password()))
        if created:
            r.ctx.registry.record_child("Secret", created, deleted=False)

    def extensions() -> None:  # again, for an operator killed between CREATE DATABASE and them (idempotent)
        pg.create_odoo_extensions(admin, db.database_name, db.role_name)

    name = specs.app.init_job_name(db)
    run = r.ensure_job(name, lambda: specs.app.build_init_job(db, r.endpoint), prepare=extensions,
                       failpoint="create-init-job-created")
    if run.state == "Failed":
        raise NotReady("InitFailed", f"Job {name} failed to initialise the database ({run.failure}); fix "
                       "the cause, then delete the Job to retry", stalled=True, phase=PHASE_FAILED)
    if run.state != "Complete":
        return False
    with pg.connect(admin) as conn:
        mark_initialized(conn, db)
    failpoints.hit("create-before-status", db.namespace)
    r.new_status["initializedAt"] = now_iso()
    return True


def mark_initialized(conn: Any, db: OdooDatabase, **extra: Any) -> None:
    """The last step of every way of making a database (init Job, duplicate, restore): its marker says
    initialized (and whose it is, again), so a pass that lost the status still knows it is usable.
    `conn`: the admin's, to the server."""
    marker = pg.database_info(conn, db.database_name).marker or {}
    pg.set_database_marker(conn, db.database_name, marker | db.owner_marker | {"initialized": True, **extra})
