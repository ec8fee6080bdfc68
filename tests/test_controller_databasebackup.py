"""The DatabaseBackup reconciler step by step over a fake API server (tests/fakes.py): the Job or CronJob
and the namespace's backup support it creates, and the status it reads back from the Job's state and
the Job's own report (status.lastSuccessfulTime, artifacts, lastFailure). Entry point:
databasebackup.reconcile(body, ctx, live)."""

from __future__ import annotations

from typing import Any

import pytest

from fakes import NAMESPACE, World, backup_body, database_body, timestamp
from odoo_operator.controller import databasebackup
from odoo_operator.controller.base import Outcome
from odoo_operator.kube import KubeError


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return World(monkeypatch)


def run(world: World, body: dict[str, Any], live: dict[str, Any] | None = None) -> tuple[Outcome, dict[str, Any]]:
    return world.reconcile(databasebackup.reconcile, body, live)


def summary(outcome: Outcome) -> tuple[str, str, str, str, str]:
    return (outcome.phase, outcome.ready.reason, outcome.ready.status, outcome.reconciling.status,
            outcome.stalled.status)


def ready_database(world: World, database_name: str = "shop_db") -> dict[str, Any]:
    return world.add(database_body(databaseName=database_name, status={
        "phase": "Ready", "initializedAt": timestamp(), "databaseName": database_name, "server": "main"}))


def container(job: dict[str, Any]) -> dict[str, Any]:
    spec = job["spec"].get("jobTemplate", {}).get("spec", job["spec"])
    return dict(spec["template"]["spec"]["containers"][0])


# ---- waiting for the database ---------------------------------------------------------------------

def test_a_backup_of_a_missing_database_waits(world: World) -> None:
    outcome, _ = run(world, world.add(backup_body()))

    assert summary(outcome) == ("Pending", "DatabaseNotFound", "False", "True", "False")
    assert outcome.retry_after == 30
    assert world.kube.written() == []


def test_a_backup_waits_until_its_database_is_initialised(world: World) -> None:
    world.add(database_body(status={"phase": "Provisioning"}))

    outcome, _ = run(world, world.add(backup_body()))

    assert (outcome.phase, outcome.ready.reason, outcome.warning) == ("Pending", "DatabaseNotReady", False)
    assert world.kube.find("Job", "shop-now") is None


def test_an_invalid_spec_is_stalled(world: World) -> None:
    ready_database(world)

    outcome, _ = run(world, world.add(backup_body(format="tar")))

    assert summary(outcome) == ("Failed", "InvalidSpec", "False", "False", "True")
    assert "spec.format" in outcome.stalled.message
    assert world.kube.written() == []


def test_a_reference_to_an_invalid_name_is_stalled(world: World) -> None:
    outcome, _ = run(world, world.add(backup_body(database="Not_A_Name")))

    assert (outcome.ready.reason, outcome.stalled.status) == ("InvalidSpec", "True")
    assert world.kube.calls_of("get", "OdooDatabase") == []


# ---- one backup now ------------------------------------------------------------------------------

def test_a_one_shot_backup_creates_its_job_and_the_namespace_support(world: World) -> None:
    ready_database(world)
    body = world.add(backup_body())

    outcome, _ = run(world, body)

    # The reporter identity and the default storage, created once per namespace; then the Job.
    assert world.kube.names("ServiceAccount") == ["odoo-backup"]
    assert world.kube.names("Role") == ["odoo-backup"] and world.kube.names("RoleBinding") == ["odoo-backup"]
    pvc = world.kube.find("PersistentVolumeClaim", "odoo-backups")
    assert pvc is not None and "ownerReferences" not in pvc["metadata"]  # backups outlive their databases
    job = world.kube.find("Job", "shop-now")
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    args = container(job)["args"]
    assert args[args.index("--database") + 1] == "shop_db"  # the name in PostgreSQL, from the database's status
    assert args[args.index("--report") + 1] == f"{NAMESPACE}/shop-now"
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "odoo-backup"
    # Status: running, look again in a minute (the Job's events wake it sooner).
    assert summary(outcome) == ("Running", "BackingUp", "False", "True", "False")
    assert outcome.retry_after == 60
    assert outcome.status["lastScheduleTime"] == job["metadata"]["creationTimestamp"]


def test_a_second_pass_creates_nothing_again(world: World) -> None:
    ready_database(world)
    _, body = run(world, world.add(backup_body()))
    world.kube.calls.clear()

    outcome, _ = run(world, body)

    assert outcome.phase == "Running"
    assert world.kube.written() == []


def test_backups_to_s3_need_no_volume(world: World) -> None:
    ready_database(world)

    run(world, world.add(backup_body(storage={"s3": {"bucket": "backups", "prefix": "odoo"}})))

    assert world.kube.find("PersistentVolumeClaim", "odoo-backups") is None
    job = world.kube.find("Job", "shop-now")
    assert job is not None
    assert "s3://backups/odoo/team-a/shop" in container(job)["args"]


