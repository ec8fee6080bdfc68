"""Converging one OdooDatabase: the steps of a pass, in order, each idempotent; and the entry points.

`reconcile` is called by the per-object loop (handlers.py) with a snapshot of the object and returns an
Outcome: the status to write, the Events to post and when to look again. It never raises for a condition
a user can cause; only programming errors escape. `delete` honours spec.deletionPolicy.

Here: the order of the steps (Reconciler.converge, top to bottom), the host's claim, expiry, the app's
Kubernetes children and the outcome. The steps themselves live beside it: the PostgreSQL database, its
credentials and the init Job in odoodatabase_create.py; duplicates and restores in odoodatabase_copy.py;
deletion (and its final backup) in odoodatabase_delete.py; server resolution in postgresserver.py.
The flow keeps no state of its own: each pass reads where it is from the object's status, the database's
marker (PostgreSQL) and the Jobs, so it resumes wherever an earlier pass (or process) stopped.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from odoo_operator import API_VERSION, failpoints, pg, specs
from odoo_operator.api.conditions import Condition, format_time, get_condition, now, now_iso, parse_time, summary
from odoo_operator.api.labels import DATABASE_LABEL
from odoo_operator.api.model import (
    TAG_LABEL_PREFIX,
    OdooDatabase,
    OdooPlan,
    SpecError,
    parse_odoo_database,
    selector_matches,
)
from odoo_operator.config import Settings
from odoo_operator.controller import (
    claims,
    odoodatabase_copy,
    odoodatabase_create,
    odoodatabase_delete,
    odoodatabase_move,
    odoodatabase_sessions,
    odoodatabase_upgrade,
    odoodatabase_users,
    plans,
)
from odoo_operator.controller.base import (
    PHASE_EXPIRED,
    PHASE_FAILED,
    PHASE_PENDING,
    PHASE_PROVISIONING,
    PHASE_READY,
    PHASE_SUSPENDED,
    Context,
    NotReady,
    Outcome,
    age_seconds,
    deployment_available,
    failed_outcome,
    remove_other_route_kind,
)
from odoo_operator.controller.odoodatabase_delete import DeletionResult
from odoo_operator.controller.postgresserver import (
    require_allowed,
    resolve_server_name,
    server_address,
)
from odoo_operator.kube import KubeError
from odoo_operator.runtime.registry import size_changed

__all__ = ["DeletionResult", "Reconciler", "database_host", "delete", "reconcile"]

EXPIRY_WARNING = datetime.timedelta(days=1)
PROGRESS_RESYNC_SECONDS = 120.0


def database_host(body: Mapping[str, Any], settings: Settings) -> str | None:
    """The host an OdooDatabase serves (spec.hostname or its default), None if its spec is invalid."""
    try:
        return parse_odoo_database(body, settings).hostname
    except SpecError:
        return None


def reconcile(body: Mapping[str, Any], ctx: Context, live: Mapping[str, Any] | None = None) -> Outcome:
    """One pass; holds the object's lock so a deletion never runs alongside it."""
    meta = body["metadata"]
    with ctx.registry.lock_for((meta["namespace"], meta["name"])):
        return Reconciler(body, ctx, live).run()


def delete(body: Mapping[str, Any], ctx: Context) -> DeletionResult:
    """Honour spec.deletionPolicy, then release the host's claim (its Ingress goes with the object, by
    owner reference). Raises pg.PostgresUnavailable / NotReady to be retried."""
    result = odoodatabase_delete.honour_policy(body, ctx)
    status = body.get("status") or {}
    for host in {status.get("hostname"), database_host(body, ctx.settings)} - {None}:
        claims.release(ctx, str(host), body["metadata"].get("uid", ""))
    failpoints.hit("delete-before-finalizer", body["metadata"]["namespace"])
    return result


