"""Prometheus metrics on /metrics (`ODOO_OPERATOR_METRICS_PORT`; 0 or unset: off).

Counters and the histogram are updated where reconciles happen (loop.object_loop). Per-object
series are not kept as mutable gauges: `observe` records what `publish` wrote for each object and a
collector turns that into series at scrape time, so forgetting a deleted object removes all of its
series at once, and counts per phase are always consistent with the per-object series.

Upgrades (status.upgrade, status.availableUpgrade, status.upgradeDeadline): the offer, the deadline and
the upgrade's state are per-object series as above. A finished upgrade (a production one in
status.upgrade, a test on a copy in status.upgrade.test) is observed once in the duration histogram and
the failure counter when `observe` first sees its finishedAt: per object, only a finish newer than the
last one accounted for counts, and a finish already there when this process first sees the object
counts only if it is not older than the moment this process became the leader (the previous leader
counted it). A for-testing duplicate (the `<name>-upgrade-test` copy) reports through its source's
status.upgrade.test, so its own status.upgrade is not exported.

Labels carry only kinds, namespaces, names, phases, condition types, reasons, Odoo versions and upgrade
states: nothing secret.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from odoo_operator.api.conditions import parse_rfc3339
from odoo_operator.api.model import DatabaseBackup, is_copy_for_testing

PREFIX = "odoo_operator_"
# Phases always exported (0 when empty) so that alerts and dashboards see a series.
DATABASE_PHASES = ("Pending", "Provisioning", "Ready", "Suspended", "Failed", "Deleting", "Expired")
CONDITIONS = ("Ready", "Reconciling", "Stalled", "Expiring")
# status.upgrade.state values that end a production upgrade, and status.upgrade.test.state values that end a test.
UPGRADE_RESULTS = {"Succeeded": "succeeded", "Failed": "failed"}
UPGRADE_KINDS = ("test", "production")
TOMBSTONE_SECONDS = 600.0

logger = logging.getLogger(__name__)
disable_created_metrics()  # no *_created series: they double every counter for nothing here
REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(f"{PREFIX}reconcile_total", "Reconciles by kind and result (success, error, transient).",
                     ["kind", "result"], registry=REGISTRY)
RECONCILE_ERRORS = Counter(f"{PREFIX}reconcile_errors_total", "Failed reconciles by kind and reason "
                           "(the Ready/Stalled reason, or the exception's class).", ["kind", "reason"],
                           registry=REGISTRY)
RECONCILE_DURATION = Histogram(f"{PREFIX}reconcile_duration_seconds", "Time spent in one reconcile, status write "
                               "included.", ["kind"], registry=REGISTRY,
                               buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
LEADER = Gauge(f"{PREFIX}leader", "1 while this process holds the leader Lease (always 1 without leader election).",
               registry=REGISTRY)
UPGRADE_DURATION = Histogram(f"{PREFIX}upgrade_duration_seconds", "Finished upgrades by kind (test: on a copy, "
                             "production) and result (succeeded, failed): status.upgrade(.test).durationSeconds, "
                             "observed once per finishedAt.", ["kind", "result"], registry=REGISTRY,
                             buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400))
UPGRADE_DOWNTIME = Histogram(f"{PREFIX}upgrade_downtime_seconds", "How long the app was down for a finished "
                             "production upgrade (status.upgrade.downtimeSeconds; a failed one includes its "
                             "rollback), observed once per finishedAt.", registry=REGISTRY,
                             buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800))
UPGRADE_FAILURES = Counter(f"{PREFIX}upgrade_failures_total", "Failed upgrades by kind (test, production), "
                           "counted once per finishedAt.", ["kind"], registry=REGISTRY)
for _kind in UPGRADE_KINDS:
    UPGRADE_FAILURES.labels(kind=_kind)  # 0 from the start, so that increase() sees the first failure
BUILD_INFO = Gauge(f"{PREFIX}build_info", "Always 1; the operator's version as a label.", ["version"],
                   registry=REGISTRY)


def _version() -> str:
    try:
        return metadata.version("odoo-db-operator")
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(version=_version()).set(1)


def parse_timestamp(value: Any) -> float | None:
    """RFC 3339 (`2024-01-02T03:04:05Z`, with or without fraction/offset) as Unix seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_rfc3339(value).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Finish:
    """One finished upgrade as status.upgrade (production) or status.upgrade.test (test) reports it."""
    kind: str  # test | production
    at: float  # finishedAt, Unix time
    result: str  # succeeded | failed
    duration: float | None
    downtime: float | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def upgrade_finishes(status: Mapping[str, Any]) -> list[Finish]:
    """The finished upgrades a status reports (at most one test and one production upgrade)."""
    upgrade = status.get("upgrade")
    if not isinstance(upgrade, Mapping):
        return []
    found = []
    test = upgrade.get("test")
    for kind, record in (("test", test if isinstance(test, Mapping) else {}), ("production", upgrade)):
        result = UPGRADE_RESULTS.get(str(record.get("state")))
        at = parse_timestamp(record.get("finishedAt"))
        if result is None or at is None:
            continue  # still running, rolling back (a failed production upgrade is Failed once rolled back), …
        duration = _number(record.get("durationSeconds"))
        started = parse_timestamp(record.get("startedAt"))
        if duration is None and started is not None and at >= started:
            duration = at - started
        found.append(Finish(kind, at, result, duration,
                            _number(record.get("downtimeSeconds")) if kind == "production" else None))
    return found


