"""The per-kind handlers main.py registers: what each kind's loop reconciles, which Events its status
transitions post, its deletion and the watch events that wake a loop (OdooDatabase, DatabaseBackup,
PostgresServer, DomainMapping, DomainClaim, the children). Each reads like a table of contents: parse, call
the controller, report.

Not here: the loop engine (runtime, thread pools, object_loop, publishing) is in loop.py; the reconciling
itself is in controller/; the state (which mapping leads where, which loop waits for which claim) in
runtime/registry.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
import psycopg

from odoo_operator import API_VERSION, loop, pg, specs
from odoo_operator.api import model
from odoo_operator.api.conditions import get_condition, merge_conditions, summary
from odoo_operator.api.domains import claim_name, mapping_request, parse_domain_claim
from odoo_operator.api.labels import BACKUP_LABEL, MAPPING_LABEL, TAG_LABEL_PREFIX
from odoo_operator.controller import (
    claims,
    databasebackup,
    domainmapping,
    odoodatabase,
    odoodatabase_sessions,
    odoodatabase_upgrade,
    postgresserver,
)
from odoo_operator.controller.base import Context, NotReady
from odoo_operator.controller.domainmapping import mapping_key
from odoo_operator.runtime import memory, metrics

# ---- OdooDatabase --------------------------------------------------------------------------


async def database_loop(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger) -> None:
    """One loop per OdooDatabase. We are the only writer of its status: our last write is the truth."""
    key = (body.metadata.namespace or "", body.metadata.name or "")
    registry = loop.runtime().ctx.registry
    registry.show_database(key, body)  # its backups read it from here
    try:
        await loop.object_loop(body, stopped, logger, key, odoodatabase.reconcile, "OdooDatabase",
                               trust_own_status=True, transition=database_transition)
    finally:
        registry.show_database(key, None)


def database_transition(body: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any],
                        events: list[loop.Event]) -> list[loop.Event]:
    """An OdooDatabase's Events for a published status change (around the reconciler's own); once it is
    initialised, its daily backup (which waits for that) is woken instead of polling."""
    before: list[loop.Event] = []
    after: list[loop.Event] = []
    if new.get("createdAt") and not old.get("createdAt"):
        before.append(("Normal", "Created", f"PostgreSQL database {new.get('databaseName')!r} created "
                       f"on {new.get('server')}"))
    if new.get("initializedAt") and not old.get("initializedAt"):
        before.append(("Normal", "Initialized", _initialized(body, new)))
    if (get_condition(new, "Expiring") or {}).get("status") == "True" and \
            (get_condition(old, "Expiring") or {}).get("status") != "True":
        after.append(("Warning", "ExpiringSoon", f"this database expires at {new.get('expiresAt')} and will then "
                      "be deleted; remove spec.expiresAfter or raise it to keep it"))
    return [*before, *events, *after]


def _initialized(body: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The Initialized Event's message; wakes its daily backup, which waits for this moment, instead of
    letting it poll."""
    rt = loop.runtime()
    try:
        db = model.parse_odoo_database(body, rt.ctx.settings)  # it parsed in this very reconcile
    except model.SpecError:
        return f"initialised: {new['source']}" if new.get("source") else "Odoo's base module installed"
    rt.ctx.registry.wake(backup_key(db.namespace, specs.backup.daily_backup_name(db)))
    if new.get("source"):
        return f"initialised: {new['source']}"
    return f"Odoo's base module installed; admin password in Secret {specs.app.admin_secret_name(db)}"


def slim_body(body: kopf.Body) -> None:
    """kopf keeps the last body of every object with a daemon (OdooDatabase, DatabaseBackup) for as long as it
    exists. Kept slim: without metadata.managedFields (a third of it; nothing here or in kopf reads them), and
    its keys and short words (condition types, reasons, phases, versions, times) shared with every other
    body's instead of one copy per body (half of the rest). Runs in the event loop, never in a thread; the
    top-level fields are replaced by their slim copies, never changed in place, so a thread copying the body
    meanwhile sees the one or the other whole."""
    raw = getattr(body, "_src", None)  # kopf 1.45: the raw dict of the watch event behind the view
    if not isinstance(raw, dict):
        return
    for field in ("metadata", "spec", "status"):
        value = raw.get(field)
        if isinstance(value, dict):
            raw[field] = memory.shared_words(
                {k: v for k, v in value.items() if k != "managedFields"} if field == "metadata" else value)


