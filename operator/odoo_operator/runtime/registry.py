"""All the operator process's in-memory state, in one Registry: known servers, last seen and last applied
children, wake-ups, locks, cached admin credentials, the DomainClaims this process holds or waits for
(ClaimBook) and which DomainMappings lead to which domain and database (MappingIndex).

Level-triggered reconciliation: every object has one loop (a kopf daemon) that converges it; watch
events on it or on any object it owns only wake that loop up. Nothing here does I/O or decides
anything; the caches of the clients themselves (dnscheck's answers, pg's connections) stay there.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from odoo_operator.api.conditions import parse_time
from odoo_operator.api.labels import DATABASE_LABEL
from odoo_operator.api.model import PostgresServer, SpecError, parse_postgres_server
from odoo_operator.runtime.memory import shared_words

Key = tuple[str, str]  # (namespace, name)
ChildKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True)
class ServerUsage:
    """What a PostgresServer holds, as its last check measured it (postgresserver.check)."""
    databases: int  # pg.server_info's count
    present: frozenset[str]  # every database name on it
    bytes_used: int | None  # the databases' sizes (refreshed every size_refresh_seconds); None: not measured yet
    measured_at: float  # time.monotonic() of bytes_used
    sizes: Mapping[str, int] = field(default_factory=dict)  # each database's size, measured with bytes_used


def size_changed(reported: object, measured: int) -> bool:
    """Whether a measured database size is worth a status write over the reported one (status.sizeBytes): the
    first (none, or not a number), or a change of 1 % or 1 MiB, whichever is smaller (at least a page). An
    idle database does not change size at all."""
    if not isinstance(reported, int):
        return True
    return abs(measured - reported) >= max(8192, min(1 << 20, reported // 100))


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class Waker:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)


@dataclass
class AppliedRecord:
    digest: str
    generation: int | None
    fingerprint: str


def _fingerprint(obj: Mapping[str, Any]) -> str:
    """What we own of a kind that has no metadata.generation; status-only writes don't change it."""
    kind = obj.get("kind", "")
    if kind in ("Secret", "ConfigMap"):
        owned: Any = obj.get("data")
    elif kind == "Service":
        spec = obj.get("spec") or {}
        owned = [spec.get("selector"), [(p.get("name"), p.get("port")) for p in spec.get("ports") or []]]
    else:
        owned = None  # e.g. a PVC: its spec is immutable once bound; only its existence matters
    return hashlib.sha256(json.dumps(owned, sort_keys=True).encode()).hexdigest()


_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "deletionTimestamp")
# What of a child's status its owner's pass reads (base.job_state/job_failure, base.deployment_available):
# only that is kept, and a watch event that changes nothing of it (kwok's and the controllers' progress
# writes) wakes nobody. A kind not named here keeps (and wakes on) its whole status; a
# PersistentVolumeClaim's status is never read.
_READ_STATUS: dict[str, tuple[str, ...]] = {
    "PersistentVolumeClaim": (),
    "Job": ("conditions",),  # only its final ones, Complete and Failed (see _wake_token)
    "Deployment": ("observedGeneration", "updatedReplicas", "availableReplicas"),
}
_FINAL_JOB_CONDITIONS = ("Complete", "Failed")


def _trim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Only what the reconciler reads back: identity, status, Secret data, and the drift fingerprint."""
    meta = obj.get("metadata") or {}
    kept: dict[str, Any] = {"kind": obj.get("kind"),
                            "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta},
                            "fingerprint": _fingerprint(obj)}
    if "status" in obj:
        fields = _READ_STATUS.get(str(obj.get("kind")))
        status = obj["status"] or {}
        kept["status"] = status if fields is None else {k: status[k] for k in fields if k in status}
    kept = shared_words(kept)  # one string object for equal labels, reasons, kinds… across every kept child
    if obj.get("kind") == "Secret" and "data" in obj:
        kept["data"] = obj["data"]  # never interned: a secret leaves no copy behind in the interpreter's table
    return kept


def _wake_token(kept: Mapping[str, Any] | None) -> Any:
    """What an owner's pass can read of a (trimmed) child: when it is unchanged, nobody needs waking."""
    if kept is None:
        return None
    meta = kept.get("metadata") or {}
    status = kept.get("status") or {}
    fields = _READ_STATUS.get(str(kept.get("kind")))
    read = status if fields is None else {k: status[k] for k in fields if k in status}
    if kept.get("kind") == "Job":
        read = [[c.get("type"), c.get("status"), c.get("reason"), c.get("message")]
                for c in status.get("conditions") or [] if c.get("type") in _FINAL_JOB_CONDITIONS]
    return (meta.get("uid"), meta.get("generation"), meta.get("deletionTimestamp"), meta.get("labels"),
            kept.get("fingerprint"), json.dumps(read, sort_keys=True))


