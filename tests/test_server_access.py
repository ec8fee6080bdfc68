"""PostgresServer spec.allowedNamespaces: which tenants (namespaces) may put databases on a server.

Pure: the label selector semantics and the parsing. On the real control plane: an OdooDatabase of a
namespace the server does not allow is Stalled (ServerNotAllowed) and nothing is created in PostgreSQL; listing
the namespace or labelling it to match the selector lets it through; the API server refuses a malformed
selector."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import condition, get_json, odoo_database, wait_until
from odoo_operator.api.model import SpecError, parse_postgres_server, selector_matches
from odoo_operator.controller.postgresserver import namespace_allowed
from odoo_operator.devtools.dev import SYSTEM_NAMESPACE
from odoo_operator.devtools.localcluster import LocalCluster
from test_lifecycle import databases, wait_ready, wait_reason


def server_body(allowed: Any = None, **spec: Any) -> dict[str, Any]:
    spec = {"host": "127.0.0.1", "adminSecretRef": {"namespace": "odoo-system", "name": "postgres-admin"}, **spec}
    if allowed is not None:
        spec["allowedNamespaces"] = allowed
    return {"metadata": {"name": "pg"}, "spec": spec}


# ---- pure ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ({}, {}, True),
    ({"matchLabels": {"tier": "gold"}}, {"tier": "gold", "x": "y"}, True),
    ({"matchLabels": {"tier": "gold"}}, {"tier": "silver"}, False),
    ({"matchLabels": {"tier": "gold"}}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "silver"]}]}, {"tier": "silver"}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["free"]}]}, {}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["free"]}]}, {"tier": "free"}, False),
    ({"matchExpressions": [{"key": "paid", "operator": "Exists"}]}, {"paid": ""}, True),
    ({"matchExpressions": [{"key": "paid", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "trial", "operator": "DoesNotExist"}]}, {"trial": "1"}, False),
    ({"matchLabels": {"tier": "gold"}, "matchExpressions": [{"key": "trial", "operator": "DoesNotExist"}]},
     {"tier": "gold"}, True),
])
def test_selector_matches_as_the_api_server_does(selector: dict[str, Any], labels: dict[str, str],
                                                 expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


def test_namespace_allowed() -> None:
    def no_labels() -> dict[str, str]:
        raise AssertionError("labels fetched although not needed")

    everyone = parse_postgres_server(server_body())
    assert everyone.allowed_namespaces is None
    assert namespace_allowed(everyone, "anyone", no_labels)

    listed = parse_postgres_server(server_body({"names": ["shop", "crm"]}))
    assert namespace_allowed(listed, "shop", no_labels)
    assert not namespace_allowed(listed, "other", lambda: {"tier": "gold"})  # no selector: names only

    both = parse_postgres_server(server_body({"names": ["shop"], "selector": {"matchLabels": {"tier": "gold"}}}))
    assert namespace_allowed(both, "shop", no_labels)
    assert namespace_allowed(both, "other", lambda: {"tier": "gold"})
    assert not namespace_allowed(both, "other", lambda: {})

    nobody = parse_postgres_server(server_body({}))
    assert not namespace_allowed(nobody, "shop", lambda: {})
    everything = parse_postgres_server(server_body({"selector": {}}))
    assert namespace_allowed(everything, "shop", lambda: {})


@pytest.mark.parametrize(("allowed", "message"), [
    ({"names": ["../kube-system"]}, "spec.allowedNamespaces.names[0]"),
    ({"names": "shop"}, "must be a list"),
    ({"selector": {"matchExpressions": [{"key": "tier", "operator": "Equals"}]}}, "operator among"),
    ({"selector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}}, "In and NotIn need values"),
    ({"selector": {"matchExpressions": [{"key": "t", "operator": "Exists", "values": ["x"]}]}}, "take none"),
    ({"selector": {"matchLabels": ["tier"]}}, "must be a label selector"),
])
def test_invalid_allow_lists_are_refused(allowed: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_postgres_server(server_body(allowed))


# ---- on the real control plane -------------------------------------------------------------------
@pytest.fixture
def restricted_server(cluster: LocalCluster, default_server: str) -> Iterator[str]:
    """The harness's PostgreSQL once more, as a non-default server only namespaces labelled tier=gold, or
    listed by the test, may use."""
    name = f"restricted-{uuid.uuid4().hex[:6]}"
    local = get_json(cluster, "pgs", default_server)
    spec = {"host": local["spec"]["host"], "port": local["spec"]["port"], "sslMode": "disable",
            "adminSecretRef": {"namespace": SYSTEM_NAMESPACE, "name": "postgres-admin"},
            "allowedNamespaces": {"names": [], "selector": {"matchLabels": {"tier": "gold"}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "odoo.dbmanager.io/v1alpha1",
                                                          "kind": "PostgresServer", "metadata": {"name": name},
                                                          "spec": spec}))
    yield name
    cluster.kubectl("delete", "pgs", name, "--ignore-not-found", check=False)


@pytest.mark.e2e
def test_a_server_refuses_namespaces_it_does_not_allow(cluster: LocalCluster, operator: Any, namespace: str,
                                                       restricted_server: str, pg_dsn: str) -> None:
    name = f"acl{uuid.uuid4().hex[:6]}"
    cluster.kubectl("apply", "-f", "-", input=odoo_database(name, namespace, server=restricted_server))
    obj = wait_reason(cluster, name, namespace, "ServerNotAllowed")
    ready = condition(obj, "Ready")
    assert ready["status"] == "False" and condition(obj, "Stalled")["status"] == "True"
    assert restricted_server in ready["message"] and namespace in ready["message"]
    assert "spec.allowedNamespaces" in ready["message"]
    assert name not in databases(pg_dsn)
    assert get_json(cluster, "secret", f"{name}-db", "-n", namespace) == {}  # nothing made for it either

    # The namespace gets the label the selector asks for; any change wakes the database up.
    cluster.kubectl("label", "namespace", namespace, "tier=gold")
    cluster.kubectl("patch", "odb", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"tags":["x"]}}')
    wait_ready(cluster, name, namespace, timeout=120)
    assert name in databases(pg_dsn)

    # Taken back: the label goes and the namespace is not listed. The existing database is left alone
    # (Stalled, not dropped); listing the namespace by name lets it through again.
    cluster.kubectl("label", "namespace", namespace, "tier-")
    cluster.kubectl("patch", "odb", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"tags":["y"]}}')
    wait_reason(cluster, name, namespace, "ServerNotAllowed")
    assert name in databases(pg_dsn)
    cluster.kubectl("patch", "pgs", restricted_server, "--type=merge",
                    "-p", json.dumps({"spec": {"allowedNamespaces": {"names": [namespace]}}}))
    wait_ready(cluster, name, namespace, timeout=120)

    # Deleting it drops its own database, whatever the allow-list says.
    cluster.kubectl("patch", "pgs", restricted_server, "--type=merge",
                    "-p", json.dumps({"spec": {"allowedNamespaces": {"names": ["someone-else"]}}}))
    cluster.kubectl("delete", "odb", name, "-n", namespace, "--timeout=90s")
    wait_until(lambda: name not in databases(pg_dsn), 30, f"database {name} to be dropped")


@pytest.mark.e2e
@pytest.mark.parametrize(("allowed", "message"), [
    ({"selector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}}, "In and NotIn need values"),
    ({"selector": {"matchExpressions": [{"key": "tier", "operator": "Equals", "values": ["a"]}]}}, "operator"),
    ({"names": ["Not_A_Namespace"]}, "allowedNamespaces.names[0]"),
])
def test_the_api_server_refuses_malformed_allow_lists(cluster: LocalCluster, allowed: Any, message: str) -> None:
    body = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "PostgresServer",
            "metadata": {"name": f"bad-{uuid.uuid4().hex[:6]}"}, "spec": server_body(allowed)["spec"]}
    result = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
