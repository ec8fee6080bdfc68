"""Converging one OdooDatabase: the steps, in order, each idempotent.

`reconcile` is called by the per-object loop (see handlers.py) with a snapshot of the object and
returns an Outcome: the status to write, the Events to post and when to look again. It never
raises for a condition a user can cause; only programming errors escape.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odoo_operator import API_VERSION, failpoints, neutralize, pg, specs
from odoo_operator.api.conditions import Condition, now_iso, summary
from odoo_operator.api.labels import DATABASE_LABEL, OWNER_UID_LABEL
from odoo_operator.api.model import (
    TAG_LABEL_PREFIX,
    OdooDatabase,
    SpecError,
    parse_backup_settings,
    parse_database_backup,
    parse_odoo_database,
    role_name,
)
from odoo_operator.config import Settings
from odoo_operator.controller import claims
from odoo_operator.controller.base import (
    PHASE_DELETING,
    PHASE_EXPIRED,
    PHASE_FAILED,
    PHASE_PENDING,
    PHASE_PROVISIONING,
    PHASE_READY,
    PHASE_SUSPENDED,
    Context,
    NotReady,
    Outcome,
    apply_cached,
    deployment_available,
    failed_outcome,
    job_failure,
    job_state,
    remove_other_route_kind,
)
from odoo_operator.controller.base import age_seconds as _age_seconds
from odoo_operator.controller.base import decode as _decode
from odoo_operator.controller.base import format_time as _format_time
from odoo_operator.controller.base import now as _now
from odoo_operator.controller.base import parse_time as _parse_time
from odoo_operator.controller.base import password as _password
from odoo_operator.controller.postgresserver import refresh_servers, resolve_server_name, server_address
from odoo_operator.kube import KubeError

EXPIRY_WARNING = datetime.timedelta(days=1)



def database_host(body: Mapping[str, Any], settings: Settings) -> str | None:
    """The host an OdooDatabase serves (spec.hostname or its default), None if its spec is invalid."""
    try:
        return parse_odoo_database(body, settings).hostname
    except SpecError:
        return None


# ---- the steps ---------------------------------------------------------------------------------

class Reconciler:
    def __init__(self, body: Mapping[str, Any], ctx: Context, live: Mapping[str, Any] | None = None) -> None:
        self.body = body
        self.live = body if live is None else live  # kopf keeps this one current while we work
        self.ctx = ctx
        self.kube = ctx.kube
        self.status: Mapping[str, Any] = body.get("status") or {}
        self.new_status: dict[str, Any] = {}
        self.events: list[tuple[str, str, str]] = []
        self.expiring: Condition | None = None
        self.wake_in: float | None = None  # the next expiry milestone
        self.db: OdooDatabase
        self.admin: pg.ServerAddress  # the server's admin login
        self.tenant: pg.ServerAddress  # the database's own role: work inside its database runs as it
        self.endpoint: specs.app.DatabaseEndpoint  # what odoo.conf says of the server

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._refuse_when_deleting()
        return apply_cached(self.ctx, obj)

    def _refuse_when_deleting(self) -> None:
        # Never (re)create children once the owner is being deleted (the live body says so).
        if (self.live.get("metadata") or {}).get("deletionTimestamp"):
            raise NotReady("Deleting", "the database is being deleted", phase=PHASE_DELETING, warning=False)

    def run(self) -> Outcome:
        try:
            self.db = parse_odoo_database(self.body, self.ctx.settings)
        except SpecError as exc:
            return self._failed(NotReady("InvalidSpec", str(exc), stalled=True, phase=PHASE_FAILED))
        try:
            self._sync_tag_labels()
            return self._converge()
        except NotReady as exc:
            return self._failed(exc)
        except pg.StatementCancelled as exc:
            return self._failed(NotReady("StatementCancelled", f"PostgreSQL cancelled a statement ({exc}); the "
                                         "server is up, the step is retried", retry_after=30))
        except pg.CopyInProgress as exc:
            return self._failed(NotReady("Copying", f"{exc}; waiting for it (its sessions are not disconnected "
                                         "again)", retry_after=15, warning=False))
        except pg.PostgresUnavailable as exc:
            return self._failed(NotReady("ServerUnavailable", f"PostgreSQL is unreachable: {exc}; retrying",
                                         retry_after=self.ctx.settings.retry_max_seconds))
        except pg.OwnershipConflict as exc:
            return self._failed(NotReady("NameConflict", f"{exc}; choose another spec.databaseName",
                                         stalled=True, phase=PHASE_FAILED))
        except KubeError as exc:
            return self._failed(NotReady("KubernetesError", f"the API server refused a change: {exc.message}",
                                         retry_after=self.ctx.settings.retry_max_seconds))

    def _sync_tag_labels(self) -> None:
        """spec.tags mirrored to labels tag.odoo.dbmanager.io/<tag>; removed tags lose their label."""
        labels = self.body["metadata"].get("labels") or {}
        wanted = self.db.tag_labels
        patch: dict[str, str | None] = {k: v for k, v in wanted.items() if labels.get(k) != v}
        patch.update({k: None for k in labels if k.startswith(TAG_LABEL_PREFIX) and k not in wanted})
        if patch:
            self.kube.patch_metadata(API_VERSION, "OdooDatabase", self.db.name, self.db.namespace,
                                     {"labels": patch})

    def _converge(self) -> Outcome:
        db = self.db
        self._refuse_when_deleting()
        expiry = self._check_expiry()
        if expiry is not None:
            return expiry
        source = self._duplicate_source() if db.duplicate_from else None
        restore = self._restore_source() if db.restore_from and not self.status.get("initializedAt") else None
        self._claim_hostname()  # before anything is created or renamed
        server_name = resolve_server_name(db.server, self.status.get("server") or (source or {}).get("server"),
                                          self.ctx.registry, lambda: refresh_servers(self.ctx))
        if source and source["server"] != server_name:
            raise NotReady("InvalidSpec", f"a duplicate lives on its source's server {source['server']!r}; "
                           "remove spec.server or set it to that server", stalled=True, phase=PHASE_FAILED)
        from odoo_operator.controller.postgresserver import require_allowed  # postgresserver imports this module
        require_allowed(server_name, db.namespace, self.ctx)
        address, ssl_mode = server_address(server_name, self.ctx)
        self.new_status.update({"server": server_name, "roleName": db.role_name, "version": db.version})

        password, secret_recreated = self._ensure_db_secret(address.host, address.port, ssl_mode)
        self.admin = address
        self.tenant = address.as_role(db.role_name, password)
        self.endpoint = specs.app.DatabaseEndpoint(address.host, address.port, ssl_mode)
        with pg.connect(address) as conn:
            pg.ensure_role(conn, db.role_name, password, db.owner_marker, reset_password=secret_recreated)
            failpoints.hit("create-after-role", db.namespace)
            initialized = self._ensure_database(conn, server_name, source)
            if pg.ensure_private(conn, db.database_name):  # also after a crash before the REVOKE
                self.events.append(("Warning", "ConnectRevoked", f"database {db.database_name!r} was open to "
                                    "every role (CONNECT for PUBLIC); revoked"))
            if _age_seconds(self.status.get("sizeUpdatedAt")) >= self.ctx.settings.size_refresh_seconds:
                size = pg.database_size(conn, db.database_name)
                if size is not None:
                    self.new_status.update({"sizeBytes": size, "sizeUpdatedAt": now_iso()})
        # The database is where spec says now (created, copied or renamed): name, host and URL follow.
        self.new_status.update({
            "databaseName": db.database_name,
            "hostname": db.hostname,
            "url": specs.app.database_url(db, self.ctx.settings),
        })

        self.apply(specs.app.build_filestore_pvc(db, self.ctx.settings))
        self.apply(specs.app.build_sessions_pvc(db, self.ctx.settings))
        self.apply(specs.app.build_config_map(db, self.endpoint))
        self.apply(specs.app.build_service(db))
        route = specs.app.build_route(db, self.ctx.settings)
        self.apply(route)
        remove_other_route_kind(self.ctx, route["kind"], db.name, db.namespace, DATABASE_LABEL, db.name,
                                db.uid)
        previous = self.status.get("hostname")
        if previous and previous != db.hostname:  # renamed: the Ingress no longer serves the old host
            claims.release(self.kube, previous, db.uid)

        details = [Condition.true("DatabaseReady", "Created", f"database {db.database_name!r} on {server_name}")]
        if self.expiring is not None:
            details.append(self.expiring)
        if not initialized:
            if db.duplicate_from:
                initialized = self._finish_duplicate(address, source or {})
            elif restore is not None:
                initialized = self._run_restore(address, restore)
            else:
                initialized = self._run_init_job()
        if not initialized:
            # The app starts only on an initialised (or copied and neutralized) database.
            if db.duplicate_from:
                reason, doing = "Duplicating", "the copy is getting its filestore and a fresh identity" + (
                    f", then Job {specs.app.neutralize_job_name(db)} neutralizes it (odoo neutralize)"
                    if db.duplicate_from.for_testing else "")
                waiting = "waiting for the copy's filestore and fresh identity" + (
                    " and its neutralization" if db.duplicate_from.for_testing else "")
            elif db.restore_from:
                job = specs.backup.restore_job_name(db)
                reason, doing = "Restoring", f"Job {job} is loading the backup"
                waiting = f"waiting for Job {job} to load the backup"
            else:
                job = specs.app.init_job_name(db)
                reason, doing = "Initializing", f"Job {job} is installing Odoo's base module"
                waiting = f"waiting for Job {job} to install Odoo's base module"
            details.append(Condition.false("Initialized", reason, doing))
            return self._progressing(reason, waiting, details)
        details.append(Condition.true("Initialized", "Initialized", "Odoo's base module is installed"
                                      if not db.duplicate_from else "copied with a fresh identity"))
        self.new_status["step"] = ""

        suspended = db.app.suspended
        replicas = 0 if suspended else db.app.replicas
        deployment = self.apply(specs.app.build_deployment(
            db, replicas, specs.app.credentials_fingerprint(db, password), self.endpoint))
        # The daily backup comes once the app is up (or deliberately down): during a burst of creations
        # it does not compete with the databases still being provisioned.
        if suspended or deployment_available(deployment, replicas)[0]:
            self._ensure_daily_backup()
        if suspended:
            details.append(Condition.true("AppAvailable", "Suspended", "the app is scaled to 0 (spec.app.suspended)"))
            return self._ready(PHASE_SUSPENDED, "Suspended", "suspended: data kept, app scaled to 0", details)
        available, why = deployment_available(deployment, replicas)
        if not available:
            details.append(Condition.false("AppAvailable", "Progressing", why))
            return self._progressing("Progressing", f"waiting for the app: {why}", details)
        details.append(Condition.true("AppAvailable", "Available", f"{replicas} replica(s) available"))
        return self._ready(PHASE_READY, "Ready", f"Odoo {db.version} is serving {self.new_status['url']}", details)

    # ---- the host -------------------------------------------------------------------------
    def _claim_hostname(self) -> None:
        """The database's host is claimed cluster-wide like a custom domain (claims.py): a tenant
        cannot serve, through spec.hostname or a database name, a host someone else serves, nor a
        name of the platform's base domain other than its own <databaseName>.<base domain>. A host
        that is not (or no longer) ours is served by no route of this database."""
        db = self.db
        base = self.ctx.settings.base_domain
        own = claims.platform_host(db.database_name, base)
        if db.hostname != own and claims.inside_base_domain(db.hostname, base):
            why = f"spec.hostname {db.hostname!r} is inside the platform's base domain {base}"
            self._unroute(why)
            raise NotReady("InvalidHostname", f"{why}: names there belong to the platform, which gives a database "
                           f"only its own ({own}, from spec.databaseName); this database has no route meanwhile. "
                           "Remove spec.hostname or set it to a domain of your own", stalled=True, phase=PHASE_FAILED)
        holder = claims.Holder("OdooDatabase", db.namespace, db.name, db.uid)
        try:
            claims.acquire(self.kube, db.hostname, holder, lambda body: database_host(body, self.ctx.settings),
                           waiter=(db.namespace, db.name))
        except claims.ClaimConflict:
            self._unroute(f"the host {db.hostname} is claimed by another object")
            raise NotReady("HostnameConflict", f"the host {db.hostname} is already claimed by another object, and "
                           "this database has no route until it holds its host; set spec.hostname (or another "
                           "spec.databaseName)", stalled=True,
                           phase=PHASE_FAILED if not self.status.get("createdAt") else PHASE_PENDING) from None
        except claims.ClaimRetry as exc:
            raise NotReady("ClaimRetrying", f"{exc}; retrying", retry_after=2, warning=False) from None

    def _unroute(self, why: str) -> None:
        """The host is not ours: remove this database's route (either kind) and let go of any claim
        it still holds (the host it served before, or a name it may no longer hold), so waiting
        claimants are woken. A Warning Event says why when a route was removed."""
        db = self.db
        removed = False
        # Both kinds, whatever the setting (it may have changed); an API not served reads as absent.
        for api_version, kind in (("networking.k8s.io/v1", "Ingress"), ("gateway.networking.k8s.io/v1", "HTTPRoute")):
            if self.kube.delete_if_labelled(api_version, kind, db.name, db.namespace, DATABASE_LABEL,
                                            db.name):
                removed = True
                self.ctx.registry.record_child(kind, {"metadata": {"namespace": db.namespace, "name": db.name}},
                                               deleted=True)
        for host in {self.status.get("hostname"), db.hostname} - {None}:
            claims.release(self.kube, str(host), db.uid)
        self.new_status.update({"url": None, "hostname": None})
        if removed:
            self.events.append(("Warning", "RouteRemoved", f"{why}: the route of this database was removed"))

    # ---- expiry ----------------------------------------------------------------------------
    def _check_expiry(self) -> Outcome | None:
        """status.expiresAt is written once (creation + expiresAfter); past it the object is deleted
        through the normal path, so its deletionPolicy applies. A day before: Expiring + an Event."""
        db = self.db
        self.expiring = None
        expires_at = self.status.get("expiresAt")
        if not expires_at and db.expires_after is not None:
            created = _parse_time(db.creation_timestamp) if db.creation_timestamp else _now()
            expires_at = _format_time(created + db.expires_after)
        if not expires_at:
            return None
        self.new_status["expiresAt"] = expires_at
        remaining = (_parse_time(expires_at) - _now()).total_seconds()
        if remaining > 0:
            soon = remaining <= EXPIRY_WARNING.total_seconds()
            self.expiring = Condition("Expiring", "True" if soon else "False", "ExpiringSoon" if soon else "Scheduled",
                                      f"this database expires at {expires_at} and will then be deleted")
            self.wake_in = remaining if soon else remaining - EXPIRY_WARNING.total_seconds()
            return None
        try:
            self.kube.delete(API_VERSION, "OdooDatabase", db.name, db.namespace)
        except KubeError as exc:
            raise NotReady("ExpiryDeleteFailed", f"expired at {expires_at} but could not be deleted: {exc.message}; "
                           "retrying", retry_after=60) from None
        self.events.append(("Normal", "Expired", f"expired at {expires_at}; deleting (deletionPolicy "
                            f"{db.deletion_policy})"))
        raise NotReady("Expired", f"expired at {expires_at}; being deleted", phase=PHASE_EXPIRED, warning=False)

    # ---- duplicates ------------------------------------------------------------------------
    def _duplicate_source(self) -> dict[str, Any]:
        """The source of a duplicate, once it is usable; enforces the duplicates-per-source limit."""
        db = self.db
        assert db.duplicate_from is not None
        name = db.duplicate_from.name
        if self.status.get("createdAt"):  # already copied: only the source's facts are needed
            return {"name": name, "server": self.status.get("server"),
                    "databaseName": self.status.get("sourceDatabase"), "roleName": role_name(db.namespace, name)}
        siblings = self.kube.list(API_VERSION, "OdooDatabase", db.namespace)
        source = next((o for o in siblings if o["metadata"]["name"] == name), None)
        if source is None or source["metadata"].get("deletionTimestamp"):
            raise NotReady("SourceNotFound", f"OdooDatabase {name!r} (spec.duplicateFrom) does not exist in this "
                           "namespace; create it or fix the name", retry_after=30)
        source_status = source.get("status") or {}
        if not source_status.get("initializedAt") or not source_status.get("databaseName"):
            raise NotReady("SourceNotReady", f"OdooDatabase {name!r} is not initialised yet; the copy waits for it",
                           retry_after=15, warning=False)
        duplicates = sorted(
            (o for o in siblings
             if ((o.get("spec") or {}).get("duplicateFrom") or {}).get("name") == name
             and not o["metadata"].get("deletionTimestamp")),
            key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"]))
        rank = next(i for i, o in enumerate(duplicates) if o["metadata"]["uid"] == db.uid) \
            if any(o["metadata"]["uid"] == db.uid for o in duplicates) else len(duplicates)
        limit = self.ctx.settings.max_duplicates
        if rank >= limit:
            raise NotReady("DuplicateLimit", f"{name!r} already has {limit} duplicates, the most allowed; delete one "
                           "of them (no database was created)", stalled=True, phase=PHASE_FAILED, retry_after=60)
        return {"name": name, "server": source_status.get("server"), "databaseName": source_status["databaseName"],
                "roleName": source_status.get("roleName") or role_name(db.namespace, name)}

    def _finish_duplicate(self, address: pg.ServerAddress, source: Mapping[str, Any]) -> bool:
        """Filestore copied, fresh identity, then for a copy for testing Odoo's own neutralization —
        then (only then) usable. The identity step is recorded in the database's marker, so a pass
        after a crash resumes after it; `initialized` is written only once every step succeeded."""
        db = self.db
        assert db.duplicate_from is not None
        if self.ctx.settings.filestore_clone == "copy" and not self._filestore_copied():
            self.new_status["step"] = "CopyingFilestore"
            return False
        owner = {**db.owner_marker, pg.MARKER_KEY: pg.MARKER_VALUE}
        with pg.connect(address) as conn:
            marker = (pg.database_info(conn, db.database_name).marker or {}) | owner
        if not marker.get("identityReset"):
            self.new_status["step"] = "ResettingIdentity"
            with pg.connect(address, db.database_name) as conn:
                pg.reassign_owned(conn, source.get("roleName") or role_name(db.namespace, db.duplicate_from.name),
                                  db.role_name)
            # As the copy's own role: the tables (and any trigger on them) are the tenant's.
            with pg.connect(self.tenant, db.database_name) as conn:
                neutralize.reset_identity(conn, specs.app.database_url(db, self.ctx.settings))
            marker |= {"identityReset": True}
            with pg.connect(address) as conn:
                pg.set_database_marker(conn, db.database_name, marker)
        failpoints.hit("duplicate-before-neutralize", db.namespace)
        if db.duplicate_from.for_testing:
            self.new_status["step"] = "Neutralizing"
            if not self._neutralize_job_succeeded():
                return False
        with pg.connect(address) as conn:
            pg.set_database_marker(conn, db.database_name, marker | {
                "initialized": True, "neutralized": db.duplicate_from.for_testing})
        self.new_status.update({"initializedAt": now_iso(), "neutralized": db.duplicate_from.for_testing})
        if db.duplicate_from.for_testing:
            self.events.append(("Normal", "Neutralized", "test copy neutralized by odoo neutralize (Job "
                                f"{specs.app.neutralize_job_name(db)}: every installed module's data/neutralize.sql)"))
        return True

    def _neutralize_job_succeeded(self) -> bool:
        """Odoo's own `odoo neutralize`, in a Job of the database's image. Created once and never
        updated; a failed Job stays for the user to inspect, deleting it retries."""
        db = self.db
        name = specs.app.neutralize_job_name(db)
        job = self.ctx.registry.child("Job", db.namespace, name) or self.kube.get("batch/v1", "Job", name, db.namespace)
        if job is None:
            self._refuse_when_deleting()
            job = self.kube.create(specs.app.build_neutralize_job(db)) or self.kube.get("batch/v1", "Job", name,
                                                                                      db.namespace)
            if job:
                self.ctx.registry.record_child("Job", job, deleted=False)
            failpoints.hit("neutralize-job-created", db.namespace)
        state = job_state(job)
        if state == "Failed":
            raise NotReady("NeutralizeFailed", f"Job {name} failed to neutralize the database ({job_failure(job)}); "
                           "the app is not started on a copy that is not neutralized. Fix the cause, then delete "
                           "the Job to retry", stalled=True, phase=PHASE_FAILED)
        return state == "Complete"

    def _filestore_copied(self) -> bool:
        db = self.db
        name = specs.app.filestore_copy_job_name(db)
        job = self.ctx.registry.child("Job", db.namespace, name) or self.kube.get("batch/v1", "Job", name, db.namespace)
        if job is None:
            self._refuse_when_deleting()
            job = self.kube.create(specs.app.build_filestore_copy_job(db, db.image))
        state = job_state(job)
        if state == "Failed":
            raise NotReady("FilestoreCopyFailed", f"Job {name} failed to copy the filestore ({job_failure(job)}); "
                           "delete the Job to retry", stalled=True, phase=PHASE_FAILED)
        return state == "Complete"

    # ---- backups and restores ------------------------------------------------------------------
    def _ensure_daily_backup(self) -> None:
        """spec.backup (on by default): an owned DatabaseBackup <name>-daily; off: removed."""
        db = self.db
        name = specs.backup.daily_backup_name(db)
        existing = self.ctx.registry.child("DatabaseBackup", db.namespace, name)
        if db.backup is None:
            if existing is not None:
                self.kube.delete(API_VERSION, "DatabaseBackup", name, db.namespace)
            return
        self.apply(specs.backup.build_daily_backup(db))
        last = ((existing or {}).get("status") or {}).get("lastSuccessfulTime")
        if last:
            self.new_status["lastBackup"] = last

    def _restore_source(self) -> dict[str, Any]:
        """The DatabaseBackup and artifact, or the file, to restore from; checked before anything is created."""
        db = self.db
        assert db.restore_from is not None
        if db.restore_from.file is not None:
            return self._restore_file_source()
        name = db.restore_from.backup
        assert name is not None
        backup = self.kube.get(API_VERSION, "DatabaseBackup", name, db.namespace)
        if backup is None:
            raise NotReady("BackupNotFound", f"DatabaseBackup {name!r} (spec.restoreFrom) does not exist in this "
                           "namespace", retry_after=30)
        artifacts = (backup.get("status") or {}).get("artifacts") or []
        wanted = db.restore_from.artifact
        artifact = next((a for a in artifacts if a.get("id") == wanted), None) if wanted else (
            max(artifacts, key=lambda a: a.get("time") or "") if artifacts else None)
        if artifact is None:
            what = f"artifact {wanted!r}" if wanted else "any artifact"
            raise NotReady("ArtifactNotFound", f"DatabaseBackup {name!r} has no {what}; see its status.artifacts",
                           stalled=bool(wanted), retry_after=30, phase=PHASE_FAILED if wanted else PHASE_PENDING)
        parsed = parse_database_backup(backup, self.ctx.settings)
        return {"backup": name, "artifact": artifact["id"], "storage": parsed.storage,
                "sourceDatabase": parsed.database, "label": f"{name}/{artifact['id']}", "verified": True}

    def _restore_file_source(self) -> dict[str, Any]:
        """A file on a backup storage that the operator did not write (an Odoo ZIP, a dump): the Job reads it;
        here only its volume can be checked. Without spec.restoreFrom.sha256 nothing can verify its bytes."""
        db = self.db
        assert db.restore_from is not None and db.restore_from.file is not None and db.restore_from.storage is not None
        storage = db.restore_from.storage
        if storage.pvc_claim and self.kube.get("v1", "PersistentVolumeClaim", storage.pvc_claim, db.namespace) is None:
            raise NotReady("StorageNotFound", f"PersistentVolumeClaim {storage.pvc_claim!r} (the storage of "
                           "spec.restoreFrom.file) does not exist in this namespace", retry_after=30)
        return {"file": db.restore_from.file, "sha256": db.restore_from.sha256, "storage": storage,
                "label": f"file {db.restore_from.file} on {storage.describe()}",
                "verified": db.restore_from.sha256 is not None}

    def _run_restore(self, address: pg.ServerAddress, restore: Mapping[str, Any]) -> bool:
        db = self.db
        assert db.restore_from is not None
        name = specs.backup.restore_job_name(db)
        job = self.ctx.registry.child("Job", db.namespace, name) or self.kube.get("batch/v1", "Job", name, db.namespace)
        if job is None:
            self._refuse_when_deleting()
            job = self.kube.create(specs.backup.build_restore_job(
                db, restore["storage"], self.ctx.settings, source_database=restore.get("sourceDatabase"),
                artifact=restore.get("artifact"), file=restore.get("file"), sha256=restore.get("sha256")))
            failpoints.hit("restore-job-created", db.namespace)
        self.new_status["step"] = "Restoring"
        state = job_state(job)
        if state == "Failed":
            raise NotReady("RestoreFailed", f"Job {name} failed to restore {restore['label']} ({job_failure(job)}; "
                           f"its log says why); nothing of it is served. Fix the cause, then delete the Job "
                           "to retry", stalled=True, phase=PHASE_FAILED)
        if state != "Complete":
            return False
        if db.restore_from.neutralize:
            self.new_status["step"] = "Neutralizing"
            if not self._neutralize_job_succeeded():
                return False
        url = specs.app.database_url(db, self.ctx.settings)
        if not db.restore_from.keep_identity:  # Odoo's "copied"; "moved" (keep) leaves uuid and secret as dumped
            with pg.connect(self.tenant, db.database_name) as conn:  # a restored dump's tables are the tenant's
                neutralize.reset_identity(conn, url)
        failpoints.hit("restore-before-marker", db.namespace)
        with pg.connect(address) as conn:
            info = pg.database_info(conn, db.database_name)
            pg.set_database_marker(conn, db.database_name, (info.marker or {}) | {
                **db.owner_marker, pg.MARKER_KEY: pg.MARKER_VALUE, "initialized": True})
        checked = "" if restore["verified"] else " (unverified: no checksum)"
        self.new_status.update({"initializedAt": now_iso(), "neutralized": db.restore_from.neutralize,
                                "source": f"restored from {restore['label']}{checked}"})
        identity = "its identity kept (moved)" if db.restore_from.keep_identity else "a fresh identity"
        self.events.append(("Normal", "Restored", f"restored from {restore['label']}{checked} with {identity}"
                            + ("; neutralized by odoo neutralize" if db.restore_from.neutralize else "")))
        if not restore["verified"]:
            self.events.append(("Warning", "RestoreUnverified", f"{restore['label']} was restored unverified: no "
                                "checksum (set spec.restoreFrom.sha256 to have its bytes checked)"))
        return True

    # ---- credentials ---------------------------------------------------------------------
    def _ensure_db_secret(self, host: str, port: int, ssl_mode: str) -> tuple[str, bool]:
        """The Secret is the source of truth of the role's password: write it before the role. Read from the
        API server every time: Secrets are not watched (the operator may not list them, see the chart's
        ClusterRole), so no cached copy would notice that it was deleted or changed."""
        name = specs.app.db_secret_name(self.db)
        existing = self.kube.get("v1", "Secret", name, self.db.namespace)
        password = _decode(existing, "password")
        recreated = password is None or _decode(existing, "user") != self.db.role_name
        if recreated:
            password = _password()
        assert password is not None
        secret = specs.app.build_db_secret(self.db, host, port, ssl_mode, password)
        seen_data, seen_labels = (existing or {}).get("data") or {}, ((existing or {}).get("metadata") or {}).get(
            "labels") or {}
        if {k: seen_data.get(k) for k in secret["data"]} != secret["data"] or \
                not secret["metadata"]["labels"].items() <= seen_labels.items():
            self._refuse_when_deleting()
            self.kube.apply(secret)
        return password, recreated

    # ---- the PostgreSQL database -------------------------------------------------------------
    def _ensure_database(self, conn: Any, server_name: str, source: Mapping[str, Any] | None) -> bool:
        """Create (or copy, or rename) the database; returns whether it is initialised."""
        db = self.db
        current = self.status.get("databaseName")
        target = pg.database_info(conn, db.database_name)
        if current and current != db.database_name and self.status.get("createdAt"):
            target = self._rename(conn, current, target)
        if not target.exists:
            if self.status.get("createdAt"):
                raise NotReady(
                    "DatabaseMissing",
                    f"database {db.database_name!r} was created on {server_name} at {self.status['createdAt']} and "
                    "no longer exists; it is not re-created empty. Restore it, or delete this OdooDatabase",
                    stalled=True, phase=PHASE_FAILED)
            self._check_quota(conn, server_name)
            new_marker = db.owner_marker | {pg.MARKER_KEY: pg.MARKER_VALUE, "uid": db.uid}
            if source is not None:
                self.new_status["step"] = "Copying"
                terminated = pg.copy_database(conn, source["databaseName"], db.database_name, db.role_name,
                                              new_marker)
                self.new_status.update({"source": f"duplicate of {source['name']}",
                                        "sourceDatabase": source["databaseName"]})
                failpoints.hit("duplicate-after-copy", db.namespace)
                self.events.append(("Normal", "Copied", f"copied from {source['name']!r} (database "
                                    f"{source['databaseName']!r}); its {terminated} session(s) were briefly "
                                    "disconnected, as Odoo does"))
            else:
                pg.create_database(conn, db.database_name, db.role_name, new_marker)
                failpoints.hit("create-after-database", db.namespace)
                pg.create_odoo_extensions(self.admin, db.database_name, db.role_name)
            self.new_status["createdAt"] = now_iso()
            return False
        if not target.owned_by(db.owner_marker, db.role_name):
            raise pg.OwnershipConflict(
                f"database {db.database_name!r} already exists on {server_name} and belongs to something else")
        marker: dict[str, Any] | None = target.marker
        made_from = "spec.duplicateFrom" if db.duplicate_from else "spec.restoreFrom" if db.restore_from else None
        if made_from and marker is not None and marker.get("uid") != db.uid and not self.status.get("createdAt"):
            # Left by an earlier object of this name (deletionPolicy Retain): not the copy or the restore
            # this one asks for, possibly never neutralized or given a fresh identity. Never adopted.
            what = "a fresh copy of its source" if db.duplicate_from else "restored from what it names"
            raise NotReady("DatabaseExists", f"database {db.database_name!r} already exists on {server_name}, kept by "
                           f"an earlier OdooDatabase of this name; a database made from {made_from} is always "
                           f"{what} and never adopts an existing one. Drop or rename that database, or set another "
                           f"spec.databaseName (removing {made_from} adopts it as it is)",
                           stalled=True, phase=PHASE_FAILED, retry_after=60)  # dropped outside Kubernetes
        if marker is None:  # created by us, comment lost to a crash: write it now
            marker = db.owner_marker | {pg.MARKER_KEY: pg.MARKER_VALUE, "uid": db.uid}
            pg.set_database_marker(conn, db.database_name, marker)
        self.new_status["createdAt"] = self.status.get("createdAt") or now_iso()
        initialized = bool(self.status.get("initializedAt")) or bool(marker.get("initialized"))
        if initialized and not marker.get("initialized"):
            pg.set_database_marker(conn, db.database_name, marker | {"initialized": True})
        if initialized:
            self.new_status["initializedAt"] = self.status.get("initializedAt") or now_iso()
        return initialized

    def _rename(self, conn: Any, current: str, target: pg.DatabaseInfo) -> pg.DatabaseInfo:
        """spec.databaseName changed: ALTER DATABASE … RENAME, after terminating its sessions."""
        db = self.db
        old = pg.database_info(conn, current)
        if not old.exists:
            return target  # renamed before a crash (target exists), or missing (reported by the caller)
        if not old.owned_by(db.owner_marker, db.role_name):
            raise pg.OwnershipConflict(f"database {current!r} is not managed for this object")
        if target.exists:
            raise NotReady("NameConflict", f"cannot rename {current!r} to {db.database_name!r}: that name is taken on "
                           "the server; choose another spec.databaseName (nothing was changed)",
                           stalled=True, phase=PHASE_FAILED)
        self.new_status["step"] = "Renaming"
        terminated = pg.rename_database(conn, current, db.database_name)
        failpoints.hit("rename-after-alter", db.namespace)
        self.events.append(("Normal", "Renamed", f"database renamed from {current!r} to {db.database_name!r} "
                            f"({terminated} session(s) disconnected); filestore path and URL follow"))
        return pg.database_info(conn, db.database_name)

    def _check_quota(self, conn: Any, server_name: str) -> None:
        server = self.ctx.registry.server(server_name)
        if server and server.max_databases is not None:
            _, count = pg.server_info(conn)
            if count >= server.max_databases:
                raise NotReady("QuotaExceeded", f"PostgresServer {server_name} holds {count} databases, its "
                               f"maxDatabases is {server.max_databases}", retry_after=60)

    def _run_init_job(self) -> bool:
        db = self.db
        self._refuse_when_deleting()
        # The admin password is generated once; an existing Secret is never overwritten.
        if self.ctx.registry.child("Secret", db.namespace, specs.app.admin_secret_name(db)) is None:
            created = self.kube.create(specs.app.build_admin_secret(db, _password()))
            if created:
                self.ctx.registry.record_child("Secret", created, deleted=False)
        # Created once and never updated: a Job's template is immutable, and a failed Job stays
        # for the user to inspect; deleting it retries with the current spec.
        name = specs.app.init_job_name(db)
        job = self.ctx.registry.child("Job", db.namespace, name) or self.kube.get("batch/v1", "Job", name, db.namespace)
        if job is None:
            self._refuse_when_deleting()
            # Again, for an operator killed between CREATE DATABASE and the extension (idempotent).
            pg.create_odoo_extensions(self.admin, db.database_name, db.role_name)
            job = self.kube.create(specs.app.build_init_job(db)) or self.kube.get("batch/v1", "Job", name, db.namespace)
            failpoints.hit("create-init-job-created", db.namespace)
            if job:
                self.ctx.registry.record_child("Job", job, deleted=False)
        state = job_state(job)
        if state == "Failed":
            raise NotReady("InitFailed", f"Job {name} failed to initialise the database ({job_failure(job)}); fix "
                           "the cause, then delete the Job to retry", stalled=True, phase=PHASE_FAILED)
        if state != "Complete":
            return False
        address, _ = server_address(self.new_status["server"], self.ctx)
        with pg.connect(address) as conn:
            _, marker = pg.database_marker(conn, db.database_name)
            pg.set_database_marker(conn, db.database_name, (marker or {}) | {
                **db.owner_marker, pg.MARKER_KEY: pg.MARKER_VALUE, "initialized": True})
        failpoints.hit("create-before-status", db.namespace)
        self.new_status["initializedAt"] = now_iso()
        return True

    # ---- outcomes ------------------------------------------------------------------------
    def _ready(self, phase: str, reason: str, message: str, details: list[Condition]) -> Outcome:
        ready, reconciling, stalled = summary("ready", reason, message)
        return Outcome(phase, ready, reconciling, stalled, details=details, status=self.new_status,
                       retry_after=self._next_wake(self.ctx.settings.size_refresh_seconds),  # sizeBytes stays fresh
                       events=self.events)

    def _progressing(self, reason: str, message: str, details: list[Condition]) -> Outcome:
        ready, reconciling, stalled = summary("progressing", reason, message)
        return Outcome(PHASE_PROVISIONING, ready, reconciling, stalled, details=details, status=self.new_status,
                       retry_after=self._next_wake(30.0),  # child watch events normally wake us before this
                       events=self.events)

    def _failed(self, exc: NotReady) -> Outcome:
        return failed_outcome(exc, self.new_status, self.events,
                              exc.retry_after if exc.retry_after is None else self._next_wake(exc.retry_after))

    def _next_wake(self, delay: float) -> float:
        return delay if self.wake_in is None else max(1.0, min(delay, self.wake_in))


def reconcile(body: Mapping[str, Any], ctx: Context, live: Mapping[str, Any] | None = None) -> Outcome:
    """One pass; holds the object's lock so a deletion never runs alongside it."""
    meta = body["metadata"]
    with ctx.registry.lock_for((meta["namespace"], meta["name"])):
        return Reconciler(body, ctx, live).run()


