"""DatabaseBackup end to end: the operator creates the Jobs/CronJobs, the tests execute the Jobs for
real (jobrunner), kube-controller-manager runs the CronJob, and the results land in status."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from conftest import condition, get_json, odoo_database, pg_exec, wait_until
from jobrunner import run_job
from odoo_operator.devtools.localcluster import REPO_ROOT
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
    # Created with kopf's finalizer (for its daemon): kopf had no PATCH to make to add it.
    managed = json.loads(cluster.kubectl("get", "odbb", "shop-daily", "-n", namespace, "-o", "json",
                                         "--show-managed-fields").stdout)["metadata"]
    assert managed["finalizers"] == ["odoo.dbmanager.io/finalizer"]
    assert {(m["manager"], m["operation"]) for m in managed["managedFields"]
            if m.get("subresource") != "status"} == {("odoo-db-operator", "Apply")}
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

    # Kept (Retain) and deleted, then asked for again: the new object must restore, not adopt the old
    # database (changed since) as if it were the restore; deleting the refused object drops nothing.
    with connect_as_owner(cluster, "restored", namespace) as conn:
        conn.execute("DELETE FROM res_partner WHERE id > 10")
    cluster.kubectl("patch", "odb", "restored", "-n", namespace, "--type=merge", "-p",
                    '{"spec":{"deletionPolicy":"Retain"}}')
    cluster.kubectl("delete", "odb", "restored", "-n", namespace, "--timeout=60s")
    again = odoo_database("restored", namespace, restoreFrom={"backup": "now", "artifact": artifact["id"]})
    cluster.kubectl("apply", "-f", "-", input=again)
    obj = wait_reason(cluster, "restored", namespace, "DatabaseExists")
    assert "never adopts" in condition(obj, "Ready")["message"] and "spec.restoreFrom" in condition(obj, "Ready")[
        "message"]
    # Nothing of the refused object: what is still there belongs to the deleted one (the garbage collector
    # removes it shortly after; that is not this test's subject).
    for kind, name in (("job", "restored-restore"), ("deployment", "restored")):
        child = get_json(cluster, kind, name, "-n", namespace)
        owners = {ref["uid"] for ref in (child or {}).get("metadata", {}).get("ownerReferences", [])}
        assert obj["metadata"]["uid"] not in owners, (kind, owners)
    cluster.kubectl("delete", "odb", "restored", "-n", namespace, "--timeout=60s")
    assert "restored" in databases(pg_dsn)
    pg_exec(pg_dsn, 'DROP DATABASE "restored" WITH (FORCE)')
    pg_exec(pg_dsn, f'DROP ROLE "{restored["status"]["roleName"]}"')


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


def sidecar_owners(root: Path, prefix: str) -> dict[str, str | None]:
    return {json.loads(p.read_text())["id"]: json.loads(p.read_text()).get("backup")
            for p in root.rglob(f"{prefix}-*.zip.json")}


def test_a_one_off_backup_with_retention_0_keeps_the_daily_backups_artifacts(cluster, namespace, shop, tmp_path):
    wait_until(lambda: get_json(cluster, "cronjob", "shop-daily", "-n", namespace), 30, "the daily CronJob")
    cluster.kubectl("create", "job", "shop-daily-manual", "--from=cronjob/shop-daily", "-n", namespace)
    result = run_job(cluster, namespace, "shop-daily-manual", tmp_path)
    assert result.returncode == 0, result.stderr
    daily = wait_until(lambda: (lambda o: o if (o.get("status") or {}).get("artifacts") else None)(
        get_json(cluster, "odbb", "shop-daily", "-n", namespace)), 30, "the daily backup's artifact")
    [daily_artifact] = daily["status"]["artifacts"]

    zero = {"keepLast": 0, "keepDaily": 0, "keepWeekly": 0, "keepMonthly": 0}
    cluster.kubectl("apply", "-f", "-", input=database_backup("once", namespace, "shop", retention=zero))
    result = run_job(cluster, namespace, "once", tmp_path)
    assert result.returncode == 0, result.stderr
    once = backup_status(cluster, "once", namespace, "Succeeded")
    [once_artifact] = once["status"]["artifacts"]  # its own only
    assert once_artifact["id"] != daily_artifact["id"]
    owners = sidecar_owners(tmp_path / namespace / "odoo-backups", "shop")
    assert owners == {daily_artifact["id"]: "shop-daily", once_artifact["id"]: "once"}  # the daily one is kept
    assert get_json(cluster, "odbb", "shop-daily", "-n", namespace)["status"]["artifacts"] == [daily_artifact]


def test_snapshot_deletion_stops_the_app_and_trusts_only_its_own_job(cluster, operator, namespace, tmp_path, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("snap2", namespace, deletionPolicy="Snapshot"))
    obj = wait_ready(cluster, "snap2", namespace)
    uid = obj["metadata"]["uid"]
    assert get_json(cluster, "deployment", "snap2", "-n", namespace)["spec"]["replicas"] == 1
    # A completed Job of the right name, not made by the operator for this object.
    pod = {"restartPolicy": "Never", "serviceAccountName": "default",
           "containers": [{"name": "fake", "image": "busybox", "command": ["true"]}]}
    planted = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "snap2-final-backup", "namespace": namespace,
                            "labels": {"odoo.dbmanager.io/owner-uid": "someone-else"}},
               "spec": {"backoffLimit": 0, "template": {"spec": pod}}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(planted))
    # kwok completes its Pod by itself (only the operator's Jobs wait for the tests to run them).
    wait_until(lambda: (get_json(cluster, "job", "snap2-final-backup", "-n", namespace).get("status") or {}).get(
        "succeeded"), 30, "the planted Job to complete")

    cluster.kubectl("delete", "odb", "snap2", "-n", namespace, "--wait=false")

    def ours() -> dict[str, Any] | None:
        job = get_json(cluster, "job", "snap2-final-backup", "-n", namespace)
        labels = (job.get("metadata") or {}).get("labels") or {}
        return job if labels.get("odoo.dbmanager.io/owner-uid") == uid else None

    job = wait_until(ours, 60, "the operator's own final backup Job")
    assert get_json(cluster, "deployment", "snap2", "-n", namespace)["spec"]["replicas"] == 0  # stopped first
    assert "snap2" in databases(pg_dsn)  # the planted Job was not trusted
    recorded = get_json(cluster, "odb", "snap2", "-n", namespace)["status"]["finalBackup"]
    assert recorded["jobUid"] == job["metadata"]["uid"] and not recorded.get("completedAt")
    result = run_job(cluster, namespace, "snap2-final-backup", tmp_path)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: not get_json(cluster, "odb", "snap2", "-n", namespace), 60, "the object to be gone")
    assert "snap2" not in databases(pg_dsn)
    assert list(sidecar_owners(tmp_path / namespace / "odoo-backups", "snap2").values()) == ["snap2/final-backup"]


def test_a_snapshot_deletion_resumed_after_the_drop_does_not_back_up_again(cluster, operator, namespace, pg_dsn):
    """The operator recorded the final backup's completion, dropped the database, and was killed before the
    object went: the resumed deletion finishes without a final backup of a missing database."""
    cluster.kubectl("apply", "-f", "-", input=odoo_database("snap3", namespace, deletionPolicy="Snapshot"))
    wait_ready(cluster, "snap3", namespace)
    cluster.kubectl("patch", "odb", "snap3", "-n", namespace, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"finalBackup": {"job": "snap3-final-backup", "jobUid": "gone",
                                                           "completedAt": "2026-01-01T00:00:00Z"}}}))
    assert get_json(cluster, "odb", "snap3", "-n", namespace)["status"]["finalBackup"]["completedAt"]
    pg_exec(pg_dsn, 'DROP DATABASE "snap3" WITH (FORCE)')
    cluster.kubectl("delete", "odb", "snap3", "-n", namespace, "--wait=false")
    wait_until(lambda: not get_json(cluster, "odb", "snap3", "-n", namespace), 60, "the object to be gone")
    assert not get_json(cluster, "job", "snap3-final-backup", "-n", namespace)


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


# --- restores of files the operator did not write: made by Odoo itself -----------------------------

ODOO_HOME = REPO_ROOT / ".cache" / "odoo" / "current"
# Run by Odoo's own interpreter: attachments and partners in a fresh `-i base` database, then Odoo's own
# dump_db, the code behind the database manager's Backup button ("zip" and "pg_dump custom format").
ODOO_DUMP_SCRIPT = """
import json, sys
conf, db_name, out_zip, out_dump = sys.argv[1:5]
import odoo
from odoo.service import db as service_db
odoo.tools.config.parse_config(["-c", conf])
with odoo.registry(db_name).cursor() as cr:
    env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
    files = env["ir.attachment"].create([{"name": f"file{n}.bin", "raw": bytes([n + 1]) * (5000 + n)}
                                         for n in range(3)])
    env["res.partner"].create([{"name": f"Customer {n}"} for n in range(40)])
    facts = {"attachments": {a.store_fname: a.checksum for a in files},
             "partners": env["res.partner"].with_context(active_test=False).search_count([]),
             "uuid": env["ir.config_parameter"].get_param("database.uuid"),
             "secret": env["ir.config_parameter"].get_param("database.secret")}
