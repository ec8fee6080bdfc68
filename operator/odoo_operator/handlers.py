"""What each kopf handler does. main.py only registers these functions."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import kopf
import kubernetes
import psycopg

from odoo_operator import API_VERSION, pg
from odoo_operator.api.conditions import get_condition, merge_conditions, summary
from odoo_operator.api.labels import BACKUP_LABEL, MAPPING_LABEL, TAG_LABEL_PREFIX
from odoo_operator.config import Settings
from odoo_operator.controller import databasebackup, odoodatabase, postgresserver
from odoo_operator.controller.base import Context, NotReady, Outcome
from odoo_operator.controller.domainmapping import mapping_key
from odoo_operator.kube import Kube
from odoo_operator.runtime import metrics
from odoo_operator.runtime.registry import Registry, Waker

T = TypeVar("T")
# Reasons retried with exponential back-off (1 s, 2 s, 4 s … up to RETRY_MAX_SECONDS).
TRANSIENT_REASONS = frozenset({"ServerUnavailable", "KubernetesError", "ServerCredentialsMissing"})


@dataclass
class Runtime:
    ctx: Context
    executor: ThreadPoolExecutor
    publisher: ThreadPoolExecutor  # status writes never queue behind reconciles
    handlers: Executor | None = None  # kopf's, for the sync handlers (deletes, server checks, events)

_runtime: Runtime | None = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator has not started")
    return _runtime


def load_kube_config() -> kubernetes.client.ApiClient:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    configuration = kubernetes.client.Configuration.get_default_copy()
    settings = Settings.from_env()
    configuration.connection_pool_maxsize = settings.max_concurrent_reconciles + 8
    return kubernetes.client.ApiClient(configuration)


def _event(body: Mapping[str, Any], type: str, reason: str, message: str) -> None:
    """An Event on the object (kopf posts it asynchronously; safe from worker threads)."""
    kopf.event(cast(Any, body), type=type, reason=reason, message=message[:1024])


def startup(settings: kopf.OperatorSettings) -> None:
    global _runtime
    operator_settings = Settings.from_env()
    settings.persistence.finalizer = "odoo.dbmanager.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="odoo.dbmanager.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="odoo.dbmanager.io", key="last-handled-configuration")
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # "Handler succeeded" for every child event
    settings.posting.level = logging.WARNING  # our own Events are explicit; kopf's only for problems
    settings.execution.max_workers = 8
    settings.watching.chunk_size = 500
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    _runtime = Runtime(
        ctx=Context(kube=Kube(load_kube_config()), settings=operator_settings, registry=Registry()),
        executor=ThreadPoolExecutor(max_workers=operator_settings.max_concurrent_reconciles,
                                    thread_name_prefix="reconcile"),
        publisher=ThreadPoolExecutor(max_workers=4, thread_name_prefix="publish"),
        handlers=settings.execution.executor,
    )
    if not operator_settings.leader_election:
        metrics.set_leader(True)  # with election, leader.py says so once the Lease is ours
    metrics.start_server(operator_settings.metrics_port, operator_settings.metrics_address)


def cleanup() -> None:
    if _runtime is not None:
        _runtime.executor.shutdown(wait=False, cancel_futures=True)
        _runtime.publisher.shutdown(wait=False, cancel_futures=True)


def drain(timeout: float) -> bool:
    """After kopf has stopped: wait until no reconcile, status write or sync handler still runs in a
    thread (they outlive kopf's tasks). False if one is still running after `timeout` seconds."""
    if _runtime is None:
        return True
    deadline = time.monotonic() + timeout
    for pool in (_runtime.executor, _runtime.publisher, _runtime.handlers):
        if pool is None:
            continue
        waiter = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True},
                                  name="drain", daemon=True)
        waiter.start()
        waiter.join(max(0.0, deadline - time.monotonic()))
        if waiter.is_alive():
            return False
    return True


# ---- OdooDatabase --------------------------------------------------------------------------

