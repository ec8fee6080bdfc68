"""The DomainMapping reconciler step by step over a fake API server (tests/fakes.py): the DomainClaim it
takes, the route it applies (or removes), and the status it returns when the database is missing, the
domain is someone else's, the route is in place, or DNS is not yet set up. Entry points:
domainmapping.reconcile(body, ctx, live) and domainmapping.delete(body, ctx)."""

from __future__ import annotations

from typing import Any

import pytest

from fakes import NAMESPACE, World, condition, database_body, mapping_body, new_uid, ready_condition
from odoo_operator import API_VERSION, dnscheck
from odoo_operator.config import Settings
from odoo_operator.controller import domainmapping
from odoo_operator.controller.base import Outcome

DOMAIN = "shop.example.com"
LABEL = "odoo.dbmanager.io/domain-mapping"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return World(monkeypatch)


def run(world: World, body: dict[str, Any]) -> tuple[Outcome, dict[str, Any]]:
    return world.reconcile(domainmapping.reconcile, body)


def summary(outcome: Outcome) -> tuple[str, str, str, str, str]:
    return (outcome.phase, outcome.ready.reason, outcome.ready.status, outcome.reconciling.status,
            outcome.stalled.status)


def database(world: World, ready: bool = True, **spec: Any) -> dict[str, Any]:
    status = {"phase": "Ready" if ready else "Provisioning",
              "conditions": [ready_condition("True" if ready else "False", "Ready" if ready else "Initializing")]}
    return world.add(database_body(status=status, **spec))


def claim_holder(world: World, domain: str = DOMAIN) -> dict[str, Any] | None:
    claim = world.kube.find("DomainClaim", domain, None)
    return None if claim is None else dict(claim["spec"]["mappingRef"])


def foreign_claim(world: World, domain: str = DOMAIN, live: bool = True) -> None:
    """`domain` claimed by a mapping of another namespace (gone, unless live)."""
    uid = new_uid()
    if live:
        world.add({"apiVersion": API_VERSION, "kind": "DomainMapping",
                   "metadata": {"name": "theirs", "namespace": "team-b", "uid": uid},
                   "spec": {"domain": domain, "databaseRef": {"name": "x"}}})
    world.add({"apiVersion": API_VERSION, "kind": "DomainClaim", "metadata": {"name": domain},
               "spec": {"domain": domain, "mappingRef": {"kind": "DomainMapping", "namespace": "team-b",
                                                         "name": "theirs", "uid": uid}}})


# ---- claim, then route ------------------------------------------------------------------------------

def test_a_mapping_to_a_missing_database_holds_the_domain_but_routes_nothing(world: World) -> None:
    body = world.add(mapping_body())

    outcome, _ = run(world, body)

    assert claim_holder(world) == {"kind": "DomainMapping", "namespace": NAMESPACE, "name": "www",
                                   "uid": body["metadata"]["uid"]}
    assert world.kube.find("Ingress", "www-domain") is None
    assert summary(outcome) == ("Pending", "DatabaseNotFound", "False", "True", "False")
    assert outcome.warning is False
    assert outcome.status["claim"] == DOMAIN and outcome.status["url"] is None
    assert [reason for _, reason, _ in outcome.events] == ["DomainClaimed"]


def test_a_mapping_to_a_ready_database_routes_the_domain_to_its_service(world: World) -> None:
    database(world)
    body = world.add(mapping_body())

    outcome, _ = run(world, body)

    ingress = world.kube.find("Ingress", "www-domain")
    assert ingress is not None
    assert ingress["metadata"]["labels"][LABEL] == "www"
    assert ingress["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == DOMAIN
    assert {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]} == {
        "/websocket": {"name": "shop", "port": {"name": "http"}}, "/": {"name": "shop", "port": {"name": "http"}}}
    assert "tls" not in ingress["spec"]
    assert summary(outcome) == ("Ready", "Routed", "True", "False", "False")
    assert outcome.status["url"] == f"http://{DOMAIN}"
    assert outcome.status["dnsRecord"] == {"type": "CNAME", "name": DOMAIN, "value": "shop.odoo.test"}
    dns = condition(outcome, "DNSConfigured")
    assert (dns.status, dns.reason) == ("Unknown", "NotChecked")  # the DNS check is off
    assert outcome.retry_after is None


