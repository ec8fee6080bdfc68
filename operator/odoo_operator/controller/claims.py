"""DomainClaims: one owner per host name in the whole cluster.

A claim is a cluster-scoped object named after the host ("*." becomes "wildcard."), created before
anything routes that host: the API server's create is the atomic first-come-first-served decision.
Holders are DomainMappings (custom domains) and OdooDatabases (their default host, or spec.hostname),
so a tenant can neither map nor name a host another tenant already serves. Tenants' roles do not
include claims; only the operator writes them. Names inside the platform's base domain are the
platform's: a database holds only its own <databaseName>.<base domain>, and a mapping only that
host of its own database. A holder that stops holding its host removes its route.

Here: acquiring, releasing and the staleness rule. Not here: the claim's typed model (api/domains.py),
what this process remembers of claims (runtime/registry.ClaimBook, reached through the Context), the
routes (controller/domainmapping.py, controller/odoodatabase.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from odoo_operator import API_VERSION, failpoints
from odoo_operator.api.domains import HOLDER_KINDS, DomainClaim, Holder, claim_name, mapping_request, parse_domain_claim
from odoo_operator.api.labels import MANAGED_BY
from odoo_operator.controller.base import Context
from odoo_operator.kube import Kube
from odoo_operator.runtime.registry import ClaimBook, Key

KIND = "DomainClaim"


class ClaimConflict(Exception):
    """The host is held by someone else (who is never named: tenants must not learn of each other)."""


class ClaimRetry(Exception):
    """The claim changed hands several times while we looked: try again shortly."""


def gone(ctx: Context, name: str) -> list[Key]:
    """The claim `name` was deleted (its DELETED event): forget it, so the next pass looks again, and
    return the loops that waited for it (each is told once)."""
    ctx.registry.claims.forget(name)
    return ctx.registry.claims.waiters(name)


def _claim_body(domain: str, holder: Holder) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": claim_name(domain), "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
            "spec": {"domain": domain, "mappingRef": holder.ref()}}


def acquire(ctx: Context, domain: str, holder: Holder, host_of: Callable[[Mapping[str, Any]], str | None],
            also_ours: Callable[[Holder], bool] = lambda _: False, waiter: Key | None = None) -> bool:
    """Hold `domain` for `holder`. True when newly created (for an Event), False when already held.
    Raises ClaimConflict when a live claim of someone else holds it. `host_of` gives the host an
    OdooDatabase serves (to tell a stale claim of a renamed database); `also_ours` accepts a holder
    as if it were us (a mapping of a database's own host); `waiter` is woken when the claim goes."""
    kube, book = ctx.kube, ctx.registry.claims
    name = claim_name(domain)
    if book.holds(name, holder.uid):
        return False
    for _ in range(3):
        if kube.create(_claim_body(domain, holder)) is not None:
            failpoints.hit("claim-taken", holder.namespace)
            book.hold(name, holder.uid)
            return True
        body = kube.get(API_VERSION, KIND, name)
        if body is None:
            continue  # released between our create and get: try again
        existing = parse_domain_claim(body)
        if existing.domain == domain and existing.holder == holder:
            book.hold(name, holder.uid)
            return False
        if existing.domain == domain and also_ours(existing.holder):
            return False
        if not is_stale(kube, body, host_of):
            if waiter is not None:
                book.wait(name, waiter)
            raise ClaimConflict(f"{domain} is already claimed by another object")
        _delete(kube, book, existing)
        failpoints.hit("claim-stale-removed", holder.namespace)
    raise ClaimRetry(f"the claim on {domain} changed hands repeatedly")


def is_stale(kube: Kube, claim: Mapping[str, Any], host_of: Callable[[Mapping[str, Any]], str | None]) -> bool:
    """Stale means exactly: the holder is gone, was re-created (another uid), or asks for another host
    now (another spec.domain; a database whose host changed). Nothing else: a holder whose spec merely
    fails to parse (`host_of` gives None) keeps its claim, as its route may still serve the host."""
    parsed = parse_domain_claim(claim)
    holder = parsed.holder
    if holder.kind not in HOLDER_KINDS or not holder.namespace or not holder.name:
        return True  # no holder at all (only the operator writes claims, so never seen in practice)
    body = kube.get(API_VERSION, holder.kind, holder.name, holder.namespace)
    if body is None or body["metadata"].get("uid") != holder.uid:
        return True
    if holder.kind == "DomainMapping":
        return mapping_request(body).domain != parsed.domain
    host = host_of(body)
    return host is not None and host != parsed.domain


def inside_base_domain(domain: str, base_domain: str) -> bool:
    """Whether `domain` (or the names a wildcard covers) lies in the platform's base domain."""
    bare = domain[2:] if domain.startswith("*.") else domain
    return bare == base_domain or bare.endswith(f".{base_domain}") or (
        domain.startswith("*.") and base_domain.endswith(f".{bare}"))


def platform_host(database_name: str, base_domain: str) -> str:
    """The one name of the base domain a database may hold: <databaseName>.<base domain> ("_" becomes
    "-", which a DNS label allows). The model's default host; a test keeps the two equal."""
    return f"{database_name.lower().replace('_', '-')}.{base_domain}"


def _delete(kube: Kube, book: ClaimBook, claim: DomainClaim) -> bool:
    book.forget(claim.name)
    return kube.delete(API_VERSION, KIND, claim.name,
                       preconditions={"uid": claim.uid, "resourceVersion": claim.resource_version})


def release(ctx: Context, domain: str, holder_uid: str) -> bool:
    """Delete the claim on `domain` if `holder_uid` holds it; True when released."""
    kube, book = ctx.kube, ctx.registry.claims
    body = kube.get(API_VERSION, KIND, claim_name(domain))
    if body is None:
        return False
    claim = parse_domain_claim(body)
    if claim.holder.uid != holder_uid:
        return False
    return _delete(kube, book, claim)
