"""Converging one DomainMapping: claim the domain cluster-wide, then route it to the database.

The order is the safety argument. A mapping routes nothing before it holds the domain's
DomainClaim, a cluster-scoped object named after the domain: creating it is the API server's
atomic first-come-first-served decision, so two tenants racing for one domain cannot both win.
A mapping that loses reports Stalled/DomainConflict and removes any route it had. Deleting the
winner (see `delete`) deletes its claim, and the claim's DELETED event wakes the other claimants.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odoo_operator import API_VERSION, dnscheck, failpoints
from odoo_operator.api.conditions import Condition, get_condition, summary
from odoo_operator.api.labels import MANAGED_BY, MAPPING_LABEL
from odoo_operator.api.model import OdooDatabase, SpecError, check_object_name, parse_odoo_database
from odoo_operator.config import Settings
from odoo_operator.controller import claims
from odoo_operator.controller.base import (
    Context,
    NotReady,
    Outcome,
    apply_cached,
    failed_outcome,
    remove_other_route_kind,
)
from odoo_operator.controller.claims import claim_name, inside_base_domain
from odoo_operator.controller.odoodatabase import database_host
from odoo_operator.kube import KubeError
from odoo_operator.specs.app import httproute_spec, websocket_port

GATEWAY_API = "gateway.networking.k8s.io/v1"
PHASE_READY = "Ready"
PHASE_PENDING = "Pending"
PHASE_CONFLICT = "Conflict"
PHASE_FAILED = "Failed"

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DOMAIN_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})+$")


@dataclass(frozen=True)
class DomainMapping:
    namespace: str
    name: str
    uid: str
    domain: str
    database: str
    cluster_issuer: str | None
    secret_name: str | None

    @property
    def key(self) -> tuple[str, str]:
        return mapping_key(self.namespace, self.name)

    @property
    def wildcard(self) -> bool:
        return self.domain.startswith("*.")

    @property
    def route_name(self) -> str:
        return route_name(self.name)

    @property
    def tls(self) -> bool:
        return bool(self.cluster_issuer or self.secret_name)


def mapping_key(namespace: str, name: str) -> tuple[str, str]:
    return namespace, f"domain/{name}"


def route_name(mapping: str) -> str:
    return f"{mapping[:246]}-domain"


def check_domain(domain: Any, settings: Settings) -> str:
    """The domain as the schema should have let it through; re-checked here (never trust input)."""
    if not isinstance(domain, str) or not domain:
        raise SpecError("spec.domain is required")
    if len(domain) > 253 or not DOMAIN_RE.match(domain):
        raise SpecError(f"spec.domain {domain[:80]!r} is not a lower-case fully qualified domain name (RFC 1123), "
                        "e.g. shop.example.com")
    if domain.rsplit(".", 1)[-1].isdigit():
        raise SpecError(f"spec.domain {domain!r} looks like an IP address; map a DNS name")
    if domain.startswith("*.") and not settings.allow_wildcard_domains:
        raise SpecError(f"spec.domain {domain!r} is a wildcard; this operator does not serve wildcard domains "
                        "(operator setting ODOO_OPERATOR_ALLOW_WILDCARD_DOMAINS)")
    return domain


def parse_domain_mapping(body: Mapping[str, Any], settings: Settings) -> DomainMapping:
    meta = body["metadata"]
    spec = body.get("spec") or {}
    domain = check_domain(spec.get("domain"), settings)
    ref = spec.get("databaseRef") or {}
    database = ref.get("name")
    if not isinstance(database, str) or not database:
        raise SpecError("spec.databaseRef.name is required")
    check_object_name(meta.get("name"), "metadata.name", "short")
    check_object_name(database, "spec.databaseRef.name", "odoo")
    tls = spec.get("tls") or {}
    issuer, secret = tls.get("clusterIssuer"), tls.get("secretName")
    if issuer and secret:
        raise SpecError("spec.tls takes clusterIssuer or secretName, not both")
    for value, field_path in ((issuer, "spec.tls.clusterIssuer"), (secret, "spec.tls.secretName")):
        if value is not None:
            check_object_name(value, field_path)
    return DomainMapping(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""), domain=domain,
                         database=database, cluster_issuer=issuer or None, secret_name=secret or None)


# ---- who wants which domain, which database: wake-ups -------------------------------------

class Index:
    """Which mappings want a domain, which mappings lead to a database (for wake-ups only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_domain: dict[str, set[tuple[str, str]]] = {}
        self.by_database: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.of_mapping: dict[tuple[str, str], tuple[str, tuple[str, str]]] = {}
        self.database_tokens: dict[tuple[str, str], Any] = {}

    def record(self, key: tuple[str, str], domain: str, database: tuple[str, str]) -> None:
        with self._lock:
            self._drop(key)
            self.of_mapping[key] = (domain, database)
            self.by_domain.setdefault(domain, set()).add(key)
            self.by_database.setdefault(database, set()).add(key)

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        old = self.of_mapping.pop(key, None)
        if old:
            self.by_domain.get(old[0], set()).discard(key)
            self.by_database.get(old[1], set()).discard(key)

    def domains(self) -> list[str]:
        with self._lock:
            return list(self.by_domain)

    def for_domain(self, domain: str) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self.by_domain.get(domain, ()))

    def for_database(self, namespace: str, name: str, token: Any) -> list[tuple[str, str]]:
        """Mappings to wake for an event of this database; none when nothing they read changed."""
        with self._lock:
            if self.database_tokens.get((namespace, name)) == token:
                return []
            self.database_tokens[(namespace, name)] = token
            return sorted(self.by_database.get((namespace, name), ()))


