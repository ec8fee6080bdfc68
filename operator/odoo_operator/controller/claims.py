"""DomainClaims: one owner per host name in the whole cluster.

A claim is a cluster-scoped object named after the host ("*." becomes "wildcard."), created before
anything routes that host: the API server's create is the atomic first-come-first-served decision.
Holders are DomainMappings (custom domains) and OdooDatabases (their default host, or spec.hostname),
so a tenant can neither map nor name a host another tenant already serves. Tenants' roles do not
include claims; only the operator writes them. Names inside the platform's base domain are the
platform's: a database holds only its own <databaseName>.<base domain>, and a mapping only that
host of its own database. A holder that stops holding its host removes its route.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from odoo_operator import API_VERSION, failpoints
from odoo_operator.api.labels import MANAGED_BY
from odoo_operator.kube import Kube

KIND = "DomainClaim"
HOLDER_KINDS = ("DomainMapping", "OdooDatabase")


class ClaimConflict(Exception):
    """The host is held by someone else (who is never named: tenants must not learn of each other)."""


class ClaimRetry(Exception):
    """The claim changed hands several times while we looked: try again shortly."""


@dataclass(frozen=True)
class Holder:
    kind: str
    namespace: str
    name: str
    uid: str

    def ref(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name, "uid": self.uid}


def claim_name(domain: str) -> str:
    """A Kubernetes name may not hold "*": a wildcard's claim is "wildcard.<parent>". The claim's
    spec.domain is compared too, so a real host called "wildcard.…" is never confused with it."""
    return f"wildcard.{domain[2:]}" if domain.startswith("*.") else domain


def holder_of(claim: Mapping[str, Any]) -> Holder:
    ref = (claim.get("spec") or {}).get("mappingRef") or {}
    return Holder(str(ref.get("kind") or "DomainMapping"), str(ref.get("namespace") or ""),
                  str(ref.get("name") or ""), str(ref.get("uid") or ""))


# Claims this process created or confirmed, so a loop pass costs no request: (claim name, holder uid).
_held: set[tuple[str, str]] = set()
_lock = threading.Lock()


# Loops waiting for a claim held by someone else: claim name -> registry keys to wake on its release.
_waiting: dict[str, set[tuple[str, str]]] = {}


def waiters(name: str) -> list[tuple[str, str]]:
    """The loops to wake now that the claim `name` is gone (each is told once)."""
    with _lock:
        return sorted(_waiting.pop(name, set()))


def forget(name: str) -> None:
    """The claim was deleted (its DELETED event): the next pass looks again."""
    with _lock:
        for entry in [e for e in _held if e[0] == name]:
            _held.discard(entry)


def acquire(kube: Kube, domain: str, holder: Holder, host_of: Callable[[Mapping[str, Any]], str | None],
            also_ours: Callable[[Holder], bool] = lambda _: False, waiter: tuple[str, str] | None = None) -> bool:
    """Hold `domain` for `holder`. True when newly created (for an Event), False when already held.
    Raises ClaimConflict when a live claim of someone else holds it. `host_of` gives the host an
    OdooDatabase serves (to tell a stale claim of a renamed database); `also_ours` accepts a holder
    as if it were us (a mapping of a database's own host); `waiter` is woken when the claim goes."""
    name = claim_name(domain)
    with _lock:
        if (name, holder.uid) in _held:
            return False
    for _ in range(3):
        body = {"apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
                "spec": {"domain": domain, "mappingRef": holder.ref()}}
        if kube.create(body) is not None:
            failpoints.hit("claim-taken", holder.namespace)
            with _lock:
                _held.add((name, holder.uid))
            return True
        existing = kube.get(API_VERSION, KIND, name)
        if existing is None:
            continue  # released between our create and get: try again
        current = holder_of(existing)
        if (existing.get("spec") or {}).get("domain") == domain and current == holder:
            with _lock:
                _held.add((name, holder.uid))
            return False
        if (existing.get("spec") or {}).get("domain") == domain and also_ours(current):
            return False
        if not is_stale(kube, existing, host_of):
            if waiter is not None:
                with _lock:
                    _waiting.setdefault(name, set()).add(waiter)
            raise ClaimConflict(f"{domain} is already claimed by another object")
        delete(kube, existing)
        failpoints.hit("claim-stale-removed", holder.namespace)
    raise ClaimRetry(f"the claim on {domain} changed hands repeatedly")


def is_stale(kube: Kube, claim: Mapping[str, Any], host_of: Callable[[Mapping[str, Any]], str | None]) -> bool:
    """Stale means exactly: the holder is gone, was re-created (another uid), or asks for another host
    now (another spec.domain; a database whose host changed). Nothing else: a holder whose spec merely
    fails to parse (`host_of` gives None) keeps its claim, as its route may still serve the host."""
    holder = holder_of(claim)
    if holder.kind not in HOLDER_KINDS or not holder.namespace or not holder.name:
        return True  # no holder at all (only the operator writes claims, so never seen in practice)
    body = kube.get(API_VERSION, holder.kind, holder.name, holder.namespace)
    if body is None or body["metadata"].get("uid") != holder.uid:
        return True
    domain = (claim.get("spec") or {}).get("domain")
    if holder.kind == "DomainMapping":
        return bool((body.get("spec") or {}).get("domain") != domain)
    host = host_of(body)
    return host is not None and host != domain


def inside_base_domain(domain: str, base_domain: str) -> bool:
    """Whether `domain` (or the names a wildcard covers) lies in the platform's base domain."""
    bare = domain[2:] if domain.startswith("*.") else domain
    return bare == base_domain or bare.endswith(f".{base_domain}") or (
        domain.startswith("*.") and base_domain.endswith(f".{bare}"))


def platform_host(database_name: str, base_domain: str) -> str:
    """The one name of the base domain a database may hold: <databaseName>.<base domain> ("_" becomes
    "-", which a DNS label allows). The model's default host; a test keeps the two equal."""
    return f"{database_name.lower().replace('_', '-')}.{base_domain}"


def delete(kube: Kube, claim: Mapping[str, Any]) -> bool:
    meta = claim["metadata"]
    forget(meta["name"])
    return kube.delete(API_VERSION, KIND, meta["name"],
                       preconditions={"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]})


def release(kube: Kube, domain: str, holder_uid: str) -> bool:
    """Delete the claim on `domain` if `holder_uid` holds it; True when released."""
    claim = kube.get(API_VERSION, KIND, claim_name(domain))
    if claim is None or holder_of(claim).uid != holder_uid:
        return False
    return delete(kube, claim)