@dataclass(frozen=True, slots=True)
class ObjectState:
    """What the operator last published for one object, reduced to what the metrics need (one per object, for
    as long as it exists: slots, and its words shared with every other object's)."""
    kind: str
    namespace: str
    name: str
    uid: str
    phase: str
    conditions: Mapping[str, str] = field(default_factory=dict)  # type -> "True"/"False"/"Unknown"
    size_bytes: float | None = None
    last_backup: float | None = None
    expires_at: float | None = None
    # DatabaseBackup only
    database: str = ""
    schedule: str = ""
    suspended: bool = False
    last_success: float | None = None
    created: float | None = None
    # OdooDatabase upgrades
    version: str = ""
    available_upgrade: str = ""
    upgrade_deadline: float | None = None
    upgrade_state: str = ""
    # per kind (test, production): the newest finishedAt accounted for; and the production finish whose
    # downtime was (downtimeSeconds comes later, once the app serves again)
    finished: Mapping[str, float] = field(default_factory=dict)
    downtime_finished: float | None = None


class ObjectStore(Collector):
    """Per-object state, exported at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str, str], ObjectState] = {}
        self._tombstones: dict[str, float] = {}  # uid -> when forgotten (a late publish must not revive it)
        # A finish already there when an object is first seen counts if it is not older than this (whole
        # seconds, as RFC 3339 times are written); older ones were counted by the previous leader.
        self.leading_since = float(int(time.time()))

    def observe(self, kind: str, body: Mapping[str, Any], status: Mapping[str, Any],
                backup: DatabaseBackup | None = None) -> None:
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        conditions = {sys.intern(str(c.get("type"))): sys.intern(str(c.get("status")))
                      for c in status.get("conditions") or [] if c.get("type") in CONDITIONS}
        test_copy = kind == "OdooDatabase" and is_copy_for_testing(body)
        raw = status.get("upgrade")
        upgrade: Mapping[str, Any] = raw if isinstance(raw, Mapping) and not test_copy else {}
        state = ObjectState(
            kind=kind, namespace=sys.intern(str(meta.get("namespace") or "")), name=str(meta.get("name") or ""),
            uid=uid, phase=sys.intern(str(status.get("phase") or "Unknown")), conditions=conditions,
            size_bytes=float(status["sizeBytes"]) if isinstance(status.get("sizeBytes"), int | float) else None,
            last_backup=parse_timestamp(status.get("lastBackup")),
            expires_at=parse_timestamp(status.get("expiresAt")),
            database=backup.database if backup else "",
            schedule=backup.schedule or "" if backup else "",
            suspended=backup.suspend if backup else False,
            last_success=parse_timestamp(status.get("lastSuccessfulTime")),
            created=parse_timestamp(meta.get("creationTimestamp")),
            version=sys.intern(str(status.get("version") or "")),
            available_upgrade=sys.intern(str(status.get("availableUpgrade") or "")),
            upgrade_deadline=parse_timestamp(status.get("upgradeDeadline")),
            upgrade_state=str(upgrade.get("state") or ""),
        )
        finishes = upgrade_finishes({"upgrade": upgrade}) if kind == "OdooDatabase" else []
        with self._lock:
            if uid and uid in self._tombstones:
                return
            key = (kind, state.namespace, state.name)
            state, counted, downtime = self._account(self._objects.get(key), state, finishes)
            self._objects[key] = state
        for finish in counted:
            if finish.duration is not None:
                UPGRADE_DURATION.labels(kind=finish.kind, result=finish.result).observe(finish.duration)
            if finish.result == "failed":
                UPGRADE_FAILURES.labels(kind=finish.kind).inc()
        if downtime is not None:
            UPGRADE_DOWNTIME.observe(downtime)

    def _account(self, previous: ObjectState | None, state: ObjectState,
                 finishes: list[Finish]) -> tuple[ObjectState, list[Finish], float | None]:
        """The finishes not yet counted for this object, and a production downtime not yet observed (it is
        reported after its upgrade's finish, once the app serves again); `state` carries what is accounted for."""
        if previous is not None and previous.uid != state.uid:
            previous = None  # re-created under the same name
        done = dict(previous.finished) if previous else {}
        downtime_done = previous.downtime_finished if previous else None
        counted: list[Finish] = []
        downtime = None
        for finish in finishes:
            ours = previous is not None or finish.at >= self.leading_since
            last = done.get(finish.kind)
            if last is None or finish.at > last:
                done[finish.kind] = finish.at
                if ours:
                    counted.append(finish)
            if finish.kind == "production" and finish.downtime is not None and \
                    (downtime_done is None or finish.at > downtime_done):
                downtime_done = finish.at
                if ours:
                    downtime = finish.downtime
        return replace(state, finished=done, downtime_finished=downtime_done), counted, downtime

    def forget(self, kind: str, namespace: str, name: str, uid: str | None = None, gone: bool = True) -> None:
        """Drop an object's series. gone: it is deleted for good, so a publish still in flight is ignored."""
        with self._lock:
            state = self._objects.pop((kind, namespace, name), None)
            if not gone:
                return
            now = time.monotonic()
            for dead in {uid, state.uid if state else None} - {None, ""}:
                self._tombstones[str(dead)] = now
            for dead, when in list(self._tombstones.items()):
                if now - when > TOMBSTONE_SECONDS:
                    del self._tombstones[dead]

    def snapshot(self) -> list[ObjectState]:
        with self._lock:
            return list(self._objects.values())

    def clear(self) -> None:
        with self._lock:
            self._objects.clear()
            self._tombstones.clear()

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # series come and go with objects; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        objects = self.snapshot()
        yield from _phase_families(objects)
        condition = GaugeMetricFamily(f"{PREFIX}object_condition", "1 if the object's condition is True, else 0 "
                                      "(Ready, Reconciling, Stalled, Expiring).",
                                      labels=["kind", "namespace", "name", "condition"])
        for obj in objects:
            for type_, status in sorted(obj.conditions.items()):
                condition.add_metric([obj.kind, obj.namespace, obj.name, type_], 1.0 if status == "True" else 0.0)
        yield condition
        databases = [o for o in objects if o.kind == "OdooDatabase"]
        yield _per_object(databases, "database_size_bytes", "The database's size (status.sizeBytes).",
                          lambda o: o.size_bytes)
        yield _per_object(databases, "database_last_backup_timestamp_seconds", "When its daily backup last "
                          "succeeded (status.lastBackup), Unix time.", lambda o: o.last_backup)
        yield _per_object(databases, "database_expires_timestamp_seconds", "When a duplicate expires and is deleted "
                          "(status.expiresAt), Unix time.", lambda o: o.expires_at)
        yield from _upgrade_families(databases)
        expiring = GaugeMetricFamily(f"{PREFIX}duplicates_expiring", "Databases whose condition Expiring is True "
                                     "(deleted within a day).")
        expiring.add_metric([], float(sum(1 for o in databases if o.conditions.get("Expiring") == "True")))
        yield expiring
        backups = [o for o in objects if o.kind == "DatabaseBackup"]
        labels = ["namespace", "name", "database"]
        last_success = GaugeMetricFamily(f"{PREFIX}backup_last_success_timestamp_seconds", "When the "
                                         "DatabaseBackup last succeeded (status.lastSuccessfulTime), Unix time.",
                                         labels=labels)
        created = GaugeMetricFamily(f"{PREFIX}backup_created_timestamp_seconds", "When the DatabaseBackup was "
                                    "created, Unix time (for backups that never succeeded).", labels=labels)
        scheduled = GaugeMetricFamily(f"{PREFIX}backup_scheduled", "Scheduled DatabaseBackups: 1 active, "
                                      "0 suspended.", labels=[*labels, "schedule"])
        for obj in backups:
            values = [obj.namespace, obj.name, obj.database]
            if obj.last_success is not None:
                last_success.add_metric(values, obj.last_success)
            if obj.created is not None:
                created.add_metric(values, obj.created)
            if obj.schedule:
                scheduled.add_metric([*values, obj.schedule], 0.0 if obj.suspended else 1.0)
        yield last_success
        yield created
        yield scheduled


def _phase_families(objects: list[ObjectState]) -> Iterator[GaugeMetricFamily]:
    counts: dict[tuple[str, str], int] = {("OdooDatabase", phase): 0 for phase in DATABASE_PHASES}
    for obj in objects:
        counts[(obj.kind, obj.phase)] = counts.get((obj.kind, obj.phase), 0) + 1
    every = GaugeMetricFamily(f"{PREFIX}objects", "Objects by kind and phase, as last published.",
                              labels=["kind", "phase"])
    databases = GaugeMetricFamily(f"{PREFIX}databases", "OdooDatabases by phase.", labels=["phase"])
    mappings = GaugeMetricFamily(f"{PREFIX}domain_mappings", "DomainMappings by state (phase).", labels=["state"])
    for (kind, phase), count in sorted(counts.items()):
        every.add_metric([kind, phase], float(count))
        if kind == "OdooDatabase":
            databases.add_metric([phase], float(count))
        elif kind == "DomainMapping":
            mappings.add_metric([phase], float(count))
    yield every
    yield databases
    yield mappings


def _upgrade_families(databases: list[ObjectState]) -> Iterator[GaugeMetricFamily]:
    available = GaugeMetricFamily(f"{PREFIX}database_upgrade_available", "1 when a newer Odoo version is offered "
                                  "(status.availableUpgrade, as target; status.version as version).",
                                  labels=["namespace", "name", "version", "target"])
    state = GaugeMetricFamily(f"{PREFIX}database_upgrade_state", "1 for the state of the database's last upgrade "
                              "(status.upgrade.state: Testing, TestSucceeded, TestFailed, Upgrading, Succeeded, "
                              "Failed, RollingBack, RolledBack).", labels=["namespace", "name", "state"])
    for obj in databases:
        if obj.available_upgrade:
            available.add_metric([obj.namespace, obj.name, obj.version, obj.available_upgrade], 1.0)
        if obj.upgrade_state:
            state.add_metric([obj.namespace, obj.name, obj.upgrade_state], 1.0)
    yield available
    yield _per_object(databases, "database_upgrade_deadline_timestamp_seconds", "When the operator upgrades the "
                      "database by itself (status.upgradeDeadline), Unix time.", lambda o: o.upgrade_deadline)
    yield state


def _per_object(objects: list[ObjectState], name: str, documentation: str,
                value: Any) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}{name}", documentation, labels=["namespace", "name"])
    for obj in objects:
        got = value(obj)
        if got is not None:
            family.add_metric([obj.namespace, obj.name], float(got))
    return family