INDEX = Index()


def database_token(body: Mapping[str, Any] | None, deleted: bool) -> Any:
    """What a mapping reads of its database: a status write that changes none of it wakes nothing."""
    if body is None or deleted:
        return None
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    ready = get_condition(status, "Ready") or {}
    app = spec.get("app") or {}
    return (body["metadata"].get("uid"), spec.get("databaseName"), spec.get("hostname"),
            app.get("suspended"), app.get("workers"), status.get("phase"), ready.get("status"),
            bool(body["metadata"].get("deletionTimestamp")))


# ---- the reconciler --------------------------------------------------------------------------

def reconcile(body: Mapping[str, Any], ctx: Context, live: Mapping[str, Any] | None = None) -> Outcome:
    return MappingReconciler(body, ctx).run()


class MappingReconciler:
    def __init__(self, body: Mapping[str, Any], ctx: Context) -> None:
        self.body = body
        self.ctx = ctx
        self.settings = ctx.settings
        self.meta = body["metadata"]
        self.events: list[tuple[str, str, str]] = []
        self.status: dict[str, Any] = {}
        self.route_status: Mapping[str, Any] = {}

    def run(self) -> Outcome:
        namespace, name = self.meta["namespace"], self.meta["name"]
        spec = self.body.get("spec") or {}
        INDEX.record(mapping_key(namespace, name), claim_name(str(spec.get("domain") or "")),
                     (namespace, str((spec.get("databaseRef") or {}).get("name") or "")))
        try:
            mapping = parse_domain_mapping(self.body, self.settings)
        except SpecError as exc:
            self._unroute(name, namespace)
            return self._failed(NotReady("InvalidDomain", str(exc), stalled=True, phase=PHASE_FAILED))
        try:
            return self._converge(mapping)
        except NotReady as exc:
            return self._failed(exc)
        except KubeError as exc:
            return self._failed(NotReady("KubernetesError", f"the Kubernetes API refused a request: {exc}",
                                         retry_after=5))

    def _failed(self, exc: NotReady) -> Outcome:
        for key in ("url", "dnsRecord"):
            self.status.setdefault(key, None)
        self.status.setdefault("claim", (self.body.get("status") or {}).get("claim"))
        return failed_outcome(exc, self.status, self.events)

    def _converge(self, mapping: DomainMapping) -> Outcome:
        db_body = self.ctx.kube.get(API_VERSION, "OdooDatabase", mapping.database, mapping.namespace)
        if db_body is not None and db_body["metadata"].get("deletionTimestamp"):
            db_body = None
        db = None
        if db_body is not None:
            try:
                db = parse_odoo_database(db_body, self.settings)
            except SpecError as exc:
                self._unroute(mapping.name, mapping.namespace)
                raise NotReady("DatabaseInvalid", f"OdooDatabase {mapping.database!r} is invalid: {exc}",
                               warning=False) from None
        base = self.settings.base_domain
        own = claims.platform_host(db.database_name, base) if db else None
        if inside_base_domain(mapping.domain, base) and (mapping.domain != own or db is None or own != db.hostname):
            # Checked before claiming: a tenant never holds a name of the platform's (nor keeps one it
            # held before the base domain or its database's host changed). The database's own host
            # counts only while it is its <databaseName>.<base domain> (spec.hostname may not name another).
            self._unroute(mapping.name, mapping.namespace)
            claims.release(self.ctx.kube, mapping.domain, mapping.uid)
            self.status["claim"] = None
            raise NotReady("InvalidDomain", f"{mapping.domain} is inside the platform's base domain "
                           f"{base}; only the database's own host"
                           + (f" {own}" if own else "") + " may be mapped there", stalled=True,
                           phase=PHASE_FAILED)
        self.status["claim"] = self._claim(mapping)
        if db is None or db_body is None:
            self._unroute(mapping.name, mapping.namespace)
            raise NotReady("DatabaseNotFound", f"OdooDatabase {mapping.database!r} does not exist in namespace "
                           f"{mapping.namespace}; the domain stays claimed and is routed once it exists",
                           warning=False)
        self.status["dnsRecord"] = {"type": "CNAME", "name": mapping.domain, "value": db.hostname}
        if mapping.secret_name:
            self._check_tls_secret(mapping)
        route = build_route(mapping, db, self.settings)
        failpoints.hit("domain-before-route", mapping.namespace)
        self._apply(route)
        remove_other_route_kind(self.ctx, route["kind"], mapping.route_name, mapping.namespace, MAPPING_LABEL,
                                mapping.name, mapping.uid)
        scheme = "https" if mapping.tls else "http"
        self.status["url"] = f"{scheme}://{mapping.domain.replace('*.', 'www.', 1)}"
        details = [self._dns_condition(mapping, db.hostname)]
        if self.settings.gateway:
            details.append(self._route_accepted(route))
        refused = next((c for c in details if c.type == "RouteAccepted" and c.status == "False"), None)
        if refused:
            ready, reconciling, stalled = summary(
                "stalled", "RouteNotAccepted", f"Gateway {self.settings.gateway} refused the HTTPRoute "
                f"({refused.reason}: {refused.message}); the platform team must allow it on the Gateway")
            return Outcome(PHASE_FAILED, ready, reconciling, stalled, details=details, status=self.status,
                           events=self.events, warning=True)
        db_ready = (get_condition(db_body.get("status"), "Ready") or {}).get("status") == "True"
        if not db_ready:
            ready, reconciling, stalled = summary(
                "progressing", "DatabaseNotReady", f"routed to OdooDatabase {db.name!r}, which is not Ready yet")
            return Outcome(PHASE_PENDING, ready, reconciling, stalled, details=details, status=self.status,
                           events=self.events)
        suspended = db.app.suspended
        message = (f"{mapping.domain} routes to OdooDatabase {db.name!r}"
                   + (" (suspended: the app is scaled to 0, the route is kept)" if suspended else ""))
        ready, reconciling, stalled = summary("ready", "Suspended" if suspended else "Routed", message)
        return Outcome(PHASE_READY, ready, reconciling, stalled, details=details, status=self.status,
                       events=self.events, retry_after=self._dns_recheck())

    # ---- the claim ---------------------------------------------------------------------------
    def _claim(self, mapping: DomainMapping) -> str:
        """Hold the domain's DomainClaim or raise DomainConflict (see claims.py). A mapping of its
        database's own host shares the database's claim."""
        self._check_wildcard_parent(mapping)
        holder = claims.Holder("DomainMapping", mapping.namespace, mapping.name, mapping.uid)

        def own_database(other: claims.Holder) -> bool:
            return (other.kind, other.namespace, other.name) == ("OdooDatabase", mapping.namespace, mapping.database)

        try:
            if claims.acquire(self.ctx.kube, mapping.domain, holder, self._host_of, also_ours=own_database):
                self.events.append(("Normal", "DomainClaimed", f"{mapping.domain} is now held by this mapping"))
        except claims.ClaimConflict:
            self._unroute(mapping.name, mapping.namespace)
            self.status["claim"] = None
            raise NotReady("DomainConflict", f"{mapping.domain} is already claimed by another object; the route "
                           "is created if that claim is released", stalled=True, phase=PHASE_CONFLICT) from None
        except claims.ClaimRetry as exc:
            raise NotReady("ClaimRetrying", f"{exc}; retrying", retry_after=2, warning=False) from None
        return claim_name(mapping.domain)

    def _host_of(self, body: Mapping[str, Any]) -> str | None:
        return database_host(body, self.settings)

    def _claim_is_stale(self, claim: Mapping[str, Any]) -> bool:
        return claims.is_stale(self.ctx.kube, claim, self._host_of)

    def _check_wildcard_parent(self, mapping: DomainMapping) -> None:
        """A wildcard held by another namespace covers its subdomains too (the exact host rule would
        otherwise win at the ingress and take its traffic), and the other way round."""
        if not self.settings.allow_wildcard_domains:
            return
        if mapping.wildcard:
            suffix = "." + mapping.domain[2:]
            for claim in self.ctx.kube.list(API_VERSION, claims.KIND):
                domain = str((claim.get("spec") or {}).get("domain") or "")
                if domain.endswith(suffix) and domain.count(".") == mapping.domain.count(".") and \
                        claims.holder_of(claim).namespace != mapping.namespace and not self._claim_is_stale(claim):
                    raise NotReady("DomainConflict", f"a name under {mapping.domain} is already claimed by "
                                   "another namespace", stalled=True, phase=PHASE_CONFLICT)
            return
        parent = self.ctx.kube.get(API_VERSION, claims.KIND, claim_name("*." + mapping.domain.split(".", 1)[1]))
        if parent and claims.holder_of(parent).namespace != mapping.namespace and not self._claim_is_stale(parent):
            raise NotReady("DomainConflict", f"{mapping.domain} is covered by a wildcard already claimed by "
                           "another DomainMapping", stalled=True, phase=PHASE_CONFLICT)

    # ---- the route -----------------------------------------------------------------------------
    def _check_tls_secret(self, mapping: DomainMapping) -> None:
        assert mapping.secret_name
        secret = self.ctx.kube.get("v1", "Secret", mapping.secret_name, mapping.namespace)
        if secret is None:
            raise NotReady("TLSSecretNotFound", f"Secret {mapping.secret_name!r} (spec.tls.secretName) does not exist "
                           f"in namespace {mapping.namespace}", stalled=True, retry_after=30)
        if secret.get("type") != "kubernetes.io/tls":
            raise NotReady("TLSSecretInvalid", f"Secret {mapping.secret_name!r} is of type {secret.get('type')!r}, "
                           "not kubernetes.io/tls", stalled=True, retry_after=30)

    def _apply(self, route: dict[str, Any]) -> None:
        kind, meta = route["kind"], route["metadata"]
        seen = self.ctx.registry.child(kind, meta["namespace"], meta["name"]) or \
            self.ctx.kube.get(route["apiVersion"], kind, meta["name"], meta["namespace"])  # not watched yet
        if seen is not None and (seen["metadata"].get("labels") or {}).get(MAPPING_LABEL) != meta["labels"][
                MAPPING_LABEL]:
            raise NotReady("RouteNameTaken", f"{kind} {meta['name']!r} exists and is not this mapping's; "
                           "rename or delete it", stalled=True, retry_after=60)
        self.route_status = apply_cached(self.ctx, route).get("status") or {}

    def _unroute(self, name: str, namespace: str) -> None:
        unroute(self.ctx, name, namespace)

    def _route_accepted(self, route: Mapping[str, Any]) -> Condition:
        for parent in self.route_status.get("parents") or []:
            accepted = get_condition(parent, "Accepted")
            if accepted and accepted.get("status") == "False":
                return Condition.false("RouteAccepted", str(accepted.get("reason") or "NotAccepted"),
                                       str(accepted.get("message") or "the Gateway refused the route"))
            if accepted and accepted.get("status") == "True":
                return Condition.true("RouteAccepted", "Accepted", f"accepted by Gateway {self.settings.gateway}")
        return Condition("RouteAccepted", "Unknown", "Pending", "no Gateway controller has reported on the route yet")

    # ---- DNS -------------------------------------------------------------------------------------
    def _dns_condition(self, mapping: DomainMapping, target: str) -> Condition:
        if not self.settings.dns_check or mapping.wildcard:
            return Condition("DNSConfigured", "Unknown", "NotChecked",
                             f"create a CNAME record {mapping.domain} -> {target}")
        result = dnscheck.check(mapping.domain, target, self.settings.dns_server)
        return Condition("DNSConfigured", result.status, result.reason, result.message)

    def _dns_recheck(self) -> float | None:
        return 300.0 if self.settings.dns_check else None