def test_a_completed_job_reports_success_from_the_jobs_report(world: World) -> None:
    ready_database(world)
    _, body = run(world, world.add(backup_body()))
    world.kube.finish_job("shop-now")

    outcome, body = run(world, body)
    assert outcome.phase == "Running"  # complete, but its report is not in yet

    body["status"].update({"lastSuccessfulTime": timestamp(),
                           "artifacts": [{"id": "20260101T000000Z", "sizeBytes": 4096, "time": timestamp()}]})
    outcome, _ = run(world, body)

    assert summary(outcome) == ("Succeeded", "Succeeded", "True", "False", "False")
    assert "20260101T000000Z" in outcome.ready.message and "4096 bytes" in outcome.ready.message
    assert outcome.retry_after is None


def test_a_failed_job_stalls_with_the_reported_failure(world: World) -> None:
    ready_database(world)
    _, body = run(world, world.add(backup_body()))
    world.kube.finish_job("shop-now", "Failed", "BackoffLimitExceeded")
    body["status"]["lastFailure"] = {"time": timestamp(), "message": "pg_dump: connection refused"}

    outcome, _ = run(world, body)

    assert summary(outcome) == ("Failed", "BackupFailed", "False", "False", "True")
    assert "pg_dump: connection refused" in outcome.stalled.message


def test_a_failed_job_without_a_report_says_what_the_job_says(world: World) -> None:
    ready_database(world)
    _, body = run(world, world.add(backup_body()))
    world.kube.finish_job("shop-now", "Failed", "the pod was evicted")

    outcome, _ = run(world, body)

    assert (outcome.ready.reason, outcome.stalled.status) == ("BackupFailed", "True")
    assert "the pod was evicted" in outcome.stalled.message


# ---- scheduled backups ---------------------------------------------------------------------------------

def test_a_schedule_becomes_a_cronjob(world: World) -> None:
    ready_database(world)

    outcome, _ = run(world, world.add(backup_body("shop-nightly", schedule="0 3 * * *")))

    cron = world.kube.find("CronJob", "shop-nightly")
    assert cron is not None and cron["spec"]["schedule"] == "0 3 * * *" and cron["spec"]["suspend"] is False
    assert container(cron)["args"][:2] == ["create", "--format"]
    assert world.kube.find("Job", "shop-nightly") is None
    assert summary(outcome) == ("Scheduled", "Scheduled", "True", "False", "False")


def test_a_suspended_schedule(world: World) -> None:
    ready_database(world)

    outcome, _ = run(world, world.add(backup_body("shop-nightly", schedule="@daily", suspend=True)))

    cron = world.kube.find("CronJob", "shop-nightly")
    assert cron is not None and cron["spec"]["suspend"] is True
    assert (outcome.phase, outcome.ready.reason, outcome.ready.status) == ("Suspended", "Suspended", "True")


def test_a_scheduled_run_that_failed_after_the_last_success_is_reported_not_stalled(world: World) -> None:
    ready_database(world)
    body = world.add(backup_body("shop-nightly", schedule="@daily", status={
        "lastSuccessfulTime": "2026-01-01T03:00:00Z", "artifacts": [{"id": "a"}],
        "lastFailure": {"time": "2026-01-02T03:00:00Z", "message": "disk full"}}))

    outcome, _ = run(world, body)

    assert summary(outcome) == ("Pending", "BackupFailed", "False", "True", "False")
    assert "disk full" in outcome.ready.message and outcome.retry_after is None


def test_the_schedules_status_shows_the_last_success(world: World) -> None:
    ready_database(world)
    body = world.add(backup_body("shop-nightly", schedule="@daily", status={
        "lastSuccessfulTime": "2026-01-02T03:00:00Z", "artifacts": [{"id": "a"}, {"id": "b"}],
        "lastFailure": {"time": "2026-01-01T03:00:00Z", "message": "old"}}))
    run(world, body)
    world.kube.set_status("CronJob", "shop-nightly", {"lastScheduleTime": "2026-01-02T03:00:00Z"})

    outcome, _ = run(world, body)

    assert outcome.phase == "Scheduled" and "2 artifact(s) kept" in outcome.ready.message
    assert outcome.status["lastScheduleTime"] == "2026-01-02T03:00:00Z"


def test_nothing_is_applied_once_the_backup_is_being_deleted(world: World) -> None:
    ready_database(world)
    body = world.add(backup_body("shop-nightly", schedule="@daily"))
    live = {**body, "metadata": {**body["metadata"], "deletionTimestamp": timestamp()}}

    outcome, _ = run(world, body, live)

    assert (outcome.phase, outcome.ready.reason) == ("Deleting", "Deleting")
    assert world.kube.find("CronJob", "shop-nightly") is None


def test_a_refused_write_is_retried(world: World) -> None:
    ready_database(world)
    world.kube.fail("create", "Job", KubeError(403, "Forbidden", "jobs is forbidden"))

    outcome, _ = run(world, world.add(backup_body()))

    assert (outcome.ready.reason, outcome.stalled.status) == ("KubernetesError", "False")
    assert "jobs is forbidden" in outcome.ready.message
    assert outcome.retry_after == world.settings.retry_max_seconds
