"""DatabaseBackup end to end: the operator creates the Jobs/CronJobs, the tests execute the Jobs for
real (jobrunner), kube-controller-manager runs the CronJob, and the results land in status."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import condition, get_json, odoo_database, wait_until
from jobrunner import run_job
from test_duplicate import connect_as_owner, params
from test_lifecycle import databases, events, wait_ready, wait_reason

pytestmark = pytest.mark.e2e


def database_backup(name: str, namespace: str, database: str, **spec: object) -> str:
    return yaml.safe_dump({"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DatabaseBackup",
                           "metadata": {"name": name, "namespace": namespace},
                           "spec": {"databaseRef": {"name": database}, **spec}})


def backup_status(cluster, name, namespace, reason, timeout=60):
    def check():
        obj = get_json(cluster, "odbb", name, "-n", namespace)
        return obj if condition(obj, "Ready").get("reason") == reason else None
    return wait_until(check, timeout, f"backup {name} reason {reason}")


@pytest.fixture
def shop(cluster, operator, namespace):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("shop", namespace))
    wait_ready(cluster, "shop", namespace)
    with connect_as_owner(cluster, "shop", namespace) as conn:
        conn.execute("CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar NOT NULL UNIQUE, "
                     "value text NOT NULL, create_uid int, create_date timestamp, write_uid int, write_date timestamp)")
        conn.execute("INSERT INTO ir_config_parameter (key, value) VALUES ('database.uuid', 'original-uuid'), "
                     "('database.secret', 'original-secret')")
        conn.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO res_partner (name) SELECT 'p' || g FROM generate_series(1, 300) g")
    return "shop"


def test_every_database_gets_a_daily_backup_that_can_be_turned_off(cluster, namespace, shop):
    daily = wait_until(lambda: get_json(cluster, "odbb", "shop-daily", "-n", namespace), 30, "shop-daily")
    assert daily["spec"]["schedule"] == "@daily" and daily["spec"]["format"] == "zip"
    assert daily["spec"]["retention"] == {"keepLast": 0, "keepDaily": 7, "keepWeekly": 4, "keepMonthly": 3}
    assert daily["metadata"]["ownerReferences"][0]["name"] == "shop"
    cron = wait_until(lambda: get_json(cluster, "cronjob", "shop-daily", "-n", namespace), 30, "the CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid" and cron["spec"]["schedule"] == "@daily"
    assert cron["spec"]["successfulJobsHistoryLimit"] == 3 and cron["spec"]["failedJobsHistoryLimit"] == 3
    backup_status(cluster, "shop-daily", namespace, "Scheduled")
    cluster.kubectl("patch", "odb", "shop", "-n", namespace, "--type=merge",
                    "-p", '{"spec":{"backup":{"enabled":false}}}')
    wait_until(lambda: not get_json(cluster, "odbb", "shop-daily", "-n", namespace), 30, "shop-daily to go")


def test_one_shot_backup_then_restore_into_a_new_database(cluster, namespace, shop, tmp_path, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=database_backup("now", namespace, "shop"))
    result = run_job(cluster, namespace, "now", tmp_path)
    assert result.returncode == 0, result.stderr
    obj = backup_status(cluster, "now", namespace, "Succeeded")
    artifacts = obj["status"]["artifacts"]
    assert len(artifacts) == 1 and obj["status"]["lastSuccessfulTime"]
    artifact = artifacts[0]
    assert artifact["sizeBytes"] > 0 and len(artifact["sha256"]) == 64
    # The ZIP is in Odoo's format, on the backup PVC (here: its local folder).
    zips = list((tmp_path / namespace / "odoo-backups").rglob("*.zip"))
    assert len(zips) == 1
    with zipfile.ZipFile(zips[0]) as archive:
        assert archive.namelist()[0] == "dump.sql"
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["odoo_dump"] == "1" and manifest["db_name"] == "shop" and manifest["version"] == "17.0"
    job = get_json(cluster, "job", "now", "-n", namespace)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "odoo-backup"

    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "restored", namespace, restoreFrom={"backup": "now", "artifact": artifact["id"]}))
    wait_until(lambda: get_json(cluster, "job", "restored-restore", "-n", namespace), 60, "the restore Job")
    result = run_job(cluster, namespace, "restored-restore", tmp_path)
    assert result.returncode == 0, result.stderr
    restored = wait_ready(cluster, "restored", namespace)
    assert restored["status"]["source"] == f"restored from now/{artifact['id']}"
    with connect_as_owner(cluster, "restored", namespace) as conn:
        assert conn.execute("SELECT count(*) FROM res_partner").fetchone() == (300,)
        values = params(conn)
        assert values["database.uuid"] != "original-uuid" and values["database.secret"] != "original-secret"
    assert "Restored" in {r for _, r, _ in events(cluster, namespace, "restored")}


def test_failed_run_says_why_and_keeps_earlier_artifacts(cluster, namespace, shop, tmp_path):
    cluster.kubectl("apply", "-f", "-", input=database_backup("first", namespace, "shop"))
    assert run_job(cluster, namespace, "first", tmp_path).returncode == 0
    backup_status(cluster, "first", namespace, "Succeeded")
    cluster.kubectl("apply", "-f", "-", input=database_backup("second", namespace, "shop"))
    result = run_job(cluster, namespace, "second", tmp_path, env_overrides={"PGPASSWORD": "wrong"})
    assert result.returncode != 0
    obj = backup_status(cluster, "second", namespace, "BackupFailed")
    assert condition(obj, "Stalled")["status"] == "True"
    assert "password authentication failed" in condition(obj, "Ready")["message"]
    assert "PGPASSWORD" not in json.dumps(obj) and "wrong" not in condition(obj, "Ready")["message"]
    assert ("Warning", "BackupFailed") in {(t, r) for t, r, _ in events_of(cluster, namespace, "second")}
    assert len(list((tmp_path / namespace / "odoo-backups").rglob("*.zip"))) == 1  # the first one is kept


def events_of(cluster, namespace, name):
    out = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                          f"involvedObject.name={name},involvedObject.kind=DatabaseBackup", "-o", "json").stdout
    return [(e["type"], e["reason"], e["message"]) for e in json.loads(out)["items"]]


def test_cronjob_produces_jobs_on_schedule(cluster, namespace, shop):
    cluster.kubectl("apply", "-f", "-", input=database_backup("minutely", namespace, "shop", schedule="* * * * *"))
    cron = wait_until(lambda: get_json(cluster, "cronjob", "minutely", "-n", namespace), 30, "the CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    # kube-controller-manager's CronJob controller starts a Job at the next minute boundary.
    jobs = wait_until(lambda: get_json(cluster, "jobs", "-n", namespace, "-l", "odoo.dbmanager.io/backup=minutely"
                                       ).get("items"), 75, "a Job from the CronJob", interval=1)
    assert jobs[0]["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    obj = wait_until(lambda: (lambda o: o if (o.get("status") or {}).get("lastScheduleTime") else None)(
        get_json(cluster, "odbb", "minutely", "-n", namespace)), 30, "lastScheduleTime")
    assert obj["status"]["lastScheduleTime"]
    cluster.kubectl("patch", "odbb", "minutely", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_until(lambda: get_json(cluster, "cronjob", "minutely", "-n", namespace)["spec"]["suspend"], 30, "suspend")
    backup_status(cluster, "minutely", namespace, "Suspended")


def test_snapshot_policy_blocks_the_drop_until_the_final_backup_succeeds(cluster, operator, namespace, tmp_path,
                                                                        pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("snap", namespace, deletionPolicy="Snapshot"))
    wait_ready(cluster, "snap", namespace)
    cluster.kubectl("delete", "odb", "snap", "-n", namespace, "--wait=false")
    result = run_job(cluster, namespace, "snap-final-backup", tmp_path, env_overrides={"PGPASSWORD": "wrong"})
    assert result.returncode != 0
    obj = wait_reason(cluster, "snap", namespace, "FinalBackupFailed")
    assert "is NOT dropped" in condition(obj, "Ready")["message"]
    assert "snap" in databases(pg_dsn)
    cluster.kubectl("delete", "job", "snap-final-backup", "-n", namespace)
    wait_until(lambda: get_json(cluster, "job", "snap-final-backup", "-n", namespace).get("metadata", {}).get(
        "deletionTimestamp") is None and get_json(cluster, "job", "snap-final-backup", "-n", namespace), 90,
        "a new final backup Job")
    result = run_job(cluster, namespace, "snap-final-backup", tmp_path)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: not get_json(cluster, "odb", "snap", "-n", namespace), 60, "the object to be gone")
    assert "snap" not in databases(pg_dsn)
    assert len(list((tmp_path / namespace / "odoo-backups").rglob("snap-*.zip"))) == 1


def test_s3_backup_and_kubectl_odoo_download(cluster, namespace, shop, tmp_path, s3_endpoint):
    bucket = f"b-{namespace}"
    urllib.request.urlopen(urllib.request.Request(f"{s3_endpoint}/{bucket}", method="PUT"), timeout=10).close()
    cluster.kubectl("create", "secret", "generic", "s3-creds", "-n", namespace,
                    "--from-literal=AWS_ACCESS_KEY_ID=AKIDTEST", "--from-literal=AWS_SECRET_ACCESS_KEY=secret-key")
    cluster.kubectl("apply", "-f", "-", input=database_backup("tos3", namespace, "shop", storage={"s3": {
        "bucket": bucket, "endpoint": s3_endpoint, "prefix": "odoo", "credentialsSecret": {"name": "s3-creds"}}}))
    result = run_job(cluster, namespace, "tos3", tmp_path)
    assert result.returncode == 0, result.stderr
    artifact = backup_status(cluster, "tos3", namespace, "Succeeded")["status"]["artifacts"][0]
    assert artifact["location"].startswith(f"s3://{bucket}/odoo/{namespace}/shop/")
    plugin = [str(Path(sys.executable).parent / "kubectl-odoo"), f"--kubeconfig={cluster.kubeconfig}", "-n", namespace]
    out = tmp_path / "shop.zip"
    done = subprocess.run([*plugin, "download", "shop", "--backup", "tos3", "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == artifact["sha256"]
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist()[0] == "dump.sql"
    url = subprocess.run([*plugin, "download", "shop", "--backup", "tos3", "--url", "--seconds", "60"],
                         capture_output=True, text=True, timeout=60).stdout.strip()
    assert "X-Amz-Expires=60" in url and "secret-key" not in url
    with urllib.request.urlopen(url, timeout=30) as response:
        assert hashlib.sha256(response.read()).hexdigest() == artifact["sha256"]
    missing = subprocess.run([*plugin, "download", "shop", "--backup", "tos3", "--artifact", "nope"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no artifact nope" in missing.stderr
