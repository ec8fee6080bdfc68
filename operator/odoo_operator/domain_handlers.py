"""kopf-facing glue for DomainMapping (main.py registers these): its loop, deletion and wake-ups."""

from __future__ import annotations

import kopf

from odoo_operator import handlers
from odoo_operator.controller import claims, domainmapping
from odoo_operator.controller.domainmapping import INDEX, claim_name, mapping_key
from odoo_operator.runtime import metrics


async def mapping_loop(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger) -> None:
    key = mapping_key(body.metadata.namespace or "", body.metadata.name or "")
    await handlers.object_loop(body, stopped, logger, key, domainmapping.reconcile, "DomainMapping",
                               trust_own_status=True)


def on_mapping_event(body: kopf.Body, type: str | None) -> None:
    registry = handlers.runtime().ctx.registry
    status = body.get("status") or {}
    if body.metadata.get("generation") != status.get("observedGeneration") or body.metadata.get("deletionTimestamp"):
        registry.wake(mapping_key(body.metadata.namespace or "", body.metadata.name or ""))
    if type == "DELETED":
        # A mapping gone without its release (finalizer removed by hand): the others may take over.
        for key in INDEX.for_domain(claim_name(str((body.get("spec") or {}).get("domain") or ""))):
            registry.wake(key)


def delete_mapping(body: kopf.Body, logger: kopf.Logger) -> None:
    rt = handlers.runtime()
    snapshot = handlers.copy_body(body)
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
    registry = handlers.runtime().ctx.registry
    name = body.metadata.name or ""
    claims.forget(name)
    holder = claims.holder_of(body)
    if holder.kind == "OdooDatabase":  # deleted by hand: its database claims its host again
        registry.wake((holder.namespace, holder.name))
    for key in claims.waiters(name):  # databases waiting for that host
        registry.wake(key)
    keys = set(INDEX.for_domain(name))
    if name.startswith("wildcard."):
        suffix = name[len("wildcard"):]
        keys.update(k for domain in INDEX.domains() if domain.endswith(suffix) for k in INDEX.for_domain(domain))
    for key in keys:
        registry.wake(key)


def on_database_event(body: kopf.Body, type: str | None) -> None:
    token = domainmapping.database_token(body, deleted=type == "DELETED")
    registry = handlers.runtime().ctx.registry
    for key in INDEX.for_database(body.metadata.namespace or "", body.metadata.name or "", token):
        registry.wake(key)
