"""The loop engine, the same for every kind: the process Runtime (API client, thread pools, Registry),
one loop per object (reconcile in a thread, publish the status, sleep until woken, back off on transient
failures), status publishing with its Events, and draining the threads at shutdown.

Nothing here knows a kind: what a kind reconciles, which Events its transitions post and what its metrics
show come in as arguments from handlers.py. kopf registrations live in main.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import copy
import gc
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import kopf

from odoo_operator import API_VERSION, kube
from odoo_operator.api.conditions import get_condition, merge_conditions
from odoo_operator.api.labels import FINALIZER
from odoo_operator.config import Settings
from odoo_operator.controller.base import Context, Outcome
from odoo_operator.runtime import memory, metrics
from odoo_operator.runtime.registry import Registry, Waker

T = TypeVar("T")
Event = tuple[str, str, str]  # (type, reason, message)
# The Events a kind posts when its published status changes: (body, old status, new status, the reconciler's
# own Events) -> all Events to post, in order, before the Ready transition's. Without one: the reconciler's.
Transition = Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any], list[Event]], list[Event]]
# What the metrics record for an object once published: (body, its merged status).
Observe = Callable[[Mapping[str, Any], Mapping[str, Any]], None]
# Reasons retried with exponential back-off (1 s, 2 s, 4 s … up to RETRY_MAX_SECONDS).
TRANSIENT_REASONS = frozenset({"ServerUnavailable", "KubernetesError", "ServerCredentialsMissing"})
# Ready=False reasons that are steps of normal progress, never problems (no Event, whatever `warning` says).
PROGRESS_REASONS = frozenset({"Initializing", "Progressing"})


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


def event(body: Mapping[str, Any], type: str, reason: str, message: str) -> None:
    """An Event on the object (kopf posts it asynchronously; safe from worker threads)."""
    kopf.event(cast(Any, body), type=type, reason=reason, message=message[:1024])


class NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled configuration" annotation: no kind has creation, update or resume handlers (each
    loop compares its object with what it last published), so kopf's copy of every spec would cost one
    PATCH per object for nothing. A deletion is still seen by its deletionTimestamp."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def startup(settings: kopf.OperatorSettings) -> None:
    global _runtime
    memory.limit_arenas()  # before the thread pools below start their threads
    operator_settings = Settings.from_env()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="odoo.dbmanager.io")
    settings.persistence.diffbase_storage = NoDiffBase()
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # "Handler succeeded" for every child event
    settings.posting.level = logging.WARNING  # our own Events are explicit; kopf's only for problems
    settings.execution.max_workers = 8
    settings.watching.chunk_size = 500
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    api = kube.api_client(pool_size=operator_settings.max_concurrent_reconciles + 8)
    _runtime = Runtime(
        ctx=Context(kube=kube.Kube(api), settings=operator_settings, registry=Registry()),
        executor=ThreadPoolExecutor(max_workers=operator_settings.max_concurrent_reconciles,
                                    thread_name_prefix="reconcile"),
        publisher=ThreadPoolExecutor(max_workers=4, thread_name_prefix="publish"),
        handlers=settings.execution.executor,
    )
    memory.PROBES["registry"] = _registry_sizes
    memory.PROBES["kopf"] = _kopf_sizes
    if not operator_settings.leader_election:
        metrics.set_leader(True)  # with election, leader.py says so once the Lease is ours
    metrics.start_server(operator_settings.metrics_port, operator_settings.metrics_address)


def _registry_sizes() -> dict[str, int]:
    """Diagnostics (memory dumps): bytes held by each of the Registry's tables, and their lengths."""
    registry = runtime().ctx.registry
    seen: set[int] = set()
    sizes: dict[str, int] = {}
    for name, value in vars(registry).items():
        if isinstance(value, (dict, set)) and name != "databases":  # those are kopf's bodies (see kopf)
            sizes[f"{name} bytes"] = memory.deep_size(value, seen)
            sizes[f"{name} entries"] = len(value)
    for name in ("claims", "mappings"):
        sizes[f"{name} bytes"] = memory.deep_size(getattr(registry, name), seen)
    return sizes


def _kopf_sizes() -> dict[str, int]:
    """Diagnostics (memory dumps): kopf's per-object memories and the live bodies it keeps for daemons."""
    from kopf._core.reactor.inventory import ResourceMemories  # kopf 1.45's layout; a dump only

    sizes: collections.Counter[str] = collections.Counter()
    seen: set[int] = set()
    for holder in gc.get_objects():
        if not isinstance(holder, ResourceMemories):
            continue
        for item in holder._items.values():
            sizes["memories"] += 1
            live = item.daemons_memory.live_fresh_body
            raw = getattr(live, "_src", None)
            if isinstance(raw, Mapping):
                sizes["live bodies"] += 1
                sizes["live bodies bytes"] += memory.deep_size(raw, seen)
                sizes["of which managedFields bytes"] += memory.deep_size(
                    (raw.get("metadata") or {}).get("managedFields"), set())
                sizes["of which status bytes"] += memory.deep_size(raw.get("status"), set())
            sizes["memories bytes (without bodies)"] += memory.deep_size(item, seen)
    return dict(sizes)