with open(out_zip, "wb") as stream:
    service_db.dump_db(db_name, stream, "zip")
with open(out_dump, "wb") as stream:
    service_db.dump_db(db_name, stream, "dump")
print("FACTS " + json.dumps(facts))
"""


@pytest.fixture(scope="module")
def odoo_made(cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A real Odoo 16 database (`odoo-bin -i base`, as its own non-superuser role), backed up by Odoo's own
    dump_db as a ZIP and as a custom-format dump. Built once for the module (30-60 s), nothing cached."""
    python = ODOO_HOME / "venv" / "bin" / "python"
    if not python.exists():
        pytest.skip("no real Odoo prepared (.cache/odoo/current: `make setup`)")
    assert cluster.postgres is not None
    pg = cluster.postgres
    role, password, name = f"odoo_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, f"odoo_made_{uuid.uuid4().hex[:8]}"
    pg_exec(pg.dsn, f"CREATE ROLE \"{role}\" LOGIN CREATEDB PASSWORD '{password}'")
    work = tmp_path_factory.mktemp("odoo-made")
    conf = work / "odoo.conf"
    src = ODOO_HOME / "src"
    conf.write_text(f"[options]\ndb_host = 127.0.0.1\ndb_port = {pg.port}\ndb_user = {role}\n"
                    f"db_password = {password}\ndata_dir = {work / 'data'}\nwithout_demo = all\n"
                    f"addons_path = {src / 'addons'},{src / 'odoo' / 'addons'}\n")
    env = {**os.environ, "PYTHONPATH": str(src)}
    try:
        init = subprocess.run([str(python), str(src / "odoo-bin"), "-c", str(conf), "-d", name, "-i", "base",
                               "--stop-after-init", "--log-level=warn"], capture_output=True, text=True, env=env,
                              timeout=600)
        assert init.returncode == 0, init.stderr[-3000:]
        dump = subprocess.run([str(python), "-c", ODOO_DUMP_SCRIPT, str(conf), name, str(work / "odoo.zip"),
                               str(work / "odoo.dump")], capture_output=True, text=True, env=env, timeout=300)
        assert dump.returncode == 0, dump.stderr[-3000:]
        facts = json.loads(next(line for line in dump.stdout.splitlines() if line.startswith("FACTS "))[6:])
        with psycopg.connect(pg.dsn.replace("dbname=postgres", f"dbname={name}")) as conn:
            facts["tables"] = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
        yield {**facts, "zip": work / "odoo.zip", "dump": work / "odoo.dump", "database": name}
    finally:
        pg_exec(pg.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg_exec(pg.dsn, f'DROP ROLE IF EXISTS "{role}"')


def backup_pvc(namespace: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": "odoo-backups", "namespace": namespace},
                           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})


