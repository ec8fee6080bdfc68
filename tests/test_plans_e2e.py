"""OdooPlans on the real API server and PostgreSQL: the admission policy (manifests/admission-policy-plans.yaml,
a ValidatingAdmissionPolicy with OdooPlans as its params) refuses custom domains in a namespace bound to a plan
without them, and nowhere else; the operator finds a real database over its plan's storage limit (OverQuota,
one Warning Event) and refuses a duplicate of it. Step by step over fakes: tests/test_plans.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import condition, get_json, odoo_database, wait_until
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster

pytestmark = pytest.mark.e2e
POLICY = REPO_ROOT / "manifests" / "admission-policy-plans.yaml"


def plan(cluster: LocalCluster, name: str, **spec: Any) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "OdooPlan", "metadata": {"name": name}, "spec": spec}))


def bind(cluster: LocalCluster, namespace: str, plan_name: str) -> None:
    cluster.kubectl("label", "namespace", namespace, f"odoo.dbmanager.io/plan={plan_name}", "--overwrite")


def mapping(namespace: str, domain: str) -> str:
    return json.dumps({"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainMapping",
                       "metadata": {"name": "www", "namespace": namespace},
                       "spec": {"domain": domain, "databaseRef": {"name": "shop"}}})


@pytest.fixture
def plan_name(cluster: LocalCluster) -> Iterator[str]:
    name = f"trial-{uuid.uuid4().hex[:6]}"
    yield name
    cluster.kubectl("delete", "odooplan", name, "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def plan_policy(cluster: LocalCluster) -> Iterator[None]:
    cluster.kubectl("apply", "-f", str(POLICY))
    yield
    cluster.kubectl("delete", "-f", str(POLICY), "--ignore-not-found", check=False)


def test_a_plan_without_custom_domains_is_enforced_at_admission(
        cluster: LocalCluster, plan_policy: None, namespace: str, plan_name: str) -> None:
    plan(cluster, plan_name, customDomains=False)
    plan(cluster, f"{plan_name}-std")  # another plan (custom domains allowed) is no business of this namespace
    bind(cluster, namespace, plan_name)

    def refused() -> str | None:
        result = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=mapping(namespace, "shop.example.com"),
                                 check=False)
        return result.stderr if result.returncode != 0 else None

    message = wait_until(refused, 30, "the policy to refuse the DomainMapping")
    assert (f"DomainMapping {namespace}/www (shop.example.com) is refused: namespace {namespace} is bound to "
            f"OdooPlan {plan_name}, which allows no custom domains (spec.customDomains: false).") in message
    custom = cluster.kubectl("create", "--dry-run=server", "-f", "-", check=False,
                             input=odoo_database("shop", namespace, hostname="shop.example.com"))
    assert custom.returncode != 0 and "spec.hostname shop.example.com is refused" in custom.stderr
    own = cluster.kubectl("create", "--dry-run=server", "-f", "-", check=False,
                          input=odoo_database("shop", namespace, hostname="shop.odoo.localhost"))
    assert own.returncode == 0, own.stderr  # the platform's own host is no custom domain

    bind(cluster, namespace, f"{plan_name}-std")
    wait_until(lambda: refused() is None, 30, "a plan with custom domains to allow the DomainMapping")
    cluster.kubectl("label", "namespace", namespace, "odoo.dbmanager.io/plan-")
    assert refused() is None  # no plan, no limits
    cluster.kubectl("delete", "odooplan", f"{plan_name}-std")


def test_a_real_database_over_its_plans_storage_is_over_quota_and_not_duplicated(
        cluster: LocalCluster, operator: Any, namespace: str, plan_name: str) -> None:
    plan(cluster, plan_name, maxStoragePerDatabase="1Mi")  # an empty PostgreSQL database takes ~7 MB
    bind(cluster, namespace, plan_name)
    cluster.kubectl("apply", "-f", "-", input=odoo_database("big", namespace))

    def over() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", "big", "-n", namespace)
        return obj if condition(obj, "OverQuota").get("status") == "True" else None

    big = wait_until(over, 120, "OverQuota")
    assert f"more than the 1.0 MiB of OdooPlan '{plan_name}'" in condition(big, "OverQuota")["message"]
    wait_until(lambda: condition(get_json(cluster, "odb", "big", "-n", namespace), "Ready").get("status") == "True",
               120, "big Ready all the same")
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                        "involvedObject.name=big,reason=OverQuota", "-o", "json").stdout)["items"]
    assert [e["type"] for e in events] == ["Warning"]

    cluster.kubectl("apply", "-f", "-", input=odoo_database("copy", namespace, duplicateFrom={"name": "big"}))

    def refused() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", "copy", "-n", namespace)
        return obj if condition(obj, "Ready").get("reason") == "OverQuota" else None

    copy = wait_until(refused, 60, "the duplicate refused")
    assert condition(copy, "Stalled")["status"] == "True"
    assert "a new duplicate of OdooDatabase 'big' is refused" in condition(copy, "Ready")["message"]
    assert not (copy.get("status") or {}).get("createdAt")