def copy_body(body: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy({key: body[key] for key in body})


async def _in_thread(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work in a thread pool, keeping kopf's context (Events need it)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, context.run, fn, *args)


async def database_loop(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger) -> None:
    """One loop per OdooDatabase. We are the only writer of its status: our last write is the truth."""
    key = (body.metadata.namespace or "", body.metadata.name or "")
    await object_loop(body, stopped, logger, key, odoodatabase.reconcile, "OdooDatabase", trust_own_status=True)


async def backup_loop(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger) -> None:
    """One loop per DatabaseBackup. Its Jobs write artifacts into its status too: read it live."""
    key = backup_key(body.metadata.namespace or "", body.metadata.name or "")
    await object_loop(body, stopped, logger, key, databasebackup.reconcile, "DatabaseBackup",
                      trust_own_status=False)


def backup_key(namespace: str, name: str) -> tuple[str, str]:
    return namespace, f"backup/{name}"


async def object_loop(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, key: tuple[str, str],
                      reconcile: Callable[..., Outcome], kind: str, trust_own_status: bool) -> None:
    """Reconcile, publish, then sleep until woken (a watch event on the object or its children),
    a retry (exponential back-off for transient failures) or the periodic resync."""
    rt = runtime()
    waker = Waker(asyncio.get_running_loop())
    rt.ctx.registry.register(key, waker)
    stop = asyncio.ensure_future(stopped.wait())
    failures = 0
    published: dict[str, Any] | None = None
    try:
        while not stopped:
            waker.event.clear()
            snapshot = copy_body(body)
            if snapshot["metadata"].get("deletionTimestamp"):
                return
            if published is not None and trust_own_status:
                snapshot["status"] = published
            started = time.monotonic()
            try:
                outcome = await _in_thread(rt.executor, reconcile, snapshot, rt.ctx, body)
                published = await _in_thread(rt.publisher, publish, snapshot, outcome, rt.ctx, kind)
            except Exception as exc:  # never let one object's surprise stop its loop
                logger.exception(f"reconcile failed, retrying: {exc}")
                metrics.record_reconcile(kind, "error", type(exc).__name__, time.monotonic() - started)
                published = None
                failures += 1
                outcome = None
            if outcome is not None:
                metrics.record_reconcile(kind, *reconcile_result(outcome), time.monotonic() - started)
            if outcome is not None and outcome.ready.status == "False" and outcome.stalled.status == "False" \
                    and outcome.reconciling.reason in TRANSIENT_REASONS:
                failures += 1
            elif outcome is not None:
                failures = 0
            delay = rt.ctx.settings.resync_seconds
            if outcome is not None and outcome.retry_after is not None:
                delay = outcome.retry_after
            if failures:
                delay = min(2.0 ** (failures - 1), rt.ctx.settings.retry_max_seconds)
            wake = asyncio.ensure_future(waker.event.wait())
            await asyncio.wait({wake, stop}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
    finally:
        stop.cancel()
        rt.ctx.registry.unregister(key, waker)
        if body.metadata.get("deletionTimestamp") or (
                stopped.reason is not None and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED):
            # Gone, or going: its series go too. A delete handler still at work may report it again
            # (phase Deleting); the delete handler / the DELETED event forget it for good.
            metrics.forget(kind, body.metadata.namespace or "", body.metadata.name or "", gone=False)


def reconcile_result(outcome: Outcome) -> tuple[str, str | None]:
    """(result, reason) for the metrics: success, error (stalled: a human is needed) or transient."""
    if outcome.stalled.status == "True":
        return "error", outcome.stalled.reason
    if outcome.ready.status == "False" and outcome.reconciling.reason in TRANSIENT_REASONS:
        return "transient", outcome.reconciling.reason
    return "success", None


def publish(body: Mapping[str, Any], outcome: Outcome, ctx: Context, kind: str = "OdooDatabase") -> dict[str, Any]:
    """Write the status (only when it changed) and post an Event on every transition."""
    meta = body["metadata"]
    old = body.get("status") or {}
    generation = int(meta.get("generation") or 0)
    new: dict[str, Any] = dict(outcome.status)
    new["phase"] = outcome.phase
    new["observedGeneration"] = generation
    new["conditions"] = merge_conditions(old.get("conditions"), outcome.conditions(), generation)
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    if changed:
        ctx.kube.patch_status(API_VERSION, kind, meta["name"], meta["namespace"], new)
    _post_transition_events(body, old, new, outcome)
    merged = {**old, **new}
    metrics.observe(kind, body, merged)
    return merged


def _post_transition_events(body: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any],
                            outcome: Outcome) -> None:
    if new.get("createdAt") and not old.get("createdAt"):
        _event(body, "Normal", reason="Created", message=f"PostgreSQL database {new.get('databaseName')!r} created "
                  f"on {new.get('server')}")
    if new.get("initializedAt") and not old.get("initializedAt") and body.get("kind") == "OdooDatabase":
        # Its daily backup waits for this moment: wake it instead of letting it poll.
        runtime().ctx.registry.wake(backup_key(body["metadata"]["namespace"], f"{body['metadata']['name']}-daily"))
        message = (f"initialised: {new['source']}" if new.get("source") else
                   f"Odoo's base module installed; admin password in Secret {body['metadata']['name']}-admin")
        _event(body, "Normal", reason="Initialized", message=message)
    for type_, reason, message in outcome.events:
        _event(body, type_, reason, message)
    if (get_condition(new, "Expiring") or {}).get("status") == "True" and \
            (get_condition(old, "Expiring") or {}).get("status") != "True":
        _event(body, "Warning", "ExpiringSoon", f"this database expires at {new.get('expiresAt')} and will then "
               "be deleted; remove spec.expiresAfter or raise it to keep it")
    before = get_condition(old, "Ready") or {}
    if (before.get("status"), before.get("reason"), old.get("phase")) == (
            outcome.ready.status, outcome.ready.reason, outcome.phase):
        return
    if outcome.ready.status == "False" and outcome.warning and outcome.ready.reason not in (
            "Initializing", "Progressing"):
        _event(body, "Warning", reason=outcome.ready.reason, message=outcome.ready.message)
    else:
        _event(body, "Normal", reason=outcome.ready.reason, message=outcome.ready.message or outcome.phase)


def on_database_event(body: kopf.Body, type: str | None) -> None:
    """Wake the object's loop when its spec or tags changed (our own status writes don't)."""
    if type == "DELETED":
        metrics.forget("OdooDatabase", body.metadata.namespace or "", body.metadata.name or "", body.metadata.uid)
    status = body.get("status") or {}
    labels = body.metadata.labels or {}
    tags = {f"{TAG_LABEL_PREFIX}{t}" for t in (body.get("spec") or {}).get("tags") or []}
    tag_labels = {k for k in labels if k.startswith(TAG_LABEL_PREFIX)}
    if (body.metadata.get("generation") != status.get("observedGeneration") or tags != tag_labels
            or body.metadata.get("deletionTimestamp")):
        runtime().ctx.registry.wake((body.metadata.namespace or "", body.metadata.name or ""))


def delete_database(body: kopf.Body, logger: kopf.Logger) -> None:
    rt = runtime()
    snapshot = copy_body(body)
    key = (snapshot["metadata"]["namespace"], snapshot["metadata"]["name"])
    try:
        with rt.ctx.registry.lock_for(key):  # waits for a reconcile still running in a thread
            result = odoodatabase.delete(snapshot, rt.ctx)
    except pg.PostgresUnavailable as exc:
        _event(snapshot, "Warning", reason="DeleteRetrying", message=f"PostgreSQL is unreachable: {exc}; retrying")
        raise kopf.TemporaryError(f"PostgreSQL is unreachable: {exc}", delay=10) from None
    except NotReady as exc:
        if exc.warning:
            _event(snapshot, "Warning", reason=exc.reason, message=f"cannot delete yet: {exc.message}")
        _report_deleting(snapshot, exc, rt.ctx)
        raise kopf.TemporaryError(exc.message, delay=exc.retry_after or 30) from None
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _event(snapshot, "Warning", reason="DeleteRetrying", message=f"PostgreSQL refused the drop: {message}")
        raise kopf.TemporaryError(message, delay=10) from None
    rt.ctx.registry.forget_database(snapshot["metadata"]["namespace"], snapshot["metadata"]["name"])
    metrics.forget("OdooDatabase", key[0], key[1], snapshot["metadata"].get("uid"))
    _event(snapshot, "Normal", reason="Deleted" if result.dropped else "Released", message=result.message)
    logger.info(result.message)


def _report_deleting(body: Mapping[str, Any], exc: NotReady, ctx: Context) -> None:
    """While a deletion waits (final backup running or failed), the status says why."""
    status = body.get("status") or {}
    generation = int(body["metadata"].get("generation") or 0)
    conditions = merge_conditions(status.get("conditions"), summary(
        "stalled" if exc.stalled else "progressing", exc.reason, exc.message), generation)
    metrics.observe("OdooDatabase", body, {**status, "phase": "Deleting", "conditions": conditions})
    if conditions != status.get("conditions"):
        ctx.kube.patch_status(API_VERSION, "OdooDatabase", body["metadata"]["name"], body["metadata"]["namespace"],
                              {"phase": "Deleting", "conditions": conditions})


# ---- children and servers ---------------------------------------------------------------------

def on_child_event(kind: str, body: kopf.Body, type: str | None) -> None:
    rt = runtime()
    owner = rt.ctx.registry.record_child(kind, body, deleted=type == "DELETED")
    if owner:
        rt.ctx.registry.wake(owner)
    labels = body.metadata.labels or {}
    if labels.get(BACKUP_LABEL):
        rt.ctx.registry.wake(backup_key(body.metadata.namespace or "", labels[BACKUP_LABEL]))
    if labels.get(MAPPING_LABEL):  # a DomainMapping's route, changed or deleted: its loop puts it back
        rt.ctx.registry.wake(mapping_key(body.metadata.namespace or "", labels[MAPPING_LABEL]))


def on_backup_event(body: kopf.Body, type: str | None) -> None:
    """Wake a backup's loop when its spec changed or one of its Jobs reported into its status."""
    status = body.get("status") or {}
    token = (body.metadata.get("generation"), status.get("lastSuccessfulTime"),
             (status.get("lastFailure") or {}).get("time"), body.metadata.get("deletionTimestamp"))
    key = backup_key(body.metadata.namespace or "", body.metadata.name or "")
    registry = runtime().ctx.registry
    owner = registry.record_child("DatabaseBackup", body, deleted=type == "DELETED")
    if type == "DELETED":
        metrics.forget("DatabaseBackup", body.metadata.namespace or "", body.metadata.name or "", body.metadata.uid)
    if registry.changed_token(key, token):
        registry.wake(key)
        if owner:
            registry.wake(owner)  # its OdooDatabase shows status.lastBackup


def on_server_event(body: kopf.Body, type: str | None) -> None:
    registry = runtime().ctx.registry
    before = registry.server(body.metadata.name or "")
    registry.record_server(body, deleted=type == "DELETED")
    if before != registry.server(body.metadata.name or ""):
        registry.wake_all()


def check_server(body: kopf.Body) -> None:
    rt = runtime()
    snapshot = copy_body(body)
    was_reachable = (snapshot.get("status") or {}).get("reachable")
    fields, conditions = postgresserver.check(snapshot, rt.ctx)
    generation = int(snapshot["metadata"].get("generation") or 0)
    fields["observedGeneration"] = generation
    fields["conditions"] = merge_conditions((snapshot.get("status") or {}).get("conditions"), conditions, generation)
    rt.ctx.kube.patch_status("odoo.dbmanager.io/v1alpha1", "PostgresServer", snapshot["metadata"]["name"], None,
                             fields)
    if fields.get("reachable") != was_reachable:
        ready = conditions[0]
        _event(snapshot, "Normal" if fields.get("reachable") else "Warning", reason=ready.reason, message=ready.message)
        if fields.get("reachable"):
            rt.ctx.registry.wake_all()  # databases waiting for this server retry now
