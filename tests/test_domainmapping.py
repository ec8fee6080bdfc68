"""DomainMapping: custom domains claimed cluster-wide, routed by Ingress or Gateway API HTTPRoute.

Unit tests for the pure parts; end to end against the real API server with the operator process
(and, for HTTPRoute, the Gateway API CRDs from their Go module, fetched by `make setup`)."""

from __future__ import annotations

import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import OperatorProcess, apply_yaml, condition, get_json, install_gateway_api, odoo_database, wait_until
from odoo_operator.api.domains import (
    DomainMapping,
    MappingRequest,
    check_domain,
    claim_name,
    mapping_request,
    parse_domain_mapping,
)
from odoo_operator.api.model import SpecError, parse_odoo_database
from odoo_operator.config import Settings
from odoo_operator.controller.claims import inside_base_domain
from odoo_operator.devtools.localcluster import LocalCluster
from odoo_operator.specs.app import DatabaseEndpoint, render_odoo_conf


def mapping(name: str, namespace: str, domain: str, database: str, **tls: str) -> str:
    spec: dict[str, Any] = {"domain": domain, "databaseRef": {"name": database}}
    if tls:
        spec["tls"] = tls
    return yaml.safe_dump({"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainMapping",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})


def odm(cluster: LocalCluster, name: str, namespace: str) -> dict[str, Any]:
    return get_json(cluster, "domainmapping", name, "-n", namespace)