def test_a_second_pass_applies_nothing_again(world: World) -> None:
    database(world)
    _, body = run(world, world.add(mapping_body()))
    world.kube.calls.clear()

    outcome, _ = run(world, body)

    assert outcome.phase == "Ready"
    assert world.kube.calls_of("apply") == [] and world.kube.calls_of("create") == []


def test_a_database_not_ready_yet_is_routed_and_pending(world: World) -> None:
    database(world, ready=False)

    outcome, _ = run(world, world.add(mapping_body()))

    assert world.kube.find("Ingress", "www-domain") is not None
    assert summary(outcome) == ("Pending", "DatabaseNotReady", "False", "True", "False")


def test_a_suspended_database_keeps_its_route(world: World) -> None:
    database(world, app={"suspended": True})

    outcome, _ = run(world, world.add(mapping_body()))

    assert world.kube.find("Ingress", "www-domain") is not None
    assert (outcome.phase, outcome.ready.reason) == ("Ready", "Suspended")


def test_tls_from_a_cluster_issuer(world: World) -> None:
    database(world)

    outcome, _ = run(world, world.add(mapping_body(tls={"clusterIssuer": "letsencrypt"})))

    ingress = world.kube.find("Ingress", "www-domain")
    assert ingress is not None
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert ingress["spec"]["tls"] == [{"hosts": [DOMAIN], "secretName": "www-domain-tls"}]
    assert outcome.status["url"] == f"https://{DOMAIN}"


def test_a_missing_tls_secret_is_stalled_without_a_route(world: World) -> None:
    database(world)

    outcome, _ = run(world, world.add(mapping_body(tls={"secretName": "shop-cert"})))

    assert summary(outcome) == ("Pending", "TLSSecretNotFound", "False", "False", "True")
    assert world.kube.find("Ingress", "www-domain") is None


def test_a_mapping_of_the_databases_own_host_shares_its_claim(world: World) -> None:
    db = database(world)
    world.add({"apiVersion": API_VERSION, "kind": "DomainClaim", "metadata": {"name": "shop.odoo.test"},
               "spec": {"domain": "shop.odoo.test", "mappingRef": {
                   "kind": "OdooDatabase", "namespace": NAMESPACE, "name": "shop", "uid": db["metadata"]["uid"]}}})

    outcome, _ = run(world, world.add(mapping_body(domain="shop.odoo.test")))

    assert (outcome.phase, outcome.ready.reason) == ("Ready", "Routed")
    assert (claim_holder(world, "shop.odoo.test") or {})["kind"] == "OdooDatabase"  # not taken over


# ---- refusals --------------------------------------------------------------------------------------

def test_a_domain_claimed_by_another_tenant_is_a_conflict_and_our_route_goes(world: World) -> None:
    database(world)
    foreign_claim(world)
    world.add({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "www-domain", "namespace": NAMESPACE, "labels": {
                   LABEL: "www", "app.kubernetes.io/managed-by": "odoo-db-operator"}},
               "spec": {"rules": [{"host": DOMAIN}]}})

    outcome, _ = run(world, world.add(mapping_body()))

    assert summary(outcome) == ("Conflict", "DomainConflict", "False", "False", "True")
    assert "team-b" not in outcome.stalled.message  # tenants never learn of each other
    assert world.kube.find("Ingress", "www-domain") is None
    assert (claim_holder(world) or {})["namespace"] == "team-b"
    assert outcome.status["claim"] is None


def test_a_stale_claim_of_a_deleted_mapping_is_taken_over(world: World) -> None:
    database(world)
    foreign_claim(world, live=False)
    body = world.add(mapping_body())

    outcome, _ = run(world, body)

    assert (claim_holder(world) or {})["uid"] == body["metadata"]["uid"]
    assert (outcome.phase, outcome.ready.reason) == ("Ready", "Routed")


def test_a_domain_inside_the_platforms_base_domain_is_refused(world: World) -> None:
    database(world)

    outcome, _ = run(world, world.add(mapping_body(domain="admin.odoo.test")))

    assert summary(outcome) == ("Failed", "InvalidDomain", "False", "False", "True")
    assert world.kube.calls_of("create", "DomainClaim") == []
    assert world.kube.find("Ingress", "www-domain") is None