def cleanup() -> None:
    trimming = _trimming
    if trimming is not None and not trimming.done():
        with contextlib.suppress(RuntimeError):  # its loop already closed
            trimming.get_loop().call_soon_threadsafe(trimming.cancel)
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


def copy_body(body: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy({key: body[key] for key in body})


async def _in_thread(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work in a thread pool, keeping kopf's context (Events need it)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, context.run, fn, *args)


async def object_loop(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, key: tuple[str, str],
                      reconcile: Callable[..., Outcome], kind: str, trust_own_status: bool, *,
                      transition: Transition | None = None, observe: Observe | None = None) -> None:
    """Reconcile, publish, then sleep until woken (a watch event on the object or its children),
    a retry (exponential back-off for transient failures) or the periodic resync.

    trust_own_status: we are the only writer of its status, so our last write is the truth (else read live).

    What it keeps while it sleeps (thousands sleep at once): kopf's live body (not a copy), the status it
    last published as compact JSON, and one task waiting for kopf's stop flag; the pass's copy of the body and
    its Outcome are gone with the pass, and the sleep itself is a timer, not a task."""
    rt = runtime()
    event_loop = asyncio.get_running_loop()
    metrics.watch_event_loop(event_loop)
    _start_trimming()
    waker = Waker(event_loop)
    rt.ctx.registry.register(key, waker)
    stop = asyncio.ensure_future(_wait_stopped(stopped))
    stop.add_done_callback(lambda _: waker.event.set())
    state = LoopState()
    try:
        while not stopped:
            waker.event.clear()
            delay = await _pass(body, logger, key, reconcile, kind, trust_own_status, transition, observe, state)
            if delay is None:
                return
            timer = event_loop.call_later(delay, waker.event.set)
            try:
                await waker.event.wait()
            finally:
                timer.cancel()
    finally:
        stop.cancel()
        rt.ctx.registry.unregister(key, waker)
        if body.metadata.get("deletionTimestamp") or (
                stopped.reason is not None and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED):
            # Gone, or going: its series go too. A delete handler still at work may report it again
            # (phase Deleting); the delete handler / the DELETED event forget it for good.
            metrics.forget(kind, body.metadata.namespace or "", body.metadata.name or "", gone=False)


@dataclass
class LoopState:
    """What one object's loop carries from a pass to the next."""
    failures: int = 0
    published: str | None = None  # the status our last pass published, as JSON (a fraction of the dicts' size)
    published_rv: int = 0  # the resourceVersion our last status write produced (or the one it was based on)


def _stop_event(stopped: kopf.DaemonStopped) -> asyncio.Event | None:
    """kopf's own asyncio.Event behind `stopped` (kopf 1.45: its setter's async_event), or None."""
    event = getattr(getattr(stopped, "_setter", None), "async_event", None)
    return event if isinstance(event, asyncio.Event) else None


async def _wait_stopped(stopped: kopf.DaemonStopped) -> None:
    """Until kopf stops the daemon. One task: `await stopped.wait()` would start a second one inside kopf."""
    event = _stop_event(stopped)
    if event is not None:
        await event.wait()
    else:
        await stopped.wait()


async def _pass(body: kopf.Body, logger: kopf.Logger, key: tuple[str, str], reconcile: Callable[..., Outcome],
                kind: str, trust_own_status: bool, transition: Transition | None, observe: Observe | None,
                state: LoopState) -> float | None:
    """One reconcile and publish; returns the seconds to sleep before the next (None: the object is being
    deleted, the loop ends). Its copy of the body and the Outcome are freed when it returns."""
    rt = runtime()
    snapshot = copy_body(body)
    if snapshot["metadata"].get("deletionTimestamp"):
        return None
    rt.ctx.registry.pass_started(key, int(snapshot["metadata"].get("generation") or 0))
    if state.published is not None and (trust_own_status or resource_version(snapshot) < state.published_rv):
        # Ours is the truth, or the watch has not yet brought our own last write: without this the
        # pass would see its previous status, write it again and post its Events twice.
        snapshot["status"] = json.loads(state.published)
    started = time.monotonic()
    outcome: Outcome | None
    try:
        outcome = await _in_thread(rt.executor, reconcile, snapshot, rt.ctx, body)
        published, state.published_rv = await _in_thread(rt.publisher, publish, snapshot, outcome, rt.ctx, kind,
                                                         transition, observe)
        state.published = json.dumps(published, separators=(",", ":"))
    except Exception as exc:  # never let one object's surprise stop its loop
        logger.exception(f"reconcile failed, retrying: {exc}")
        metrics.record_reconcile(kind, "error", type(exc).__name__, time.monotonic() - started)
        state.published = None
        state.failures += 1
        outcome = None
    if outcome is not None:
        metrics.record_reconcile(kind, *reconcile_result(outcome), time.monotonic() - started)
    if outcome is not None and outcome.ready.status == "False" and outcome.stalled.status == "False" \
            and outcome.reconciling.reason in TRANSIENT_REASONS:
        state.failures += 1
    elif outcome is not None:
        state.failures = 0
    delay = rt.ctx.settings.resync_seconds
    if outcome is not None and outcome.retry_after is not None:
        delay = outcome.retry_after
    if state.failures:
        delay = min(2.0 ** (state.failures - 1), rt.ctx.settings.retry_max_seconds)
    return delay


def resource_version(body: Mapping[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


_trimming: asyncio.Task[None] | None = None
TRIM_SECONDS = 60.0


def _start_trimming() -> None:
    """One task for the process: every minute, memory freed by the reconciles goes back to the system."""
    global _trimming
    if _trimming is None or _trimming.done():
        _trimming = asyncio.ensure_future(_trim_every(TRIM_SECONDS))


async def _trim_every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        await _in_thread(runtime().publisher, memory.trim)


def reconcile_result(outcome: Outcome) -> tuple[str, str | None]:
    """(result, reason) for the metrics: success, error (stalled: a human is needed) or transient."""
    if outcome.stalled.status == "True":
        return "error", outcome.stalled.reason
    if outcome.ready.status == "False" and outcome.reconciling.reason in TRANSIENT_REASONS:
        return "transient", outcome.reconciling.reason
    return "success", None


def whole_values(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that makes each field of `new` its whole value: inside an object field (e.g.
    status.upgrade, status.lastLogout) a key the new value no longer has is removed (null), instead of being
    kept by the merge. Fields `new` does not name are left as they are."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = whole_values(before, value) | {k: None for k in before if k not in value}
        else:
            patch[key] = value
    return patch


def publish(body: Mapping[str, Any], outcome: Outcome, ctx: Context, kind: str,
            transition: Transition | None = None, observe: Observe | None = None) -> tuple[dict[str, Any], int]:
    """Write the status (only when it changed) and post the Events of its transitions. Returns the status
    as it now is and the resourceVersion it is known at (the write's, or the body's when nothing changed)."""
    meta = body["metadata"]
    old = body.get("status") or {}
    generation = int(meta.get("generation") or 0)
    new: dict[str, Any] = dict(outcome.status)
    new["phase"] = outcome.phase
    new["observedGeneration"] = generation
    new["conditions"] = merge_conditions(old.get("conditions"), outcome.conditions(), generation)
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    merged = {**old, **new}
    rv = resource_version(body)
    if changed:
        written = ctx.kube.patch_status(API_VERSION, kind, meta["name"], meta["namespace"], whole_values(old, new))
        rv = resource_version(written or {}) or rv
        merged = dict((written or {}).get("status") or merged)
    events = transition(body, old, new, list(outcome.events)) if transition else outcome.events
    for type_, reason, message in events:
        event(body, type_, reason, message)
    _post_ready_transition(body, old, outcome)
    if observe is not None:
        observe(body, merged)
    else:
        metrics.observe(kind, body, merged)
    return merged, rv


def _post_ready_transition(body: Mapping[str, Any], old: Mapping[str, Any], outcome: Outcome) -> None:
    """An Event when Ready changes to True (or to another True reason, e.g. Suspended) and for every new
    problem (a Warning); none for progress steps (Initializing, Progressing, Duplicating…): the status
    shows those, and a burst of creations would post one Event per step and object."""
    before = get_condition(old, "Ready") or {}
    if (before.get("status"), before.get("reason"), old.get("phase")) == (
            outcome.ready.status, outcome.ready.reason, outcome.phase):
        return
    if outcome.ready.status == "True":
        event(body, "Normal", reason=outcome.ready.reason, message=outcome.ready.message or outcome.phase)
    elif outcome.warning and outcome.ready.reason not in PROGRESS_REASONS:
        event(body, "Warning", reason=outcome.ready.reason, message=outcome.ready.message)
