"""specs/routes.py: the one Ingress/HTTPRoute builder, for a database's own host and a DomainMapping's
domain, checked without a cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from odoo_operator import specs
from odoo_operator.api.domains import DomainMapping
from odoo_operator.api.model import OdooDatabase, parse_odoo_database
from odoo_operator.config import Settings

SETTINGS = Settings(base_domain="apps.example.com", images={"17.0": "odoo:17.0"})


def make_db(**spec: Any) -> OdooDatabase:
    return parse_odoo_database({"metadata": {"name": "shop", "namespace": "ns", "uid": "uid-1", "generation": 1},
                                "spec": {"version": "17.0", **spec}}, SETTINGS)


def make_mapping(**kw: Any) -> DomainMapping:
    base: dict[str, Any] = dict(namespace="ns", name="www", uid="m-1", domain="www.example.com", database="shop",
                                cluster_issuer=None, secret_name=None)
    return DomainMapping(**{**base, **kw})


# ---- the database's own host ------------------------------------------------------------------

@pytest.mark.parametrize(("workers", "port_name", "port"), [(0, "http", 8069), (2, "longpolling", 8072)])
def test_websocket_goes_to_the_port_that_serves_it(workers: int, port_name: str, port: int) -> None:
    db = make_db(app={"workers": workers})
    ingress = specs.routes.build_database_ingress(db, SETTINGS)
    paths = {p["path"]: p["backend"]["service"]["port"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {"/websocket": port_name, "/": "http"}
    route = specs.routes.build_database_route(db, Settings(gateway="infra/public"))
    assert [(r["matches"][0]["path"]["value"], r["backendRefs"][0]["port"]) for r in route["spec"]["rules"]] == [
        ("/websocket", port), ("/", 8069)]
    # The Service keeps both ports whatever the workers.
    service_ports = {p["name"]: p["port"] for p in specs.app.build_service(db)["spec"]["ports"]}
    assert service_ports == {"http": 8069, "longpolling": 8072}


def test_ingress_routes_default_host_and_tls_with_issuer() -> None:
    plain = specs.routes.build_database_ingress(make_db(), SETTINGS)
    assert plain["spec"]["rules"][0]["host"] == "shop.apps.example.com"
    assert "tls" not in plain["spec"]
    tls = specs.routes.build_database_ingress(make_db(), Settings(cluster_issuer="letsencrypt", ingress_class="nginx"))
    assert tls["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert tls["spec"]["tls"][0]["hosts"] == ["shop.apps.example.com"]
    assert tls["spec"]["ingressClassName"] == "nginx"
    assert specs.routes.database_url(make_db(), Settings(cluster_issuer="x")) == "https://shop.apps.example.com"


def test_the_database_host_is_an_httproute_on_the_configured_gateway() -> None:
    route = specs.routes.build_database_route(make_db(), Settings(gateway="infra/public"))
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "namespace": "infra", "name": "public"}]
    assert route["spec"]["hostnames"] == [make_db().hostname]
    assert [(r["matches"][0]["path"]["value"], r["backendRefs"][0]["port"]) for r in route["spec"]["rules"]] == [
        ("/websocket", 8069), ("/", 8069)]
    assert specs.routes.build_database_route(make_db(), SETTINGS)["kind"] == "Ingress"


# ---- a DomainMapping's domain -------------------------------------------------------------------

def test_ingress_route_with_cluster_issuer_gets_its_own_secret() -> None:
    route = specs.routes.build_mapping_route(make_mapping(cluster_issuer="letsencrypt"), make_db(),
                                             Settings(ingress_class="nginx"))
    assert route["kind"] == "Ingress" and route["metadata"]["name"] == "www-domain"
    assert route["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert route["spec"]["ingressClassName"] == "nginx"
    assert route["spec"]["tls"] == [{"hosts": ["www.example.com"], "secretName": "www-domain-tls"}]
    paths = route["spec"]["rules"][0]["http"]["paths"]
    # workers 0: Odoo's threaded server answers /websocket on its HTTP port; 8072 is not listening.
    assert [(p["path"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"])
            for p in paths] == [("/websocket", "shop", "http"), ("/", "shop", "http")]
    prefork = specs.routes.build_mapping_route(make_mapping(), make_db(app={"workers": 2}), Settings())
    assert [p["backend"]["service"]["port"]["name"] for p in prefork["spec"]["rules"][0]["http"]["paths"]] == [
        "longpolling", "http"]


def test_mapping_httproute_on_the_configured_gateway() -> None:
    gateway = Settings(gateway="infra/public/https")
    route = specs.routes.build_mapping_route(make_mapping(), make_db(), gateway)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "namespace": "infra", "name": "public", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["www.example.com"]
    assert [r["backendRefs"][0]["port"] for r in route["spec"]["rules"]] == [8069, 8069]
    prefork = specs.routes.build_mapping_route(make_mapping(), make_db(app={"workers": 4}), gateway)
    assert [r["backendRefs"][0]["port"] for r in prefork["spec"]["rules"]] == [8072, 8069]


def test_a_long_mapping_name_still_makes_a_valid_route_name() -> None:
    assert specs.routes.mapping_route_name("x" * 253) == "x" * 246 + "-domain"


# ---- one builder ------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [SETTINGS, Settings(ingress_class="nginx"), Settings(gateway="infra/public")],
                         ids=["ingress", "ingress-class", "gateway"])
@pytest.mark.parametrize("workers", [0, 3])
def test_a_mapping_routes_its_domain_exactly_like_the_database_routes_its_host(settings: Settings,
                                                                                workers: int) -> None:
    db = make_db(app={"workers": workers})
    own = specs.routes.build_database_route(db, settings)
    mapped = specs.routes.build_mapping_route(make_mapping(), db, settings)
    assert (own["apiVersion"], own["kind"]) == (mapped["apiVersion"], mapped["kind"])
    assert json.dumps(own["spec"]).replace(db.hostname, "HOST") == json.dumps(mapped["spec"]).replace(
        "www.example.com", "HOST")


def test_the_rendered_objects_are_unchanged() -> None:
    """Byte for byte as before the builders were merged: the apply cache's digests stay valid (a
    database's Ingress always had an annotations map, a mapping's only with an issuer)."""
    settings = Settings(base_domain="apps.example.com", images={"17.0": "odoo:17.0"}, cluster_issuer="le",
                        ingress_class="nginx")
    db = parse_odoo_database({"metadata": {"name": "shop", "namespace": "ns", "uid": "uid-1", "generation": 1},
                              "spec": {"version": "17.0", "app": {"workers": 2}}}, settings)
    assert json.dumps(specs.routes.build_database_route(db, settings)) == (
        '{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop", "namespace": "ns", '
        '"labels": {"app.kubernetes.io/name": "odoo", "app.kubernetes.io/instance": "shop", '
        '"app.kubernetes.io/component": "app", "app.kubernetes.io/managed-by": "odoo-db-operator", '
        '"odoo.dbmanager.io/database": "shop"}, "ownerReferences": [{"apiVersion": "odoo.dbmanager.io/v1alpha1", '
        '"kind": "OdooDatabase", "name": "shop", "uid": "uid-1", "controller": true, "blockOwnerDeletion": true}], '
        '"annotations": {"cert-manager.io/cluster-issuer": "le"}}, "spec": {"rules": [{"host": '
        '"shop.apps.example.com", "http": {"paths": [{"path": "/websocket", "pathType": "Prefix", "backend": '
        '{"service": {"name": "shop", "port": {"name": "longpolling"}}}}, {"path": "/", "pathType": "Prefix", '
        '"backend": {"service": {"name": "shop", "port": {"name": "http"}}}}]}}], "ingressClassName": "nginx", '
        '"tls": [{"hosts": ["shop.apps.example.com"], "secretName": "shop-tls"}]}}')
    assert specs.routes.build_database_ingress(db, SETTINGS)["metadata"]["annotations"] == {}
    mapped = specs.routes.build_mapping_route(make_mapping(secret_name="mine"), db, SETTINGS)
    assert json.dumps(mapped) == (
        '{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "www-domain", '
        '"namespace": "ns", "labels": {"app.kubernetes.io/managed-by": "odoo-db-operator", '
        '"app.kubernetes.io/component": "domain", "odoo.dbmanager.io/domain-mapping": "www"}, "ownerReferences": '
        '[{"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainMapping", "name": "www", "uid": "m-1", '
        '"controller": true, "blockOwnerDeletion": true}]}, "spec": {"rules": [{"host": "www.example.com", "http": '
        '{"paths": [{"path": "/websocket", "pathType": "Prefix", "backend": {"service": {"name": "shop", "port": '
        '{"name": "longpolling"}}}}, {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "shop", '
        '"port": {"name": "http"}}}}]}}], "tls": [{"hosts": ["www.example.com"], "secretName": "mine"}]}}')