def restored_like_odoo_made(cluster, name, namespace, tmp_path, made) -> dict[str, str]:
    """Same tables and rows as the database Odoo dumped, and every attachment's bytes in the filestore."""
    with connect_as_owner(cluster, name, namespace) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == \
            made["tables"]
        assert conn.execute("SELECT count(*) FROM res_partner").fetchone()[0] == made["partners"]
        stored = dict(conn.execute("SELECT store_fname, checksum FROM ir_attachment WHERE store_fname IS NOT NULL "
                                   "AND name LIKE 'file%.bin'").fetchall())
        assert stored == made["attachments"]
        owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'").fetchall()
        assert owners == [(conn.info.user,)]  # loaded as the database's own role
        return params(conn)


def test_an_odoo_made_zip_with_no_sidecar_restores_keeping_its_identity(cluster, operator, namespace, tmp_path,
                                                                        odoo_made):
    uploads = tmp_path / namespace / "odoo-backups" / "_uploads"  # the PVC, as jobrunner maps it
    uploads.mkdir(parents=True)
    shutil.copy(odoo_made["zip"], uploads / "shop.zip")  # no sidecar: the operator did not write it
    cluster.kubectl("apply", "-f", "-", input=backup_pvc(namespace))
    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "moved", namespace, restoreFrom={"file": "_uploads/shop.zip", "identity": "keep"}))
    job = wait_until(lambda: get_json(cluster, "job", "moved-restore", "-n", namespace), 60, "the restore Job")
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[:5] == ["restore", "--storage", "file:///backups", "--file", "_uploads/shop.zip"]
    assert "--sha256" not in args and args[args.index("--odoo-version") + 1] == "17.0"
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}} in pod["volumes"]
    assert pod["automountServiceAccountToken"] is False  # a user's dump is loaded without any API token
    result = run_job(cluster, namespace, "moved-restore", tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["verified"] is False

    obj = wait_ready(cluster, "moved", namespace)
    assert obj["status"]["source"] == ("restored from file _uploads/shop.zip on PVC odoo-backups "
                                       "(unverified: no checksum)")
    seen = {(t, r): m for t, r, m in events(cluster, namespace, "moved")}
    assert "unverified: no checksum" in seen[("Warning", "RestoreUnverified")]
    assert "its identity kept (moved)" in seen[("Normal", "Restored")]
    values = restored_like_odoo_made(cluster, "moved", namespace, tmp_path, odoo_made)
    assert (values["database.uuid"], values["database.secret"]) == (odoo_made["uuid"], odoo_made["secret"])
    filestore = tmp_path / namespace / "moved-filestore"
    for store_fname, checksum in odoo_made["attachments"].items():
        assert hashlib.sha1((filestore / store_fname).read_bytes()).hexdigest() == checksum


def test_an_odoo_made_dump_restores_with_a_fresh_identity_checked_against_its_sha256(cluster, operator, namespace,
                                                                                      tmp_path, odoo_made):
    uploads = tmp_path / namespace / "odoo-backups" / "in"
    uploads.mkdir(parents=True)
    shutil.copy(odoo_made["dump"], uploads / "shop.backup")  # pg_dump's custom format, whatever the name
    sha = hashlib.sha256(odoo_made["dump"].read_bytes()).hexdigest()
    cluster.kubectl("apply", "-f", "-", input=backup_pvc(namespace))
    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "copied", namespace, restoreFrom={"file": "in/shop.backup", "sha256": sha}))
    wait_until(lambda: get_json(cluster, "job", "copied-restore", "-n", namespace), 60, "the restore Job")
    result = run_job(cluster, namespace, "copied-restore", tmp_path)
    assert result.returncode == 0, result.stderr
    obj = wait_ready(cluster, "copied", namespace)
    assert obj["status"]["source"] == "restored from file in/shop.backup on PVC odoo-backups"
    assert "RestoreUnverified" not in {r for _, r, _ in events(cluster, namespace, "copied")}
    values = restored_like_odoo_made(cluster, "copied", namespace, tmp_path, odoo_made)
    assert values["database.uuid"] != odoo_made["uuid"] and values["database.secret"] != odoo_made["secret"]

    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "tampered", namespace, restoreFrom={"file": "in/shop.backup", "sha256": "0" * 64}))
    wait_until(lambda: get_json(cluster, "job", "tampered-restore", "-n", namespace), 60, "the restore Job")
    result = run_job(cluster, namespace, "tampered-restore", tmp_path)
    assert result.returncode == 1 and f"its sha256 is {sha}, not the {'0' * 64} given" in result.stdout
    failed = wait_reason(cluster, "tampered", namespace, "RestoreFailed")
    assert "file in/shop.backup on PVC odoo-backups" in condition(failed, "Ready")["message"]


