"""Converging one OdooDatabase: the steps, in order, each idempotent.

`reconcile` is called by the per-object loop (see handlers.py) with a snapshot of the object and
returns an Outcome: the status to write, the Events to post and when to look again. It never
raises for a condition a user can cause; only programming errors escape.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import API_VERSION, builders, pg
from .conditions import Condition, get_condition, now_iso
from .config import Settings
from .kube import Kube, KubeError
from .model import TAG_LABEL_PREFIX, OdooDatabase, SpecError, parse_odoo_database, role_name
from .registry import Registry

PHASE_PENDING = "Pending"
PHASE_PROVISIONING = "Provisioning"
PHASE_READY = "Ready"
PHASE_SUSPENDED = "Suspended"
PHASE_FAILED = "Failed"
PHASE_DELETING = "Deleting"


class NotReady(Exception):
    """A step cannot complete yet; carries what the status should say."""

    def __init__(self, reason: str, message: str, *, stalled: bool = False, retry_after: float | None = None,
                 phase: str = PHASE_PENDING, warning: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.stalled = stalled
        self.retry_after = retry_after
        self.phase = phase
        self.warning = warning


@dataclass
class Outcome:
    phase: str
    ready: Condition
    reconciling: Condition
    stalled: Condition
    details: list[Condition] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None
    warning: bool = False

    def conditions(self) -> list[Condition]:
        return [self.ready, self.reconciling, self.stalled, *self.details]


@dataclass
class Context:
    kube: Kube
    settings: Settings
    registry: Registry


def _password() -> str:
    return secrets.token_urlsafe(24)


def _decode(secret: Mapping[str, Any] | None, key: str) -> str | None:
    try:
        return base64.b64decode((secret or {}).get("data", {})[key]).decode()
    except (KeyError, ValueError, TypeError):
        return None


def _digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _age_seconds(timestamp: str | None) -> float:
    if not timestamp:
        return float("inf")
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return (datetime.datetime.now(datetime.UTC) - then).total_seconds()


# ---- PostgresServer resolution ---------------------------------------------------------------

def resolve_server_name(spec_server: str | None, status_server: str | None, registry: Registry) -> str:
    """The server a database lives on: recorded in status once created, else spec, else the default."""
    if status_server:
        return status_server
    if spec_server:
        return spec_server
    defaults = registry.default_servers()
    if len(defaults) == 1:
        return defaults[0]
    if not defaults:
        raise NotReady("ServerNotFound", "no default PostgresServer exists; create one with spec.default: true "
                       "or set spec.server", retry_after=30)
    raise NotReady("ServerNotFound", f"several PostgresServers are marked default ({', '.join(defaults)}); "
                   "keep one or set spec.server", stalled=True, retry_after=60)


def server_address(server_name: str, ctx: Context) -> tuple[pg.ServerAddress, str]:
    """Connection details (admin) of a server and its sslmode; NotReady if unusable."""
    server = ctx.registry.server(server_name)
    if server is None:
        raise NotReady("ServerNotFound", f"PostgresServer {server_name!r} does not exist; create it or fix "
                       "spec.server", retry_after=30)
    key = (server.admin_secret_namespace, server.admin_secret_name)
    cached = ctx.registry.cached_credentials(key)
    if cached is None:
        secret = ctx.kube.get("v1", "Secret", server.admin_secret_name, server.admin_secret_namespace)
        user, password = _decode(secret, "username"), _decode(secret, "password")
        if not user or not password:
            raise NotReady("ServerCredentialsMissing",
                           f"Secret {server.admin_secret_namespace}/{server.admin_secret_name} of PostgresServer "
                           f"{server_name!r} is missing or lacks the keys username/password", retry_after=30)
        ctx.registry.cache_credentials(key, user, password)
        cached = (user, password)
    address = pg.ServerAddress(server.host, server.port, cached[0], cached[1], server.ssl_mode,
                               ctx.settings.pg_connect_timeout)
    return address, server.ssl_mode


# ---- the steps ---------------------------------------------------------------------------------

class Reconciler:
    def __init__(self, body: Mapping[str, Any], ctx: Context) -> None:
        self.body = body
        self.ctx = ctx
        self.kube = ctx.kube
        self.status: Mapping[str, Any] = body.get("status") or {}
        self.new_status: dict[str, Any] = {}
        self.db: OdooDatabase

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Apply a child unless the registry knows it is already as desired."""
        self._refuse_when_deleting()
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        digest = _digest(obj)
        if not self.ctx.registry.needs_apply(key, digest):
            return self.ctx.registry.child(*key) or {}
        result = self.kube.apply(obj)
        self.ctx.registry.record_applied(key, digest, result)
        return result

    def _refuse_when_deleting(self) -> None:
        # Never (re)create children once the owner is being deleted (the live body says so).
        if self.body.get("metadata", {}).get("deletionTimestamp"):
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
        server_name = resolve_server_name(db.server, self.status.get("server"), self.ctx.registry)
        address, ssl_mode = server_address(server_name, self.ctx)
        self.new_status.update({
            "server": server_name,
            "databaseName": db.database_name,
            "roleName": db.role_name,
            "hostname": db.hostname,
            "url": builders.database_url(db, self.ctx.settings),
            "version": db.version,
        })

        password, secret_recreated = self._ensure_db_secret(address.host, address.port, ssl_mode)
        with pg.connect(address) as conn:
            pg.ensure_role(conn, db.role_name, password, db.owner_marker, reset_password=secret_recreated)
            initialized = self._ensure_database(conn, server_name)
            if _age_seconds(self.status.get("sizeUpdatedAt")) >= self.ctx.settings.size_refresh_seconds:
                size = pg.database_size(conn, db.database_name)
                if size is not None:
                    self.new_status.update({"sizeBytes": size, "sizeUpdatedAt": now_iso()})

        self.apply(builders.build_filestore_pvc(db, self.ctx.settings))
        self.apply(builders.build_config_map(db))
        self.apply(builders.build_service(db))
        self.apply(builders.build_ingress(db, self.ctx.settings))

        if not initialized:
            initialized = self._run_init_job(address)

        details = [Condition.true("DatabaseReady", "Created", f"database {db.database_name!r} on {server_name}")]
        if not initialized:
            # The app starts only on an initialised database: its Deployment is created afterwards.
            details.append(Condition.false("Initialized", "Initializing",
                                           f"Job {builders.init_job_name(db)} is installing Odoo's base module"))
            return self._progressing("Initializing", "waiting for the init Job to install Odoo", details)
        details.append(Condition.true("Initialized", "Initialized", "Odoo's base module is installed"))

        suspended = db.app.suspended
        replicas = 0 if suspended else db.app.replicas
        deployment = self.apply(builders.build_deployment(
            db, replicas, builders.credentials_fingerprint(db, password)))

        if suspended:
            details.append(Condition.true("AppAvailable", "Suspended", "the app is scaled to 0 (spec.app.suspended)"))
            return self._ready(PHASE_SUSPENDED, "Suspended", "suspended: data kept, app scaled to 0", details)
        available, why = deployment_available(deployment, replicas)
        if not available:
            details.append(Condition.false("AppAvailable", "Progressing", why))
            return self._progressing("Progressing", f"waiting for the app: {why}", details)
        details.append(Condition.true("AppAvailable", "Available", f"{replicas} replica(s) available"))
        return self._ready(PHASE_READY, "Ready", f"Odoo {db.version} is serving {self.new_status['url']}", details)

    # ---- credentials ---------------------------------------------------------------------
    def _ensure_db_secret(self, host: str, port: int, ssl_mode: str) -> tuple[str, bool]:
        """The Secret is the source of truth of the role's password: write it before the role."""
        name = builders.db_secret_name(self.db)
        existing = self.ctx.registry.child("Secret", self.db.namespace, name)
        if existing is None:
            existing = self.kube.get("v1", "Secret", name, self.db.namespace)
        password = _decode(existing, "password")
        recreated = password is None or _decode(existing, "user") != self.db.role_name
        if recreated:
            password = _password()
        assert password is not None
        self.apply(builders.build_db_secret(self.db, host, port, ssl_mode, password))
        return password, recreated

    # ---- the PostgreSQL database -------------------------------------------------------------
    def _ensure_database(self, conn: Any, server_name: str) -> bool:
        """Create the database once; returns whether Odoo has been initialised in it."""
        db = self.db
        exists, marker = pg.database_marker(conn, db.database_name)
        if not exists:
            if self.status.get("createdAt"):
                raise NotReady(
                    "DatabaseMissing",
                    f"database {db.database_name!r} was created on {server_name} at {self.status['createdAt']} "
                    "and no longer exists; it is not re-created empty. Restore it, or delete this OdooDatabase",
                    stalled=True, phase=PHASE_FAILED)
            server = self.ctx.registry.server(server_name)
            if server and server.max_databases is not None:
                _, count = pg.server_info(conn)
                if count >= server.max_databases:
                    raise NotReady("QuotaExceeded", f"PostgresServer {server_name} holds {count} databases, its "
                                   f"maxDatabases is {server.max_databases}", retry_after=60)
            pg.create_database(conn, db.database_name, db.role_name,
                               db.owner_marker | {pg.MARKER_KEY: pg.MARKER_VALUE, "uid": db.uid})
            self.new_status["createdAt"] = now_iso()
            return False
        if not pg.is_owned_by(marker, db.owner_marker):
            raise pg.OwnershipConflict(
                f"database {db.database_name!r} already exists on {server_name} and belongs to something else")
        self.new_status["createdAt"] = self.status.get("createdAt") or now_iso()
        initialized = bool(self.status.get("initializedAt")) or bool(marker and marker.get("initialized"))
        if initialized and marker and not marker.get("initialized"):
            pg.set_database_marker(conn, db.database_name, marker | {"initialized": True})
        if initialized:
            self.new_status["initializedAt"] = self.status.get("initializedAt") or now_iso()
        return initialized

    def _run_init_job(self, address: pg.ServerAddress) -> bool:
        db = self.db
        self._refuse_when_deleting()
        # The admin password is generated once; an existing Secret is never overwritten.
        if self.ctx.registry.child("Secret", db.namespace, builders.admin_secret_name(db)) is None:
            created = self.kube.create(builders.build_admin_secret(db, _password()))
            if created:
                self.ctx.registry.record_child("Secret", created, deleted=False)
        # Created once and never updated: a Job's template is immutable, and a failed Job stays
        # for the user to inspect; deleting it retries with the current spec.
        name = builders.init_job_name(db)
        job = self.ctx.registry.child("Job", db.namespace, name) or self.kube.get("batch/v1", "Job", name, db.namespace)
        if job is None:
            self._refuse_when_deleting()
            job = self.kube.create(builders.build_init_job(db)) or self.kube.get("batch/v1", "Job", name, db.namespace)
            if job:
                self.ctx.registry.record_child("Job", job, deleted=False)
        state = job_state(job)
        if state == "Failed":
            raise NotReady("InitFailed", f"Job {builders.init_job_name(db)} failed to initialise the database "
                           f"({job_failure(job)}); fix the cause, then delete the Job to retry",
                           stalled=True, phase=PHASE_FAILED)
        if state != "Complete":
            return False
        with pg.connect(address) as conn:
            _, marker = pg.database_marker(conn, db.database_name)
            pg.set_database_marker(conn, db.database_name, (marker or {}) | {
                **db.owner_marker, pg.MARKER_KEY: pg.MARKER_VALUE, "initialized": True})
        self.new_status["initializedAt"] = now_iso()
        return True

    # ---- outcomes ------------------------------------------------------------------------
    def _ready(self, phase: str, reason: str, message: str, details: list[Condition]) -> Outcome:
        return Outcome(
            phase=phase,
            ready=Condition.true("Ready", reason, message),
            reconciling=Condition.false("Reconciling", reason, ""),
            stalled=Condition.false("Stalled", reason, ""),
            details=details,
            status=self.new_status,
            retry_after=self.ctx.settings.size_refresh_seconds,  # sizeBytes stays fresh
        )

    def _progressing(self, reason: str, message: str, details: list[Condition]) -> Outcome:
        return Outcome(
            phase=PHASE_PROVISIONING,
            ready=Condition.false("Ready", reason, message),
            reconciling=Condition.true("Reconciling", reason, message),
            stalled=Condition.false("Stalled", reason, ""),
            details=details,
            status=self.new_status,
            retry_after=30.0,  # child watch events normally wake us before this
        )

    def _failed(self, exc: NotReady) -> Outcome:
        return Outcome(
            phase=exc.phase,
            ready=Condition.false("Ready", exc.reason, exc.message),
            reconciling=Condition("Reconciling", "False" if exc.stalled else "True", exc.reason,
                                  "" if exc.stalled else exc.message),
            stalled=Condition("Stalled", "True" if exc.stalled else "False", exc.reason,
                              exc.message if exc.stalled else ""),
            details=[],
            status=self.new_status,
            retry_after=exc.retry_after,
            warning=exc.warning,
        )


