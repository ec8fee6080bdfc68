"""Host claims as a hostile tenant would test them: a second namespace trying to take a host that
another one holds, through a holder's broken spec, a lost claim or a name of the platform's base
domain. Unit tests of the staleness rule, then end to end on the real API server."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
import yaml

from conftest import OperatorProcess, apply_yaml, condition, get_json, odoo_database, wait_until
from odoo_operator.api.model import parse_odoo_database
from odoo_operator.config import Settings
from odoo_operator.controller import claims
from odoo_operator.controller.base import Context
from odoo_operator.controller.odoodatabase import database_host
from odoo_operator.devtools.localcluster import LocalCluster
from odoo_operator.runtime.registry import Registry
from test_domainmapping import mapping, wait_mapping
from test_lifecycle import databases, events, wait_ready, wait_reason

SETTINGS = Settings(base_domain="odoo.example.net")


# ---- unit: what "stale" means -----------------------------------------------------------------

class ObjectsKube:
    """What is_stale reads of the API: holders by kind, namespace and name."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace or "", name))


def database(uid: str = "u1", **spec: Any) -> dict[str, Any]:
    return {"kind": "OdooDatabase", "metadata": {"namespace": "a", "name": "shop", "uid": uid},
            "spec": {"version": "17.0", **spec}}


def domain_mapping(uid: str = "m1", **spec: Any) -> dict[str, Any]:
    return {"kind": "DomainMapping", "metadata": {"namespace": "a", "name": "www", "uid": uid}, "spec": spec}


def claim(domain: str, kind: str = "OdooDatabase", name: str = "shop", uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"name": domain}, "spec": {"domain": domain, "mappingRef": {
        "kind": kind, "namespace": "a", "name": name, "uid": uid}}}


def stale(kube: ObjectsKube, held: dict[str, Any]) -> bool:
    return claims.is_stale(cast(Any, kube), held, lambda body: database_host(body, SETTINGS))


HOST = "erp.example.com"


@pytest.mark.parametrize(("holder", "expected"), [
    pytest.param(database(hostname=HOST), False, id="holder-serves-the-host"),
    pytest.param(database(hostname=HOST, version="15.0"), False, id="holder-spec-fails-to-parse"),
    pytest.param(database(hostname=HOST, app={"config": {"db_host": "x"}}), False, id="holder-spec-refused"),
    pytest.param(database(hostname="other.example.com"), True, id="holder-asks-for-another-host"),
    pytest.param(database(uid="u2", hostname=HOST), True, id="holder-recreated"),
    pytest.param(None, True, id="holder-gone"),
])
def test_a_database_claim_is_stale_only_when_gone_recreated_or_moved(holder: dict[str, Any] | None,
                                                                   expected: bool) -> None:
    kube = ObjectsKube(*([holder] if holder else []))
    assert stale(kube, claim(HOST)) is expected


@pytest.mark.parametrize(("holder", "expected"), [
    pytest.param(domain_mapping(domain=HOST, databaseRef={"name": "shop"}), False, id="mapping-holds-it"),
    pytest.param(domain_mapping(domain=HOST), False, id="mapping-spec-incomplete"),
    pytest.param(domain_mapping(domain="other.example.com", databaseRef={"name": "shop"}), True,
                 id="mapping-moved"),
    pytest.param(domain_mapping(uid="m2", domain=HOST), True, id="mapping-recreated"),
])
def test_a_mapping_claim_is_stale_only_when_gone_recreated_or_moved(holder: dict[str, Any], expected: bool) -> None:
    assert stale(ObjectsKube(holder), claim(HOST, "DomainMapping", "www", "m1")) is expected


@pytest.mark.parametrize("name", ["shop", "Shop_2024", "a.b-c", "x" * 63])
def test_the_platform_host_is_the_models_default_host(name: str) -> None:
    body = {"metadata": {"name": "db", "namespace": "ns"}, "spec": {"version": "17.0", "databaseName": name}}
    assert parse_odoo_database(body, SETTINGS).hostname == claims.platform_host(name, SETTINGS.base_domain)


