"""Duplicate (and for testing), rename and expiry, end to end on the real API server and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from conftest import condition, get_json, odoo_database, pg_exec, pg_query, wait_until
from test_lifecycle import databases, events, secret_data, wait_ready, wait_reason

pytestmark = pytest.mark.e2e
FIXTURE = Path(__file__).parent / "fixtures" / "odoo_schema.sql"


def connect_as_owner(cluster, name, namespace, dbname=None):
    creds = secret_data(cluster, f"{name}-db", namespace)
    return psycopg.connect(host=creds["host"], port=int(creds["port"]), user=creds["user"],
                           password=creds["password"], dbname=dbname or creds["database"], autocommit=True)


def params(conn):
    return dict(conn.execute("SELECT key, value FROM ir_config_parameter").fetchall())


def job_finished_at(job):
    return next(c["lastTransitionTime"] for c in job["status"]["conditions"]
                if c["type"] == "Complete" and c["status"] == "True")


def assert_neutralized_by_odoo_before_the_app(cluster, name, namespace, dbname):
    """Odoo's own `odoo neutralize` ran in a Job of the database's image (kwok completes it here; the
    real-Odoo tests run it), and the app was created only after that Job succeeded."""
    job = get_json(cluster, "job", f"{name}-neutralize", "-n", namespace)
    assert job["metadata"]["ownerReferences"][0]["name"] == name
    assert job["status"].get("succeeded") == 1
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["odoo", "neutralize", "-c", "/etc/odoo/odoo.conf", "-d", dbname]
    assert [e["name"] for e in container["env"]] == ["PGPASSWORD"]
    config = {v["name"]: v for v in pod["volumes"]}["config"]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"]
    assert config == "metadata.annotations['odoo.dbmanager.io/odoo.conf']"  # its own template's odoo.conf
    assert f"dbfilter = ^{dbname}$" in job["spec"]["template"]["metadata"]["annotations"]["odoo.dbmanager.io/odoo.conf"]
    deployment = get_json(cluster, "deployment", name, "-n", namespace)
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]  # its own image
    assert deployment["metadata"]["creationTimestamp"] >= job_finished_at(job)


@pytest.fixture
def source(cluster, operator, namespace):
    """A Ready OdooDatabase holding an Odoo-like schema with live switches, and some rows."""
    cluster.kubectl("apply", "-f", "-", input=odoo_database("prod", namespace))
    wait_ready(cluster, "prod", namespace)
    with connect_as_owner(cluster, "prod", namespace) as conn:
        conn.execute(FIXTURE.read_text())
        conn.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO res_partner (name) SELECT 'partner ' || g FROM generate_series(1, 500) g")
    return "prod"


def test_duplicate_for_testing_is_an_exact_neutralized_copy_with_a_fresh_identity(cluster, namespace, source, pg_dsn):
    with connect_as_owner(cluster, source, namespace) as conn:
        before = params(conn)
        # A tenant's trigger on its own table: it must never run as the operator's admin.
        conn.execute("""
            CREATE TABLE who_wrote (name text);
            CREATE FUNCTION record_writer() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO who_wrote VALUES (current_user); RETURN NEW; END $$;
            CREATE TRIGGER record_writer BEFORE INSERT OR UPDATE ON ir_config_parameter
                FOR EACH ROW EXECUTE FUNCTION record_writer();
        """)
    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "prod-test", namespace, duplicateFrom={"name": source, "forTesting": True}))
    obj = wait_ready(cluster, "prod-test", namespace)
    status = obj["status"]
    assert status["neutralized"] is True and status["source"] == "duplicate of prod"
    assert status["databaseName"] == "prod-test" and status["url"] == "http://prod-test.odoo.localhost"
    # Exact copy: rows are there, owned by the copy's own role.
    with connect_as_owner(cluster, "prod-test", namespace) as conn:
        assert conn.execute("SELECT count(*) FROM res_partner").fetchone() == (500,)
        owners = {r[0] for r in conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'").fetchall()}
        assert owners == {status["roleName"]}
        after = params(conn)
        assert after["database.uuid"] != before["database.uuid"]
        assert after["database.secret"] != before["database.secret"]
        assert after["database.create_date"] != before.get("database.create_date")
        assert after["web.base.url"] == "http://prod-test.odoo.localhost"
        assert {r[0] for r in conn.execute("SELECT name FROM who_wrote").fetchall()} == {status["roleName"]}
    # The source is untouched (still live, same identity).
    with connect_as_owner(cluster, source, namespace) as conn:
        assert params(conn)["database.uuid"] == before["database.uuid"]
        assert conn.execute("SELECT count(*) FROM ir_mail_server WHERE active").fetchone()[0] >= 1
    # The filestore is a clone of the source's PVC.
    pvc = get_json(cluster, "pvc", "prod-test-filestore", "-n", namespace)
    assert pvc["spec"]["dataSource"] == {"kind": "PersistentVolumeClaim", "name": "prod-filestore", "apiGroup": None} \
        or pvc["spec"]["dataSource"]["name"] == "prod-filestore"
    reasons = {r for _, r, _ in events(cluster, namespace, "prod-test")}
    assert {"Copied", "Neutralized", "Ready"} <= reasons
    neutralized = [m for _, r, m in events(cluster, namespace, "prod-test") if r == "Neutralized"][0]
    assert "odoo neutralize" in neutralized
    assert_neutralized_by_odoo_before_the_app(cluster, "prod-test", namespace, "prod-test")
    # Sessions are not copied: the copy's own, empty volume.
    assert "dataSource" not in get_json(cluster, "pvc", "prod-test-sessions", "-n", namespace)["spec"]
    copied = [m for _, r, m in events(cluster, namespace, "prod-test") if r == "Copied"][0]
    assert "briefly disconnected" in copied
    # Duplicates expire after 15 days by default, written once.
    created = obj["metadata"]["creationTimestamp"]
    assert status["expiresAt"] > created and status["expiresAt"].startswith(
        time.strftime("%Y-%m-%d", time.gmtime(time.mktime(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) + 15 * 86400)))
    assert condition(obj, "Expiring")["status"] == "False"


def test_plain_duplicate_keeps_switches_but_gets_a_new_identity(cluster, namespace, source):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("prod-copy", namespace, duplicateFrom={"name": source}))
    obj = wait_ready(cluster, "prod-copy", namespace)
    assert obj["status"]["neutralized"] is False
    assert not get_json(cluster, "job", "prod-copy-neutralize", "-n", namespace)
    with connect_as_owner(cluster, "prod-copy", namespace) as conn:
        assert "database.is_neutralized" not in params(conn)
        assert conn.execute("SELECT count(*) FROM ir_mail_server WHERE active").fetchone()[0] >= 1


def test_a_failed_neutralization_never_starts_the_copy_and_says_why(cluster, namespace, source):
    # kwok fails Job Pods of this image (hack/kwok/stages.yaml), as `odoo neutralize` exits 1 on an error.
    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "prod-bad", namespace, image="kwok.test/fail:1", duplicateFrom={"name": source, "forTesting": True}))
    obj = wait_reason(cluster, "prod-bad", namespace, "NeutralizeFailed", timeout=90)
    assert condition(obj, "Stalled")["status"] == "True"
    assert "delete the Job to retry" in condition(obj, "Ready")["message"]
    assert obj["status"].get("neutralized") is not True and not obj["status"].get("initializedAt")
    assert not get_json(cluster, "deployment", "prod-bad", "-n", namespace)
    assert ("Warning", "NeutralizeFailed") in {(t, r) for t, r, _ in events(cluster, namespace, "prod-bad")}
    cluster.kubectl("patch", "odb", "prod-bad", "-n", namespace, "--type=json",
                    "-p", '[{"op":"remove","path":"/spec/image"}]')
    cluster.kubectl("delete", "job", "prod-bad-neutralize", "-n", namespace)
    obj = wait_ready(cluster, "prod-bad", namespace)
    assert obj["status"]["neutralized"] is True
    assert_neutralized_by_odoo_before_the_app(cluster, "prod-bad", namespace, "prod-bad")


def test_a_recreated_duplicate_never_adopts_the_retained_database_of_its_name(cluster, namespace, source, pg_dsn):
    """An earlier object of the same name kept its database (Retain): a live one, never neutralized. A
    duplicate for testing of that name refuses it rather than start the app on it; once that database
    is dropped, the duplicate copies its source afresh and neutralizes it."""
    cluster.kubectl("apply", "-f", "-", input=odoo_database("again", namespace, deletionPolicy="Retain"))
    wait_ready(cluster, "again", namespace)
    with connect_as_owner(cluster, "again", namespace) as conn:
        conn.execute(FIXTURE.read_text())  # live mail servers and crons
    cluster.kubectl("delete", "odb", "again", "-n", namespace, "--timeout=60s")
    assert "again" in databases(pg_dsn)
    # Its children go with it, in the background (garbage collector): wait, so none is taken for the new one's.
    wait_until(lambda: not get_json(cluster, "deployment", "again", "-n", namespace), 60, "the old app to be collected")
    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "again", namespace, duplicateFrom={"name": source, "forTesting": True}))
    obj = wait_reason(cluster, "again", namespace, "DatabaseExists")
    assert condition(obj, "Stalled")["status"] == "True" and "never adopts" in condition(obj, "Ready")["message"]
    assert not obj["status"].get("createdAt") and not obj["status"].get("initializedAt")
    assert not get_json(cluster, "deployment", "again", "-n", namespace)
    assert not get_json(cluster, "job", "again-neutralize", "-n", namespace)
    with psycopg.connect(pg_dsn.replace("dbname=postgres", "dbname=again")) as conn:
        assert "database.is_neutralized" not in params(conn)  # left as it was
    # Deleting the refused object (deletionPolicy Delete) drops nothing it never used.
    cluster.kubectl("delete", "odb", "again", "-n", namespace, "--timeout=60s")
    assert "again" in databases(pg_dsn)
    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "again", namespace, duplicateFrom={"name": source, "forTesting": True}))
    wait_reason(cluster, "again", namespace, "DatabaseExists")
    # As the message says: drop it, and the duplicate goes its normal way.
    pg_exec(pg_dsn, 'DROP DATABASE "again" WITH (FORCE)')  # looked at again within a minute; a change at once:
    cluster.kubectl("patch", "odb", "again", "-n", namespace, "--type=merge", "-p", '{"spec":{"tags":["retry"]}}')
    obj = wait_ready(cluster, "again", namespace, timeout=120)
    assert obj["status"]["neutralized"] is True and obj["status"]["source"] == "duplicate of prod"
    assert_neutralized_by_odoo_before_the_app(cluster, "again", namespace, "again")


def test_sixth_duplicate_is_refused_and_creates_nothing(cluster, namespace, source, pg_dsn):
    for i in range(5):
        cluster.kubectl("apply", "-f", "-", input=odoo_database(f"copy-{i}", namespace, duplicateFrom={"name": source}))
    for i in range(5):
        wait_ready(cluster, f"copy-{i}", namespace)
    cluster.kubectl("apply", "-f", "-", input=odoo_database("copy-5", namespace, duplicateFrom={"name": source}))
    obj = wait_reason(cluster, "copy-5", namespace, "DuplicateLimit")
    assert condition(obj, "Stalled")["status"] == "True"
    assert "already has 5 duplicates" in condition(obj, "Ready")["message"]
    assert "copy-5" not in databases(pg_dsn)
    # Freeing a slot lets it proceed.
    cluster.kubectl("delete", "odb", "copy-0", "-n", namespace, "--timeout=60s")
    cluster.kubectl("annotate", "odb", "copy-5", "-n", namespace, "poke=1")
    wait_ready(cluster, "copy-5", namespace, timeout=120)


def test_duplicate_of_a_missing_source_waits_and_says_why(cluster, operator, namespace, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("orphan", namespace, duplicateFrom={"name": "nope"}))
    obj = wait_reason(cluster, "orphan", namespace, "SourceNotFound")
    assert "does not exist" in condition(obj, "Ready")["message"]
    assert "orphan" not in databases(pg_dsn)


def test_rename_moves_database_filestore_path_and_url(cluster, namespace, source, pg_dsn):
    cluster.kubectl("patch", "odb", source, "-n", namespace, "--type=merge", "-p", '{"spec":{"databaseName":"prod2"}}')

    def renamed():
        obj = get_json(cluster, "odb", source, "-n", namespace)
        ok = obj["status"].get("databaseName") == "prod2" and condition(obj, "Ready").get("status") == "True"
        return obj if ok and obj["status"]["observedGeneration"] == obj["metadata"]["generation"] else None
    obj = wait_until(renamed, 60, "the rename")
    assert obj["status"]["url"] == "http://prod2.odoo.localhost"
    names = databases(pg_dsn)
    assert "prod2" in names and "prod" not in names
    with connect_as_owner(cluster, source, namespace) as conn:  # the Secret follows
        assert conn.execute("SELECT count(*) FROM res_partner").fetchone() == (500,)
    deployment = get_json(cluster, "deployment", source, "-n", namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:4] == ["--database", "prod2", "--db-filter", "^prod2$"]
    assert {"name": "filestore", "mountPath": "/var/lib/odoo/filestore/prod2"} in container["volumeMounts"]
    assert get_json(cluster, "ingress", source, "-n", namespace)["spec"]["rules"][0]["host"] == "prod2.odoo.localhost"
    assert "Renamed" in {r for _, r, _ in events(cluster, namespace, source)}


def test_rename_to_a_taken_name_changes_nothing(cluster, namespace, source, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("other", namespace))
    wait_ready(cluster, "other", namespace)
    # Its own host (spec.hostname), so the PostgreSQL name is what conflicts (the host would too: see
    # test_lifecycle's hostname test).
    cluster.kubectl("patch", "odb", source, "-n", namespace, "--type=merge", "-p",
                    '{"spec":{"databaseName":"other","hostname":"prod-moved-' + namespace + '.example.com"}}')
    obj = wait_reason(cluster, source, namespace, "NameConflict")
    assert condition(obj, "Stalled")["status"] == "True" and "nothing was changed" in condition(obj, "Ready")["message"]
    assert obj["status"]["databaseName"] == "prod"
    assert {"prod", "other"} <= databases(pg_dsn)
    result = cluster.kubectl("patch", "odb", source, "-n", namespace, "--type=merge", "-p",
                             '{"spec":{"databaseName":"template1"}}', check=False)
    assert result.returncode != 0 and "reserved" in result.stderr


def test_expired_duplicate_is_deleted_with_its_database(cluster, namespace, source, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "short", namespace, duplicateFrom={"name": source}, expiresAfter="40s"))
    obj = wait_ready(cluster, "short", namespace)
    # Less than a day left: Expiring and a Warning Event at once.
    assert condition(obj, "Expiring")["status"] == "True"
    assert ("Warning", "ExpiringSoon") in {(t, r) for t, r, _ in events(cluster, namespace, "short")}
    wait_until(lambda: not get_json(cluster, "odb", "short", "-n", namespace), 90, "the expired duplicate to go")
    assert "short" not in databases(pg_dsn)
    assert "prod" in databases(pg_dsn)


@pytest.mark.parametrize("failpoint", ["duplicate-after-copy", "duplicate-before-neutralize",
                                       "neutralize-job-created"])
def test_operator_killed_mid_duplicate_never_leaves_a_live_unneutralized_copy(cluster, operator, namespace, source,
                                                                             pg_dsn, failpoint):
    operator.kill()
    operator.env["ODOO_OPERATOR_FAILPOINTS"] = failpoint  # the process dies right there, like a SIGKILL
    try:
        operator.start()
        cluster.kubectl("apply", "-f", "-", input=odoo_database(
            "midway", namespace, duplicateFrom={"name": source, "forTesting": True}))
        wait_until(lambda: operator.process.poll() is not None, 60, f"the operator to die at {failpoint}")
        assert "midway" in databases(pg_dsn)
        # Copied, the operator is gone: no app runs on a copy that is not neutralized.
        assert not get_json(cluster, "deployment", "midway", "-n", namespace)
        job = get_json(cluster, "job", "midway-neutralize", "-n", namespace)
        assert bool(job) == (failpoint == "neutralize-job-created")
        with psycopg.connect(pg_dsn.replace("dbname=postgres", "dbname=midway")) as conn:
            assert "database.is_neutralized" not in params(conn)
    finally:
        del operator.env["ODOO_OPERATOR_FAILPOINTS"]
        operator.start()
    obj = wait_ready(cluster, "midway", namespace)
    assert obj["status"]["neutralized"] is True
    assert pg_query(pg_dsn, "SELECT count(*) FROM pg_database WHERE datname = 'midway'") == [(1,)]
    assert_neutralized_by_odoo_before_the_app(cluster, "midway", namespace, "midway")
    if job:  # resumed: the Job of the killed operator, not a second one
        assert get_json(cluster, "job", "midway-neutralize", "-n", namespace)["metadata"]["uid"] == \
            job["metadata"]["uid"]
    with connect_as_owner(cluster, "midway", namespace) as conn:
        assert conn.execute("SELECT count(*) FROM res_partner").fetchone() == (500,)


def test_filestore_copy_job_where_volumes_cannot_be_cloned(cluster, operator, namespace, source):
    operator.kill()
    operator.env["ODOO_OPERATOR_FILESTORE_CLONE"] = "copy"
    try:
        operator.start()
        cluster.kubectl("apply", "-f", "-", input=odoo_database("copied", namespace, duplicateFrom={"name": source}))
        wait_ready(cluster, "copied", namespace)
    finally:
        operator.kill()
        del operator.env["ODOO_OPERATOR_FILESTORE_CLONE"]
        operator.start()
    assert "dataSource" not in get_json(cluster, "pvc", "copied-filestore", "-n", namespace)["spec"]
    job = get_json(cluster, "job", "copied-filestore-copy", "-n", namespace)
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in job["spec"]["template"]["spec"]["volumes"]}
    assert claims == {"source": "prod-filestore", "target": "copied-filestore"}
    assert job["status"]["succeeded"] == 1