def wait_mapping(cluster: LocalCluster, name: str, namespace: str, reason: str, status: str | None = None,
                 timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = odm(cluster, name, namespace)
        ready = condition(obj, "Ready")
        ok = ready.get("reason") == reason and (status is None or ready.get("status") == status)
        return obj if ok and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"] \
            else None
    return wait_until(check, timeout, f"DomainMapping {namespace}/{name} Ready reason {reason}")


def wait_db_ready(cluster: LocalCluster, name: str, namespace: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", name, "-n", namespace)
        return obj if condition(obj, "Ready").get("status") == "True" else None
    return wait_until(check, 120, f"OdooDatabase {namespace}/{name} Ready")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def mappings_cleanup(cluster: LocalCluster) -> Iterator[list[str]]:
    """Namespaces whose DomainMappings are deleted after the test (the claims are freed)."""
    namespaces: list[str] = []
    yield namespaces
    for ns in namespaces:
        cluster.kubectl("delete", "domainmappings", "--all", "-n", ns, "--timeout=60s", check=False, timeout=90)


# ---- unit -------------------------------------------------------------------------------------

SETTINGS = Settings(base_domain="odoo.example.net")


@pytest.mark.parametrize("domain", ["shop.example.com", "a.b.c.example.co.uk", "xn--bcher-kva.example", "1shop.io"])
def test_valid_domains(domain: str) -> None:
    assert check_domain(domain, SETTINGS) == domain


@pytest.mark.parametrize("domain,fragment", [
    ("Shop.example.com", "lower-case"), ("example", "lower-case"), ("shop.example.com.", "lower-case"),
    ("sh_op.example.com", "lower-case"), ("-shop.example.com", "lower-case"), ("a" * 64 + ".com", "lower-case"),
    ("10.0.0.1", "IP address"), ("*.example.com", "wildcard"), ("", "required"), ("shop..example.com", "lower-case"),
])
def test_invalid_domains(domain: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        check_domain(domain, SETTINGS)


def test_wildcards_only_when_the_operator_allows_them() -> None:
    assert check_domain("*.example.com", Settings(allow_wildcard_domains=True)) == "*.example.com"
    assert claim_name("*.example.com") == "wildcard.example.com"
    assert claim_name("shop.example.com") == "shop.example.com"


def _body(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "www", "namespace": "ns", "uid": "m1"}, "spec": spec}


def test_a_mapping_is_parsed_once_into_its_typed_model() -> None:
    parsed = parse_domain_mapping(_body(domain="www.example.com", databaseRef={"name": "shop"},
                                        tls={"secretName": "mine"}), SETTINGS)
    assert parsed == DomainMapping(namespace="ns", name="www", uid="m1", domain="www.example.com", database="shop",
                                   cluster_issuer=None, secret_name="mine")
    assert parsed.tls and not parsed.wildcard


@pytest.mark.parametrize(("spec", "message"), [
    ({"domain": "www.example.com"}, "spec.databaseRef.name is required"),
    ({"domain": "www.example.com", "databaseRef": "shop"}, "spec.databaseRef must be an object"),
    ({"domain": "www.example.com", "databaseRef": {"name": "Shop"}}, "spec.databaseRef.name 'Shop'"),
    ({"domain": "www.example.com", "databaseRef": {"name": "shop"}, "tls": "yes"}, "spec.tls must be an object"),
    ({"domain": "www.example.com", "databaseRef": {"name": "shop"}, "tls": {"clusterIssuer": "a", "secretName": "b"}},
     "spec.tls takes clusterIssuer or secretName, not both"),
    ({"domain": "www.example.com", "databaseRef": {"name": "shop"}, "tls": {"secretName": "B"}},
     "spec.tls.secretName 'B'"),
])
def test_a_bad_mapping_is_refused_with_the_field_path(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_domain_mapping(_body(**spec), SETTINGS)


def test_what_an_invalid_mapping_asks_for_is_still_read() -> None:
    """Wake-ups, releases and staleness work for a mapping whose spec fails to parse."""
    assert mapping_request(_body(domain="Bad.Example", databaseRef={"name": "x_y"})) == MappingRequest("Bad.Example",
                                                                                                        "x_y")
    assert mapping_request({"metadata": {}, "spec": {"databaseRef": "shop"}}) == MappingRequest("", "")


def test_base_domain_boundaries() -> None:
    assert inside_base_domain("acme.odoo.example.net", "odoo.example.net")
    assert inside_base_domain("odoo.example.net", "odoo.example.net")
    assert inside_base_domain("*.example.net", "odoo.example.net")  # a wildcard covering the platform
    assert not inside_base_domain("odoo.example.net.evil.com", "odoo.example.net")
    assert not inside_base_domain("myodoo.example.net", "odoo.example.net")


def odoo_db_filter(dbfilter: str, dbs: list[str], host: str) -> list[str]:
    """odoo/http.py `db_filter` (Odoo 16-18): %h is the host without port and "www.", %d its first label."""
    host = host.partition(":")[0]
    if host.startswith("www."):
        host = host[4:]
    domain = host.partition(".")[0]
    pattern = re.compile(dbfilter.replace("%h", re.escape(host)).replace("%d", re.escape(domain)))
    return [db for db in dbs if pattern.match(db)]


def test_odoo_answers_any_mapped_domain_with_its_own_database() -> None:
    """Each database runs in its own pods, whose dbfilter names exactly that database: whatever Host a
    custom domain brings (proxy_mode honours X-Forwarded-Host), Odoo selects that database and no other."""
    body = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "OdooDatabase",
            "metadata": {"name": "acme", "namespace": "ns", "uid": "u"}, "spec": {"version": "17.0"}}
    db = parse_odoo_database(body, SETTINGS)
    endpoint = DatabaseEndpoint("pg.example", 5432, "require")
    conf = dict(line.split(" = ", 1) for line in render_odoo_conf(db, endpoint).splitlines() if " = " in line)
    assert conf["proxy_mode"] == "True"
    others = ["acme2", "other", db.database_name + "_old"]
    for host in ("shop.example.com", "www.shop.example.com:443", db.hostname, "erp.client.co.uk"):
        assert odoo_db_filter(conf["dbfilter"], [*others, db.database_name], host) == [db.database_name]


# ---- end to end: Ingress ------------------------------------------------------------------------

pytest_e2e = pytest.mark.e2e


@pytest_e2e
def test_ingress_host_tls_annotations_and_dns_record(cluster: LocalCluster, operator: OperatorProcess,
                                                     namespace: str, mappings_cleanup: list[str]) -> None:
    mappings_cleanup.append(namespace)
    db = unique("shop")
    domain = f"{db}.example.com"
    apply_yaml(cluster, odoo_database(db, namespace))
    apply_yaml(cluster, mapping("main", namespace, domain, db, clusterIssuer="letsencrypt-prod"))
    obj = wait_mapping(cluster, "main", namespace, "Routed", "True")
    host = wait_db_ready(cluster, db, namespace)["status"]["url"].split("://", 1)[1]
    assert obj["status"]["url"] == f"https://{domain}"
    assert obj["status"]["dnsRecord"] == {"type": "CNAME", "name": domain, "value": host}
    assert obj["status"]["claim"] == domain
    assert condition(obj, "DNSConfigured")["status"] in ("True", "False", "Unknown")  # informs, never blocks
    ingress = get_json(cluster, "ingress", "main-domain", "-n", namespace)
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ingress["spec"]["tls"] == [{"hosts": [domain], "secretName": "main-domain-tls"}]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == domain
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {db}
    owner = ingress["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("DomainMapping", "main")
    claim = get_json(cluster, "domainclaim", domain)
    assert claim["spec"]["mappingRef"] == {"kind": "DomainMapping", "namespace": namespace, "name": "main",
                                          "uid": obj["metadata"]["uid"]}

    # An existing certificate: refused while the Secret is missing, routed once it exists.
    apply_yaml(cluster, mapping("byo", namespace, f"byo-{domain}", db, secretName="byo-cert"))
    stalled = wait_mapping(cluster, "byo", namespace, "TLSSecretNotFound", "False")
    assert condition(stalled, "Stalled")["status"] == "True"
    assert not get_json(cluster, "ingress", "byo-domain", "-n", namespace)
    crt, key = _self_signed(cluster.workdir, f"byo-{domain}")
    cluster.kubectl("create", "secret", "tls", "byo-cert", f"--cert={crt}", f"--key={key}", "-n", namespace)
    wait_mapping(cluster, "byo", namespace, "Routed", "True")
    assert get_json(cluster, "ingress", "byo-domain", "-n", namespace)["spec"]["tls"] == [
        {"hosts": [f"byo-{domain}"], "secretName": "byo-cert"}]

    # Someone edits the route by hand: the operator puts it back.
    cluster.kubectl("patch", "ingress", "main-domain", "-n", namespace, "--type=json",
                    "-p", '[{"op":"replace","path":"/spec/rules/0/host","value":"evil.example.org"}]')
    wait_until(lambda: get_json(cluster, "ingress", "main-domain", "-n", namespace)["spec"]["rules"][0]["host"]
               == domain, 30, "the Ingress host to be restored")


def _self_signed(workdir: Path, host: str) -> tuple[Path, Path]:
    crt, key = workdir / f"{host}.crt", workdir / f"{host}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={host}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return crt, key


@pytest_e2e
def test_invalid_domains_are_refused(cluster: LocalCluster, operator: OperatorProcess, namespace: str,
                                     mappings_cleanup: list[str]) -> None:
    mappings_cleanup.append(namespace)
    for bad in ("Shop.Example.com", "localhost", "shop.example.com.", "sh_op.example.com", "http://x.example.com"):
        result = apply_yaml(cluster, mapping(unique("bad"), namespace, bad, "db"), check=False)
        assert result.returncode != 0 and "fully qualified domain name" in result.stderr, (bad, result.stderr)
    # Past the schema, the operator's own rules: no wildcard (setting off), not inside the base domain.
    apply_yaml(cluster, mapping("wild", namespace, "*.wild-example.com", "db"))
    apply_yaml(cluster, mapping("platform", namespace, "someone-else.odoo.localhost", "db"))
    for name, fragment in (("wild", "wildcard"), ("platform", "base domain")):
        obj = wait_mapping(cluster, name, namespace, "InvalidDomain", "False")
        assert condition(obj, "Stalled")["status"] == "True" and fragment in condition(obj, "Ready")["message"]
        assert not get_json(cluster, "ingress", f"{name}-domain", "-n", namespace)
    assert not get_json(cluster, "domainclaim", "wildcard.wild-example.com")
    assert not get_json(cluster, "domainclaim", "someone-else.odoo.localhost")  # never claimed
    # The domain is immutable.
    result = cluster.kubectl("patch", "domainmapping", "wild", "-n", namespace, "--type=merge",
                             "-p", '{"spec":{"domain":"other.example.com"}}', check=False)
    assert result.returncode != 0 and "immutable" in result.stderr


# ---- end to end: one owner per domain ------------------------------------------------------------

@pytest_e2e
def test_two_namespaces_racing_for_domains_exactly_one_wins_each_time(
        cluster: LocalCluster, operator: OperatorProcess, namespace: str, mappings_cleanup: list[str]) -> None:
    rival = f"{namespace}-rival"
    cluster.kubectl("create", "namespace", rival)
    mappings_cleanup.extend([namespace, rival])
    db_a, db_b = unique("racea"), unique("raceb")
    apply_yaml(cluster, odoo_database(db_a, namespace))
    apply_yaml(cluster, odoo_database(db_b, rival))
    wait_db_ready(cluster, db_a, namespace)
    wait_db_ready(cluster, db_b, rival)
    rounds = 12
    domains = [f"race{i}-{uuid.uuid4().hex[:6]}.example.com" for i in range(rounds)]
    try:
        for i, domain in enumerate(domains):
            barrier = threading.Barrier(2)

            def claim(ns: str, db: str, domain: str = domain, i: int = i,
                      barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                apply_yaml(cluster, mapping(f"race{i}", ns, domain, db))
            threads = [threading.Thread(target=claim, args=(namespace, db_a)),
                       threading.Thread(target=claim, args=(rival, db_b))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        winners: dict[str, str] = {}
        for i, domain in enumerate(domains):
            settled = wait_until(lambda i=i: _settled(cluster, f"race{i}", [namespace, rival]), 90,
                                 f"race{i} to settle")
            (winner,) = [ns for ns, reason in settled.items() if reason == "Routed"]
            (loser,) = [ns for ns, reason in settled.items() if reason == "DomainConflict"]
            winners[domain] = winner
            claim = get_json(cluster, "domainclaim", domain)
            assert claim["spec"]["mappingRef"]["namespace"] == winner
            lost = odm(cluster, f"race{i}", loser)
            message = condition(lost, "Ready")["message"]
            assert "already claimed" in message and winner not in message  # nothing of the other tenant
            assert condition(lost, "Stalled")["status"] == "True" and not lost["status"].get("url")
            assert not get_json(cluster, "ingress", f"race{i}-domain", "-n", loser)  # nothing routes
            assert get_json(cluster, "ingress", f"race{i}-domain", "-n", winner)["spec"]["rules"][0]["host"] == domain
        print(f"race winners by namespace: {sorted(winners.values()).count(namespace)} / "
              f"{sorted(winners.values()).count(rival)}")

        # Release and takeover: deleting the winner frees the domain; the other takes it by itself.
        domain = domains[0]
        winner = winners[domain]
        loser = rival if winner == namespace else namespace
        cluster.kubectl("delete", "domainmapping", "race0", "-n", winner, "--timeout=60s")
        taken = wait_mapping(cluster, "race0", loser, "Routed", "True", timeout=60)
        assert taken["status"]["claim"] == domain
        assert get_json(cluster, "domainclaim", domain)["spec"]["mappingRef"]["namespace"] == loser
        assert get_json(cluster, "ingress", "race0-domain", "-n", loser)
        assert not get_json(cluster, "ingress", "race0-domain", "-n", winner)
        events = cluster.kubectl("get", "events", "-n", loser, "--field-selector",
                                 "involvedObject.name=race0,involvedObject.kind=DomainMapping", "-o", "json").stdout
        assert "DomainClaimed" in events
    finally:
        cluster.kubectl("delete", "odb", "--all", "-n", rival, "--timeout=90s", check=False, timeout=120)


def _settled(cluster: LocalCluster, name: str, namespaces: list[str]) -> dict[str, str] | None:
    reasons = {}
    for ns in namespaces:
        obj = odm(cluster, name, ns)
        reason = condition(obj, "Ready").get("reason")
        if reason not in ("Routed", "DomainConflict"):
            return None
        reasons[ns] = reason
    return reasons if sorted(reasons.values()) == ["DomainConflict", "Routed"] else None


@pytest_e2e
def test_stale_claim_of_a_vanished_mapping_is_taken_over(cluster: LocalCluster, operator: OperatorProcess,
                                                         namespace: str, mappings_cleanup: list[str]) -> None:
    """A mapping removed without its release (finalizer stripped by hand) leaves a claim behind; the
    next claimant sees its holder is gone and takes the domain, without anyone cleaning up."""
    mappings_cleanup.append(namespace)
    domain = f"{unique('stale')}.example.com"
    apply_yaml(cluster, yaml.safe_dump({
        "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainClaim", "metadata": {"name": domain},
        "spec": {"domain": domain, "mappingRef": {"namespace": "gone", "name": "gone", "uid": "0000"}}}))
    apply_yaml(cluster, mapping("next", namespace, domain, "nodb"))
    obj = wait_mapping(cluster, "next", namespace, "DatabaseNotFound", "False")
    assert obj["status"]["claim"] == domain
    assert get_json(cluster, "domainclaim", domain)["spec"]["mappingRef"]["namespace"] == namespace


@pytest_e2e
def test_hosts_of_databases_and_mappings_share_one_claim_space(cluster: LocalCluster, operator: OperatorProcess,
                                                               namespace: str, mappings_cleanup: list[str]) -> None:
    """A database's own host may be mapped by its namespace (it shares the database's claim), but a host
    another tenant's database serves cannot be mapped."""
    rival = f"{namespace}-own"
    cluster.kubectl("create", "namespace", rival)
    mappings_cleanup.extend([namespace, rival])
    db = unique("own")
    host = f"{db}.odoo.localhost"
    try:
        apply_yaml(cluster, odoo_database(db, namespace))
        wait_db_ready(cluster, db, namespace)
        apply_yaml(cluster, mapping("own", namespace, host, db))
        obj = wait_mapping(cluster, "own", namespace, "Routed", "True")
        assert obj["status"]["claim"] == host
        assert get_json(cluster, "domainclaim", host)["spec"]["mappingRef"]["kind"] == "OdooDatabase"
        custom = f"{db}.example.org"
        apply_yaml(cluster, odoo_database(f"{db}x", rival, hostname=custom))
        wait_db_ready(cluster, f"{db}x", rival)
        apply_yaml(cluster, mapping("steal", namespace, custom, db))
        stolen = wait_mapping(cluster, "steal", namespace, "DomainConflict", "False")
        assert not get_json(cluster, "ingress", "steal-domain", "-n", namespace)
        assert rival not in condition(stolen, "Ready")["message"]
    finally:
        cluster.kubectl("delete", "odb", "--all", "-n", rival, "--timeout=90s", check=False, timeout=120)


# ---- end to end: following the database ------------------------------------------------------------

@pytest_e2e
def test_mapping_follows_creation_rename_suspension_and_deletion(
        cluster: LocalCluster, operator: OperatorProcess, namespace: str, mappings_cleanup: list[str]) -> None:
    mappings_cleanup.append(namespace)
    db = unique("follow")
    domain = f"{db}.example.com"
    apply_yaml(cluster, mapping("www", namespace, domain, db))
    waiting = wait_mapping(cluster, "www", namespace, "DatabaseNotFound", "False")
    assert condition(waiting, "Reconciling")["status"] == "True"  # waiting, not broken
    assert not get_json(cluster, "ingress", "www-domain", "-n", namespace)

    apply_yaml(cluster, odoo_database(db, namespace))  # the database appears: the mapping follows
    obj = wait_mapping(cluster, "www", namespace, "Routed", "True")
    assert obj["status"]["url"] == f"http://{domain}"
    assert obj["status"]["dnsRecord"]["value"] == f"{db}.odoo.localhost"

    renamed = f"{db}v2"
    cluster.kubectl("patch", "odb", db, "-n", namespace, "--type=merge", "-p",
                    yaml.safe_dump({"spec": {"databaseName": renamed}}))
    wait_until(lambda: odm(cluster, "www", namespace)["status"]["dnsRecord"]["value"] == f"{renamed}.odoo.localhost",
               90, "the DNS record to follow the rename")

    cluster.kubectl("patch", "odb", db, "-n", namespace, "--type=merge", "-p", '{"spec":{"app":{"suspended":true}}}')
    suspended = wait_mapping(cluster, "www", namespace, "Suspended", "True")
    assert "scaled to 0" in condition(suspended, "Ready")["message"]
    assert get_json(cluster, "ingress", "www-domain", "-n", namespace)  # the route is kept

    cluster.kubectl("delete", "odb", db, "-n", namespace, "--timeout=90s")
    gone = wait_mapping(cluster, "www", namespace, "DatabaseNotFound", "False")
    assert not gone["status"].get("url")
    wait_until(lambda: not get_json(cluster, "ingress", "www-domain", "-n", namespace), 30, "the route removed")
    assert get_json(cluster, "domainclaim", domain)  # the tenant keeps the domain for its next database


# ---- end to end: Gateway API -----------------------------------------------------------------------

@pytest.fixture
def gateway_operator(cluster: LocalCluster, operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The operator configured for a Gateway, in place of the session's (one operator at a time)."""
    install_gateway_api(cluster)
    operator.stop()
    gateway = OperatorProcess(cluster, cluster.workdir, env={"ODOO_OPERATOR_GATEWAY": "infra/public/https"})
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
        if not operator.running():
            operator.start()


@pytest_e2e
def test_httproute_when_the_operator_is_configured_for_a_gateway(
        cluster: LocalCluster, gateway_operator: OperatorProcess, operator: OperatorProcess, namespace: str,
        mappings_cleanup: list[str]) -> None:
    mappings_cleanup.append(namespace)
    db = unique("gw")
    domain = f"{db}.example.com"
    apply_yaml(cluster, odoo_database(db, namespace))
    apply_yaml(cluster, mapping("gw", namespace, domain, db))
    obj = wait_mapping(cluster, "gw", namespace, "Routed", "True", timeout=120)
    assert condition(obj, "RouteAccepted")["status"] == "Unknown"  # no Gateway controller runs here
    route = get_json(cluster, "httproute", "gw-domain", "-n", namespace)
    assert route["spec"]["hostnames"] == [domain]
    parent = route["spec"]["parentRefs"][0]
    assert (parent["namespace"], parent["name"], parent["sectionName"]) == ("infra", "public", "https")
    assert [(r["backendRefs"][0]["name"], r["backendRefs"][0]["port"]) for r in route["spec"]["rules"]] == [
        (db, 8069), (db, 8069)]
    assert not get_json(cluster, "ingress", "gw-domain", "-n", namespace)
    # Prefork (workers > 0): /websocket moves to the gevent port, on the mapping's route as on the database's.
    cluster.kubectl("patch", "odb", db, "-n", namespace, "--type=merge", "-p", '{"spec":{"app":{"workers":2}}}')

    def websocket_ports() -> list[int] | None:
        ports = [get_json(cluster, "httproute", name, "-n", namespace)["spec"]["rules"][0]["backendRefs"][0]["port"]
                 for name in ("gw-domain", db)]
        return ports if ports == [8072, 8072] else None
    wait_until(websocket_ports, 60, "/websocket routed to 8072 once workers > 0")

    # A Gateway controller refuses the route: the mapping says so.
    status = {"status": {"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "infra",
                      "name": "public", "sectionName": "https"},
        "controllerName": "example.net/gateway-controller",
        "conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners",
                        "message": "namespace not allowed", "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": route["metadata"]["generation"]}]}]}}
    cluster.kubectl("patch", "httproute", "gw-domain", "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", yaml.safe_dump(status))
    refused = wait_mapping(cluster, "gw", namespace, "RouteNotAccepted", "False", timeout=30)
    assert condition(refused, "RouteAccepted")["reason"] == "NotAllowedByListeners"
    assert condition(refused, "Stalled")["status"] == "True"
    assert "namespace not allowed" in condition(refused, "Ready")["message"]

    # The database's own host is an HTTPRoute too (no Ingress) on the same Gateway.
    own = get_json(cluster, "httproute", db, "-n", namespace)
    assert own["spec"]["hostnames"] == [f"{db}.odoo.localhost"] and own["spec"]["parentRefs"][0]["name"] == "public"
    assert not get_json(cluster, "ingress", db, "-n", namespace)

    cluster.kubectl("delete", "domainmapping", "gw", "-n", namespace, "--timeout=60s")
    assert not get_json(cluster, "httproute", "gw-domain", "-n", namespace)
    assert not get_json(cluster, "domainclaim", domain)

    # Back to Ingresses (the operator restarted without a Gateway): the database's HTTPRoute gives way.
    gateway_operator.stop()
    operator.start()
    wait_until(lambda: get_json(cluster, "ingress", db, "-n", namespace), 60, "the database's Ingress")
    wait_until(lambda: not get_json(cluster, "httproute", db, "-n", namespace), 60, "its HTTPRoute removed")