# ---- unit: what this process remembers of claims lives in its Registry ----------------------------

class ClaimsKube(ObjectsKube):
    """DomainClaims as the API server keeps them (create fails when the name is taken), counting requests."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        super().__init__(*objects)
        self.requests = 0

    def create(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.requests += 1
        key = (body["kind"], "", body["metadata"]["name"])
        if key in self.objects:
            return None
        self.objects[key] = {**body, "metadata": {**body["metadata"], "uid": f"c-{len(self.objects)}",
                                                  "resourceVersion": "1"}}
        return self.objects[key]

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        self.requests += 1
        return super().get(api_version, kind, name, namespace)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               preconditions: dict[str, str] | None = None) -> bool:
        self.requests += 1
        return self.objects.pop((kind, namespace or "", name), None) is not None


def context(kube: ClaimsKube) -> Context:
    return Context(kube=cast(Any, kube), settings=SETTINGS, registry=Registry())


def host_of(body: dict[str, Any]) -> str | None:
    return database_host(body, SETTINGS)


def test_a_held_claim_costs_no_request_and_is_remembered_per_registry() -> None:
    kube = ClaimsKube(database(hostname=HOST))
    ctx, other = context(kube), context(kube)
    holder = claims.Holder("OdooDatabase", "a", "shop", "u1")
    assert claims.acquire(ctx, HOST, holder, host_of) is True
    before = kube.requests
    assert claims.acquire(ctx, HOST, holder, host_of) is False and kube.requests == before
    assert claims.acquire(other, HOST, holder, host_of) is False and kube.requests > before  # not a module global
    assert claims.release(ctx, HOST, "u1") and not ctx.registry.claims.holds(HOST, "u1")


def test_a_released_claim_wakes_its_waiters_once() -> None:
    kube = ClaimsKube(database(hostname=HOST))
    ctx = context(kube)
    claims.acquire(ctx, HOST, claims.Holder("OdooDatabase", "a", "shop", "u1"), host_of)
    thief = claims.Holder("OdooDatabase", "b", "thief", "t1")
    with pytest.raises(claims.ClaimConflict):
        claims.acquire(ctx, HOST, thief, host_of, waiter=("b", "thief"))
    assert claims.gone(ctx, HOST) == [("b", "thief")] and not ctx.registry.claims.holds(HOST, "u1")
    assert claims.gone(ctx, HOST) == []


# ---- end to end ----------------------------------------------------------------------------------

pytest_e2e = pytest.mark.e2e


def ingress_hosts(cluster: LocalCluster, host: str) -> list[str]:
    """Every Ingress in the cluster with a rule for `host`, as namespace/name."""
    items = json.loads(cluster.kubectl("get", "ingress", "-A", "-o", "json").stdout)["items"]
    return sorted(f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items
                  if any(r.get("host") == host for r in i["spec"].get("rules") or []))


def holder_namespace(cluster: LocalCluster, host: str) -> str | None:
    return (get_json(cluster, "domainclaim", host).get("spec") or {}).get("mappingRef", {}).get("namespace")


@pytest.fixture
def rival(cluster: LocalCluster, namespace: str) -> Any:
    """The attacker's namespace; its objects are deleted after the test (their claims are freed)."""
    name = f"{namespace}-x"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "domainmappings,odb", "--all", "-n", name, "--timeout=90s", check=False, timeout=120)