def test_an_invalid_domain_is_refused(world: World) -> None:
    outcome, _ = run(world, world.add(mapping_body(domain="Not A Domain")))

    assert summary(outcome) == ("Failed", "InvalidDomain", "False", "False", "True")
    assert "spec.domain" in outcome.stalled.message
    assert world.kube.calls_of("create") == []


def test_a_route_name_taken_by_something_else(world: World) -> None:
    database(world)
    world.add({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "www-domain", "namespace": NAMESPACE, "labels": {"team": "web"}},
               "spec": {"rules": [{"host": "other.example.com"}]}})

    outcome, _ = run(world, world.add(mapping_body()))

    assert (outcome.ready.reason, outcome.stalled.status) == ("RouteNameTaken", "True")
    ingress = world.kube.find("Ingress", "www-domain")
    assert ingress is not None and ingress["spec"]["rules"][0]["host"] == "other.example.com"  # untouched


# ---- DNS ------------------------------------------------------------------------------------------

def test_dns_not_configured_yet_informs_and_never_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(monkeypatch, Settings(base_domain="odoo.test", dns_check=True, dns_server="10.0.0.53",
                                        templates=False))
    asked: list[tuple[str, str, str | None]] = []

    def check(domain: str, target: str, server: str | None = None) -> dnscheck.Result:
        asked.append((domain, target, server))
        return dnscheck.Result("False", "RecordMissing", f"{domain} does not exist in DNS")

    monkeypatch.setattr(dnscheck, "check", check)
    database(world)

    outcome, _ = run(world, world.add(mapping_body()))

    assert asked == [(DOMAIN, "shop.odoo.test", "10.0.0.53")]
    dns = condition(outcome, "DNSConfigured")
    assert (dns.status, dns.reason) == ("False", "RecordMissing")
    assert (outcome.phase, outcome.ready.status) == ("Ready", "True")  # routed all the same
    assert outcome.retry_after == 300  # DNS is looked at again

    monkeypatch.setattr(dnscheck, "check", lambda domain, target, server=None: dnscheck.Result(
        "True", "CNAMEFound", f"{domain} is a CNAME to {target}"))
    outcome, _ = run(world, world.add(mapping_body("erp", domain="erp.example.com")))
    assert condition(outcome, "DNSConfigured").reason == "CNAMEFound"


# ---- with a Gateway ------------------------------------------------------------------------------------

def test_with_a_gateway_the_route_is_an_httproute_and_a_refusal_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(monkeypatch, Settings(base_domain="odoo.test", dns_check=False, gateway="gateways/public",
                                        templates=False))
    database(world)
    body = world.add(mapping_body())

    outcome, body = run(world, body)

    route = world.kube.find("HTTPRoute", "www-domain")
    assert route is not None and route["spec"]["hostnames"] == [DOMAIN]
    assert route["spec"]["parentRefs"][0]["name"] == "public"
    assert world.kube.find("Ingress", "www-domain") is None
    accepted = condition(outcome, "RouteAccepted")
    assert (accepted.status, accepted.reason) == ("Unknown", "Pending")
    assert (outcome.phase, outcome.ready.reason) == ("Ready", "Routed")

    world.kube.set_status("HTTPRoute", "www-domain", {"parents": [{"conditions": [
        {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners", "message": "namespace refused"}]}]})
    outcome, _ = run(world, body)

    assert summary(outcome) == ("Failed", "RouteNotAccepted", "False", "False", "True")
    assert "NotAllowedByListeners" in outcome.stalled.message


# ---- deletion ----------------------------------------------------------------------------------------

def test_delete_removes_the_route_and_releases_the_domain(world: World) -> None:
    database(world)
    _, body = run(world, world.add(mapping_body()))
    assert world.kube.find("Ingress", "www-domain") is not None

    message = domainmapping.delete(body, world.ctx)

    assert message == f"route removed; {DOMAIN} released"
    assert world.kube.find("Ingress", "www-domain") is None
    assert world.kube.find("DomainClaim", DOMAIN, None) is None


def test_delete_of_a_losing_mapping_leaves_the_winners_claim(world: World) -> None:
    foreign_claim(world)
    _, body = run(world, world.add(mapping_body()))

    assert domainmapping.delete(body, world.ctx) == "route removed"
    assert (claim_holder(world) or {})["namespace"] == "team-b"