def on_database_event(body: kopf.Body, type: str | None) -> None:
    """Wake the object's loop when its spec or tags changed, or an annotation asks for a logout, a rollback or a
    new upgrade test (our own status writes don't, nor a generation a pass already started from, e.g. kopf
    adding its finalizer during the first pass)."""
    if type == "DELETED":
        metrics.forget("OdooDatabase", body.metadata.namespace or "", body.metadata.name or "", body.metadata.uid)
    rt = loop.runtime()
    status = body.get("status") or {}
    try:
        tags_changed = set(model.parse_odoo_database(body, rt.ctx.settings).tag_labels) != {
            label for label in body.metadata.labels or {} if label.startswith(TAG_LABEL_PREFIX)}
    except model.SpecError:  # an invalid spec gets no tag labels; a spec change still wakes by generation
        tags_changed = False
    key = (body.metadata.namespace or "", body.metadata.name or "")
    generation = body.metadata.get("generation")
    unseen = generation != status.get("observedGeneration") and not rt.ctx.registry.pass_saw(key, int(generation or 0))
    if (unseen or tags_changed or body.metadata.get("deletionTimestamp")
            or odoodatabase_sessions.logout_requested(body) or odoodatabase_upgrade.request_pending(body)):
        rt.ctx.registry.wake(key)


def delete_database(body: kopf.Body, logger: kopf.Logger) -> None:
    rt = loop.runtime()
    snapshot = loop.copy_body(body)
    key = (snapshot["metadata"]["namespace"], snapshot["metadata"]["name"])
    try:
        with rt.ctx.registry.lock_for(key):  # waits for a reconcile still running in a thread
            result = odoodatabase.delete(snapshot, rt.ctx)
    except pg.PostgresUnavailable as exc:
        loop.event(snapshot, "Warning", reason="DeleteRetrying", message=f"PostgreSQL is unreachable: {exc}; retrying")
        raise kopf.TemporaryError(f"PostgreSQL is unreachable: {exc}", delay=10) from None
    except NotReady as exc:
        if exc.warning:
            loop.event(snapshot, "Warning", reason=exc.reason, message=f"cannot delete yet: {exc.message}")
        _report_deleting(snapshot, exc, rt.ctx)
        raise kopf.TemporaryError(exc.message, delay=exc.retry_after or 30) from None
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        loop.event(snapshot, "Warning", reason="DeleteRetrying", message=f"PostgreSQL refused the drop: {message}")
        raise kopf.TemporaryError(message, delay=10) from None
    rt.ctx.registry.forget_database(snapshot["metadata"]["namespace"], snapshot["metadata"]["name"])
    metrics.forget("OdooDatabase", key[0], key[1], snapshot["metadata"].get("uid"))
    loop.event(snapshot, "Normal", reason="Deleted" if result.dropped else "Released", message=result.message)
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


# ---- DatabaseBackup --------------------------------------------------------------------------


async def backup_loop(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger) -> None:
    """One loop per DatabaseBackup. Its Jobs write artifacts into its status too: read it live."""
    key = backup_key(body.metadata.namespace or "", body.metadata.name or "")
    await loop.object_loop(body, stopped, logger, key, databasebackup.reconcile, "DatabaseBackup",
                           trust_own_status=False, observe=observe_backup)


def backup_key(namespace: str, name: str) -> tuple[str, str]:
    return namespace, f"backup/{name}"