@pytest_e2e
def test_a_holder_whose_spec_breaks_keeps_its_host(cluster: LocalCluster, operator: OperatorProcess, namespace: str,
                                                   rival: str) -> None:
    """A version the operator has no image for makes the spec fail to parse, not the host free: another
    namespace can neither name nor map it meanwhile, and the holder still serves it."""
    tag = namespace[2:]
    host, victim = f"keep-{tag}.example.com", f"k{tag}"
    apply_yaml(cluster, odoo_database(victim, namespace, hostname=host))
    wait_ready(cluster, victim, namespace)
    cluster.kubectl("patch", "odb", victim, "-n", namespace, "--type=merge", "-p", '{"spec":{"version":"15.0"}}')
    wait_reason(cluster, victim, namespace, "InvalidSpec")

    apply_yaml(cluster, odoo_database("thief", rival, hostname=host))
    obj = wait_reason(cluster, "thief", rival, "HostnameConflict")
    assert condition(obj, "Stalled")["status"] == "True" and namespace not in condition(obj, "Ready")["message"]
    apply_yaml(cluster, mapping("steal", rival, host, "thief"))
    wait_mapping(cluster, "steal", rival, "DomainConflict", "False")
    assert holder_namespace(cluster, host) == namespace
    assert ingress_hosts(cluster, host) == [f"{namespace}/{victim}"]

    cluster.kubectl("patch", "odb", victim, "-n", namespace, "--type=merge", "-p", '{"spec":{"version":"17.0"}}')
    wait_ready(cluster, victim, namespace)
    assert holder_namespace(cluster, host) == namespace and ingress_hosts(cluster, host) == [f"{namespace}/{victim}"]


