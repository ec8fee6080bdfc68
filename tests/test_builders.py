"""Pure builders: the objects an OdooDatabase owns, checked without a cluster."""

import base64
import json

import pytest

from odoo_operator import builders
from odoo_operator.conditions import Condition, merge_conditions
from odoo_operator.config import Settings
from odoo_operator.model import parse_odoo_database

SETTINGS = Settings(base_domain="apps.example.com", images={"17.0": "odoo:17.0"})


def make_db(**spec):
    return parse_odoo_database({"metadata": {"name": "shop", "namespace": "ns", "uid": "uid-1", "generation": 1},
                                "spec": {"version": "17.0", **spec}}, SETTINGS)


def test_every_child_is_owned_and_labelled():
    db = make_db()
    children = [
        builders.build_db_secret(db, "pg", 5432, "disable", "pw"),
        builders.build_admin_secret(db, "pw"),
        builders.build_filestore_pvc(db, SETTINGS),
        builders.build_config_map(db),
        builders.build_init_job(db),
        builders.build_deployment(db, 1, "h"),
        builders.build_service(db),
        builders.build_ingress(db, SETTINGS),
    ]
    names = [c["metadata"]["name"] for c in children]
    assert names == ["shop-db", "shop-admin", "shop-filestore", "shop-odoo-conf", "shop-init", "shop", "shop", "shop"]
    for child in children:
        ref = child["metadata"]["ownerReferences"][0]
        assert ref["uid"] == "uid-1" and ref["controller"] is True and ref["kind"] == "OdooDatabase"
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "odoo-db-operator"
        assert child["metadata"]["labels"]["odoo.dbmanager.io/database"] == "shop"


def test_db_secret_holds_connection_keys():
    secret = builders.build_db_secret(make_db(), "pg.example", 5433, "require", "s3cret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["host"] == "pg.example" and data["port"] == "5433" and data["database"] == "shop"
    assert data["password"] == "s3cret" and data["user"].startswith("odoo_")


def test_deployment_runs_one_database_with_filter_and_proxy_mode():
    deployment = builders.build_deployment(make_db(), 2, "abc")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--database", "shop", "--db-filter", "^shop$", "--proxy-mode", "--no-database-list"]
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == "odoo:17.0"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["filestore"] == "/var/lib/odoo/filestore/shop"
    # Credentials come from the Secret, never inline.
    assert "s3cret" not in json.dumps(deployment)
    assert all("valueFrom" in env for env in container["env"])


def test_password_change_rolls_the_pods():
    db = make_db()
    a = builders.credentials_fingerprint(db, "one")
    assert a != builders.credentials_fingerprint(db, "two")
    assert "one" not in a


def test_odoo_conf_disables_the_database_manager_and_keeps_user_keys():
    conf = builders.render_odoo_conf(make_db(app={"config": {"limit_time_cpu": "120"}, "workers": 4}))
    assert "list_db = False" in conf and "dbfilter = ^shop$" in conf and "proxy_mode = True" in conf
    assert "limit_time_cpu = 120" in conf and "workers = 4" in conf


def test_init_job_installs_base_without_demo_and_sets_admin_password_from_secret():
    job = builders.build_init_job(make_db())
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = container["command"][-1]
    assert "-i base" in script and "--without-demo=all" in script and "--stop-after-init" in script
    admin = [e for e in container["env"] if e["name"] == "ODOO_ADMIN_PASSWORD"][0]
    assert admin["valueFrom"]["secretKeyRef"] == {"name": "shop-admin", "key": "password"}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_ingress_routes_default_host_and_tls_with_issuer():
    plain = builders.build_ingress(make_db(), SETTINGS)
    assert plain["spec"]["rules"][0]["host"] == "shop.apps.example.com"
    assert "tls" not in plain["spec"]
    tls = builders.build_ingress(make_db(), Settings(cluster_issuer="letsencrypt", ingress_class="nginx"))
    assert tls["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert tls["spec"]["tls"][0]["hosts"] == ["shop.apps.example.com"]
    assert tls["spec"]["ingressClassName"] == "nginx"
    assert builders.database_url(make_db(), Settings(cluster_issuer="x")) == "https://shop.apps.example.com"


def test_conditions_keep_transition_time_while_status_is_unchanged():
    first = merge_conditions([], [Condition.false("Ready", "Provisioning")], 1)
    first[0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    same = merge_conditions(first, [Condition.false("Ready", "Initializing", "other reason")], 2)
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z" and same[0]["observedGeneration"] == 2
    flipped = merge_conditions(first, [Condition.true("Ready", "Ready")], 2)
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_the_database_host_is_an_httproute_on_the_configured_gateway():
    route = builders.build_route(make_db(), Settings(gateway="infra/public"))
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "namespace": "infra", "name": "public"}]
    assert route["spec"]["hostnames"] == [make_db().hostname]
    assert [(r["matches"][0]["path"]["value"], r["backendRefs"][0]["port"]) for r in route["spec"]["rules"]] == [
        ("/websocket", 8072), ("/", 8069)]
    assert builders.build_route(make_db(), SETTINGS)["kind"] == "Ingress"


@pytest.mark.parametrize("gateway", ["public", "a/b/c/d", "/public", "infra/"])
def test_a_malformed_gateway_setting_stops_the_operator_at_start(gateway):
    with pytest.raises(ValueError, match="namespace/name"):
        Settings.from_env({"ODOO_OPERATOR_GATEWAY": gateway})
