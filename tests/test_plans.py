"""OdooPlans as each controller meets them (controller/plans.py), over the fake API server and PostgreSQL of
tests/fakes.py: storage per database (OverQuota, one Warning, then no duplicate, restore or backup of it),
copies for testing per source, custom domains, a namespace bound to a plan that does not exist. Admission of
the same limits on the real API server: tests/test_plans_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest

from fakes import (
    NAMESPACE,
    FakeDatabase,
    World,
    backup_body,
    condition,
    database_body,
    mapping_body,
    timestamp,
)
from odoo_operator import API_VERSION
from odoo_operator.api.labels import PLAN_LABEL
from odoo_operator.api.model import role_name
from odoo_operator.controller import databasebackup, domainmapping, odoodatabase

ROLE = role_name(NAMESPACE, "shop")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    w = World(monkeypatch)
    w.add_server()
    return w


def plan(world: World, name: str = "trial", **spec: Any) -> None:
    world.kube.put({"apiVersion": API_VERSION, "kind": "OdooPlan", "metadata": {"name": name}, "spec": spec})
    world.add_namespace(NAMESPACE, **{PLAN_LABEL: name})


def provisioned(world: World, name: str = "shop", **spec: Any) -> dict[str, Any]:
    body = world.add(database_body(name, **spec))
    _, body = world.reconcile(odoodatabase.reconcile, body)
    world.kube.finish_job(f"{name}-init")
    _, body = world.reconcile(odoodatabase.reconcile, body)
    world.kube.make_available(name)
    outcome, body = world.reconcile(odoodatabase.reconcile, body)
    assert outcome.phase == "Ready", outcome.ready
    return body


def test_over_the_storage_limit_a_database_is_over_quota_with_one_warning_and_stays_ready(world: World) -> None:
    plan(world, maxStoragePerDatabase="5M")  # the fake database takes 8 MB
    body = world.add(database_body())
    events: list[tuple[str, str, str]] = []
    for step in (None, lambda: world.kube.finish_job("shop-init"), lambda: world.kube.make_available("shop"),
                 None, None):
        if step:
            step()
        outcome, body = world.reconcile(odoodatabase.reconcile, body)
        events += outcome.events
    over = condition(outcome, "OverQuota")
    assert (over.status, over.reason) == ("True", "StorageLimit") and outcome.phase == "Ready"
    assert over.message == ("the database takes 7.6 MiB, more than the 4.8 MiB of OdooPlan 'trial': new duplicates, "
                            "restores and backups of it are refused until it is below")
    assert [e for e in events if e[1] == "OverQuota"] == [("Warning", "OverQuota", over.message)]  # once


def test_within_the_limit_says_how_much_is_left(world: World) -> None:
    plan(world, maxStoragePerDatabase="1Gi")
    body = provisioned(world)
    outcome, _ = world.reconcile(odoodatabase.reconcile, body)
    over = condition(outcome, "OverQuota")
    assert (over.status, over.reason, over.message) == ("False", "WithinLimits",
                                                        "7.6 MiB of the 1.0 GiB of OdooPlan 'trial'")


def over_quota_source(world: World) -> dict[str, Any]:
    status = {"initializedAt": timestamp(), "databaseName": "shop", "server": "main", "roleName": ROLE,
              "conditions": [{"type": "OverQuota", "status": "True", "reason": "StorageLimit",
                              "message": "the database takes 2.0 GiB, more than the 1.0 GiB of OdooPlan 'trial'"}]}
    source = world.add(database_body(status=status))
    world.pg.databases["shop"] = FakeDatabase(ROLE, {
        "managedBy": "odoo-db-operator", "namespace": NAMESPACE, "name": "shop", "initialized": True})
    return source


def test_no_duplicate_restore_or_backup_of_a_database_over_quota(world: World) -> None:
    plan(world, maxStoragePerDatabase="1Gi")
    over_quota_source(world)

    copy = world.add(database_body("copy", duplicateFrom={"name": "shop"}))
    outcome, _ = world.reconcile(odoodatabase.reconcile, copy)
    assert (outcome.ready.reason, outcome.stalled.status) == ("OverQuota", "True")
    assert "a new duplicate of OdooDatabase 'shop' is refused: the database takes 2.0 GiB" in outcome.ready.message
    assert world.pg.called("copy_database") == []

    world.add(backup_body("shop-daily", schedule="@daily", status={"artifacts": [{"id": "a1", "time": timestamp()}]}))
    outcome, _ = world.reconcile(databasebackup.reconcile, world.kube.find("DatabaseBackup", "shop-daily") or {})
    assert outcome.ready.reason == "OverQuota"
    cron = world.kube.find("CronJob", "shop-daily")
    assert cron is not None and cron["spec"]["suspend"] is True  # paused while over, resumes once below

    outcome, _ = world.reconcile(databasebackup.reconcile, world.add(backup_body("shop-now")))
    assert outcome.ready.reason == "OverQuota" and world.kube.find("Job", "shop-now") is None

    outcome, _ = world.reconcile(odoodatabase.reconcile, world.add(database_body(
        "back", restoreFrom={"backup": "shop-daily"})))
    assert outcome.ready.reason == "OverQuota" and "a restore of the backups" in outcome.ready.message
    assert "back" not in world.pg.databases


def test_below_the_limit_again_the_scheduled_backups_resume(world: World) -> None:
    plan(world, maxStoragePerDatabase="1Gi")
    over_quota_source(world)
    backup = world.add(backup_body("shop-daily", schedule="@daily"))
    world.reconcile(databasebackup.reconcile, backup)
    stored = world.kube.find("OdooDatabase", "shop")
    assert stored is not None
    stored["status"]["conditions"] = []
    world.registry.show_database((NAMESPACE, "shop"), stored)
    outcome, _ = world.reconcile(databasebackup.reconcile, world.kube.find("DatabaseBackup", "shop-daily") or {})
    cron = world.kube.find("CronJob", "shop-daily")
    assert outcome.ready.reason == "Scheduled" and cron is not None and cron["spec"]["suspend"] is False


def test_copies_for_testing_are_limited_per_source_and_other_duplicates_are_not_counted(world: World) -> None:
    plan(world, maxTestCopies=1)
    world.add(database_body(status={"initializedAt": timestamp(), "databaseName": "shop", "server": "main",
                                    "roleName": ROLE}))
    world.pg.databases["shop"] = FakeDatabase(ROLE, {"managedBy": "odoo-db-operator", "namespace": NAMESPACE,
                                                     "name": "shop", "initialized": True})
    plain = world.add(database_body("plain", duplicateFrom={"name": "shop"}))
    first = world.add(database_body("test-1", duplicateFrom={"name": "shop", "forTesting": True}))
    second = world.add(database_body("test-2", duplicateFrom={"name": "shop", "forTesting": True}))
    assert world.reconcile(odoodatabase.reconcile, plain)[0].ready.reason != "DuplicateLimit"
    assert world.reconcile(odoodatabase.reconcile, first)[0].ready.reason != "DuplicateLimit"
    outcome, _ = world.reconcile(odoodatabase.reconcile, second)
    assert (outcome.ready.reason, outcome.stalled.status) == ("DuplicateLimit", "True")
    assert "already has 1 copies for testing (OdooPlan 'trial'), the most allowed" in outcome.ready.message


def test_a_plan_without_custom_domains(world: World) -> None:
    plan(world, customDomains=False)
    outcome, _ = world.reconcile(odoodatabase.reconcile, world.add(database_body(hostname="shop.example.com")))
    assert (outcome.ready.reason, outcome.stalled.status) == ("PlanLimit", "True")
    assert "'shop.example.com' is a domain of its own, which OdooPlan 'trial' does not allow" in outcome.ready.message
    assert world.pg.called("create_database") == [] and world.kube.find("Ingress", "shop") is None

    outcome = domainmapping.reconcile(world.add(mapping_body()), world.ctx)
    assert (outcome.ready.reason, outcome.stalled.status) == ("PlanLimit", "True")
    assert world.kube.names("DomainClaim", None) == []

    body = provisioned(world, "own")  # its own host of the base domain is no custom domain
    assert body["status"]["phase"] == "Ready"


def test_a_namespace_bound_to_a_missing_plan_gets_no_unlimited_database(world: World) -> None:
    world.add_namespace(NAMESPACE, **{PLAN_LABEL: "gold"})
    outcome, _ = world.reconcile(odoodatabase.reconcile, world.add(database_body()))
    assert (outcome.ready.reason, outcome.stalled.status) == ("PlanNotFound", "True")
    assert "bound to OdooPlan 'gold' (label odoo.dbmanager.io/plan), which does not exist" in outcome.ready.message
    assert world.pg.called("create_database") == []