@pytest_e2e
def test_a_database_that_asks_for_a_taken_host_stops_serving_its_old_one(
        cluster: LocalCluster, operator: OperatorProcess, namespace: str, rival: str) -> None:
    """Moving to a host another namespace holds fails; the old host is no longer asked for, so it is
    released and no route of the database serves it any more (nor the new one)."""
    tag = namespace[2:]
    mine, theirs, a, b = f"mine-{tag}.example.com", f"theirs-{tag}.example.com", f"a{tag}", f"b{tag}"
    apply_yaml(cluster, odoo_database(b, rival, hostname=theirs))
    apply_yaml(cluster, odoo_database(a, namespace, hostname=mine))
    wait_ready(cluster, b, rival)
    wait_ready(cluster, a, namespace)
    assert ingress_hosts(cluster, mine) == [f"{namespace}/{a}"]

    cluster.kubectl("patch", "odb", a, "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"hostname": theirs}}))
    obj = wait_reason(cluster, a, namespace, "HostnameConflict")
    assert "has no route" in condition(obj, "Ready")["message"]
    assert "url" not in obj["status"] and "hostname" not in obj["status"]
    assert not get_json(cluster, "ingress", a, "-n", namespace)
    assert ingress_hosts(cluster, theirs) == [f"{rival}/{b}"]
    wait_until(lambda: not get_json(cluster, "domainclaim", mine), 30, "the old host to be released")
    assert ("Warning", "RouteRemoved") in {(t, r) for t, r, _ in events(cluster, namespace, a)}

    # Back to its own host: served again.
    cluster.kubectl("patch", "odb", a, "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"hostname": mine}}))
    obj = wait_ready(cluster, a, namespace)
    assert obj["status"]["url"] == f"http://{mine}" and ingress_hosts(cluster, mine) == [f"{namespace}/{a}"]


@pytest_e2e
def test_a_database_whose_claim_went_to_its_rightful_holder_removes_its_route(
        cluster: LocalCluster, operator: OperatorProcess, namespace: str, rival: str) -> None:
    """The claim changed hands while the operator was down (deleted by hand, then won by another
    database asking for the host): the loser removes its Ingress and says why; one route serves the host."""
    tag = namespace[2:]
    host, a, b = f"lost-{tag}.example.com", f"a{tag}", f"b{tag}"
    apply_yaml(cluster, odoo_database(a, namespace, hostname=host))
    wait_ready(cluster, a, namespace)
    operator.kill()
    try:
        cluster.kubectl("delete", "domainclaim", host)
        apply_yaml(cluster, odoo_database(b, rival, hostname=host))
        uid = get_json(cluster, "odb", b, "-n", rival)["metadata"]["uid"]
        apply_yaml(cluster, yaml.safe_dump({
            "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainClaim", "metadata": {"name": host},
            "spec": {"domain": host, "mappingRef": {"kind": "OdooDatabase", "namespace": rival, "name": b,
                                                    "uid": uid}}}))
    finally:
        operator.start()
    obj = wait_reason(cluster, a, namespace, "HostnameConflict")
    assert condition(obj, "Stalled")["status"] == "True" and rival not in condition(obj, "Ready")["message"]
    assert "has no route" in condition(obj, "Ready")["message"]
    wait_ready(cluster, b, rival)
    assert ingress_hosts(cluster, host) == [f"{rival}/{b}"] and holder_namespace(cluster, host) == rival
    assert ("Warning", "RouteRemoved") in {(t, r) for t, r, _ in events(cluster, namespace, a)}


@pytest_e2e
def test_spec_hostname_cannot_take_a_name_of_the_platform_base_domain(
        cluster: LocalCluster, operator: OperatorProcess, namespace: str, rival: str, pg_dsn: str) -> None:
    """As for DomainMappings, a name inside the base domain (odoo.localhost here) is the platform's: a
    database holds only its own <databaseName>.odoo.localhost. Refused before anything is created."""
    tag = namespace[2:]
    victim = f"v{tag}"
    platform = f"{victim}.odoo.localhost"
    apply_yaml(cluster, odoo_database("squat", rival, hostname=platform))
    obj = wait_reason(cluster, "squat", rival, "InvalidHostname")
    message = condition(obj, "Ready")["message"]
    assert condition(obj, "Stalled")["status"] == "True" and obj["status"]["phase"] == "Failed"
    assert "spec.hostname" in message and "odoo.localhost" in message
    assert not get_json(cluster, "domainclaim", platform) and "squat" not in databases(pg_dsn)
    assert not get_json(cluster, "ingress", "squat", "-n", rival)
    apply_yaml(cluster, mapping("squat", rival, platform, "squat"))  # nor through a mapping of "its" host
    wait_mapping(cluster, "squat", rival, "InvalidDomain", "False")
    assert not get_json(cluster, "domainclaim", platform)
    assert not get_json(cluster, "ingress", "squat-domain", "-n", rival)
    cluster.kubectl("patch", "odb", "squat", "-n", rival, "--type=merge", "-p",
                    '{"spec":{"hostname":"odoo.localhost"}}')
    wait_until(lambda: "'odoo.localhost'" in condition(get_json(cluster, "odb", "squat", "-n", rival), "Ready")
               .get("message", ""), 30, "the base domain itself to be refused")
    assert not get_json(cluster, "domainclaim", "odoo.localhost")

    # The database whose name it is gets it; spelling out one's own platform host is allowed.
    apply_yaml(cluster, odoo_database(victim, namespace))
    apply_yaml(cluster, odoo_database(f"{victim}o", namespace, hostname=f"{victim}o.odoo.localhost"))
    wait_ready(cluster, victim, namespace)
    wait_ready(cluster, f"{victim}o", namespace)
    assert holder_namespace(cluster, platform) == namespace

    # A serving database moved onto another name of the platform loses its route and its claim.
    cluster.kubectl("patch", "odb", f"{victim}o", "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"hostname": f"www.{victim}o.odoo.localhost"}}))
    obj = wait_reason(cluster, f"{victim}o", namespace, "InvalidHostname")
    assert not get_json(cluster, "ingress", f"{victim}o", "-n", namespace)
    wait_until(lambda: not get_json(cluster, "domainclaim", f"{victim}o.odoo.localhost"), 30, "its claim to go")
    assert ("Warning", "RouteRemoved") in {(t, r) for t, r, _ in events(cluster, namespace, f"{victim}o")}
