"""In-memory stand-ins for the operator's I/O clients, for the reconcilers' unit tests.

FakeKube implements the part of odoo_operator.kube.Kube the controllers call (server-side apply, create,
get, list, delete, delete_if_labelled, patch_status, patch_metadata, scale) over a dict keyed by
(apiVersion, kind, namespace, name), records every call, and plays the watch: a write to a kind the
operator watches is recorded in the Registry as the watch handlers would. FakePostgres replaces the
`pg` module functions the controllers call (they call them as module attributes) and
`neutralize.reset_identity`. World bundles both with a real Registry and Settings in a Context.

No control plane, no PostgreSQL: what a test sees here is what the reconciler asked for.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import itertools
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from odoo_operator import API_VERSION, FIELD_MANAGER, neutralize, pg
from odoo_operator.api.conditions import merge_conditions
from odoo_operator.config import Settings
from odoo_operator.controller.base import Context, Outcome
from odoo_operator.kube import RESOURCES, Kube, KubeError
from odoo_operator.loop import whole_values
from odoo_operator.runtime.registry import Registry

Key = tuple[str, str, str, str]  # (apiVersion, kind, namespace or "", name)

# Kinds whose watch feeds Registry.record_child (main.CHILD_KINDS, HTTPRoute with a Gateway, and the
# DatabaseBackups of handlers.on_backup_event); children are watched only with the managed-by label.
WATCHED_CHILDREN = frozenset({"Service", "PersistentVolumeClaim", "Deployment", "Job", "CronJob",
                              "Ingress", "HTTPRoute"})
MANAGED = ("app.kubernetes.io/managed-by", "odoo-db-operator")
NAMESPACE = "team-a"
SERVER = "main"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def timestamp(moment: datetime.datetime | None = None) -> str:
    return (moment or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    """Every object of every test has its own uid: claims.py remembers the claims it holds per uid."""
    return str(uuid.uuid4())


@dataclass
class Call:
    method: str
    api_version: str
    kind: str
    namespace: str
    name: str
    body: Any = None


class FakeKube:
    """An API server in a dict. Writes bump resourceVersion; non-core kinds get metadata.generation, bumped
    when their spec changes. Errors are injected with `fail(method, kind, error)`."""

    def __init__(self, registry: Registry | None = None, journal: list[str] | None = None) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.journal = [] if journal is None else journal  # writes as "method Kind/name", shared with FakePostgres
        self.registry = registry  # the watch: None, no events delivered
        self.requests = 0
        self._rv = itertools.count(1)
        self._errors: list[tuple[str, str, KubeError]] = []

    # ---- test controls ------------------------------------------------------------------------
    def fail(self, method: str, kind: str, error: KubeError | None = None) -> None:
        """The next `method` on `kind` raises `error` (a 500 by default)."""
        self._errors.append((method, kind, error or KubeError(500, "InternalError", f"{method} {kind} refused")))

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as someone else created it (not recorded as a call); returns the stored copy."""
        stored = self._store(copy.deepcopy(dict(obj)))
        return copy.deepcopy(stored)

    def find(self, kind: str, name: str, namespace: str | None = NAMESPACE) -> dict[str, Any] | None:
        """The stored object itself (not a copy) of that kind and name, whatever its apiVersion."""
        for (_, k, ns, n), obj in self.objects.items():
            if (k, ns, n) == (kind, namespace or "", name):
                return obj
        return None

    def names(self, kind: str, namespace: str | None = NAMESPACE) -> list[str]:
        return sorted(n for (_, k, ns, n) in self.objects if k == kind and ns == (namespace or ""))

    def set_status(self, kind: str, name: str, status: Mapping[str, Any], namespace: str | None = NAMESPACE
                   ) -> dict[str, Any]:
        """A controller (the Job, Deployment, Gateway controller...) reports on an object."""
        obj = self.find(kind, name, namespace)
        assert obj is not None, f"no {kind} {name} in {namespace}"
        obj["status"] = {**(obj.get("status") or {}), **copy.deepcopy(dict(status))}
        self._touch(obj)
        self._watch(obj, deleted=False)
        return copy.deepcopy(obj)

    def finish_job(self, name: str, state: str = "Complete", message: str = "", namespace: str = NAMESPACE
                   ) -> dict[str, Any]:
        cond = {"type": state, "status": "True", "reason": "BackoffLimitExceeded" if state == "Failed" else "",
                "message": message}
        return self.set_status("Job", name, {"conditions": [cond]}, namespace)

    def make_available(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        """The Deployment controller rolled the latest spec out: every replica up to date and available."""
        obj = self.find("Deployment", name, namespace)
        assert obj is not None, f"no Deployment {name}"
        replicas = int((obj.get("spec") or {}).get("replicas") or 0)
        return self.set_status("Deployment", name, {
            "observedGeneration": obj["metadata"].get("generation", 1), "replicas": replicas,
            "updatedReplicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas}, namespace)

    def calls_of(self, method: str, kind: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (kind is None or c.kind == kind)]

    def written(self, kind: str | None = None) -> list[str]:
        """`Kind/name` of every apply and create, in order (repeated when written again)."""
        return [f"{c.kind}/{c.name}" for c in self.calls if c.method in ("apply", "create")
                and (kind is None or c.kind == kind)]

    # ---- the Kube API ----------------------------------------------------------------------
    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        key = self._key_of(obj)
        self._record("apply", key, copy.deepcopy(dict(obj)))
        existing = self.objects.get(key)
        desired = copy.deepcopy(dict(obj))
        if existing is None:
            return copy.deepcopy(self._store(desired))
        meta = existing["metadata"]
        merged = {**existing, **{k: v for k, v in desired.items() if k not in ("metadata", "status")}}
        merged["metadata"] = {**meta, **desired["metadata"]}
        for kept in ("uid", "creationTimestamp", "generation"):
            if kept in meta:
                merged["metadata"][kept] = meta[kept]
        if "generation" in meta and existing.get("spec") != merged.get("spec"):
            merged["metadata"]["generation"] = int(meta["generation"]) + 1
        self.objects[key] = merged
        self._touch(merged)
        self._watch(merged, deleted=False)
        return copy.deepcopy(merged)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        key = (api_version, kind, namespace or "", name)
        self._record("get", key)
        found = self.objects.get(key)
        return copy.deepcopy(found) if found is not None else None

    def create(self, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any] | None:
        key = self._key_of(obj)
        self._record("create", key, copy.deepcopy(dict(obj)))
        if key in self.objects:
            return None
        return copy.deepcopy(self._store(copy.deepcopy(dict(obj))))

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               preconditions: Mapping[str, str] | None = None, dry_run: bool = False) -> bool:
        key = (api_version, kind, namespace or "", name)
        self._record("delete", key, dict(preconditions or {}))
        existing = self.objects.get(key)
        if existing is None:
            return False
        meta = existing["metadata"]
        if preconditions and any(str(meta.get(k)) != str(v) for k, v in preconditions.items()):
            return False
        if dry_run:
            return True
        del self.objects[key]
        self._watch(existing, deleted=True)
        return True

    def delete_if_labelled(self, api_version: str, kind: str, name: str, namespace: str, label: str,
                           value: str) -> bool:
        existing = self.get(api_version, kind, name, namespace)
        if existing is None or (existing["metadata"].get("labels") or {}).get(label) != value:
            return False
        return self.delete(api_version, kind, name, namespace, preconditions={"uid": existing["metadata"]["uid"]})

    def patch_status(self, api_version: str, kind: str, name: str, namespace: str | None,
                     status: Mapping[str, Any]) -> dict[str, Any]:
        key = (api_version, kind, namespace or "", name)
        self._record("patch_status", key, copy.deepcopy(dict(status)))
        obj = self._existing(key)
        obj["status"] = _merge_patch(obj.get("status") or {}, dict(status))
        self._touch(obj)
        self._watch(obj, deleted=False)
        return copy.deepcopy(obj)

    def patch_metadata(self, api_version: str, kind: str, name: str, namespace: str | None,
                       metadata: Mapping[str, Any]) -> dict[str, Any]:
        key = (api_version, kind, namespace or "", name)
        self._record("patch_metadata", key, copy.deepcopy(dict(metadata)))
        obj = self._existing(key)
        obj["metadata"] = _merge_patch(obj["metadata"], dict(metadata))
        self._touch(obj)
        self._watch(obj, deleted=False)
        return copy.deepcopy(obj)

    def scale(self, api_version: str, kind: str, name: str, namespace: str, replicas: int) -> bool:
        key = (api_version, kind, namespace, name)
        self._record("scale", key, replicas)
        obj = self.objects.get(key)
        if obj is None:
            return False
        obj.setdefault("spec", {})["replicas"] = replicas
        if "generation" in obj["metadata"]:
            obj["metadata"]["generation"] += 1
        self._touch(obj)
        self._watch(obj, deleted=False)
        return True

    def merge_patch(self, api_version: str, kind: str, name: str, namespace: str | None, patch: Mapping[str, Any],
                    field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        key = (api_version, kind, namespace or "", name)
        self._record("merge_patch", key, copy.deepcopy(dict(patch)))
        obj = self._existing(key)
        merged = _merge_patch(obj, {k: v for k, v in patch.items() if k != "status"})
        if "generation" in obj["metadata"] and merged.get("spec") != obj.get("spec"):
            merged["metadata"]["generation"] = int(obj["metadata"]["generation"]) + 1
        self.objects[key] = merged
        self._touch(merged)
        self._watch(merged, deleted=False)
        return copy.deepcopy(merged)

    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        """Equality selectors only (`a=b,c=d`); a field selector's path is dotted (`metadata.name=x`)."""
        self._record("list", (api_version, kind, namespace or "", ""), label_selector)
        labels = _selector(label_selector)
        fields = _selector(field_selector)
        return [copy.deepcopy(obj) for (v, k, ns, _), obj in sorted(self.objects.items())
                if (v, k) == (api_version, kind) and (namespace is None or ns == namespace)
                and all((obj["metadata"].get("labels") or {}).get(a) == b for a, b in labels.items())
                and all(_field(obj, path) == value for path, value in fields.items())]

    # ---- internals -----------------------------------------------------------------------------
    def _key_of(self, obj: Mapping[str, Any]) -> Key:
        meta = obj["metadata"]
        api_version, kind = obj["apiVersion"], obj["kind"]
        _, namespaced = RESOURCES[(api_version, kind)]  # a kind the real client could not address fails here
        namespace = meta.get("namespace") or ""
        assert bool(namespace) == namespaced, f"{kind} {meta['name']}: namespace {namespace!r}"
        return api_version, kind, namespace, meta["name"]

    def _record(self, method: str, key: Key, body: Any = None) -> None:
        self.requests += 1
        self.calls.append(Call(method, key[0], key[1], key[2], key[3], body))
        if method not in ("get", "list"):
            self.journal.append(f"{method} {key[1]}/{key[3]}")
        for i, (m, k, error) in enumerate(self._errors):
            if m == method and k == key[1]:
                del self._errors[i]
                raise error

    def _existing(self, key: Key) -> dict[str, Any]:
        obj = self.objects.get(key)
        if obj is None:
            raise KubeError(404, "NotFound", f"{key[1]} {key[3]!r} not found")
        return obj

    def _store(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = self._key_of(obj)
        meta = obj["metadata"]
        meta.setdefault("uid", new_uid())
        meta.setdefault("creationTimestamp", timestamp())
        if obj["apiVersion"] != "v1" and "generation" not in meta:
            meta["generation"] = 1
        self.objects[key] = obj
        self._touch(obj)
        self._watch(obj, deleted=False)
        return obj

    def _touch(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def _watch(self, obj: Mapping[str, Any], deleted: bool) -> None:
        if self.registry is None:
            return
        kind = obj["kind"]
        labels = obj["metadata"].get("labels") or {}
        if kind in WATCHED_CHILDREN and labels.get(MANAGED[0]) == MANAGED[1] or kind == "DatabaseBackup":
            self.registry.record_child(kind, copy.deepcopy(dict(obj)), deleted=deleted)
        elif kind == "PostgresServer":
            self.registry.record_server(copy.deepcopy(dict(obj)), deleted=deleted)


def _selector(text: str | None) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(",")) if text else {}


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def _merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: None removes a key, objects merge, anything else replaces."""
    merged = dict(copy.deepcopy(target))
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge_patch(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ---- PostgreSQL ------------------------------------------------------------------------------

@dataclass
class FakeDatabase:
    owner: str
    marker: dict[str, Any] | None
    public: bool = False  # CONNECT granted to PUBLIC
    size: int = 8_000_000


@dataclass
class FakeConnection:
    server: pg.ServerAddress
    dbname: str


@dataclass
class FakePostgres:
    """One PostgreSQL server: databases (owner, comment marker), roles (comment marker). `reachable` off:
    every connect raises PostgresUnavailable. `calls` records (function, *arguments) of every call."""

    databases: dict[str, FakeDatabase] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    reachable: bool = True
    version: str = "15.8"
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    connections: list[FakeConnection] = field(default_factory=list)
    journal: list[str] = field(default_factory=list)  # "pg <function> <first argument>", shared with FakeKube
    installed: dict[str, set[str]] = field(default_factory=dict)  # Odoo modules installed, by database

    def _log(self, *call: Any) -> None:
        self.calls.append(call)
        self.journal.append(" ".join(["pg", call[0], *(str(a) for a in call[1:2])]))

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("connect", "ensure_role", "database_info", "database_marker", "create_database",
                     "ensure_private", "create_odoo_extensions", "database_size", "server_info",
                     "set_database_marker", "copy_database", "copy_in_progress", "rename_database",
                     "reassign_owned", "terminate_connections", "drop_database", "drop_role", "database_names",
                     "template_databases", "ensure_template_role", "template_built", "installed_modules",
                     "drop_template_role", "role_exists", "role_marker", "database_sizes"):
            monkeypatch.setattr(pg, name, getattr(self, name))
        monkeypatch.setattr(neutralize, "reset_identity", self.reset_identity)
        monkeypatch.setattr(neutralize, "set_admin_password", self.set_admin_password)

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == name]

    # ---- the pg API -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self, server: pg.ServerAddress, dbname: str) -> Iterator[FakeConnection]:
        yield FakeConnection(server, dbname)

    def connect(self, server: pg.ServerAddress, dbname: str = "postgres"
                ) -> contextlib.AbstractContextManager[FakeConnection]:
        self._log("connect", server.user, dbname)
        if not self.reachable:
            raise pg.PostgresUnavailable(f"connection to {server.host}:{server.port} refused")
        self.connections.append(FakeConnection(server, dbname))
        return self._connection(server, dbname)

    def database_names(self, conn: FakeConnection) -> set[str]:
        self._log("database_names")
        return set(self.databases)

    def database_sizes(self, conn: FakeConnection) -> dict[str, int]:
        self._log("database_sizes")
        return {name: database.size for name, database in self.databases.items()}

    def server_info(self, conn: FakeConnection) -> tuple[str, int]:
        self._log("server_info")
        return self.version, sum(1 for name in self.databases if not name.startswith(pg.TEMPLATE_PREFIX))

    def ensure_role(self, conn: FakeConnection, role: str, password: str, owner: dict[str, str],
                    reset_password: bool) -> bool:
        self._log("ensure_role", role, reset_password)
        marker = self.roles.get(role)
        if marker is None:
            self.roles[role] = owner | {pg.MARKER_KEY: pg.MARKER_VALUE}
            return True
        if not pg.DatabaseInfo(True, marker).owned_by(owner, role):
            raise pg.OwnershipConflict(f"PostgreSQL role {role!r} exists and is not managed for this database")
        return False

    def database_info(self, conn: FakeConnection, dbname: str) -> pg.DatabaseInfo:
        found = self.databases.get(dbname)
        if found is None:
            return pg.DatabaseInfo(False)
        return pg.DatabaseInfo(True, copy.deepcopy(found.marker), found.owner)

    def database_marker(self, conn: FakeConnection, dbname: str) -> tuple[bool, dict[str, Any] | None]:
        info = self.database_info(conn, dbname)
        return info.exists, info.marker

    def create_database(self, conn: FakeConnection, dbname: str, owner_role: str, marker: dict[str, Any]) -> None:
        self._log("create_database", dbname, owner_role)
        assert dbname not in self.databases, f"CREATE DATABASE {dbname}: exists"
        self.databases[dbname] = FakeDatabase(owner_role, dict(marker))

    def ensure_private(self, conn: FakeConnection, dbname: str) -> bool:
        found = self.databases.get(dbname)
        if found is None or not found.public:
            return False
        self._log("revoke_public", dbname)
        found.public = False
        return True

    def create_odoo_extensions(self, server: pg.ServerAddress, dbname: str, owner_role: str) -> bool:
        self._log("create_odoo_extensions", dbname, owner_role)
        return True

    def database_size(self, conn: FakeConnection, dbname: str) -> int | None:
        found = self.databases.get(dbname)
        return found.size if found else None

    def set_database_marker(self, conn: FakeConnection, dbname: str, marker: dict[str, Any]) -> None:
        self._log("set_database_marker", dbname, dict(marker))
        self.databases[dbname].marker = dict(marker)

    def copy_database(self, conn: FakeConnection, source: str, target: str, owner_role: str,
                      marker: dict[str, Any], attempts: int = 5, strategy: str = pg.FILE_COPY) -> int:
        self._log("copy_database", source, target, owner_role)
        original = self.databases[source]
        self.databases[target] = FakeDatabase(owner_role, dict(marker), size=original.size)
        return 2  # sessions of the source disconnected

    def copy_in_progress(self, conn: FakeConnection, source: str, target: str, owner_role: str) -> bool:
        return False

    def rename_database(self, conn: FakeConnection, old: str, new: str, attempts: int = 5) -> int:
        self._log("rename_database", old, new)
        self.databases[new] = self.databases.pop(old)
        return 1

    def reassign_owned(self, conn_to_target: FakeConnection, from_role: str, to_role: str) -> None:
        self._log("reassign_owned", conn_to_target.dbname, from_role, to_role)

    def terminate_connections(self, conn: FakeConnection, dbname: str) -> int:
        return 0

    def drop_database(self, conn: FakeConnection, dbname: str) -> bool:
        self._log("drop_database", dbname)
        return self.databases.pop(dbname, None) is not None

    def drop_role(self, conn: FakeConnection, role: str, owner: dict[str, str]) -> None:
        marker = self.roles.get(role)
        if marker is not None and pg.DatabaseInfo(True, marker).owned_by(owner, role):
            self._log("drop_role", role)
            del self.roles[role]

    # ---- template databases (controller/templates.py) ------------------------------------------------
    def template_databases(self, conn: FakeConnection) -> dict[str, dict[str, Any] | None]:
        return {name: copy.deepcopy(db.marker) for name, db in self.databases.items()
                if name.startswith(pg.TEMPLATE_PREFIX)}

    def ensure_template_role(self, conn: FakeConnection, role: str, password: str, marker: dict[str, Any]) -> None:
        self._log("ensure_template_role", role)
        self.roles[role] = dict(marker) | {"login": True}

    def role_marker(self, conn: FakeConnection, role: str) -> dict[str, Any] | None:
        found = self.roles.get(role)
        return {k: v for k, v in found.items() if k != "login"} if found else None

    def template_built(self, conn: FakeConnection, role: str) -> None:
        self._log("template_built", role)
        self.roles[role]["login"] = False

    def installed_modules(self, server: pg.ServerAddress, dbname: str, modules: list[str]) -> set[str]:
        return set(self.installed.get(dbname, set())) & set(modules)

    def drop_template_role(self, conn: FakeConnection, role: str) -> bool:
        self._log("drop_template_role", role)
        self.roles.pop(role, None)
        return True

    def role_exists(self, conn: FakeConnection, role: str) -> bool:
        return role in self.roles

    def set_admin_password(self, conn: Any, password: str) -> bool:
        self._log("set_admin_password", conn.server.user, conn.dbname)
        return True

    def reset_identity(self, conn: Any, base_url: str) -> dict[str, str]:
        self._log("reset_identity", conn.server.user, conn.dbname, base_url)
        return {"web.base.url": base_url}


# ---- a whole world: kube + PostgreSQL + Context ----------------------------------------------------

class World:
    """A Context over FakeKube and FakePostgres, with object factories and the status publishing of the
    loop (loop.publish without its Events): `reconcile(fn, body)` returns the Outcome and the body as
    the next pass sees it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, settings: Settings | None = None) -> None:
        self.registry = Registry()
        self.journal: list[str] = []  # kube writes and pg calls, in order
        self.kube = FakeKube(self.registry, self.journal)
        self.pg = FakePostgres(journal=self.journal)
        self.pg.install(monkeypatch)
        self.settings = settings or Settings(base_domain="odoo.test", dns_check=False, templates=False)
        self.ctx = Context(kube=cast(Kube, self.kube), settings=self.settings, registry=self.registry)

    # ---- objects ------------------------------------------------------------------------------
    def add_server(self, name: str = SERVER, default: bool = True, credentials: bool = True,
                   **spec: Any) -> dict[str, Any]:
        """A PostgresServer and its admin Secret in odoo-system."""
        if credentials:
            self.kube.put({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": f"{name}-admin", "namespace": "odoo-system"},
                           "data": {"username": b64("postgres"), "password": b64("s3cret")}})
        return self.kube.put(server_body(name, default=default, **spec))

    def add_namespace(self, name: str = NAMESPACE, **labels: str) -> dict[str, Any]:
        return self.kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})

    def add(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """An object created by a user: stored, and returned as the API server would hand it out."""
        return self.kube.put(body)

    # ---- a pass of the loop -------------------------------------------------------------------
    def reconcile(self, fn: Any, body: dict[str, Any], live: Mapping[str, Any] | None = None
                  ) -> tuple[Outcome, dict[str, Any]]:
        """One pass of `fn` (a kind's `reconcile(body, ctx[, live])`), then its status published."""
        snapshot = copy.deepcopy(body)
        outcome: Outcome = fn(snapshot, self.ctx, live) if live is not None else fn(snapshot, self.ctx)
        return outcome, self.publish(body, outcome)

    def publish(self, body: Mapping[str, Any], outcome: Outcome) -> dict[str, Any]:
        """What loop.publish writes (status fields, phase, merged conditions), into the stored object
        too when it exists; returns the body the next pass gets."""
        old = body.get("status") or {}
        generation = int(body["metadata"].get("generation") or 0)
        new = {**outcome.status, "phase": outcome.phase, "observedGeneration": generation,
               "conditions": merge_conditions(old.get("conditions"), outcome.conditions(), generation)}
        stored = self.kube.find(body["kind"], body["metadata"]["name"], body["metadata"].get("namespace"))
        if stored is not None:
            stored["status"] = _merge_patch(stored.get("status") or {}, whole_values(stored.get("status") or {}, new))
        result = copy.deepcopy(dict(body))
        result["status"] = {**old, **new}
        if stored is not None:
            result["metadata"] = copy.deepcopy(stored["metadata"])
        return result


# ---- bodies ----------------------------------------------------------------------------------

def server_body(name: str = SERVER, default: bool = True, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "PostgresServer", "metadata": {"name": name, "uid": new_uid()},
            "spec": {"host": f"{name}.db.example", "port": 5432, "default": default,
                     "adminSecretRef": {"namespace": "odoo-system", "name": f"{name}-admin"}, **spec}}


def database_body(name: str = "shop", namespace: str = NAMESPACE, status: Mapping[str, Any] | None = None,
                  **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION, "kind": "OdooDatabase",
        "metadata": {"name": name, "namespace": namespace, "uid": new_uid(), "generation": 1,
                     "creationTimestamp": timestamp()},
        "spec": {"version": "17.0", **spec}}
    if status is not None:
        body["status"] = dict(status)
    return body


def backup_body(name: str = "shop-now", database: str = "shop", namespace: str = NAMESPACE,
                status: Mapping[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION, "kind": "DatabaseBackup",
        "metadata": {"name": name, "namespace": namespace, "uid": new_uid(), "generation": 1},
        "spec": {"databaseRef": {"name": database}, **spec}}
    if status is not None:
        body["status"] = dict(status)
    return body


def mapping_body(name: str = "www", domain: str = "shop.example.com", database: str = "shop",
                 namespace: str = NAMESPACE, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DomainMapping",
            "metadata": {"name": name, "namespace": namespace, "uid": new_uid(), "generation": 1},
            "spec": {"domain": domain, "databaseRef": {"name": database}, **spec}}


def ready_condition(status: str = "True", reason: str = "Ready") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": ""}


def condition(outcome: Outcome, type_: str) -> Any:
    """The outcome's condition of that type (Ready, Reconciling, Stalled or a detail)."""
    return next(c for c in outcome.conditions() if c.type == type_)
