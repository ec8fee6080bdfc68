"""Upgrades step by step (controller/odoodatabase_upgrade.py) over the fake API server and PostgreSQL of
tests/fakes.py: what each pass does, what the database's marker records after it, and the status it
returns — the offer and its deadline, the test copy, the production upgrade, its rollback on failure, a
requested rollback, a rollback resumed after a kill between DROP and CREATE. The same flow on a real Odoo
is tests/test_upgrade_e2e.py; the version table and its order are tested here too."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from fakes import NAMESPACE, World, condition, database_body, timestamp
from odoo_operator import API_VERSION
from odoo_operator.api.model import SpecError, pre_upgrade_database_name
from odoo_operator.api.versions import below_latest_major, newest_above, parse_upgrade, version_key
from odoo_operator.config import Settings, UpgradeMethod, _parse_images
from odoo_operator.controller import odoodatabase, odoodatabase_upgrade
from odoo_operator.controller.base import Outcome
from test_controller_odoodatabase import provisioned

TABLE = {"16.0": "odoo:16.0", "saas~16.1": "odoo:16.1", "17.0": "odoo:17.0"}
METHODS = {"17.0": UpgradeMethod("migrate:17.0", ("/migrate", "--all"))}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return World(monkeypatch, Settings(base_domain="odoo.test", dns_check=False, templates=False, images=TABLE,
                                       upgrade_methods=METHODS, upgrade_grace="30d", upgrade_keep="7d"))


def run(world: World, body: dict[str, Any]) -> tuple[Outcome, dict[str, Any]]:
    return world.reconcile(odoodatabase.reconcile, body)


def ready_on_16(world: World, **spec: Any) -> dict[str, Any]:
    return provisioned(world, version="16.0", **spec)


def set_spec(world: World, body: dict[str, Any], **spec: Any) -> dict[str, Any]:
    stored = world.kube.find("OdooDatabase", "shop")
    assert stored is not None
    stored["spec"].update(spec)
    stored["metadata"]["generation"] += 1
    return {**body, "spec": dict(stored["spec"]), "metadata": dict(stored["metadata"])}


def marker(world: World) -> dict[str, Any]:
    return dict(world.pg.databases["shop"].marker or {})


def image_of(world: World) -> tuple[str, int]:
    deployment = world.kube.find("Deployment", "shop")
    assert deployment is not None
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"], deployment["spec"]["replicas"]


def upgrade_job(world: World) -> dict[str, Any]:
    jobs = [n for n in world.kube.names("Job") if "-upgrade-" in n]
    assert len(jobs) == 1, jobs
    job = world.kube.find("Job", jobs[0])
    assert job is not None
    return job


# ---- the version table ------------------------------------------------------------------------------

def test_versions_are_ordered_as_odoo_orders_them() -> None:
    assert sorted(["18.0", "saas~17.2", "17.0", "9.0"], key=version_key) == ["9.0", "17.0", "saas~17.2", "18.0"]
    assert newest_above("16.0", TABLE) == "17.0" and newest_above("17.0", TABLE) is None
    assert below_latest_major("saas~16.1", TABLE) and not below_latest_major("17.0", TABLE)


def test_the_table_takes_an_upgrade_method_per_version() -> None:
    images, methods = _parse_images(json.dumps({
        "16.0": "odoo:16.0", "17.0": {"image": "odoo:17.0", "upgrade": {"image": "ou:17", "command": ["/m"]}}}))
    assert images == {"16.0": "odoo:16.0", "17.0": "odoo:17.0"}
    assert methods == {"17.0": UpgradeMethod("ou:17", ("/m",))}
    for bad in ({"17.0": {"upgrade": {}}}, {"17.0": {"image": "x", "upgrade": {"command": "migrate"}}},
                {"17.0": {"image": "x", "upgrade": {"command": [1]}}}):
        with pytest.raises(ValueError, match="ODOO_OPERATOR_IMAGES"):
            _parse_images(json.dumps(bad))


def test_spec_upgrade_is_checked_against_the_table() -> None:
    assert parse_upgrade({"targetVersion": "17.0", "deadline": "2027-01-01T00:00:00Z"}, TABLE).deadline == \
        datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
    for raw, message in (({"targetVersion": "19.0"}, "not in the operator's version table"),
                         ({"targetVersion": "latest"}, "not an Odoo version"),
                         ({"deadline": "tomorrow"}, "not an RFC 3339 time"),
                         ({"testFirst": "yes"}, "true or false")):
        with pytest.raises(SpecError, match=message):
            parse_upgrade(raw, TABLE)


# ---- offered ------------------------------------------------------------------------------------------

def test_a_newer_version_is_offered_with_a_deadline_below_the_latest_major(world: World) -> None:
    body = ready_on_16(world)
    status = body["status"]
    assert status["version"] == "16.0" and status["availableUpgrade"] == "17.0"
    offered = datetime.datetime.fromisoformat(status["upgradeOfferedAt"].replace("Z", "+00:00"))
    deadline = datetime.datetime.fromisoformat(status["upgradeDeadline"].replace("Z", "+00:00"))
    assert deadline - offered == datetime.timedelta(days=30)
    outcome, body = run(world, body)
    assert condition(outcome, "UpgradeAvailable").status == "True"
    assert body["status"]["upgradeOfferedAt"] == status["upgradeOfferedAt"]  # the invitation is not moved
    assert not [e for e in outcome.events if e[1] == "UpgradeAvailable"]  # said once
    assert marker(world)["version"] == "16.0"


def test_on_the_latest_major_an_upgrade_is_offered_without_a_deadline(world: World) -> None:
    world.settings = world.ctx.settings = Settings(base_domain="odoo.test", dns_check=False, templates=False,
                                                   images={"16.0": "odoo:16.0", "saas~16.1": "odoo:16.1"})
    body = ready_on_16(world)
    assert body["status"]["availableUpgrade"] == "saas~16.1" and body["status"].get("upgradeDeadline") is None


# ---- the test upgrade -------------------------------------------------------------------------------

def test_a_test_upgrade_is_a_neutralized_copy_asking_for_the_target(world: World) -> None:
    body = ready_on_16(world)
    body = set_spec(world, body, upgrade={"targetVersion": "17.0"})
    outcome, body = run(world, body)
    copy = world.kube.find("OdooDatabase", "shop-upgrade-test")
    assert copy is not None
    assert copy["spec"]["duplicateFrom"] == {"name": "shop", "forTesting": True}
    assert copy["spec"]["version"] == "17.0" and copy["spec"]["backup"] == {"enabled": False}
    assert copy["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    assert outcome.phase == "Ready" and body["status"]["upgrade"]["test"]["state"] == "Running"
    assert image_of(world) == ("odoo:16.0", 1)  # production untouched

    world.kube.set_status("OdooDatabase", "shop-upgrade-test", {
        "version": "17.0", "url": "http://shop-upgrade-test.odoo.test",
        "conditions": [{"type": "Ready", "status": "True"}], "upgrade": {"durationSeconds": 12.5}})
    outcome, body = run(world, body)
    test = body["status"]["upgrade"]["test"]
    assert (test["state"], test["url"], test["durationSeconds"]) == ("Succeeded", "http://shop-upgrade-test.odoo.test",
                                                                     12.5)
    assert [e[1] for e in outcome.events] == ["UpgradeTestSucceeded"]


def test_production_waits_for_a_successful_test_when_test_first(world: World) -> None:
    body = ready_on_16(world)
    body = set_spec(world, body, version="17.0")
    outcome, body = run(world, body)
    assert world.kube.find("OdooDatabase", "shop-upgrade-test") is not None
    assert "upgrade" not in marker(world) and image_of(world) == ("odoo:16.0", 1)
    world.kube.set_status("OdooDatabase", "shop-upgrade-test", {
        "conditions": [{"type": "Stalled", "status": "True", "reason": "UpgradeFailed", "message": "boom"}],
        "upgrade": {"logTail": "Traceback: boom"}})
    outcome, body = run(world, body)
    assert outcome.stalled.status == "True" and outcome.stalled.reason == "UpgradeFailed"
    assert body["status"]["upgrade"]["test"]["logTail"] == "Traceback: boom"
    assert image_of(world) == ("odoo:16.0", 1) and "upgrade" not in marker(world)


# ---- the production upgrade -------------------------------------------------------------------------

def start_production_upgrade(world: World) -> dict[str, Any]:
    body = ready_on_16(world)
    body = set_spec(world, body, version="17.0", upgrade={"testFirst": False})
    outcome, body = run(world, body)
    assert (outcome.phase, outcome.reconciling.reason) == ("Upgrading", "Upgrading"), outcome.ready
    return body


def test_an_upgrade_stops_the_app_copies_the_database_then_runs_the_method(world: World) -> None:
    body = start_production_upgrade(world)
    # The app at 0 replicas on its old image; no Pods (the fake has none): the copy is made, the Job runs.
    assert image_of(world) == ("odoo:16.0", 0)
    copy = pre_upgrade_database_name(body["metadata"]["uid"])
    assert world.pg.called("copy_database")[-1] == ("shop", copy, body["status"]["roleName"])
    assert world.pg.databases[copy].marker["version"] == "16.0"  # type: ignore[index]
    assert marker(world)["upgrade"]["step"] == "upgrading"
    assert world.kube.find("PersistentVolumeClaim", "shop-pre-upgrade") is not None
    job = upgrade_job(world)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0  # never run twice on a half-migrated database
    assert pod["containers"][0]["image"] == "migrate:17.0"
    assert pod["containers"][0]["command"][-2:] == ["/migrate", "--all"]
    assert pod["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["initContainers"][0]["name"] == "copy-filestore"

    outcome, body = run(world, body)  # the Job runs: nothing moves
    assert outcome.phase == "Upgrading" and image_of(world) == ("odoo:16.0", 0)

    world.kube.finish_job(job["metadata"]["name"])
    outcome, body = run(world, body)
    assert marker(world)["version"] == "17.0" and "upgrade" not in marker(world)
    assert marker(world)["preUpgrade"]["version"] == "16.0"
    assert image_of(world) == ("odoo:17.0", 1)
    record = body["status"]["upgrade"]
    assert (record["state"], record["from"], record["to"]) == ("Succeeded", "16.0", "17.0")
    assert body["status"]["version"] == "17.0" and body["status"].get("availableUpgrade") is None
    world.kube.make_available("shop")
    outcome, body = run(world, body)
    assert outcome.phase == "Ready" and body["status"]["upgrade"]["downtimeSeconds"] >= 0


def test_a_failed_upgrade_puts_the_database_and_files_back_and_the_app_returns_on_the_old_version(
        world: World) -> None:
    body = start_production_upgrade(world)
    job = upgrade_job(world)["metadata"]["name"]
    world.kube.finish_job(job, "Failed", "BackoffLimitExceeded")
    outcome, body = run(world, body)
    copy = pre_upgrade_database_name(body["metadata"]["uid"])
    assert world.pg.called("copy_database")[-1] == (copy, "shop", body["status"]["roleName"])
    assert "restoring" not in (world.pg.databases[copy].marker or {})
    assert outcome.phase == "Upgrading"  # the files are being put back
    rollback = [n for n in world.kube.names("Job") if "-rollback-" in n]
    assert len(rollback) == 1
    world.kube.finish_job(rollback[0])
    outcome, body = run(world, body)
    assert outcome.stalled.status == "True" and outcome.stalled.reason == "UpgradeFailed"
    assert job in outcome.stalled.message
    assert image_of(world) == ("odoo:16.0", 1)  # back, on the old version
    assert marker(world)["version"] == "16.0" and marker(world)["failedUpgrade"]["to"] == "17.0"
    assert body["status"]["upgrade"]["state"] == "Failed" and body["status"]["version"] == "16.0"
    # Not tried again while its failed Job is there; deleting the Job retries.
    outcome, body = run(world, body)
    assert outcome.stalled.reason == "UpgradeFailed" and len([n for n in world.kube.names("Job")
                                                               if "-upgrade-" in n]) == 1
    world.kube.delete("batch/v1", "Job", job, NAMESPACE)
    outcome, body = run(world, body)
    assert outcome.phase == "Upgrading" and "failedUpgrade" not in marker(world)


def test_a_rollback_killed_between_drop_and_create_is_finished(world: World) -> None:
    body = start_production_upgrade(world)
    world.kube.finish_job(upgrade_job(world)["metadata"]["name"], "Failed")
    copy = pre_upgrade_database_name(body["metadata"]["uid"])
    # What a kill right after the DROP leaves: the copy marked restoring, the database gone.
    restoring = marker(world) | {"upgrade": marker(world)["upgrade"] | {"step": "rollingBack",
                                                                        "databaseRestored": True}}
    world.pg.databases[copy].marker = (world.pg.databases[copy].marker or {}) | {"restoring": restoring}
    del world.pg.databases["shop"]
    outcome, body = run(world, body)
    assert "shop" in world.pg.databases and outcome.ready.reason != "DatabaseMissing"
    assert marker(world)["version"] == "16.0" or marker(world)["upgrade"]["databaseRestored"]
    assert any(e[1] == "RollingBack" for e in outcome.events)


def test_a_requested_rollback_returns_to_the_pre_upgrade_copy(world: World) -> None:
    body = start_production_upgrade(world)
    world.kube.finish_job(upgrade_job(world)["metadata"]["name"])
    _, body = run(world, body)
    stored = world.kube.find("OdooDatabase", "shop")
    assert stored is not None
    assert not odoodatabase_upgrade.request_pending(stored)
    stored["metadata"]["annotations"] = {"odoo.dbmanager.io/rollback": timestamp()}
    # An annotation changes no generation: its watch event wakes the loop because a request is pending (the
    # plugin's spec.version may already be the copy's after a forced upgrade, changing nothing either).
    assert odoodatabase_upgrade.request_pending(stored)
    body = set_spec(world, body, version="16.0")
    outcome, body = run(world, body)
    assert outcome.phase == "Upgrading" and image_of(world) == ("odoo:17.0", 0)  # stopped on the new image
    rollback = [n for n in world.kube.names("Job") if "-rollback-" in n]
    world.kube.finish_job(rollback[0])
    outcome, body = run(world, body)
    assert marker(world)["version"] == "16.0" and body["status"]["upgrade"]["state"] == "RolledBack"
    assert image_of(world) == ("odoo:16.0", 1) and outcome.stalled.status == "False"
    assert "odoo.dbmanager.io/rollback" not in (world.kube.find("OdooDatabase", "shop") or {})["metadata"].get(
        "annotations", {})
    assert not odoodatabase_upgrade.request_pending(world.kube.find("OdooDatabase", "shop") or {})


def test_a_rollback_without_a_copy_is_refused(world: World) -> None:
    body = ready_on_16(world)
    stored = world.kube.find("OdooDatabase", "shop")
    assert stored is not None
    stored["metadata"]["annotations"] = {"odoo.dbmanager.io/rollback": timestamp()}
    body = {**body, "metadata": dict(stored["metadata"])}
    outcome, body = run(world, body)
    assert outcome.phase == "Ready" and any(e[1] == "RollbackRefused" for e in outcome.events)


def test_at_the_deadline_the_upgrade_is_carried_out_without_a_test(world: World) -> None:
    past = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    world.add_server()
    body = world.add(database_body(version="16.0", upgrade={"deadline": past}))
    _, body = run(world, body)
    world.kube.finish_job("shop-init")
    outcome, body = run(world, body)
    assert outcome.phase == "Upgrading" and body["status"]["upgradeDeadline"] == past
    assert any(e[1] == "Upgrading" and "deadline" in e[2] for e in outcome.events)
    assert world.kube.find("OdooDatabase", "shop-upgrade-test") is None
    assert marker(world)["upgrade"]["to"] == "17.0"


def test_the_pre_upgrade_copy_goes_with_the_database(world: World) -> None:
    body = start_production_upgrade(world)
    copy = pre_upgrade_database_name(body["metadata"]["uid"])
    assert copy in world.pg.databases
    odoodatabase.delete(body, world.ctx)
    assert "shop" not in world.pg.databases and copy not in world.pg.databases


def test_the_test_copy_is_an_odoodatabase_the_operator_may_create(world: World) -> None:
    body = ready_on_16(world, upgrade={"targetVersion": "17.0"})
    run(world, body)
    assert [c.method for c in world.kube.calls if c.kind == "OdooDatabase" and c.method == "create"] == ["create"]
    assert world.kube.get(API_VERSION, "OdooDatabase", "shop-upgrade-test", NAMESPACE) is not None


def test_an_upgrade_is_reported_by_a_pass_after_one_that_died_before_its_status(world: World) -> None:
    body = ready_on_16(world)
    body = set_spec(world, body, version="17.0", upgrade={"testFirst": False})
    run(world, body)  # its status is never published: the next pass gets the body as it was
    body["status"].pop("upgrade", None)
    outcome, body = run(world, body)
    record = body["status"]["upgrade"]
    assert (record["state"], record["from"], record["to"]) == ("Upgrading", "16.0", "17.0"), record
    assert record["startedAt"] == marker(world)["upgrade"]["startedAt"] and outcome.phase == "Upgrading"


def test_an_upgrade_finished_by_a_pass_that_died_before_its_status_is_reported_succeeded(world: World) -> None:
    body = start_production_upgrade(world)  # published: state Upgrading
    world.kube.finish_job(upgrade_job(world)["metadata"]["name"])
    run(world, body)  # marker written (version 17.0), status never published
    outcome, body = run(world, body)
    record = body["status"]["upgrade"]
    assert (record["state"], record["to"]) == ("Succeeded", "17.0") and record["finishedAt"], record
    assert body["status"]["version"] == "17.0" and image_of(world) == ("odoo:17.0", 1)


def test_without_test_first_a_tested_target_does_not_hold_another_version_back(world: World) -> None:
    body = ready_on_16(world, upgrade={"targetVersion": "17.0"})
    body = set_spec(world, body, version="saas~16.1", upgrade={"targetVersion": "17.0", "testFirst": False})
    outcome, body = run(world, body)
    assert outcome.phase == "Upgrading" and marker(world)["upgrade"]["to"] == "saas~16.1"


def test_the_pre_upgrade_copy_is_removed_once_its_keep_window_is_over(world: World) -> None:
    body = start_production_upgrade(world)
    world.kube.finish_job(upgrade_job(world)["metadata"]["name"])
    _, body = run(world, body)
    copy = pre_upgrade_database_name(body["metadata"]["uid"])
    assert copy in world.pg.databases and body["status"]["upgrade"]["preUpgradeCopy"]["version"] == "16.0"
    world.pg.databases["shop"].marker = marker(world) | {"preUpgrade": marker(world)["preUpgrade"] | {
        "expiresAt": "2020-01-01T00:00:00Z"}}
    outcome, body = run(world, body)
    assert copy not in world.pg.databases and "preUpgrade" not in marker(world)
    assert world.kube.find("PersistentVolumeClaim", "shop-pre-upgrade") is None
    assert "preUpgradeCopy" not in body["status"]["upgrade"]
    stored = world.kube.find("OdooDatabase", "shop")  # as the API server merged the status patch
    assert stored is not None and "preUpgradeCopy" not in stored["status"]["upgrade"], stored["status"]["upgrade"]
    assert any(e[1] == "PreUpgradeCopyExpired" for e in outcome.events)


def test_a_new_target_replaces_the_test_copy_of_the_previous_one(world: World) -> None:
    body = ready_on_16(world, upgrade={"targetVersion": "saas~16.1"})
    _, body = run(world, body)
    assert (world.kube.find("OdooDatabase", "shop-upgrade-test") or {})["spec"]["version"] == "saas~16.1"
    body = set_spec(world, body, upgrade={"targetVersion": "17.0"})
    outcome, body = run(world, body)
    assert world.kube.find("OdooDatabase", "shop-upgrade-test") is None  # deleted (the fake has no finalizer)
    assert body["status"]["upgrade"]["test"] == {**body["status"]["upgrade"]["test"], "state": "Running", "to": "17.0"}
    outcome, body = run(world, body)
    assert (world.kube.find("OdooDatabase", "shop-upgrade-test") or {})["spec"]["version"] == "17.0"


def test_an_object_of_the_test_copys_name_that_is_not_ours_is_left_alone(world: World) -> None:
    body = ready_on_16(world)
    world.add(database_body("shop-upgrade-test", version="16.0"))
    body = set_spec(world, body, upgrade={"targetVersion": "17.0"})
    outcome, body = run(world, body)
    assert outcome.phase == "Ready" and body["status"]["upgrade"]["test"]["state"] == "Failed"
    assert "not this database's test copy" in body["status"]["upgrade"]["test"]["logTail"]
    assert (world.kube.find("OdooDatabase", "shop-upgrade-test") or {})["spec"]["version"] == "16.0"


def test_a_failed_test_is_run_again_on_a_fresh_copy_when_asked(world: World) -> None:
    """The Stalled message and the alert say `kubectl odoo upgrade shop --test` tests again: the plugin's
    annotation (a time after the test finished) replaces the failed copy with a fresh one."""
    from odoo_operator.kubectl.upgrade import plan_test

    body = ready_on_16(world)
    body = set_spec(world, body, version="17.0")
    _, body = run(world, body)
    world.kube.set_status("OdooDatabase", "shop-upgrade-test", {
        "conditions": [{"type": "Stalled", "status": "True", "reason": "UpgradeFailed", "message": "boom"}]})
    outcome, body = run(world, body)
    assert outcome.stalled.reason == "UpgradeFailed" and "kubectl odoo upgrade shop --test" in outcome.stalled.message
    finished = body["status"]["upgrade"]["test"]["finishedAt"]
    old_uid = (world.kube.find("OdooDatabase", "shop-upgrade-test") or {})["metadata"]["uid"]
    # Nothing asked: the result stands, the copy stays for inspection.
    outcome, body = run(world, body)
    assert body["status"]["upgrade"]["test"]["state"] == "Failed"
    assert (world.kube.find("OdooDatabase", "shop-upgrade-test") or {})["metadata"]["uid"] == old_uid

    stored = world.kube.find("OdooDatabase", "shop")
    assert stored is not None
    patch, message = plan_test({**stored, "status": body["status"]}, None, datetime.datetime.now(datetime.UTC))
    assert patch is not None and "tests again" in message, message
    annotations = patch["metadata"]["annotations"]
    stored["metadata"].setdefault("annotations", {}).update(annotations)
    body = {**body, "metadata": dict(stored["metadata"])}
    assert odoodatabase_upgrade.request_pending(body)  # its watch event wakes the loop (no new generation)
    outcome, body = run(world, body)
    assert body["status"]["upgrade"]["test"]["state"] == "Running" and outcome.stalled.status != "True"
    assert world.kube.find("OdooDatabase", "shop-upgrade-test") is None  # the failed copy goes first
    outcome, body = run(world, body)
    fresh = world.kube.find("OdooDatabase", "shop-upgrade-test")
    assert fresh is not None and fresh["metadata"]["uid"] != old_uid and fresh["spec"]["version"] == "17.0"
    assert body["status"]["upgrade"]["test"]["startedAt"] >= finished
    assert body["status"]["upgrade"]["test"]["retest"] == annotations["odoo.dbmanager.io/upgrade-test"]
    assert not odoodatabase_upgrade.request_pending(body)  # answered: no more wake-ups for it
    # The same annotation does not start a third test once this one is over (even if it finishes within the
    # second the annotation names: the request is recorded as answered).
    world.kube.set_status("OdooDatabase", "shop-upgrade-test", {
        "conditions": [{"type": "Stalled", "status": "True", "reason": "UpgradeFailed", "message": "boom"}]})
    _, body = run(world, body)
    _, body = run(world, body)
    assert body["status"]["upgrade"]["test"]["state"] == "Failed"
    assert (world.kube.find("OdooDatabase", "shop-upgrade-test") or {})["metadata"]["uid"] == fresh["metadata"]["uid"]


def test_a_database_being_upgraded_is_not_copied(world: World) -> None:
    """Its data is half-migrated, and a copy would briefly disconnect the upgrade Job's sessions."""
    body = start_production_upgrade(world)
    assert marker(world)["upgrade"]
    outcome, copy = run(world, world.add(database_body("copy", duplicateFrom={"name": "shop"})))
    assert outcome.ready.reason == "SourceNotReady" and "being upgraded" in outcome.ready.message
    assert "copy" not in world.pg.databases
    del body