# ---- deletion ---------------------------------------------------------------------------------

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


@dataclass
class DeletionResult:
    dropped: bool
    message: str


def delete(body: Mapping[str, Any], ctx: Context) -> DeletionResult:
    """Honour spec.deletionPolicy, then release the host's claim (its Ingress goes with the object, by
    owner reference). Raises pg.PostgresUnavailable / NotReady to be retried."""
    result = _delete(body, ctx)
    status = body.get("status") or {}
    for host in {status.get("hostname"), database_host(body, ctx.settings)} - {None}:
        claims.release(ctx.kube, str(host), body["metadata"].get("uid", ""))
    failpoints.hit("delete-before-finalizer", body["metadata"]["namespace"])
    return result


def _delete(body: Mapping[str, Any], ctx: Context) -> DeletionResult:
    meta = body["metadata"]
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    policy = spec.get("deletionPolicy") or "Delete"
    name, namespace = meta["name"], meta["namespace"]
    database_name = status.get("databaseName") or spec.get("databaseName") or name
    if policy == "Snapshot" and status.get("createdAt"):
        _final_backup(body, database_name, ctx)
        policy = "Delete"
    if policy != "Delete":
        # Retain (and anything not understood, so data is never dropped by mistake).
        return DeletionResult(False, f"database {database_name!r} retained (deletionPolicy {policy})")
    try:
        server_name = resolve_server_name(spec.get("server"), status.get("server"), ctx.registry)
        address, _ = server_address(server_name, ctx)
    except NotReady as exc:
        if not status.get("createdAt") and exc.reason == "ServerNotFound":
            # Its server never existed (or is gone) and nothing was recorded as created: nothing to drop.
            return DeletionResult(False, f"no PostgreSQL database had been created ({exc.message})")
        raise
    owner = {"managedBy": pg.MARKER_VALUE, "namespace": namespace, "name": name}
    role = role_name(namespace, name)
    with pg.connect(address) as conn:
        info = pg.database_info(conn, database_name)
        if info.exists and not info.owned_by(owner, role):
            message = f"database {database_name!r} on {server_name} is not ours; left untouched"
            pg.drop_role(conn, role, owner)
            return DeletionResult(False, message)
        earlier = (info.marker or {}).get("uid")
        if info.exists and earlier not in (None, meta.get("uid")) and not status.get("createdAt"):
            # Kept (Retain) by an earlier object of this name, and never taken over by this one (a
            # duplicate refuses it: DatabaseExists): not this object's to drop, nor is its role.
            return DeletionResult(False, f"database {database_name!r} on {server_name} was kept by an earlier "
                                  "OdooDatabase of this name and never used by this one; left untouched")
        dropped = pg.drop_database(conn, database_name) if info.exists else False
        failpoints.hit("delete-after-drop", namespace)
        pg.drop_role(conn, role, owner)
    if dropped:
        return DeletionResult(True, f"database {database_name!r} and its role dropped from {server_name}")
    return DeletionResult(False, f"database {database_name!r} did not exist on {server_name}")