def job_state(job: Mapping[str, Any] | None) -> str:
    for cond in (job or {}).get("status", {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    return "Running"


def job_failure(job: Mapping[str, Any] | None) -> str:
    cond = get_condition((job or {}).get("status"), "Failed")
    return (cond or {}).get("message") or (cond or {}).get("reason") or "unknown reason"


def deployment_available(deployment: Mapping[str, Any], replicas: int) -> tuple[bool, str]:
    meta = deployment.get("metadata", {})
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 1):
        return False, "the Deployment controller has not seen the latest spec yet"
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < replicas or available < replicas:
        return False, f"{available}/{replicas} replica(s) available, {updated} up to date"
    return True, ""


def reconcile(body: Mapping[str, Any], ctx: Context) -> Outcome:
    return Reconciler(body, ctx).run()


# ---- deletion ---------------------------------------------------------------------------------

@dataclass
class DeletionResult:
    dropped: bool
    message: str


def delete(body: Mapping[str, Any], ctx: Context) -> DeletionResult:
    """Honour spec.deletionPolicy. Raises pg.PostgresUnavailable / NotReady to be retried."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    policy = spec.get("deletionPolicy") or "Delete"
    name, namespace = meta["name"], meta["namespace"]
    database_name = status.get("databaseName") or spec.get("databaseName") or name
    if policy != "Delete":
        # Retain (and anything not understood, so data is never dropped by mistake).
        return DeletionResult(False, f"database {database_name!r} retained (deletionPolicy {policy})")
    try:
        server_name = resolve_server_name(spec.get("server"), status.get("server"), ctx.registry)
    except NotReady:
        if not status.get("createdAt"):
            return DeletionResult(False, "no PostgreSQL database had been created")
        raise
    address, _ = server_address(server_name, ctx)
    owner = {"managedBy": pg.MARKER_VALUE, "namespace": namespace, "name": name}
    role = role_name(namespace, name)
    with pg.connect(address) as conn:
        exists, marker = pg.database_marker(conn, database_name)
        if exists and not pg.is_owned_by(marker, owner):
            message = f"database {database_name!r} on {server_name} is not ours; left untouched"
            pg.drop_role(conn, role, owner)
            return DeletionResult(False, message)
        dropped = pg.drop_database(conn, database_name) if exists else False
        pg.drop_role(conn, role, owner)
    if dropped:
        return DeletionResult(True, f"database {database_name!r} and its role dropped from {server_name}")
    return DeletionResult(False, f"database {database_name!r} did not exist on {server_name}")