def test_stopping_the_app_for_an_upgrade_changes_only_its_replicas(world: World) -> None:
    """The app's template keeps its credentials' fingerprint (read before from a kept child, which holds no
    spec: it became empty, so the stopped app's template changed twice around the upgrade)."""
    ready_on_16(world)
    before = (world.kube.find("Deployment", "shop") or {})["spec"]["template"]
    start_production_upgrade_on(world)
    after = (world.kube.find("Deployment", "shop") or {})["spec"]
    assert after["replicas"] == 0 and after["template"] == before


def start_production_upgrade_on(world: World) -> None:
    stored = world.kube.find("OdooDatabase", "shop")
    assert stored is not None
    body = set_spec(world, {"apiVersion": API_VERSION, "kind": "OdooDatabase", "metadata": stored["metadata"],
                            "spec": stored["spec"], "status": stored.get("status") or {}},
                    version="17.0", upgrade={"testFirst": False})
    outcome, _ = run(world, body)
    assert outcome.phase == "Upgrading", outcome.ready


def test_a_database_being_upgraded_is_renamed_only_once_that_is_over(world: World) -> None:
    """ALTER DATABASE … RENAME terminates the database's sessions: the upgrade Job's among them."""
    body = start_production_upgrade(world)
    body = set_spec(world, body, databaseName="renamed")
    outcome, body = run(world, body)
    assert outcome.ready.reason == "Renaming" and "being upgraded" in outcome.ready.message
    assert "shop" in world.pg.databases and "renamed" not in world.pg.databases