class Reconciler(odoodatabase_create.DatabasePass):
    noun = "database"

    def __init__(self, body: Mapping[str, Any], ctx: Context, live: Mapping[str, Any] | None = None) -> None:
        super().__init__(body, ctx, live)
        self.expiring: Condition | None = None
        self.plan: OdooPlan | None = None  # the namespace's OdooPlan (plans.py)
        self.wake_in: float | None = None  # the next expiry milestone

    @property
    def db(self) -> OdooDatabase:
        return self.obj

    def parse(self) -> OdooDatabase:
        return parse_odoo_database(self.body, self.ctx.settings)

    def not_ready(self, exc: Exception) -> NotReady | None:
        if isinstance(exc, pg.StatementCancelled):
            return NotReady("StatementCancelled", f"PostgreSQL cancelled a statement ({exc}); the server is up, the "
                            "step is retried", retry_after=30)
        if isinstance(exc, pg.CopyInProgress):
            return NotReady("Copying", f"{exc}; waiting for it (its sessions are not disconnected again)",
                            retry_after=15, warning=False)
        if isinstance(exc, pg.PostgresUnavailable):
            return NotReady("ServerUnavailable", f"PostgreSQL is unreachable: {exc}; retrying",
                            retry_after=self.ctx.settings.retry_max_seconds)
        if isinstance(exc, pg.OwnershipConflict):
            return NotReady("NameConflict", f"{exc}; choose another spec.databaseName", stalled=True,
                            phase=PHASE_FAILED)
        return super().not_ready(exc)

    # ---- the steps, in order ---------------------------------------------------------------
    def converge(self) -> Outcome:
        db = self.db
        self._sync_tag_labels()
        self.refuse_when_deleting()
        expiry = self._check_expiry()
        if expiry is not None:
            return expiry
        # Sources are checked before anything is created.
        source = odoodatabase_copy.duplicate_source(self) if db.duplicate_from else None
        restore = odoodatabase_copy.restore_source(self) \
            if db.restore_from and not self.status.get("initializedAt") else None
        self.plan = plans.plan_for(self.ctx, db.namespace)
        self._claim_hostname()  # before anything is created or renamed
        server_name = resolve_server_name(None if source else db, db.server,
                                          self.status.get("server") or (source.server if source else None), self.ctx)
        if source and source.server != server_name:
            raise NotReady("InvalidSpec", f"a duplicate lives on its source's server {source.server!r}; "
                           "remove spec.server or set it to that server", stalled=True, phase=PHASE_FAILED)
        if source and db.server_selector is not None and not self.status.get("server"):
            placed = self.ctx.registry.server(server_name)
            if placed is not None and not selector_matches(db.server_selector, placed.labels):
                raise NotReady("InvalidSpec", f"a duplicate lives on its source's server {server_name!r}, which "
                               "spec.serverSelector does not select; remove spec.serverSelector", stalled=True,
                               phase=PHASE_FAILED)
        # A move (spec.server changed): the app stopped, the database copied, the pass goes on with the target.
        server_name, move_problem = odoodatabase_move.ensure_server(self, server_name)
        require_allowed(server_name, db.namespace, self.ctx)
        address, ssl_mode = server_address(server_name, self.ctx)
        self.new_status.update({"server": server_name, "roleName": db.role_name, "version": db.version})

        # The PostgreSQL role and database.
        password, secret_recreated = odoodatabase_create.ensure_db_secret(self, address.host, address.port, ssl_mode)
        self.admin = address
        self.tenant = address.as_role(db.role_name, password)
        self.endpoint = specs.app.DatabaseEndpoint(address.host, address.port, ssl_mode)
        with pg.connect(address) as conn:
            pg.ensure_role(conn, db.role_name, password, db.owner_marker, reset_password=secret_recreated)
            failpoints.hit("create-after-role", db.namespace)
            odoodatabase_upgrade.recover(self, conn)  # a rollback killed between DROP and CREATE
            initialized = odoodatabase_create.ensure_database(self, conn, self.admin, server_name, source)
            self.ctx.registry.place((db.namespace, db.name), server_name, db.database_name)  # its server watches it
            if pg.ensure_private(conn, db.database_name):  # also after a crash before the REVOKE
                self.events.append(("Warning", "ConnectRevoked", f"database {db.database_name!r} was open to "
                                    "every role (CONNECT for PUBLIC); revoked"))
            self._update_size(conn, server_name)
        # The database is where spec says now (created, copied or renamed): name, host and URL follow.
        self.new_status.update({
            "databaseName": db.database_name,
            "hostname": db.hostname,
            "url": specs.routes.database_url(db, self.ctx.settings),
        })

        # The app's children that do not need the database's content.
        self.apply(specs.app.build_filestore_pvc(db, self.ctx.settings))
        self.apply(specs.app.build_sessions_pvc(db, self.ctx.settings))
        self.apply(specs.app.build_service(db))
        route = specs.routes.build_database_route(db, self.ctx.settings)
        self.apply(route)
        remove_other_route_kind(self.ctx, route["kind"], db.name, db.namespace, DATABASE_LABEL, db.name,
                                db.uid, db.creation_timestamp)
        previous = self.status.get("hostname")
        if previous and previous != db.hostname:  # renamed: the Ingress no longer serves the old host
            claims.release(self.ctx, previous, db.uid)

        # Its content: initialised, or copied / restored and made its own.
        details = [Condition.true("DatabaseReady", "Created", f"database {db.database_name!r} on {server_name}")]
        if self.expiring is not None:
            details.append(self.expiring)
        quota = plans.storage_condition(self.plan, self.new_status.get("sizeBytes", self.status.get("sizeBytes")))
        if quota is not None:
            details.append(quota)
            before = get_condition(self.status, "OverQuota") or {}
            if quota.status == "True" and before.get("status") != "True":
                self.events.append(("Warning", "OverQuota", quota.message))
        if not initialized:
            if source is not None:
                initialized = odoodatabase_copy.finish_duplicate(self, self.admin, self.tenant, source)
            elif restore is not None:
                initialized = odoodatabase_copy.run_restore(self, self.admin, self.tenant, restore)
            else:
                initialized = odoodatabase_create.initialise(self, self.admin, self.tenant)
        if not initialized:
            return self._initializing(details)
        details.append(Condition.true("Initialized", "Initialized", "Odoo's base module is installed"
                                      if not db.duplicate_from else "copied with a fresh identity"))

        # Its version: upgrades offered, tested, carried out or rolled back; the app stays down meanwhile.
        serving = odoodatabase_upgrade.ensure_version(self, details)

        # The app: only on an initialised (or copied and neutralized) database, at the version of its data.
        suspended = db.app.suspended
        replicas = 0 if suspended else db.app.replicas
        deployment = self.apply(specs.app.build_deployment(
            specs.upgrade.serving(db, serving.version, serving.image), replicas,
            specs.app.credentials_fingerprint(db, password), self.endpoint))
        # The daily backup comes once the app is up (or deliberately down): during a burst of creations
        # it does not compete with the databases still being provisioned.
        if suspended or deployment_available(deployment, replicas)[0]:
            self._ensure_daily_backup()
        available, why = deployment_available(deployment, replicas)
        odoodatabase_upgrade.app_back(self, available or suspended)
        odoodatabase_move.finish(self, server_name, available or suspended)
        # The users inside it (spec.users, spec.owner): a detail that never makes the database un-Ready.
        self._ensure_users(details, app_running=not suspended and available and replicas > 0)
        odoodatabase_sessions.ensure_logout(self, self.tenant)  # kubectl odoo logout (an annotation asks)
        if serving.problem is not None:  # a failed upgrade, rolled back: the app is back, a human is needed
            raise serving.problem
        if move_problem is not None:  # a move refused or failed: the database is served where it is
            raise move_problem
        if suspended:
            details.append(Condition.true("AppAvailable", "Suspended", "the app is scaled to 0 (spec.app.suspended)"))
            return self._ready(PHASE_SUSPENDED, "Suspended", "suspended: data kept, app scaled to 0", details)
        if not available:
            details.append(Condition.false("AppAvailable", "Progressing", why))
            return self._progressing("Progressing", f"waiting for the app: {why}", details)
        details.append(Condition.true("AppAvailable", "Available", f"{replicas} replica(s) available"))
        return self._ready(PHASE_READY, "Ready", f"Odoo {serving.version} is serving {self.new_status['url']}", details)

    def _update_size(self, conn: Any, server_name: str) -> None:
        """status.sizeBytes: as the server's check measured it for all its databases at once (postgresserver.
        measure, which wakes this pass when it changed); measured here only while that check has not measured
        this database yet (new, renamed, moved) and the status has no recent figure. Written only when it
        changed enough to matter (size_changed), so an idle database costs no status write."""
        db = self.db
        size = self.ctx.registry.measured_size(server_name, db.database_name)
        if size is None and (age_seconds(self.status.get("sizeUpdatedAt")) >= self.ctx.settings.size_refresh_seconds
                             or self.status.get("sizeBytes") is None):
            size = pg.database_size(conn, db.database_name)
        if size is not None and size_changed(self.status.get("sizeBytes"), size):
            self.new_status.update({"sizeBytes": size, "sizeUpdatedAt": now_iso()})

    def _ensure_users(self, details: list[Condition], app_running: bool) -> None:
        condition, due = odoodatabase_users.ensure_users(self, app_running)
        if condition is not None:
            details.append(condition)
        if due is not None:
            self.wake_in = due if self.wake_in is None else min(self.wake_in, due)

    def _initializing(self, details: list[Condition]) -> Outcome:
        db = self.db
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

    def _sync_tag_labels(self) -> None:
        """spec.tags mirrored to labels tag.odoo.dbmanager.io/<tag>; removed tags lose their label."""
        labels = self.body["metadata"].get("labels") or {}
        wanted = self.db.tag_labels
        patch: dict[str, str | None] = {k: v for k, v in wanted.items() if labels.get(k) != v}
        patch.update({k: None for k in labels if k.startswith(TAG_LABEL_PREFIX) and k not in wanted})
        if patch:
            self.kube.patch_metadata(API_VERSION, "OdooDatabase", self.db.name, self.db.namespace,
                                     {"labels": patch})

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
        if db.hostname != own and self.plan is not None and not self.plan.custom_domains:
            why = f"spec.hostname {db.hostname!r} is a domain of its own, which {self.plan.describe()} does not allow"
            self._unroute(why)
            raise NotReady("PlanLimit", f"{why} (spec.customDomains: false); this database has no route meanwhile. "
                           "Remove spec.hostname, or ask for a plan with custom domains", stalled=True,
                           phase=PHASE_FAILED)
        holder = claims.Holder("OdooDatabase", db.namespace, db.name, db.uid)
        try:
            claims.acquire(self.ctx, db.hostname, holder, lambda body: database_host(body, self.ctx.settings),
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
            claims.release(self.ctx, str(host), db.uid)
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
            created = parse_time(db.creation_timestamp) if db.creation_timestamp else now()
            expires_at = format_time(created + db.expires_after)
        if not expires_at:
            return None
        self.new_status["expiresAt"] = expires_at
        remaining = (parse_time(expires_at) - now()).total_seconds()
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

    # ---- the daily backup ---------------------------------------------------------------------
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

    # ---- outcomes ------------------------------------------------------------------------
    def _ready(self, phase: str, reason: str, message: str, details: list[Condition]) -> Outcome:
        ready, reconciling, stalled = summary("ready", reason, message)
        return Outcome(phase, ready, reconciling, stalled, details=details, status=self.new_status,
                       # A periodic pass as a safety net only: changes wake it (its children's watch events, its
                       # server's check for drift and sizes, its users' and expiry's own times).
                       retry_after=self._next_wake(self.ctx.settings.resync_seconds),
                       events=self.events)

    def _progressing(self, reason: str, message: str, details: list[Condition]) -> Outcome:
        ready, reconciling, stalled = summary("progressing", reason, message)
        return Outcome(PHASE_PROVISIONING, ready, reconciling, stalled, details=details, status=self.new_status,
                       # Its Job's Complete/Failed or its Deployment's availability wakes us (handlers.on_child_event);
                       # this is only the safety net, and under a burst a short one is a pass (a Secret read, a
                       # PostgreSQL round) every few seconds for every database still initialising.
                       retry_after=self._next_wake(PROGRESS_RESYNC_SECONDS),
                       events=self.events)

    def failed(self, exc: NotReady) -> Outcome:
        return failed_outcome(exc, self.new_status, self.events,
                              exc.retry_after if exc.retry_after is None else self._next_wake(exc.retry_after))

    def _next_wake(self, delay: float) -> float:
        return delay if self.wake_in is None else max(1.0, min(delay, self.wake_in))