def unroute(ctx: Context, name: str, namespace: str) -> None:
    """Remove the mapping's route, whichever kind it was (the operator setting may have changed)."""
    kinds = [("networking.k8s.io/v1", "Ingress")]
    if ctx.settings.gateway:
        kinds.append((GATEWAY_API, "HTTPRoute"))
    for api_version, kind in kinds:
        if ctx.kube.delete_if_labelled(api_version, kind, route_name(name), namespace, MAPPING_LABEL, name):
            # Forget it now, not when its DELETED event comes: a re-route right after must apply again.
            ctx.registry.record_child(kind, {"metadata": {"namespace": namespace, "name": route_name(name)}},
                                      deleted=True)


def build_route(mapping: DomainMapping, db: OdooDatabase, settings: Settings) -> dict[str, Any]:
    """The mapped domain routed like the database's own host: /websocket to the port that serves it."""
    service = db.name
    websocket_name, websocket_number = websocket_port(db)
    meta: dict[str, Any] = {
        "name": mapping.route_name,
        "namespace": mapping.namespace,
        "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/component": "domain",
                   MAPPING_LABEL: mapping.name},
        "ownerReferences": [{"apiVersion": API_VERSION, "kind": "DomainMapping", "name": mapping.name,
                             "uid": mapping.uid, "controller": True, "blockOwnerDeletion": True}],
    }
    if settings.gateway:
        return {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": meta,
                "spec": httproute_spec(mapping.domain, service, settings, websocket_number)}
    spec: dict[str, Any] = {"rules": [{"host": mapping.domain, "http": {"paths": [
        _path("/websocket", service, websocket_name), _path("/", service, "http")]}}]}
    if settings.ingress_class:
        spec["ingressClassName"] = settings.ingress_class
    if mapping.cluster_issuer:
        meta["annotations"] = {"cert-manager.io/cluster-issuer": mapping.cluster_issuer}
        # One Secret (and so one Certificate) per domain: a failing certificate blocks no other domain.
        spec["tls"] = [{"hosts": [mapping.domain], "secretName": f"{mapping.route_name}-tls"}]
    elif mapping.secret_name:
        spec["tls"] = [{"hosts": [mapping.domain], "secretName": mapping.secret_name}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def _path(prefix: str, service: str, port: str) -> dict[str, Any]:
    return {"path": prefix, "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"name": port}}}}


# ---- deletion ---------------------------------------------------------------------------------

def delete(body: Mapping[str, Any], ctx: Context) -> str:
    """Remove the route, release the claim if this mapping holds it; returns the Event message."""
    meta = body["metadata"]
    domain = str((body.get("spec") or {}).get("domain") or "")
    unroute(ctx, meta["name"], meta["namespace"])
    INDEX.forget(mapping_key(meta["namespace"], meta["name"]))
    if domain and claims.release(ctx.kube, domain, meta.get("uid", "")):
        return f"route removed; {domain} released"
    return "route removed"