class ClaimBook:
    """The DomainClaims this process created or confirmed, so a loop pass costs no request (claim name,
    holder uid), and the loops waiting for a claim held by someone else (claim name -> keys to wake on
    its release). One lock for both."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[tuple[str, str]] = set()
        self._waiting: dict[str, set[Key]] = {}

    def holds(self, name: str, uid: str) -> bool:
        with self._lock:
            return (name, uid) in self._held

    def hold(self, name: str, uid: str) -> None:
        with self._lock:
            self._held.add((name, uid))

    def wait(self, name: str, key: Key) -> None:
        with self._lock:
            self._waiting.setdefault(name, set()).add(key)

    def waiters(self, name: str) -> list[Key]:
        """The loops to wake now that the claim `name` is gone (each is told once)."""
        with self._lock:
            return sorted(self._waiting.pop(name, set()))

    def forget(self, name: str) -> None:
        """The claim was deleted: the next pass looks again."""
        with self._lock:
            for entry in [e for e in self._held if e[0] == name]:
                self._held.discard(entry)


class MappingIndex:
    """Which DomainMappings want a domain (by claim name), which lead to a database: for wake-ups only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_domain: dict[str, set[Key]] = {}
        self.by_database: dict[Key, set[Key]] = {}
        self.of_mapping: dict[Key, tuple[str, Key]] = {}
        self.database_tokens: dict[Key, Any] = {}

    def record(self, key: Key, domain: str, database: Key) -> None:
        with self._lock:
            self._drop(key)
            self.of_mapping[key] = (domain, database)
            self.by_domain.setdefault(domain, set()).add(key)
            self.by_database.setdefault(database, set()).add(key)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: Key) -> None:
        old = self.of_mapping.pop(key, None)
        if old:
            self.by_domain.get(old[0], set()).discard(key)
            self.by_database.get(old[1], set()).discard(key)

    def forget_database(self, namespace: str, name: str) -> None:
        with self._lock:
            self.database_tokens.pop((namespace, name), None)

    def domains(self) -> list[str]:
        with self._lock:
            return list(self.by_domain)

    def for_domain(self, domain: str) -> list[Key]:
        with self._lock:
            return sorted(self.by_domain.get(domain, ()))

    def for_database(self, namespace: str, name: str, token: Any) -> list[Key]:
        """Mappings to wake for an event of this database; none when nothing they read changed."""
        with self._lock:
            if self.database_tokens.get((namespace, name)) == token:
                return []
            self.database_tokens[(namespace, name)] = token
            return sorted(self.by_database.get((namespace, name), ()))


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()  # this process's work began (kopf starts with the Registry)
        self.servers: dict[str, PostgresServer] = {}
        self.server_errors: dict[str, str] = {}
        self.children: dict[ChildKey, dict[str, Any]] = {}
        self.applied: dict[ChildKey, AppliedRecord] = {}
        self.wakers: dict[Key, Waker] = {}
        self.credentials: dict[Key, tuple[float, str, str]] = {}
        self.locks: dict[Key, threading.Lock] = {}
        self.tokens: dict[Key, Any] = {}
        # owner uids whose route of the other kind (Ingress vs HTTPRoute) was already looked for
        self.route_kinds_checked: set[str] = set()
        # OdooDatabase -> (digest of spec.users + spec.owner, time.monotonic()) of its last users sync
        self.users_synced: dict[Key, tuple[str, float]] = {}
        self.claims = ClaimBook()
        self.mappings = MappingIndex()
        # OdooDatabase -> (PostgresServer, database name) once its database exists; and those found missing
        # by their server's check (each woken once, when it goes missing)
        self.placements: dict[Key, tuple[str, str]] = {}
        self.missing: set[Key] = set()
        # PostgresServer -> its last measured usage; OdooDatabase -> (server, database) chosen by placement whose
        # database is not created yet (counted against the server's capacity meanwhile)
        self.usage: dict[str, ServerUsage] = {}
        self.reserved: dict[Key, tuple[str, str]] = {}
        self.placing = threading.Lock()  # one placement decision at a time: each sees the others' reservations
        # Objects read by name and kept a short while (a namespace's plan): key -> (time.monotonic(), value)
        self.recent: dict[Any, tuple[float, Any]] = {}
        # object -> the generation its loop's latest pass started from (while its loop runs)
        self.pass_generations: dict[Key, int] = {}
        # OdooDatabase -> its body while its loop runs: kopf's own view, kept current by the watch (no copy)
        self.databases: dict[Key, Mapping[str, Any]] = {}
        # Secrets read by name (never watched): (namespace, name) -> (read at, owner, owner's generation, trimmed)
        self.secrets: dict[Key, tuple[float, Key | None, int, dict[str, Any]]] = {}

    def changed_token(self, key: Key, token: Any) -> bool:
        """True when `token` differs from the last one seen for `key` (and remembers it)."""
        with self._lock:
            changed = self.tokens.get(key) != token
            self.tokens[key] = token
            return changed

    def created_since_start(self, timestamp: str | None) -> bool:
        """Whether an object of this creationTimestamp (whole seconds, rounded down) surely came after this
        process started, so that no earlier process can have acted on it."""
        return bool(timestamp) and parse_time(str(timestamp)).timestamp() > self.started

    def forget_tokens(self, *keys: Key) -> None:
        with self._lock:
            for key in keys:
                self.tokens.pop(key, None)

    def lock_for(self, key: Key) -> threading.Lock:
        """Serialises a reconcile and a deletion of the same object (threads cannot be cancelled)."""
        with self._lock:
            return self.locks.setdefault(key, threading.Lock())

    # ---- PostgresServers ------------------------------------------------------------------
    def record_server(self, body: Mapping[str, Any], deleted: bool) -> None:
        name = body["metadata"]["name"]
        with self._lock:
            if deleted:
                self.servers.pop(name, None)
                self.server_errors.pop(name, None)
                self.usage.pop(name, None)
                return
            try:
                self.servers[name] = parse_postgres_server(body)
                self.server_errors.pop(name, None)
            except SpecError as exc:
                self.servers.pop(name, None)
                self.server_errors[name] = str(exc)

    def all_servers(self) -> list[PostgresServer]:
        with self._lock:
            return list(self.servers.values())

    def server(self, name: str) -> PostgresServer | None:
        with self._lock:
            return self.servers.get(name)

    # ---- children ------------------------------------------------------------------------
    def record_child(self, kind: str, body: Mapping[str, Any], deleted: bool) -> Key | None:
        return self.observe_child(kind, body, deleted)[0]

    def observe_child(self, kind: str, body: Mapping[str, Any], deleted: bool) -> tuple[Key | None, bool]:
        """Remember a child as a watch event (or our own write) shows it; returns its owning OdooDatabase (if
        any) and whether anything its owner's pass reads changed (a deletion always does). A child seen for
        the first time is no change: its owner's pass created it (its watch event often arrives before the
        write's own answer), and at a start every loop makes a first pass anyway."""
        meta = body.get("metadata", {})
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            before = self.children.get(key)
            if deleted:
                self.children.pop(key, None)
                self.applied.pop(key, None)
                changed = True
            elif _rv(body) >= _rv(before or {}):
                kept = self.children[key] = _trim({"kind": kind, **body})
                changed = before is not None and _wake_token(kept) != _wake_token(before)
            else:
                changed = False  # older than what we know
        owner = (meta.get("labels") or {}).get(DATABASE_LABEL)
        if deleted and owner:
            self.forget_secrets((key[1], owner))  # deleted by hand? its Secrets may be gone too: read them again
        return ((key[1], owner) if owner else None), changed

    def child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self.children.get((kind, namespace, name))

    def needs_apply(self, key: ChildKey, digest: str) -> bool:
        with self._lock:
            record = self.applied.get(key)
            seen = self.children.get(key)
        if record is None or record.digest != digest or seen is None:
            return True
        generation = seen.get("metadata", {}).get("generation")
        if record.generation is not None:
            # Someone else changed the spec (drift): apply again.
            return generation is not None and int(generation) > record.generation
        return bool(seen.get("fingerprint") != record.fingerprint)

    def record_applied(self, key: ChildKey, digest: str, result: Mapping[str, Any]) -> None:
        generation = result.get("metadata", {}).get("generation")
        trimmed = _trim(result)
        with self._lock:
            self.applied[key] = AppliedRecord(digest, int(generation) if generation else None, trimmed["fingerprint"])
            if _rv(result) >= _rv(self.children.get(key, {})):
                self.children[key] = trimmed

    def forget_database(self, namespace: str, name: str) -> None:
        with self._lock:
            self.placements.pop((namespace, name), None)
            self.reserved.pop((namespace, name), None)
            self.missing.discard((namespace, name))
            self.locks.pop((namespace, name), None)
            self.users_synced.pop((namespace, name), None)
            self.databases.pop((namespace, name), None)
        self.forget_secrets((namespace, name))
        self.mappings.forget_database(namespace, name)
        with self._lock:
            owned = [key for key, obj in self.children.items()
                     if key[1] == namespace and (obj["metadata"].get("labels") or {}).get(DATABASE_LABEL) == name]
            for key in owned:
                self.children.pop(key, None)
                self.applied.pop(key, None)

    # ---- Secrets read by name ---------------------------------------------------------------------
    def known_secret(self, namespace: str, name: str, generation: int, max_age: float) -> dict[str, Any] | None:
        """A Secret as this process last read or wrote it, if that was less than `max_age` seconds ago and its
        owner's spec has not changed since (a user's edit of the owner is a reason to look again)."""
        with self._lock:
            entry = self.secrets.get((namespace, name))
        if entry is None or time.monotonic() - entry[0] >= max_age or entry[2] != generation:
            return None
        return entry[3]

    def remember_secret(self, body: Mapping[str, Any], generation: int) -> None:
        meta = body.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(DATABASE_LABEL)
        with self._lock:
            self.secrets[(meta.get("namespace", ""), meta.get("name", ""))] = (
                time.monotonic(), (meta.get("namespace", ""), owner) if owner else None, generation,
                _trim({"kind": "Secret", **body}))

    def forget_secrets(self, owner: Key) -> None:
        with self._lock:
            for key in [k for k, entry in self.secrets.items() if entry[1] == owner]:
                self.secrets.pop(key, None)

    # ---- short-lived reads ---------------------------------------------------------------------------
    def recently(self, key: Any, max_age: float) -> tuple[bool, Any]:
        """(found, value) of what was remembered under `key` less than `max_age` seconds ago."""
        with self._lock:
            entry = self.recent.get(key)
        if entry is None or time.monotonic() - entry[0] >= max_age:
            return False, None
        return True, entry[1]

    def remember(self, key: Any, value: Any) -> None:
        with self._lock:
            self.recent[key] = (time.monotonic(), value)

    # ---- OdooDatabases, as the watch shows them ---------------------------------------------------
    def show_database(self, key: Key, body: Mapping[str, Any] | None) -> None:
        """The live body of an OdooDatabase whose loop runs (None: its loop ended)."""
        with self._lock:
            if body is None:
                self.databases.pop(key, None)
            else:
                self.databases[key] = body

    def database(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of an OdooDatabase as the watch last showed it; None when no loop of it runs here."""
        with self._lock:
            body = self.databases.get((namespace, name))
        return None if body is None else copy.deepcopy({key: body[key] for key in body})

    # ---- drift: databases dropped behind the operator's back ---------------------------------
    def place(self, key: Key, server: str, database: str) -> None:
        with self._lock:
            self.placements[key] = (server, database)
            self.reserved.pop(key, None)

    def reserve(self, key: Key, server: str, database: str) -> None:
        """A placement decided, its database not created yet: counted on the server from now on."""
        with self._lock:
            self.reserved[key] = (server, database)

    def record_usage(self, server: str, usage: ServerUsage) -> None:
        with self._lock:
            self.usage[server] = usage

    def server_usage(self, server: str) -> ServerUsage | None:
        with self._lock:
            return self.usage.get(server)

    def measured_size(self, server: str, database: str) -> int | None:
        """A database's size as its server's last check measured it (None: not measured there yet)."""
        with self._lock:
            usage = self.usage.get(server)
            return None if usage is None else usage.sizes.get(database)

    def sizes_changed(self, server: str, sizes: Mapping[str, int]) -> list[Key]:
        """The OdooDatabases on `server` whose measured size differs from their status.sizeBytes enough to be
        written (size_changed): their passes are woken to write it, the others are left asleep."""
        with self._lock:
            keys = [(key, database) for key, (on, database) in self.placements.items()
                    if on == server and database in sizes]
            bodies = {key: self.databases.get(key) for key, _ in keys}
        changed = []
        for key, database in keys:
            body = bodies[key]
            if body is None:  # no loop (being deleted, or not started yet): its first pass measures it
                continue
            if size_changed((body.get("status") or {}).get("sizeBytes"), sizes[database]):
                changed.append(key)
        return changed

    def database_count(self, server: str) -> int | None:
        """The server's databases as last measured, plus those placed on it since that its check has not seen
        yet (created, or only reserved); None when it was never measured."""
        with self._lock:
            usage = self.usage.get(server)
            if usage is None:
                return None
            newer = {database for on, database in [*self.placements.values(), *self.reserved.values()]
                     if on == server and database not in usage.present}
            return usage.databases + len(newer)

    def newly_missing(self, server: str, present: set[str]) -> list[Key]:
        """The OdooDatabases placed on `server` whose database is not among `present` and was not already
        found missing (one wake-up each when it goes); those present again are no longer missing."""
        with self._lock:
            placed = {key: database for key, (on, database) in self.placements.items() if on == server}
            gone = {key for key, database in placed.items() if database not in present}
            self.missing -= set(placed) - gone
            new = sorted(gone - self.missing)
            self.missing |= gone
            return new

    # ---- wake-ups ------------------------------------------------------------------------
    def register(self, key: Key, waker: Waker) -> None:
        with self._lock:
            self.wakers[key] = waker

    def unregister(self, key: Key, waker: Waker) -> None:
        with self._lock:
            if self.wakers.get(key) is waker:
                del self.wakers[key]
                self.pass_generations.pop(key, None)

    def pass_started(self, key: Key, generation: int) -> None:
        with self._lock:
            self.pass_generations[key] = generation

    def pass_saw(self, key: Key, generation: int) -> bool:
        """Whether a pass of the object's loop already started from this generation (a wake is not needed)."""
        with self._lock:
            return self.pass_generations.get(key) == generation

    def wake(self, key: Key) -> None:
        with self._lock:
            waker = self.wakers.get(key)
        if waker:
            waker.wake()

    def wake_all(self) -> None:
        with self._lock:
            wakers = list(self.wakers.values())
        for waker in wakers:
            waker.wake()

    # ---- admin credentials cache ------------------------------------------------------------
    def cached_credentials(self, key: Key, ttl: float = 10.0) -> tuple[str, str] | None:
        with self._lock:
            entry = self.credentials.get(key)
        if entry and time.monotonic() - entry[0] < ttl:
            return entry[1], entry[2]
        return None

    def cache_credentials(self, key: Key, user: str, password: str) -> None:
        with self._lock:
            self.credentials[key] = (time.monotonic(), user, password)