OBJECTS = ObjectStore()
REGISTRY.register(OBJECTS)


# ---- what the handlers call ---------------------------------------------------------------------

def record_reconcile(kind: str, result: str, reason: str | None, seconds: float) -> None:
    RECONCILES.labels(kind=kind, result=result).inc()
    RECONCILE_DURATION.labels(kind=kind).observe(seconds)
    if result != "success":
        RECONCILE_ERRORS.labels(kind=kind, reason=reason or "Unknown").inc()


def observe(kind: str, body: Mapping[str, Any], status: Mapping[str, Any],
            backup: DatabaseBackup | None = None) -> None:
    """Record what was published for an object; a DatabaseBackup's parsed spec adds its database and schedule."""
    OBJECTS.observe(kind, body, status, backup)


def forget(kind: str, namespace: str, name: str, uid: str | None = None, gone: bool = True) -> None:
    OBJECTS.forget(kind, namespace, name, uid, gone)


_leading = False


def set_leader(leader: bool) -> None:
    global _leading
    if leader and not _leading:
        OBJECTS.leading_since = float(int(time.time()))  # upgrades finished before were counted by the previous leader
    _leading = leader
    LEADER.set(1 if leader else 0)


class ProcessLoad(Collector):
    """The process's threads and its event loop's asyncio tasks, at scrape time: neither should grow but
    with the number of objects (one loop task per object), never with time."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        threads = GaugeMetricFamily(f"{PREFIX}threads", "Threads of the operator process.")
        threads.add_metric([], float(threading.active_count()))
        yield threads
        if self.loop is not None:
            tasks = GaugeMetricFamily(f"{PREFIX}asyncio_tasks", "Tasks of kopf's event loop (not done).")
            tasks.add_metric([], float(len(asyncio.all_tasks(self.loop))))
            yield tasks


PROCESS = ProcessLoad()
REGISTRY.register(PROCESS)


def watch_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The event loop whose tasks odoo_operator_asyncio_tasks counts (kopf's)."""
    PROCESS.loop = loop


# ---- the HTTP server -----------------------------------------------------------------------------

_server_lock = threading.Lock()
_server: Any = None


def start_server(port: int, address: str = "0.0.0.0") -> int | None:  # a Pod's metrics are scraped from outside
    """Serve REGISTRY on http://address:port/metrics in a daemon thread; idempotent. Returns the port."""
    global _server
    if not port:
        return None
    with _server_lock:
        if _server is None:
            _server, _ = start_http_server(port, addr=address, registry=REGISTRY)
            logger.info(f"metrics on http://{address}:{port}/metrics")
        return int(_server.server_port)


def render() -> bytes:
    return generate_latest(REGISTRY)