def test_a_restore_file_outside_the_storage_is_refused_by_the_api_server_and_the_job(cluster, operator, namespace,
                                                                                    tmp_path):
    refused = cluster.kubectl("apply", "-f", "-", check=False, input=odoo_database(
        "escape", namespace, restoreFrom={"file": "../../etc/passwd"}))
    assert refused.returncode != 0 and "must be a relative path inside the storage" in refused.stderr
    # The Job checks again, whatever its arguments (a CRD older than the operator, a hand-made Job)
    result = subprocess.run([sys.executable, "-m", "odoo_operator.backupjob", "restore", "--storage",
                             (tmp_path / "vol").as_uri(), "--file", "../etc/passwd", "--database", "x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "not a relative path inside the storage" in json.loads(result.stdout)["error"]


def test_kubectl_odoo_restore_uploads_to_s3_then_restores(cluster, operator, namespace, tmp_path, s3_endpoint,
                                                          odoo_made):
    bucket = f"r-{namespace}"
    urllib.request.urlopen(urllib.request.Request(f"{s3_endpoint}/{bucket}", method="PUT"), timeout=10).close()
    cluster.kubectl("create", "secret", "generic", "s3-creds", "-n", namespace,
                    "--from-literal=AWS_ACCESS_KEY_ID=AKIDTEST", "--from-literal=AWS_SECRET_ACCESS_KEY=secret-key")
    plugin = [str(Path(sys.executable).parent / "kubectl-odoo"), f"--kubeconfig={cluster.kubeconfig}", "-n", namespace]
    done = subprocess.run([*plugin, "restore", "fromzip", "--file", str(odoo_made["zip"]), "--s3-bucket", bucket,
                           "--s3-endpoint", s3_endpoint, "--s3-prefix", "tenants", "--s3-credentials-secret",
                           "s3-creds", "--identity", "keep"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "secret-key" not in done.stdout + done.stderr
    obj = get_json(cluster, "odb", "fromzip", "-n", namespace)
    restore = obj["spec"]["restoreFrom"]
    sha = hashlib.sha256(odoo_made["zip"].read_bytes()).hexdigest()
    assert obj["spec"]["version"] == "16.0"  # from the ZIP's manifest.json
    assert restore["sha256"] == sha and restore["identity"] == "keep" and restore["neutralize"] is False
    assert restore["file"].startswith("_uploads/fromzip-") and restore["file"].endswith(".zip")
    assert restore["storage"] == {"s3": {"bucket": bucket, "endpoint": s3_endpoint, "prefix": "tenants",
                                         "credentialsSecret": {"name": "s3-creds"}}}
    with urllib.request.urlopen(f"{s3_endpoint}/{bucket}/tenants/{restore['file']}", timeout=30) as response:
        assert hashlib.sha256(response.read()).hexdigest() == sha
    wait_until(lambda: get_json(cluster, "job", "fromzip-restore", "-n", namespace), 60, "the restore Job")
    result = run_job(cluster, namespace, "fromzip-restore", tmp_path)
    assert result.returncode == 0, result.stderr
    obj = wait_ready(cluster, "fromzip", namespace)
    assert obj["status"]["source"] == f"restored from file {restore['file']} on s3://{bucket}/tenants"
    values = restored_like_odoo_made(cluster, "fromzip", namespace, tmp_path, odoo_made)
    assert values["database.uuid"] == odoo_made["uuid"]

    again = subprocess.run([*plugin, "restore", "fromzip", "--file", str(odoo_made["zip"])], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 1 and "already exists" in again.stderr
