"""Converging one DomainMapping: claim the domain cluster-wide, then route it to the database.

The order is the safety argument. A mapping routes nothing before it holds the domain's
DomainClaim, a cluster-scoped object named after the domain: creating it is the API server's
atomic first-come-first-served decision, so two tenants racing for one domain cannot both win.
A mapping that loses reports Stalled/DomainConflict and removes any route it had. Deleting the
winner (see `delete`) deletes its claim, and the claim's DELETED event wakes the other claimants.

Here: the reconciler (`reconcile`: a base.Reconciler whose invalid spec unroutes and says InvalidDomain,
and which indexes the mapping before parsing it), the removal of a mapping's route (`unroute`) and its
deletion (`delete`). Not here: the typed DomainMapping (api/domains.py), the route it applies
(specs/routes.py), the claims (controller/claims.py), which mappings lead to which domain and
database (runtime/registry.MappingIndex), the kopf handlers (handlers.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odoo_operator import API_VERSION, dnscheck, failpoints, specs
from odoo_operator.api.conditions import Condition, get_condition, summary
from odoo_operator.api.domains import (
    DomainMapping,
    Holder,
    claim_name,
    mapping_request,
    parse_domain_claim,
    parse_domain_mapping,
)
from odoo_operator.api.labels import MAPPING_LABEL
from odoo_operator.api.model import SpecError, parse_odoo_database
from odoo_operator.controller import claims, plans
from odoo_operator.controller.base import (
    PHASE_FAILED,
    PHASE_PENDING,
    PHASE_READY,
    Context,
    NotReady,
    Outcome,
    Reconciler,
    apply_cached,
    remove_other_route_kind,
)
from odoo_operator.controller.odoodatabase import database_host

PHASE_CONFLICT = "Conflict"


def mapping_key(namespace: str, name: str) -> tuple[str, str]:
    """A mapping's key in the registry (loops, locks, wake-ups): apart from the databases' keys."""
    return namespace, f"domain/{name}"


def database_token(body: Mapping[str, Any] | None, deleted: bool) -> Any:
    """What a mapping reads of its database: a status write that changes none of it wakes nothing.
    Read from the raw object on purpose: a database whose spec fails to parse still has a token."""
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
    return MappingReconciler(body, ctx, live).run()


class MappingReconciler(Reconciler[DomainMapping]):
    noun = "domain mapping"

    def __init__(self, body: Mapping[str, Any], ctx: Context, live: Mapping[str, Any] | None = None) -> None:
        super().__init__(body, ctx, live)
        self.settings = ctx.settings
        self.name: str = body["metadata"]["name"]
        self.route_status: Mapping[str, Any] = {}

    @property
    def mapping(self) -> DomainMapping:
        return self.obj

    def run(self) -> Outcome:
        request = mapping_request(self.body)  # indexed before the parse: an invalid mapping is woken too
        self.ctx.registry.mappings.record(mapping_key(self.namespace, self.name), claim_name(request.domain),
                                          (self.namespace, request.database))
        return super().run()

    def parse(self) -> DomainMapping:
        return parse_domain_mapping(self.body, self.settings)

    def invalid(self, exc: SpecError) -> NotReady:
        self._unroute()
        return NotReady("InvalidDomain", str(exc), stalled=True, phase=PHASE_FAILED)

    def failed(self, exc: NotReady) -> Outcome:
        for key in ("url", "dnsRecord"):
            self.new_status.setdefault(key, None)
        self.new_status.setdefault("claim", self.status.get("claim"))
        return super().failed(exc)

    def converge(self) -> Outcome:
        mapping = self.mapping
        db_body = self.ctx.kube.get(API_VERSION, "OdooDatabase", mapping.database, mapping.namespace)
        if db_body is not None and db_body["metadata"].get("deletionTimestamp"):
            db_body = None
        db = None
        if db_body is not None:
            try:
                db = parse_odoo_database(db_body, self.settings)
            except SpecError as exc:
                self._unroute()
                raise NotReady("DatabaseInvalid", f"OdooDatabase {mapping.database!r} is invalid: {exc}",
                               warning=False) from None
        base = self.settings.base_domain
        own = claims.platform_host(db.database_name, base) if db else None
        if claims.inside_base_domain(mapping.domain, base) and \
                (mapping.domain != own or db is None or own != db.hostname):
            # Checked before claiming: a tenant never holds a name of the platform's (nor keeps one it
            # held before the base domain or its database's host changed). The database's own host
            # counts only while it is its <databaseName>.<base domain> (spec.hostname may not name another).
            self._unroute()
            claims.release(self.ctx, mapping.domain, mapping.uid)
            self.new_status["claim"] = None
            raise NotReady("InvalidDomain", f"{mapping.domain} is inside the platform's base domain "
                           f"{base}; only the database's own host"
                           + (f" {own}" if own else "") + " may be mapped there", stalled=True,
                           phase=PHASE_FAILED)
        plan = plans.plan_for(self.ctx, mapping.namespace)
        if plan is not None and not plan.custom_domains and mapping.domain != own:
            self._unroute()
            claims.release(self.ctx, mapping.domain, mapping.uid)
            self.new_status["claim"] = None
            raise NotReady("PlanLimit", f"{mapping.domain} is a domain of its own, which {plan.describe()} of "
                           f"namespace {mapping.namespace} does not allow (spec.customDomains: false)", stalled=True,
                           phase=PHASE_FAILED)
        self.new_status["claim"] = self._claim(mapping)
        if db is None or db_body is None:
            self._unroute()
            raise NotReady("DatabaseNotFound", f"OdooDatabase {mapping.database!r} does not exist in namespace "
                           f"{mapping.namespace}; the domain stays claimed and is routed once it exists",
                           warning=False)
        self.new_status["dnsRecord"] = {"type": "CNAME", "name": mapping.domain, "value": db.hostname}
        if mapping.secret_name:
            self._check_tls_secret(mapping)
        route = specs.routes.build_mapping_route(mapping, db, self.settings)
        failpoints.hit("domain-before-route", mapping.namespace)
        self._apply(route)
        remove_other_route_kind(self.ctx, route["kind"], route["metadata"]["name"], mapping.namespace,
                                MAPPING_LABEL, mapping.name, mapping.uid)
        scheme = "https" if mapping.tls else "http"
        self.new_status["url"] = f"{scheme}://{mapping.domain.replace('*.', 'www.', 1)}"
        details = [self._dns_condition(mapping, db.hostname)]
        if self.settings.gateway:
            details.append(self._route_accepted(route))
        refused = next((c for c in details if c.type == "RouteAccepted" and c.status == "False"), None)
        if refused:
            ready, reconciling, stalled = summary(
                "stalled", "RouteNotAccepted", f"Gateway {self.settings.gateway} refused the HTTPRoute "
                f"({refused.reason}: {refused.message}); the platform team must allow it on the Gateway")
            return Outcome(PHASE_FAILED, ready, reconciling, stalled, details=details, status=self.new_status,
                           events=self.events, warning=True)
        db_ready = (get_condition(db_body.get("status"), "Ready") or {}).get("status") == "True"
        if not db_ready:
            ready, reconciling, stalled = summary(
                "progressing", "DatabaseNotReady", f"routed to OdooDatabase {db.name!r}, which is not Ready yet")
            return Outcome(PHASE_PENDING, ready, reconciling, stalled, details=details, status=self.new_status,
                           events=self.events)
        suspended = db.app.suspended
        message = (f"{mapping.domain} routes to OdooDatabase {db.name!r}"
                   + (" (suspended: the app is scaled to 0, the route is kept)" if suspended else ""))
        ready, reconciling, stalled = summary("ready", "Suspended" if suspended else "Routed", message)
        return Outcome(PHASE_READY, ready, reconciling, stalled, details=details, status=self.new_status,
                       events=self.events, retry_after=self._dns_recheck())

    # ---- the claim ---------------------------------------------------------------------------
    def _claim(self, mapping: DomainMapping) -> str:
        """Hold the domain's DomainClaim or raise DomainConflict (see claims.py). A mapping of its
        database's own host shares the database's claim."""
        self._check_wildcard_parent(mapping)
        holder = Holder("DomainMapping", mapping.namespace, mapping.name, mapping.uid)

        def own_database(other: Holder) -> bool:
            return (other.kind, other.namespace, other.name) == ("OdooDatabase", mapping.namespace, mapping.database)

        try:
            if claims.acquire(self.ctx, mapping.domain, holder, self._host_of, also_ours=own_database):
                self.events.append(("Normal", "DomainClaimed", f"{mapping.domain} is now held by this mapping"))
        except claims.ClaimConflict:
            self._unroute()
            self.new_status["claim"] = None
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
                held = parse_domain_claim(claim)
                if held.domain.endswith(suffix) and held.domain.count(".") == mapping.domain.count(".") and \
                        held.holder.namespace != mapping.namespace and not self._claim_is_stale(claim):
                    raise NotReady("DomainConflict", f"a name under {mapping.domain} is already claimed by "
                                   "another namespace", stalled=True, phase=PHASE_CONFLICT)
            return
        parent = self.ctx.kube.get(API_VERSION, claims.KIND, claim_name("*." + mapping.domain.split(".", 1)[1]))
        if parent and parse_domain_claim(parent).holder.namespace != mapping.namespace and \
                not self._claim_is_stale(parent):
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

    def _unroute(self) -> None:
        unroute(self.ctx, self.name, self.namespace)

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
    kinds = [(specs.routes.INGRESS_API, "Ingress")]
    if ctx.settings.gateway:
        kinds.append((specs.routes.GATEWAY_API, "HTTPRoute"))
    route_name = specs.routes.mapping_route_name(name)
    for api_version, kind in kinds:
        if ctx.kube.delete_if_labelled(api_version, kind, route_name, namespace, MAPPING_LABEL, name):
            # Forget it now, not when its DELETED event comes: a re-route right after must apply again.
            ctx.registry.record_child(kind, {"metadata": {"namespace": namespace, "name": route_name}},
                                      deleted=True)


# ---- deletion ---------------------------------------------------------------------------------

def delete(body: Mapping[str, Any], ctx: Context) -> str:
    """Remove the route, release the claim if this mapping holds it; returns the Event message."""
    meta = body["metadata"]
    domain = mapping_request(body).domain
    unroute(ctx, meta["name"], meta["namespace"])
    ctx.registry.mappings.forget(mapping_key(meta["namespace"], meta["name"]))
    if domain and claims.release(ctx, domain, meta.get("uid", "")):
        return f"route removed; {domain} released"
    return "route removed"
