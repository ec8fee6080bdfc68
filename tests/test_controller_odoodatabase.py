"""The OdooDatabase reconciler step by step, over a fake API server and a fake PostgreSQL (tests/fakes.py):
what each pass creates and applies, and the status it returns, for each state a database goes through.
Only the public entry points are used: odoodatabase.reconcile(body, ctx, live) and odoodatabase.delete."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest

from fakes import NAMESPACE, FakeDatabase, World, b64, condition, database_body, new_uid, timestamp
from odoo_operator import API_VERSION, odoorpc, pg
from odoo_operator.api.conditions import Condition
from odoo_operator.api.model import role_name
from odoo_operator.controller import odoodatabase
from odoo_operator.controller import users as users_sync
from odoo_operator.controller.base import NotReady, Outcome

ROLE = role_name(NAMESPACE, "shop")
APP_CHILDREN = ["PersistentVolumeClaim/shop-filestore", "PersistentVolumeClaim/shop-sessions", "Service/shop",
                "Ingress/shop"]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return World(monkeypatch)


def run(world: World, body: dict[str, Any], live: dict[str, Any] | None = None) -> tuple[Outcome, dict[str, Any]]:
    return world.reconcile(odoodatabase.reconcile, body, live)


def summary(outcome: Outcome) -> tuple[str, str, str, str, str]:
    """(phase, Ready's reason, Ready, Reconciling, Stalled)."""
    return (outcome.phase, outcome.ready.reason, outcome.ready.status, outcome.reconciling.status,
            outcome.stalled.status)


def provisioned(world: World, **spec: Any) -> dict[str, Any]:
    """A database taken to Ready: created, init Job complete, app available."""
    world.add_server()
    body = world.add(database_body(**spec))
    _, body = run(world, body)
    world.kube.finish_job("shop-init")
    _, body = run(world, body)
    world.kube.make_available("shop")
    outcome, body = run(world, body)
    assert outcome.phase == "Ready", outcome.ready
    return body


# ---- creation ------------------------------------------------------------------------------------

def test_a_new_database_gets_its_role_database_and_children_then_waits_for_the_init_job(world: World) -> None:
    world.add_server()
    body = world.add(database_body())

    outcome, body = run(world, body)

    # PostgreSQL: the role, then the database owned by it, then Odoo's extension.
    assert world.pg.called("ensure_role") == [(ROLE, True)]
    assert world.pg.called("create_database") == [("shop", ROLE)]
    assert ("shop", ROLE) in world.pg.called("create_odoo_extensions")
    assert world.pg.databases["shop"].marker == {"managedBy": "odoo-db-operator", "namespace": NAMESPACE,
                                                 "name": "shop", "uid": body["metadata"]["uid"], "version": "17.0"}
    # Kubernetes: the host's claim first, the credentials before the role, then the app's children and the Job.
    written = world.kube.written()
    assert written[0] == "DomainClaim/shop.odoo.test" and "Deployment/shop" not in written
    # The Secret holds the role's password: written before the role is created with it.
    assert world.journal.index("create Secret/shop-db") < world.journal.index(f"pg ensure_role {ROLE}")
    assert world.journal.index("pg create_database shop") < world.journal.index("create Job/shop-init")
    assert set(APP_CHILDREN + ["Secret/shop-admin", "Job/shop-init"]) <= set(written)
    secret = world.kube.find("Secret", "shop-db")
    assert secret is not None and secret["data"]["user"] == b64(ROLE)
    assert secret["data"]["host"] == b64("main.db.example") and secret["data"]["database"] == b64("shop")
    ingress = world.kube.find("Ingress", "shop")
    assert ingress is not None and ingress["spec"]["rules"][0]["host"] == "shop.odoo.test"
    job = world.kube.find("Job", "shop-init")
    assert job is not None and job["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    # Status: Provisioning, Initializing, the facts recorded.
    assert summary(outcome) == ("Provisioning", "Initializing", "False", "True", "False")
    assert "shop-init" in outcome.ready.message
    assert condition(outcome, "DatabaseReady").status == "True"
    assert (condition(outcome, "Initialized").status, condition(outcome, "Initialized").reason) == (
        "False", "Initializing")
    assert outcome.retry_after == 120  # the safety net; the Job's completion wakes it (handlers.on_child_event)
    assert outcome.status["server"] == "main" and outcome.status["roleName"] == ROLE
    assert outcome.status["databaseName"] == "shop" and outcome.status["url"] == "http://shop.odoo.test"
    assert outcome.status["createdAt"] and "initializedAt" not in outcome.status
    assert outcome.status["sizeBytes"] == world.pg.databases["shop"].size


def test_a_second_pass_while_the_init_job_runs_creates_nothing_again(world: World) -> None:
    world.add_server()
    _, body = run(world, world.add(database_body()))
    world.kube.calls.clear()
    world.pg.calls.clear()

    outcome, _ = run(world, body)

    assert summary(outcome) == ("Provisioning", "Initializing", "False", "True", "False")
    assert world.kube.written() == []
    assert world.pg.called("create_database") == [] and world.pg.called("ensure_role") == [(ROLE, False)]


def test_init_job_complete_starts_the_app_and_available_app_is_ready(world: World) -> None:
    world.add_server()
    _, body = run(world, world.add(database_body()))
    world.kube.finish_job("shop-init")

    outcome, body = run(world, body)

    marker = world.pg.databases["shop"].marker or {}
    assert marker.get("initialized") is True
    deployment = world.kube.find("Deployment", "shop")
    assert deployment is not None and deployment["spec"]["replicas"] == 1
    assert summary(outcome) == ("Provisioning", "Progressing", "False", "True", "False")
    assert condition(outcome, "Initialized").status == "True"
    assert condition(outcome, "AppAvailable").status == "False"
    assert outcome.status["initializedAt"]
    assert "DatabaseBackup/shop-daily" not in world.kube.written()  # the daily backup waits for the app

    world.kube.make_available("shop")
    outcome, body = run(world, body)

    assert summary(outcome) == ("Ready", "Ready", "True", "False", "False")
    assert condition(outcome, "AppAvailable").status == "True"
    assert "http://shop.odoo.test" in outcome.ready.message
    assert outcome.retry_after == world.settings.resync_seconds
    daily = world.kube.find("DatabaseBackup", "shop-daily")
    assert daily is not None and daily["spec"]["databaseRef"] == {"name": "shop"}
    assert daily["spec"]["schedule"] == "@daily"


def test_the_rollouts_steps_do_not_rewrite_the_status(world: World) -> None:
    """Each step of the Deployment controller (spec seen, replica updated) wakes a pass; the status says the
    same until the app is available, so those passes write nothing (one write per step and database was
    about one status PATCH per database in a burst of creations)."""
    world.add_server()
    _, body = run(world, world.add(database_body()))
    world.kube.finish_job("shop-init")
    _, body = run(world, body)
    outcome, body = run(world, body)
    first = body["status"]
    assert "1 replica(s) of the latest spec to become available" in condition(outcome, "AppAvailable").message
    deployment = world.kube.find("Deployment", "shop")
    assert deployment is not None
    for step in ({"observedGeneration": deployment["metadata"]["generation"]}, {"updatedReplicas": 1}):
        world.kube.set_status("Deployment", "shop", step)
        outcome, body = run(world, body)
        assert outcome.phase == "Provisioning" and body["status"] == first


def test_a_ready_database_applies_nothing_again(world: World) -> None:
    body = provisioned(world)
    world.kube.calls.clear()

    outcome, _ = run(world, body)

    assert outcome.phase == "Ready"
    assert world.kube.calls_of("apply") == [] and world.kube.calls_of("create") == []


def test_the_role_secret_is_read_once_per_resync_unless_the_spec_changes_or_a_child_is_deleted(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets are not watched: the <name>-db Secret is created without a GET, then read again only when the
    OdooDatabase changed, a child of it was deleted (by hand? then perhaps the Secret too) or a resync
    interval has passed; a deleted Secret is then written again with a new password."""
    body = provisioned(world)
    secret_reads = lambda: [c for c in world.kube.calls_of("get", "Secret") if c.name == "shop-db"]  # noqa: E731
    assert secret_reads() == [] and "create Secret/shop-db" in world.journal  # 3 passes, no GET
    world.kube.delete("v1", "Secret", "shop-db", NAMESPACE)  # not watched: nothing tells the operator

    run(world, body)
    assert secret_reads() == [] and world.kube.find("Secret", "shop-db") is None

    world.kube.delete("v1", "Service", "shop", NAMESPACE)  # a watched child deleted by hand
    run(world, body)
    assert len(secret_reads()) == 1 and world.kube.find("Secret", "shop-db") is not None
    run(world, body)
    assert len(secret_reads()) == 1  # known again

    clock = [0.0]
    monkeypatch.setattr("odoo_operator.runtime.registry.time.monotonic", lambda: clock[0])
    world.registry.secrets.clear()
    run(world, body)
    assert len(secret_reads()) == 2
    clock[0] = world.settings.resync_seconds - 1
    run(world, body)
    assert len(secret_reads()) == 2
    clock[0] = world.settings.resync_seconds
    run(world, body)
    assert len(secret_reads()) == 3

    stored = world.kube.find("OdooDatabase", "shop")
    assert stored is not None
    stored["metadata"]["generation"] = body["metadata"]["generation"] = 2  # the user edited the spec
    run(world, body)
    assert len(secret_reads()) == 4


def test_a_failed_init_job_stalls_with_the_jobs_message(world: World) -> None:
    world.add_server()
    _, body = run(world, world.add(database_body()))
    world.kube.finish_job("shop-init", "Failed", "Job has reached the specified backoff limit")

    outcome, _ = run(world, body)

    assert summary(outcome) == ("Failed", "InitFailed", "False", "False", "True")
    assert "Job has reached the specified backoff limit" in outcome.stalled.message
    assert "delete the Job to retry" in outcome.stalled.message
    assert outcome.retry_after is None and outcome.warning
    assert world.kube.find("Deployment", "shop") is None


def test_tags_become_labels_of_the_object(world: World) -> None:
    world.add_server()
    body = database_body(tags=["vip", "eu"])
    body["metadata"]["labels"] = {"tag.odoo.dbmanager.io/old": "true"}
    world.add(body)

    run(world, body)

    patch = world.kube.calls_of("patch_metadata", "OdooDatabase")[0].body
    assert patch == {"labels": {"tag.odoo.dbmanager.io/eu": "true", "tag.odoo.dbmanager.io/vip": "true",
                                "tag.odoo.dbmanager.io/old": None}}


# ---- the server -----------------------------------------------------------------------------------

def test_no_default_server_waits_without_touching_postgresql(world: World) -> None:
    body = world.add(database_body())

    outcome, _ = run(world, body)

    assert summary(outcome) == ("Pending", "ServerNotFound", "False", "True", "False")
    assert outcome.retry_after == 30
    assert world.pg.calls == []
    assert "Secret/shop-db" not in world.kube.written()


def test_a_named_server_that_does_not_exist(world: World) -> None:
    world.add_server()
    outcome, _ = run(world, world.add(database_body(server="other")))

    assert (outcome.phase, outcome.ready.reason) == ("Pending", "ServerNotFound")
    assert "'other'" in outcome.ready.message


def test_unreachable_postgresql_is_retried(world: World) -> None:
    world.add_server()
    world.pg.reachable = False

    outcome, _ = run(world, world.add(database_body()))

    assert summary(outcome) == ("Pending", "ServerUnavailable", "False", "True", "False")
    assert outcome.retry_after == world.settings.retry_max_seconds
    assert "unreachable" in outcome.ready.message
    assert world.kube.find("Job", "shop-init") is None


def test_a_server_without_its_admin_secret(world: World) -> None:
    world.add_server(credentials=False)

    outcome, _ = run(world, world.add(database_body()))

    assert (outcome.phase, outcome.ready.reason, outcome.stalled.status) == (
        "Pending", "ServerCredentialsMissing", "False")
    assert world.pg.calls == []


def test_the_server_quota_blocks_a_new_database(world: World) -> None:
    world.add_server(maxDatabases=1)
    world.pg.databases["other"] = FakeDatabase("someone", None)

    outcome, _ = run(world, world.add(database_body()))

    assert (outcome.ready.reason, outcome.retry_after, outcome.stalled.status) == ("NoCapacity", 60, "True")
    assert outcome.ready.message == (  # placed in the default pool: full
        "no server of the default pool (PostgresServers with spec.default: true) can take a new database: main "
        "holds 1 of at most 1 databases. Add a server to the pool, raise its limits or uncordon one")
    assert world.pg.called("create_database") == []


def test_the_quota_of_a_server_named_in_spec_server(world: World) -> None:
    world.add_server(maxDatabases=1)
    world.pg.databases["other"] = FakeDatabase("someone", None)

    outcome, _ = run(world, world.add(database_body(server="main")))

    assert (outcome.ready.reason, outcome.retry_after) == ("QuotaExceeded", 60)
    assert world.pg.called("create_database") == []


def test_a_database_of_that_name_that_is_not_ours(world: World) -> None:
    world.add_server()
    world.pg.databases["shop"] = FakeDatabase(
        "someone", {"managedBy": "odoo-db-operator", "namespace": "team-b", "name": "shop"})

    outcome, _ = run(world, world.add(database_body()))

    assert summary(outcome) == ("Failed", "NameConflict", "False", "False", "True")
    assert world.kube.find("Job", "shop-init") is None


def test_a_database_dropped_behind_the_operators_back_is_not_recreated(world: World) -> None:
    body = provisioned(world)
    del world.pg.databases["shop"]

    outcome, _ = run(world, body)

    assert summary(outcome) == ("Failed", "DatabaseMissing", "False", "False", "True")
    assert world.pg.called("create_database") == [("shop", ROLE)]  # only the first one


# ---- spec changes ------------------------------------------------------------------------------------

def test_suspended_scales_the_app_to_zero(world: World) -> None:
    body = provisioned(world)
    body["spec"]["app"] = {"suspended": True}
    body["metadata"]["generation"] = 2

    outcome, _ = run(world, body)

    deployment = world.kube.find("Deployment", "shop")
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    assert summary(outcome) == ("Suspended", "Suspended", "True", "False", "False")
    assert condition(outcome, "AppAvailable").reason == "Suspended"


def test_a_new_database_name_renames_the_database(world: World) -> None:
    body = provisioned(world)
    body["spec"]["databaseName"] = "shop2"

    outcome, body = run(world, body)

    assert world.pg.called("rename_database") == [("shop", "shop2")]
    assert outcome.status["databaseName"] == "shop2" and outcome.status["hostname"] == "shop2.odoo.test"
    assert any(reason == "Renamed" for _, reason, _ in outcome.events)
    assert world.kube.find("DomainClaim", "shop.odoo.test", None) is None  # the old host is let go
    assert world.kube.find("DomainClaim", "shop2.odoo.test", None) is not None
    ingress = world.kube.find("Ingress", "shop")
    assert ingress is not None and ingress["spec"]["rules"][0]["host"] == "shop2.odoo.test"


def test_an_invalid_spec_stalls_before_any_io(world: World) -> None:
    world.add_server()

    outcome, _ = run(world, world.add(database_body(version="9.x")))

    assert summary(outcome) == ("Failed", "InvalidSpec", "False", "False", "True")
    assert "spec.version" in outcome.stalled.message
    assert world.kube.written() == [] and world.pg.calls == []


def test_a_kubernetes_error_is_retried(world: World) -> None:
    world.add_server()
    world.kube.fail("apply", "Service")

    outcome, _ = run(world, world.add(database_body()))

    assert (outcome.ready.reason, outcome.stalled.status) == ("KubernetesError", "False")
    assert outcome.retry_after == world.settings.retry_max_seconds


def test_nothing_is_created_once_the_object_is_being_deleted(world: World) -> None:
    world.add_server()
    body = world.add(database_body())
    live = {**body, "metadata": {**body["metadata"], "deletionTimestamp": timestamp()}}

    outcome, _ = run(world, body, live)

    assert (outcome.phase, outcome.ready.reason, outcome.warning) == ("Deleting", "Deleting", False)
    assert world.kube.written() == [] and world.pg.calls == []


# ---- the host ------------------------------------------------------------------------------------

def test_a_hostname_claimed_by_another_tenant_stalls_without_a_route(world: World) -> None:
    world.add_server()
    other = world.add({"apiVersion": API_VERSION, "kind": "DomainMapping",
                       "metadata": {"name": "theirs", "namespace": "team-b", "uid": new_uid()},
                       "spec": {"domain": "erp.example.com", "databaseRef": {"name": "x"}}})
    world.add({"apiVersion": API_VERSION, "kind": "DomainClaim", "metadata": {"name": "erp.example.com"},
               "spec": {"domain": "erp.example.com", "mappingRef": {
                   "kind": "DomainMapping", "namespace": "team-b", "name": "theirs",
                   "uid": other["metadata"]["uid"]}}})

    outcome, _ = run(world, world.add(database_body(hostname="erp.example.com")))

    assert summary(outcome) == ("Failed", "HostnameConflict", "False", "False", "True")
    assert world.kube.find("Ingress", "shop") is None and world.pg.calls == []


def test_a_hostname_inside_the_platform_domain_is_refused(world: World) -> None:
    world.add_server()

    outcome, _ = run(world, world.add(database_body(hostname="admin.odoo.test")))

    assert summary(outcome) == ("Failed", "InvalidHostname", "False", "False", "True")
    assert world.kube.calls_of("create", "DomainClaim") == []


# ---- duplicates --------------------------------------------------------------------------------------

def source_body(world: World, ready: bool = True) -> dict[str, Any]:
    status = {"initializedAt": timestamp(), "databaseName": "shop", "server": "main", "roleName": ROLE} \
        if ready else {"phase": "Provisioning"}
    source = world.add(database_body(status=status))
    world.pg.databases["shop"] = FakeDatabase(ROLE, {
        "managedBy": "odoo-db-operator", "namespace": NAMESPACE, "name": "shop", "initialized": True})
    return source


def test_a_duplicate_waits_for_its_source_to_be_initialised(world: World) -> None:
    world.add_server()
    source_body(world, ready=False)

    outcome, _ = run(world, world.add(database_body("copy", duplicateFrom={"name": "shop"})))

    assert summary(outcome) == ("Pending", "SourceNotReady", "False", "True", "False")
    assert (outcome.retry_after, outcome.warning) == (15, False)
    assert world.kube.written() == [] and world.pg.called("copy_database") == []


def test_a_duplicate_of_a_missing_source(world: World) -> None:
    world.add_server()

    outcome, _ = run(world, world.add(database_body("copy", duplicateFrom={"name": "shop"})))

    assert (outcome.phase, outcome.ready.reason, outcome.retry_after) == ("Pending", "SourceNotFound", 30)


def test_a_duplicate_is_copied_given_a_fresh_identity_then_started(world: World) -> None:
    world.add_server()
    source_body(world)

    outcome, body = run(world, world.add(database_body("copy", duplicateFrom={"name": "shop"})))

    copy_role = role_name(NAMESPACE, "copy")
    assert world.pg.called("copy_database") == [("shop", "copy", copy_role)]
    assert world.pg.called("reassign_owned") == [("copy", ROLE, copy_role)]
    # The identity is reset as the copy's own role, inside the copy.
    assert world.pg.called("reset_identity") == [(copy_role, "copy", "http://copy.odoo.test")]
    assert (world.pg.databases["copy"].marker or {}).get("initialized") is True
    assert world.kube.find("Job", "copy-init") is None  # a copy is not initialised by Odoo
    deployment = world.kube.find("Deployment", "copy")
    assert deployment is not None
    assert (outcome.phase, outcome.ready.reason) == ("Provisioning", "Progressing")
    assert outcome.status["source"] == "duplicate of shop" and outcome.status["sourceDatabase"] == "shop"
    assert outcome.status["expiresAt"]  # duplicates expire by default
    assert [reason for _, reason, _ in outcome.events if reason != "UpgradeAvailable"] == ["Copied"]


def test_a_duplicate_for_testing_is_neutralized_by_a_job_before_it_starts(world: World) -> None:
    world.add_server()
    source_body(world)

    outcome, body = run(world, world.add(database_body("copy", duplicateFrom={"name": "shop", "forTesting": True})))

    assert (outcome.phase, outcome.ready.reason) == ("Provisioning", "Duplicating")
    assert world.kube.find("Job", "copy-neutralize") is not None
    assert world.kube.find("Deployment", "copy") is None

    world.kube.finish_job("copy-neutralize")
    outcome, body = run(world, body)

    assert outcome.status["neutralized"] is True
    assert any(reason == "Neutralized" for _, reason, _ in outcome.events)
    assert world.kube.find("Deployment", "copy") is not None
    assert world.pg.called("copy_database") == [("shop", "copy", role_name(NAMESPACE, "copy"))]  # copied once


# ---- restores and expiry ------------------------------------------------------------------------------

def test_a_restore_from_a_missing_backup_creates_nothing(world: World) -> None:
    world.add_server()

    outcome, _ = run(world, world.add(database_body(restoreFrom={"backup": "nightly"})))

    assert (outcome.phase, outcome.ready.reason, outcome.stalled.status) == ("Pending", "BackupNotFound", "False")
    assert world.pg.calls == [] and world.kube.written() == []


def test_an_expired_database_deletes_itself(world: World) -> None:
    world.add_server()
    past = timestamp(datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))
    body = world.add(database_body(expiresAfter="1d", status={"expiresAt": past}))

    outcome, _ = run(world, body)

    assert (outcome.phase, outcome.ready.reason) == ("Expired", "Expired")
    assert world.kube.find("OdooDatabase", "shop") is None
    assert [reason for _, reason, _ in outcome.events] == ["Expired"]


def test_a_database_about_to_expire_says_so_and_wakes_at_expiry(world: World) -> None:
    body = provisioned(world, expiresAfter="30d")
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)
    body["status"]["expiresAt"] = timestamp(later)

    outcome, body = run(world, body)

    expiring = condition(outcome, "Expiring")
    assert (outcome.phase, expiring.status, expiring.reason) == ("Ready", "False", "Scheduled")
    assert outcome.retry_after == world.settings.resync_seconds

    body["status"]["expiresAt"] = timestamp(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=100))
    outcome, _ = run(world, body)

    expiring = condition(outcome, "Expiring")
    assert (outcome.phase, expiring.status, expiring.reason) == ("Ready", "True", "ExpiringSoon")
    assert outcome.retry_after is not None and 90 <= outcome.retry_after <= 100  # woken at expiry, not in 5 min


# ---- deletion ---------------------------------------------------------------------------------------

def test_delete_policy_drops_the_database_and_role_and_releases_the_host(world: World) -> None:
    body = provisioned(world)

    result = odoodatabase.delete(body, world.ctx)

    assert result.dropped and "dropped" in result.message
    assert world.pg.called("drop_database") == [("shop",)] and world.pg.called("drop_role") == [(ROLE,)]
    assert "shop" not in world.pg.databases and ROLE not in world.pg.roles
    assert world.kube.find("DomainClaim", "shop.odoo.test", None) is None


def test_retain_policy_keeps_the_database(world: World) -> None:
    body = provisioned(world, deletionPolicy="Retain")
    world.pg.calls.clear()

    result = odoodatabase.delete(body, world.ctx)

    assert not result.dropped and "retained" in result.message
    assert world.pg.calls == [] and "shop" in world.pg.databases
    assert world.kube.find("DomainClaim", "shop.odoo.test", None) is None


def test_delete_leaves_a_database_that_is_not_ours(world: World) -> None:
    body = provisioned(world)
    world.pg.databases["shop"].marker = {"managedBy": "odoo-db-operator", "namespace": "team-b", "name": "shop"}

    result = odoodatabase.delete(body, world.ctx)

    assert not result.dropped and "not ours" in result.message
    assert world.pg.called("drop_database") == [] and "shop" in world.pg.databases


def test_delete_of_a_database_never_created_on_a_missing_server(world: World) -> None:
    body = world.add(database_body())

    result = odoodatabase.delete(body, world.ctx)

    assert not result.dropped and "no PostgreSQL database had been created" in result.message


def test_delete_with_unreachable_postgresql_raises_for_a_retry(world: World) -> None:
    body = provisioned(world)
    world.pg.reachable = False

    with pytest.raises(pg.PostgresUnavailable):
        odoodatabase.delete(body, world.ctx)
    assert "shop" in world.pg.databases


def test_snapshot_policy_stops_the_app_backs_up_then_drops(world: World) -> None:
    body = provisioned(world, deletionPolicy="Snapshot")

    # 1. the app is scaled to 0 and the deletion waits for its pods to go
    with pytest.raises(NotReady) as stopping:
        odoodatabase.delete(body, world.ctx)
    assert (stopping.value.reason, stopping.value.phase) == ("StoppingApp", "Deleting")
    assert [c.body for c in world.kube.calls_of("scale", "Deployment")] == [0]
    deployment = world.kube.find("Deployment", "shop")
    assert deployment is not None
    world.kube.set_status("Deployment", "shop", {"observedGeneration": deployment["metadata"]["generation"],
                                                 "replicas": 0})

    # 2. the final backup Job is created (recorded in status), nothing dropped yet
    with pytest.raises(NotReady) as backing_up:
        odoodatabase.delete(body, world.ctx)
    assert backing_up.value.reason == "FinalBackup" and not backing_up.value.warning
    job = world.kube.find("Job", "shop-final-backup")
    assert job is not None and "shop" in world.pg.databases
    stored = world.kube.find("OdooDatabase", "shop")
    assert stored is not None and stored["status"]["finalBackup"]["jobUid"] == job["metadata"]["uid"]

    # 3. a failed backup blocks the drop
    world.kube.finish_job("shop-final-backup", "Failed", "pg_dump: error")
    with pytest.raises(NotReady) as failed:
        odoodatabase.delete(body, world.ctx)
    assert failed.value.reason == "FinalBackupFailed" and failed.value.stalled
    assert "pg_dump: error" in failed.value.message and "shop" in world.pg.databases

    # 4. once it completed, the database is dropped and the Job removed
    world.kube.finish_job("shop-final-backup")
    result = odoodatabase.delete(body, world.ctx)
    assert result.dropped and "shop" not in world.pg.databases
    assert world.kube.find("Job", "shop-final-backup") is None


# ---- spec.users and spec.owner (the users step) ---------------------------------------------------------

OWNER = {"email": "olga@example.com", "name": "Olga Owner"}
USERS = [{"email": "ada@example.com", "role": "admin"}, {"email": "Bob@Example.com"}]


class FakeOdoo:
    """connect_admin and sync_users replaced: what the step asked of Odoo, and what Odoo answers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.connects: list[tuple[str, str, str]] = []
        self.syncs: list[tuple[Any, ...]] = []
        self.refuse: odoorpc.OdooError | odoorpc.OdooUnavailable | None = None
        self.failing: dict[str, str] = {}  # e-mail -> why Odoo refuses that user
        monkeypatch.setattr(odoorpc, "connect_admin", self.connect_admin)
        monkeypatch.setattr(users_sync, "sync_users", self.sync_users)

    def connect_admin(self, url: str, database: str, password: str, timeout: float = 60) -> Any:
        assert timeout <= 60
        self.connects.append((url, database, password))
        if self.refuse is not None:
            raise self.refuse
        return "client"

    def sync_users(self, client: Any, desired: Any, owner: Any, previous: Any, *, base_url: str | None = None
                   ) -> users_sync.UsersResult:
        self.syncs.append((tuple(desired), owner, previous, base_url))
        statuses = [{"email": u.email, "role": u.role, "state": "Invited", "lastTransitionTime": timestamp()}
                    for u in desired]
        events = [("Normal", "UserInvited", f"invited {u.email} as {u.role}")
                  for u in desired if u.email not in str(previous) and u.email not in self.failing]
        if self.failing:  # as sync_users words a failure: the Event's message is in the condition's
            events += [("Warning", "UserSyncFailed", f"{email}: {why}") for email, why in self.failing.items()]
            detail = "; ".join(f"{email}: {why}" for email, why in sorted(self.failing.items()))
            return users_sync.UsersResult(statuses, events, Condition.false("UsersSynced", "UserFailed",
                                                                            f"{len(self.failing)} failed ({detail})"))
        return users_sync.UsersResult(statuses, events, Condition.true("UsersSynced", "Synced",
                                                                       f"{len(statuses)} invited"))


def endpoint_slice(world: World, address: str = "10.89.1.7", ready: bool = True, name: str = "shop-abcde",
                   manager: str = "endpointslice-controller.k8s.io") -> None:
    world.add({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
               "metadata": {"name": name, "namespace": NAMESPACE, "labels": {
                   "kubernetes.io/service-name": "shop", "endpointslice.kubernetes.io/managed-by": manager}},
               "ports": [{"name": "longpolling", "port": 8072}, {"name": "http", "port": 8069}],
               "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}]})


def admin_secret_password(world: World, name: str = "shop-admin") -> str:
    secret = world.kube.find("Secret", name)
    assert secret is not None
    return base64.b64decode(secret["data"]["password"]).decode()


def test_users_are_synced_at_the_apps_endpoint_once_it_serves(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    odoo = FakeOdoo(monkeypatch)
    endpoint_slice(world)
    body = provisioned(world, owner=OWNER, users=USERS)

    assert odoo.connects == [("http://10.89.1.7:8069", "shop", admin_secret_password(world))]
    ((desired, owner, previous, base_url),) = odoo.syncs
    assert [(u.email, u.role) for u in desired] == [("ada@example.com", "admin"), ("bob@example.com", "user")]
    assert (owner.email, owner.name, previous, base_url) == ("olga@example.com", "Olga Owner", None,
                                                             "http://shop.odoo.test")
    status = body["status"]
    assert [(u["email"], u["state"]) for u in status["users"]] == [("ada@example.com", "Invited"),
                                                                   ("bob@example.com", "Invited")]
    assert {(c["type"], c["status"]) for c in status["conditions"]} >= {("UsersSynced", "True"), ("Ready", "True")}
    # <name>-admin names the admin's login now: the owner's e-mail (its password untouched).
    secret = world.kube.find("Secret", "shop-admin")
    assert secret is not None and base64.b64decode(secret["data"]["username"]).decode() == "olga@example.com"
    assert admin_secret_password(world) == odoo.connects[0][2]

    # Nothing changed: no call, the condition and status.users stay; the next pass is due within the resync.
    world.kube.calls.clear()
    outcome, body = run(world, body)
    assert len(odoo.syncs) == 1 and world.kube.calls_of("list", "EndpointSlice") == []
    assert condition(outcome, "UsersSynced").status == "True" and outcome.events == []
    assert len(body["status"]["users"]) == 2
    assert outcome.retry_after is not None and outcome.retry_after <= world.settings.resync_seconds

    # A spec change syncs again, from what status.users says.
    body["spec"]["users"] = USERS[:1]
    body["metadata"]["generation"] = 2
    outcome, body = run(world, body)
    assert len(odoo.syncs) == 2 and odoo.syncs[1][2] == status["users"]
    assert summary(outcome) == ("Ready", "Ready", "True", "False", "False")


def test_users_wait_for_an_app_without_a_ready_endpoint_and_never_make_it_unready(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    odoo = FakeOdoo(monkeypatch)
    endpoint_slice(world, ready=False)
    body = provisioned(world, users=USERS)
    assert odoo.connects == [] and "users" not in body["status"]
    stored = condition_of(body, "UsersSynced")
    assert (stored["status"], stored["reason"]) == ("False", "OdooUnavailable")
    assert condition_of(body, "Ready")["status"] == "True"

    # The app answers now: the next pass syncs (an unanswered try is not counted as a sync).
    endpoint_slice(world, ready=True)
    outcome, body = run(world, body)
    assert len(odoo.syncs) == 1 and condition(outcome, "UsersSynced").status == "True"
    assert [r for _, r, _ in outcome.events] == ["UserInvited", "UserInvited"]


def test_a_user_that_keeps_failing_is_said_once_not_at_every_retry(world: World,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    odoo = FakeOdoo(monkeypatch)
    odoo.failing = {"bob@example.com": "already the e-mail of the Odoo user with login 'bobby'"}
    endpoint_slice(world)
    body = provisioned(world, users=USERS)
    assert condition_of(body, "UsersSynced")["reason"] == "UserFailed"
    assert condition_of(body, "Ready")["status"] == "True"
    # The retry (forced: as after an operator restart) fails the same way: no second Warning.
    world.ctx.registry.users_synced.clear()
    outcome, body = run(world, body)
    assert len(odoo.syncs) == 2
    assert [r for _, r, _ in outcome.events if r == "UserSyncFailed"] == []
    # A different failure is news.
    odoo.failing = {"bob@example.com": "Odoo refused to create the user: quota"}
    world.ctx.registry.users_synced.clear()
    outcome, body = run(world, body)
    assert [r for _, r, _ in outcome.events if r == "UserSyncFailed"] == ["UserSyncFailed"]


def test_a_hand_written_endpoint_slice_never_receives_the_admin_password(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the slices Kubernetes derives from the Service count: one written by someone else (pointing at
    any address) is ignored, so the admin password never goes there."""
    odoo = FakeOdoo(monkeypatch)
    endpoint_slice(world, address="169.254.169.254", name="shop-forged", manager="someone-else")
    body = provisioned(world, users=USERS)
    assert odoo.connects == [] and condition_of(body, "UsersSynced")["reason"] == "OdooUnavailable"
    endpoint_slice(world)
    outcome, body = run(world, body)
    assert [url for url, _, _ in odoo.connects] == ["http://10.89.1.7:8069"]


def test_a_refused_admin_password_is_reported_not_echoed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    odoo = FakeOdoo(monkeypatch)
    odoo.refuse = odoorpc.OdooError("odoo.exceptions.AccessDenied", "the admin password does not open the "
                                    "database's admin user")
    endpoint_slice(world)
    body = provisioned(world, users=USERS)
    cond = condition_of(body, "UsersSynced")
    assert (cond["status"], cond["reason"]) == ("False", "AdminPasswordRefused") and "shop-admin" in cond["message"]
    assert admin_secret_password(world) not in str(body["status"])
    assert odoo.syncs == [] and condition_of(body, "Ready")["status"] == "True"


def test_suspended_users_wait_and_no_users_means_no_condition(world: World, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    odoo = FakeOdoo(monkeypatch)
    endpoint_slice(world)
    body = provisioned(world)
    assert odoo.connects == [] and condition_of(body, "UsersSynced") == {}
    assert world.kube.calls_of("list", "EndpointSlice") == []  # a database without users costs nothing

    body["spec"]["app"] = {"suspended": True}
    body["spec"]["users"] = USERS
    body["metadata"]["generation"] = 2
    outcome, body = run(world, body)
    cond = condition(outcome, "UsersSynced")
    assert (cond.status, cond.reason) == ("False", "AppSuspended") and odoo.connects == []
    assert summary(outcome) == ("Suspended", "Suspended", "True", "False", "False")


def test_a_duplicate_authenticates_with_its_sources_admin_password(world: World,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from odoo_operator.controller import odoodatabase_users

    world.add(database_body())
    world.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-admin", "namespace": NAMESPACE},
               "data": {"password": b64("source-pw")}})
    copy_body = database_body("copy", duplicateFrom={"name": "shop"})
    reconciler = odoodatabase.Reconciler(copy_body, world.ctx)
    reconciler.obj = reconciler.parse()
    assert odoodatabase_users.admin_password(reconciler, reconciler.obj) == "source-pw"
    world.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "copy-admin", "namespace": NAMESPACE},
               "data": {"password": b64("own-pw")}})
    assert odoodatabase_users.admin_password(reconciler, reconciler.obj) == "own-pw"


def condition_of(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})