def observe_backup(body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    """Its metrics show the database and schedule it backs up (none while its spec is invalid)."""
    try:
        backup: model.DatabaseBackup | None = model.parse_database_backup(body, loop.runtime().ctx.settings)
    except model.SpecError:
        backup = None
    metrics.observe("DatabaseBackup", body, status, backup)


def on_backup_event(body: kopf.Body, type: str | None) -> None:
    """Wake a backup's loop when its spec changed or one of its Jobs reported into its status."""
    status = body.get("status") or {}
    token = (body.metadata.get("generation"), status.get("lastSuccessfulTime"),
             (status.get("lastFailure") or {}).get("time"), body.metadata.get("deletionTimestamp"))
    key = backup_key(body.metadata.namespace or "", body.metadata.name or "")
    registry = loop.runtime().ctx.registry
    owner = registry.record_child("DatabaseBackup", slim_child(body), deleted=type == "DELETED")
    last_backup = (key[0], f"last-backup/{key[1]}")
    if type == "DELETED":  # nothing is kept per backup once it is gone; its database looks again
        metrics.forget("DatabaseBackup", body.metadata.namespace or "", body.metadata.name or "", body.metadata.uid)
        registry.forget_tokens(key, last_backup)
        if owner:
            registry.wake(owner)
        return
    if registry.changed_token(key, token):
        registry.wake(key)
    if owner and registry.changed_token(last_backup, status.get("lastSuccessfulTime")):
        registry.wake(owner)  # its OdooDatabase shows status.lastBackup (nothing else of it)


# ---- children and servers ---------------------------------------------------------------------

def slim_child(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the Registry is handed of a child's watch event (it keeps parts of it, e.g. labels and status, for
    as long as the child exists): the event's own fields, but its metadata (without managedFields) and status
    as copies whose keys and short words are shared with every other child's."""
    slim = {key: body[key] for key in body}
    meta = slim.get("metadata")
    if isinstance(meta, Mapping):
        slim["metadata"] = memory.shared_words({k: v for k, v in meta.items() if k != "managedFields"})
    if isinstance(slim.get("status"), Mapping):
        slim["status"] = memory.shared_words(dict(slim["status"]))
    return slim


def on_child_event(kind: str, body: kopf.Body, type: str | None) -> None:
    """Wake the loops a child belongs to, when something they read of it changed (not for every progress
    write of the controllers and the kubelet: a PVC being bound, a Job's Pod counts)."""
    rt = loop.runtime()
    owner, changed = rt.ctx.registry.observe_child(kind, slim_child(body), deleted=type == "DELETED")
    if not changed:
        return
    labels = body.metadata.labels or {}
    if labels.get(BACKUP_LABEL):  # a DatabaseBackup's CronJob or Job: its loop, not its database's, reads it
        rt.ctx.registry.wake(backup_key(body.metadata.namespace or "", labels[BACKUP_LABEL]))
    elif owner:
        rt.ctx.registry.wake(owner)
    if labels.get(MAPPING_LABEL):  # a DomainMapping's route, changed or deleted: its loop puts it back
        rt.ctx.registry.wake(mapping_key(body.metadata.namespace or "", labels[MAPPING_LABEL]))


def on_server_event(body: kopf.Body, type: str | None) -> None:
    registry = loop.runtime().ctx.registry
    before = registry.server(body.metadata.name or "")
    registry.record_server(body, deleted=type == "DELETED")
    if before != registry.server(body.metadata.name or ""):
        registry.wake_all()


def check_server(body: kopf.Body) -> None:
    rt = loop.runtime()
    snapshot = loop.copy_body(body)
    was_reachable = (snapshot.get("status") or {}).get("reachable")
    fields, conditions = postgresserver.check(snapshot, rt.ctx)
    generation = int(snapshot["metadata"].get("generation") or 0)
    fields["observedGeneration"] = generation
    fields["conditions"] = merge_conditions((snapshot.get("status") or {}).get("conditions"), conditions, generation)
    rt.ctx.kube.patch_status(API_VERSION, "PostgresServer", snapshot["metadata"]["name"], None, fields)
    if fields.get("reachable") != was_reachable:
        ready = conditions[0]
        loop.event(snapshot, "Normal" if fields.get("reachable") else "Warning", reason=ready.reason,
                   message=ready.message)
        if fields.get("reachable"):
            rt.ctx.registry.wake_all()  # databases waiting for this server retry now


# ---- DomainMapping and DomainClaim ----------------------------------------------------------


async def mapping_loop(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger) -> None:
    key = mapping_key(body.metadata.namespace or "", body.metadata.name or "")
    await loop.object_loop(body, stopped, logger, key, domainmapping.reconcile, "DomainMapping",
                           trust_own_status=True)


def on_mapping_event(body: kopf.Body, type: str | None) -> None:
    registry = loop.runtime().ctx.registry
    status = body.get("status") or {}
    if body.metadata.get("generation") != status.get("observedGeneration") or body.metadata.get("deletionTimestamp"):
        registry.wake(mapping_key(body.metadata.namespace or "", body.metadata.name or ""))
    if type == "DELETED":
        # A mapping gone without its release (finalizer removed by hand): the others may take over.
        for key in registry.mappings.for_domain(claim_name(mapping_request(body).domain)):
            registry.wake(key)


def delete_mapping(body: kopf.Body, logger: kopf.Logger) -> None:
    rt = loop.runtime()
    snapshot = loop.copy_body(body)
    key = mapping_key(body.metadata.namespace or "", body.metadata.name or "")
    with rt.ctx.registry.lock_for(key):  # a reconcile still running in a thread finishes first
        message = domainmapping.delete(snapshot, rt.ctx)
    rt.ctx.registry.locks.pop(key, None)
    metrics.forget("DomainMapping", body.metadata.namespace or "", body.metadata.name or "", body.metadata.uid)
    kopf.event(body, type="Normal", reason="Released", message=message)
    logger.info(message)


def on_claim_event(body: kopf.Body, type: str | None) -> None:
    """A released claim wakes every mapping waiting for that domain (or its wildcard's children)."""
    if type != "DELETED":
        return
    ctx = loop.runtime().ctx
    registry = ctx.registry
    name = body.metadata.name or ""
    waiting = claims.gone(ctx, name)  # databases waiting for that host
    holder = parse_domain_claim(body).holder
    if holder.kind == "OdooDatabase":  # deleted by hand: its database claims its host again
        registry.wake((holder.namespace, holder.name))
    for key in waiting:
        registry.wake(key)
    index = registry.mappings
    keys = set(index.for_domain(name))
    if name.startswith("wildcard."):
        suffix = name[len("wildcard"):]
        keys.update(k for domain in index.domains() if domain.endswith(suffix) for k in index.for_domain(domain))
    for key in keys:
        registry.wake(key)


def wake_mappings_of_database(body: kopf.Body, type: str | None) -> None:
    """An OdooDatabase changed: the mappings leading to it look again."""
    token = domainmapping.database_token(body, deleted=type == "DELETED")
    registry = loop.runtime().ctx.registry
    for key in registry.mappings.for_database(body.metadata.namespace or "", body.metadata.name or "", token):
        registry.wake(key)
