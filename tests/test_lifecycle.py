"""End to end: the operator process against the real API server, kube-controller-manager, kwok and
PostgreSQL. YAML is applied as a user would; assertions are on what a user sees."""

from __future__ import annotations

import base64
import json
import time

import psycopg
import pytest
import yaml

from conftest import condition, get_json, odoo_database, pg_exec, pg_query, wait_until

pytestmark = pytest.mark.e2e


def ready(cluster, name, namespace):
    obj = get_json(cluster, "odb", name, "-n", namespace)
    return obj if condition(obj, "Ready").get("status") == "True" else None


def wait_ready(cluster, name, namespace, timeout=90):
    return wait_until(lambda: ready(cluster, name, namespace), timeout, f"{namespace}/{name} to be Ready")


def wait_reason(cluster, name, namespace, reason, timeout=60):
    def check():
        obj = get_json(cluster, "odb", name, "-n", namespace)
        return obj if condition(obj, "Ready").get("reason") == reason else None
    return wait_until(check, timeout, f"{namespace}/{name} Ready reason {reason}")


def events(cluster, namespace, name):
    out = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                          f"involvedObject.name={name},involvedObject.kind=OdooDatabase", "-o", "json").stdout
    return [(e["type"], e["reason"], e["message"]) for e in json.loads(out)["items"]]


def databases(pg_dsn):
    return {row[0] for row in pg_query(pg_dsn, "SELECT datname FROM pg_database")}


def secret_data(cluster, name, namespace):
    obj = get_json(cluster, "secret", name, "-n", namespace)
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def test_postgres_server_reports_reachability_version_and_count(cluster, operator):
    def reachable():
        obj = get_json(cluster, "pgs", "local")
        return obj if (obj.get("status") or {}).get("reachable") else None
    obj = wait_until(reachable, 60, "PostgresServer local to be reachable")
    assert obj["status"]["serverVersion"].startswith("15.")
    assert obj["status"]["databaseCount"] >= 1
    assert condition(obj, "Ready")["status"] == "True"
    table = cluster.kubectl("get", "pgs").stdout
    assert "local" in table and "True" in table and "Reachable" in table


def test_create_gives_a_ready_database_with_everything_it_owns(cluster, operator, namespace, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("shop", namespace, tags=["prod", "eu"]))
    obj = wait_ready(cluster, "shop", namespace)
    status = obj["status"]
    assert status["phase"] == "Ready" and status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["url"] == "http://shop.odoo.localhost" and status["databaseName"] == "shop"
    assert status["sizeBytes"] > 0 and status["createdAt"] and status["initializedAt"]
    for type_ in ("Ready", "Reconciling", "Stalled", "DatabaseReady", "Initialized", "AppAvailable"):
        assert condition(obj, type_)["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Reconciling")["status"] == "False" and condition(obj, "Stalled")["status"] == "False"

    # What `kubectl get odb` shows.
    table = cluster.kubectl("get", "odb", "-n", namespace).stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "READY", "REASON", "PHASE", "URL"]
    assert table[1].split()[:5] == ["shop", "True", "Ready", "Ready", "http://shop.odoo.localhost"]
    assert "Odoo 17.0 is serving" in cluster.kubectl("get", "odb", "-n", namespace, "-o", "wide").stdout

    # Tags as labels, selectable.
    assert cluster.kubectl("get", "odb", "-n", namespace, "-l", "tag.odoo.dbmanager.io/prod",
                           "-o", "name").stdout.strip() == "odoodatabase.odoo.dbmanager.io/shop"

    # The PostgreSQL database exists, owned by its own role, reachable with the Secret's credentials.
    assert "shop" in databases(pg_dsn)
    creds = secret_data(cluster, "shop-db", namespace)
    assert set(creds) >= {"host", "port", "database", "user", "password"}
    with psycopg.connect(host=creds["host"], port=int(creds["port"]), user=creds["user"],
                         password=creds["password"], dbname=creds["database"]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("shop",)
        # As in a database Odoo creates itself: pg_trgm, owned by the database's own role.
        assert conn.execute("SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'pg_trgm'"
                            ).fetchone() == (creds["user"],)
    assert len(secret_data(cluster, "shop-admin", namespace)["password"]) >= 24

    # Owned objects, applied by one field manager, with owner references.
    for kind, name in [("secret", "shop-db"), ("secret", "shop-admin"), ("pvc", "shop-filestore"),
                       ("pvc", "shop-sessions"), ("deployment", "shop"), ("service", "shop"), ("ingress", "shop"),
                       ("job", "shop-init")]:
        child = get_json(cluster, kind, name, "-n", namespace)
        assert child, f"{kind}/{name} missing"
        assert child["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    deployment = get_json(cluster, "deployment", "shop", "-n", namespace, "--show-managed-fields")
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {"odoo-db-operator"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:5] == ["--database", "shop", "--db-filter", "^shop$", "--proxy-mode"]
    # Odoo reaches its database through odoo.conf and PGPASSWORD: the image's entrypoint is skipped.
    assert container["command"] == ["odoo", "-c", "/etc/odoo/odoo.conf"]
    assert [e["name"] for e in container["env"]] == ["PGPASSWORD"]
    assert {"name": "sessions", "mountPath": "/var/lib/odoo/sessions"} in container["volumeMounts"]
    # odoo.conf is the pod template's own (an annotation the downward API projects at /etc/odoo): no ConfigMap.
    assert not get_json(cluster, "configmap", "shop-odoo-conf", "-n", namespace)
    conf = deployment["spec"]["template"]["metadata"]["annotations"]["odoo.dbmanager.io/odoo.conf"]
    options = dict(line.split(" = ", 1) for line in conf.splitlines() if " = " in line)
    assert (options["db_host"], options["db_port"], options["db_user"]) == (creds["host"], creds["port"], creds["user"])
    assert options["db_sslmode"] == creds["sslmode"] and creds["password"] not in conf
    init = get_json(cluster, "job", "shop-init", "-n", namespace)["spec"]["template"]["spec"]["containers"][0]
    assert init["command"][:2] == ["/bin/bash", "-c"] and "-c /etc/odoo/odoo.conf" in init["command"][2]
    assert {e["name"] for e in init["env"]} == {"PGPASSWORD", "PGDATABASE", "ODOO_ADMIN_PASSWORD"}
    ingress = get_json(cluster, "ingress", "shop", "-n", namespace)
    assert ingress["spec"]["rules"][0]["host"] == "shop.odoo.localhost"

    reasons = [reason for _, reason, _ in events(cluster, namespace, "shop")]
    assert "Created" in reasons and "Initialized" in reasons and "Ready" in reasons


def test_size_is_refreshed_periodically(cluster, operator, namespace):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("grow", namespace))
    before = wait_ready(cluster, "grow", namespace)["status"]["sizeBytes"]
    creds = secret_data(cluster, "grow-db", namespace)
    with psycopg.connect(host=creds["host"], port=int(creds["port"]), user=creds["user"],
                         password=creds["password"], dbname="grow", autocommit=True) as conn:
        conn.execute("CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) g")
    # The tests run the operator with ODOO_OPERATOR_SIZE_REFRESH_SECONDS=2: its PostgresServer's next check
    # (every 15 s) measures every database of the server and wakes this one; no change to the object is needed.
    wait_until(lambda: get_json(cluster, "odb", "grow", "-n", namespace)["status"]["sizeBytes"] > before + 5_000_000,
               60, "sizeBytes to grow")


def test_tags_follow_the_spec(cluster, operator, namespace):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("tagged", namespace, tags=["a", "b"]))
    wait_ready(cluster, "tagged", namespace)
    cluster.kubectl("patch", "odb", "tagged", "-n", namespace, "--type=merge", "-p", '{"spec":{"tags":["b","c"]}}')

    def labels():
        got = get_json(cluster, "odb", "tagged", "-n", namespace)["metadata"].get("labels") or {}
        tags = {k.split("/", 1)[1] for k in got if k.startswith("tag.odoo.dbmanager.io/")}
        return tags if tags == {"b", "c"} else None
    wait_until(labels, 30, "tag labels b, c")


def test_suspend_scales_to_zero_and_keeps_data(cluster, operator, namespace, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("sleepy", namespace))
    wait_ready(cluster, "sleepy", namespace)
    cluster.kubectl("patch", "odb", "sleepy", "-n", namespace, "--type=merge",
                    "-p", '{"spec":{"app":{"suspended":true}}}')
    obj = wait_until(lambda: (lambda o: o if o.get("status", {}).get("phase") == "Suspended" else None)(
        get_json(cluster, "odb", "sleepy", "-n", namespace)), 30, "phase Suspended")
    assert condition(obj, "Ready")["status"] == "True" and condition(obj, "Ready")["reason"] == "Suspended"
    assert get_json(cluster, "deployment", "sleepy", "-n", namespace)["spec"]["replicas"] == 0
    assert "sleepy" in databases(pg_dsn)
    cluster.kubectl("patch", "odb", "sleepy", "-n", namespace, "--type=merge",
                    "-p", '{"spec":{"app":{"suspended":false}}}')
    wait_reason(cluster, "sleepy", namespace, "Ready")
    assert get_json(cluster, "deployment", "sleepy", "-n", namespace)["spec"]["replicas"] == 1


def test_delete_drops_database_and_role_and_the_name_is_free_at_once(cluster, operator, namespace, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("gone", namespace))
    obj = wait_ready(cluster, "gone", namespace)
    role = obj["status"]["roleName"]
    # An open connection does not block the drop (WITH (FORCE)).
    creds = secret_data(cluster, "gone-db", namespace)
    holder = psycopg.connect(host=creds["host"], port=int(creds["port"]), user=creds["user"],
                             password=creds["password"], dbname="gone")
    cluster.kubectl("delete", "odb", "gone", "-n", namespace, "--timeout=60s")
    assert "gone" not in databases(pg_dsn)
    assert not pg_query(pg_dsn, "SELECT 1 FROM pg_roles WHERE rolname = %s", role)
    holder.close()
    cluster.kubectl("apply", "-f", "-", input=odoo_database("gone", namespace))
    again = wait_ready(cluster, "gone", namespace)
    assert again["metadata"]["uid"] != obj["metadata"]["uid"]
    assert "gone" in databases(pg_dsn)


def test_retain_policy_keeps_the_postgresql_database(cluster, operator, namespace, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("kept", namespace, deletionPolicy="Retain"))
    wait_ready(cluster, "kept", namespace)
    cluster.kubectl("delete", "odb", "kept", "-n", namespace, "--timeout=60s")
    assert "kept" in databases(pg_dsn)
    # Re-creating the same object adopts the retained, already initialised database.
    cluster.kubectl("apply", "-f", "-", input=odoo_database("kept", namespace))
    wait_ready(cluster, "kept", namespace)
    cluster.kubectl("delete", "odb", "kept", "-n", namespace, "--timeout=60s")
    assert "kept" not in databases(pg_dsn)


def test_database_dropped_behind_our_back_is_reported_not_recreated(cluster, operator, namespace, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("drift", namespace))
    wait_ready(cluster, "drift", namespace)
    pg_exec(pg_dsn, 'DROP DATABASE "drift" WITH (FORCE)')
    # Nothing changes in Kubernetes: the PostgresServer's check (every 15 s, one query for all its databases)
    # finds it gone and wakes the database, long before the 10-minute resync would.
    wait_reason(cluster, "drift", namespace, "DatabaseMissing", timeout=90)
    cluster.kubectl("patch", "odb", "drift", "-n", namespace, "--type=merge", "-p", '{"spec":{"tags":["x"]}}')
    # A pass of the earlier generation (woken by the app's own changes) may see the drop first; the change's
    # pass reports it too, and says it saw the change.
    def seen_the_change():
        obj = get_json(cluster, "odb", "drift", "-n", namespace)
        return obj if obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"] else None

    obj = wait_until(seen_the_change, 60, "the DatabaseMissing status of the patched generation")
    assert condition(obj, "Ready")["reason"] == "DatabaseMissing"
    assert condition(obj, "Stalled")["status"] == "True"
    assert "not re-created empty" in condition(obj, "Ready")["message"]
    time.sleep(2)
    assert "drift" not in databases(pg_dsn)
    assert ("Warning", "DatabaseMissing") in {(t, r) for t, r, _ in events(cluster, namespace, "drift")}
    cluster.kubectl("delete", "odb", "drift", "-n", namespace, "--timeout=60s")


def test_children_deleted_by_hand_come_back(cluster, operator, namespace):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("heal", namespace))
    wait_ready(cluster, "heal", namespace)
    old_password = secret_data(cluster, "heal-db", namespace)["password"]
    old_uid = get_json(cluster, "deployment", "heal", "-n", namespace)["metadata"]["uid"]
    cluster.kubectl("delete", "secret", "heal-db", "-n", namespace)
    cluster.kubectl("delete", "deployment", "heal", "-n", namespace)
    wait_until(lambda: secret_data(cluster, "heal-db", namespace), 30, "Secret heal-db to come back")
    wait_until(lambda: (get_json(cluster, "deployment", "heal", "-n", namespace).get("metadata") or {}).get("uid")
               not in (None, old_uid), 30, "Deployment heal to come back")
    creds = secret_data(cluster, "heal-db", namespace)
    assert creds["password"] != old_password  # a new password, and the role has it
    with psycopg.connect(host=creds["host"], port=int(creds["port"]), user=creds["user"],
                         password=creds["password"], dbname="heal"):
        pass
    wait_reason(cluster, "heal", namespace, "Ready")


def test_invalid_spec_is_stalled_with_observed_generation(cluster, operator, namespace, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("nov", namespace, version="99.0"))
    obj = wait_reason(cluster, "nov", namespace, "InvalidSpec")
    assert condition(obj, "Stalled")["status"] == "True"
    assert "no image is configured for Odoo 99.0" in condition(obj, "Ready")["message"]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert "nov" not in databases(pg_dsn)
    # Fixing the spec recovers.
    cluster.kubectl("patch", "odb", "nov", "-n", namespace, "--type=merge", "-p", '{"spec":{"version":"17.0"}}')
    wait_ready(cluster, "nov", namespace)


def test_failed_init_job_is_stalled_and_retried_when_the_job_is_deleted(cluster, operator, namespace):
    # kwok fails Job Pods of this image (hack/kwok/stages.yaml); the real image's failure looks the same.
    cluster.kubectl("apply", "-f", "-", input=odoo_database("broken", namespace, image="kwok.test/fail:1"))
    obj = wait_reason(cluster, "broken", namespace, "InitFailed", timeout=90)
    assert condition(obj, "Stalled")["status"] == "True"
    assert "delete the Job to retry" in condition(obj, "Ready")["message"]
    assert not get_json(cluster, "deployment", "broken", "-n", namespace)  # the app never starts uninitialised
    assert ("Warning", "InitFailed") in {(t, r) for t, r, _ in events(cluster, namespace, "broken")}
    cluster.kubectl("patch", "odb", "broken", "-n", namespace, "--type=json",
                    "-p", '[{"op":"remove","path":"/spec/image"}]')
    cluster.kubectl("delete", "job", "broken-init", "-n", namespace)
    wait_ready(cluster, "broken", namespace)


def test_schema_refuses_bad_input_before_the_operator_sees_it(cluster, operator, namespace):
    result = cluster.kubectl("apply", "-f", "-", check=False,
                             input=odoo_database("bad", namespace, databaseName="postgres"))
    assert result.returncode != 0 and "reserved" in result.stderr


def test_same_database_name_in_two_namespaces_is_a_conflict(cluster, operator, namespace, pg_dsn):
    other = namespace + "-b"
    cluster.kubectl("create", "namespace", other)
    cluster.kubectl("apply", "-f", "-", input=odoo_database("dup", namespace))
    wait_ready(cluster, "dup", namespace)
    # Same database name, another host: PostgreSQL's name is the conflict.
    cluster.kubectl("apply", "-f", "-", input=odoo_database("dup", other, hostname=f"dup-{other}.example.com"))
    obj = wait_reason(cluster, "dup", other, "NameConflict")
    assert condition(obj, "Stalled")["status"] == "True"
    # The loser's deletion never drops the winner's database.
    cluster.kubectl("delete", "odb", "dup", "-n", other, "--timeout=60s")
    assert "dup" in databases(pg_dsn)
    assert ready(cluster, "dup", namespace)


def test_a_host_served_by_another_namespace_is_refused_before_anything_is_created(cluster, operator, namespace,
                                                                                  pg_dsn):
    """Hosts are claimed cluster-wide (DomainClaim) like custom domains: spec.hostname cannot take a
    host another tenant serves; once that one is gone, the host is taken over without manual steps."""
    other = namespace + "-h"
    cluster.kubectl("create", "namespace", other)
    tag = namespace[2:][::-1]  # not the namespace's name: the message must not contain it
    host = f"erp-{tag}.example.com"
    first, second = f"h{namespace[2:]}a", f"h{namespace[2:]}b"
    cluster.kubectl("apply", "-f", "-", input=odoo_database(first, namespace, hostname=host))
    wait_ready(cluster, first, namespace)
    claim = get_json(cluster, "domainclaim", host)
    assert claim["spec"]["mappingRef"]["kind"] == "OdooDatabase"
    assert claim["spec"]["mappingRef"]["namespace"] == namespace
    try:
        cluster.kubectl("apply", "-f", "-", input=odoo_database(second, other, hostname=host))
        obj = wait_reason(cluster, second, other, "HostnameConflict")
        assert condition(obj, "Stalled")["status"] == "True"
        assert namespace not in condition(obj, "Ready")["message"]  # nothing of the other tenant
        assert second not in databases(pg_dsn) and not get_json(cluster, "ingress", second, "-n", other)
        cluster.kubectl("delete", "odb", first, "-n", namespace, "--timeout=90s")
        wait_ready(cluster, second, other)
        assert get_json(cluster, "domainclaim", host)["spec"]["mappingRef"]["namespace"] == other
        assert get_json(cluster, "ingress", second, "-n", other)["spec"]["rules"][0]["host"] == host
        # A rename moves the claim: the old default host is released.
        cluster.kubectl("patch", "odb", second, "-n", other, "--type=merge", "-p",
                        '{"spec":{"hostname":"erp2-' + tag + '.example.com"}}')
        wait_until(lambda: not get_json(cluster, "domainclaim", host), 60, "the old host to be released")
    finally:
        cluster.kubectl("delete", "odb", "--all", "-n", other, "--timeout=90s", check=False, timeout=120)
    assert not get_json(cluster, "domainclaim", f"erp2-{tag}.example.com")  # released with the database


def test_postgres_outage_is_reported_and_recovers_by_itself(cluster, operator, namespace, pg_dsn):
    cluster.postgres.stop()
    try:
        cluster.kubectl("apply", "-f", "-", input=odoo_database("outage", namespace))
        obj = wait_reason(cluster, "outage", namespace, "ServerUnavailable")
        assert condition(obj, "Reconciling")["status"] == "True"
        assert condition(obj, "Stalled")["status"] == "False"
        assert "PostgreSQL is unreachable" in condition(obj, "Ready")["message"]
        assert operator.process.poll() is None  # the operator did not crash
    finally:
        cluster.postgres.start()
    wait_ready(cluster, "outage", namespace, timeout=90)
    assert "outage" in databases(pg_dsn)


def test_operator_killed_mid_create_finishes_without_duplicates(cluster, operator, namespace, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("crash", namespace))
    wait_until(lambda: "crash" in databases(pg_dsn), 30, "the database to be created")
    operator.kill()
    try:
        password = secret_data(cluster, "crash-db", namespace)["password"]
    finally:
        operator.start()
    obj = wait_ready(cluster, "crash", namespace)
    assert [d for d in databases(pg_dsn) if d == "crash"] == ["crash"]
    assert len(pg_query(pg_dsn, "SELECT 1 FROM pg_roles WHERE rolname = %s", obj["status"]["roleName"])) == 1
    assert secret_data(cluster, "crash-db", namespace)["password"] == password
    jobs = get_json(cluster, "jobs", "-n", namespace, "-l", "odoo.dbmanager.io/database=crash")["items"]
    assert len(jobs) == 1


def test_operator_killed_mid_delete_finishes_the_delete(cluster, operator, namespace, pg_dsn):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("half", namespace))
    wait_ready(cluster, "half", namespace)
    operator.kill()
    try:
        cluster.kubectl("delete", "odb", "half", "-n", namespace, "--wait=false")
        assert get_json(cluster, "odb", "half", "-n", namespace)["metadata"]["deletionTimestamp"]
        assert "half" in databases(pg_dsn)  # the finalizer holds it until the operator acts
    finally:
        operator.start()
    wait_until(lambda: not get_json(cluster, "odb", "half", "-n", namespace), 60, "the object to be gone")
    assert "half" not in databases(pg_dsn)


def test_kubectl_yaml_round_trip_of_a_full_spec(cluster, operator, namespace):
    spec = {"version": "17.0", "hostname": "erp.example.com", "deletionPolicy": "Delete",
            "app": {"replicas": 2, "workers": 2, "config": {"limit_time_cpu": "120"},
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}}
    cluster.kubectl("apply", "-f", "-", input=odoo_database("full", namespace, **spec))
    obj = wait_ready(cluster, "full", namespace)
    assert obj["status"]["url"] == "http://erp.example.com"
    deployment = get_json(cluster, "deployment", "full", "-n", namespace)
    assert deployment["spec"]["replicas"] == 2
    conf = deployment["spec"]["template"]["metadata"]["annotations"]["odoo.dbmanager.io/odoo.conf"]
    assert "limit_time_cpu = 120" in conf and "workers = 2" in conf
    assert yaml.safe_load(cluster.kubectl("get", "odb", "full", "-n", namespace, "-o", "yaml").stdout)["spec"][
        "app"]["replicas"] == 2


def test_a_database_whose_server_never_existed_deletes_at_once(cluster, operator, namespace):
    """Nothing was created (its PostgresServer does not exist): deletion has nothing to drop and must
    not wait for that server forever."""
    cluster.kubectl("apply", "-f", "-", input=odoo_database("nowhere", namespace, server="no-such-server"))
    wait_reason(cluster, "nowhere", namespace, "ServerNotFound")
    cluster.kubectl("delete", "odb", "nowhere", "-n", namespace, "--timeout=30s")
    assert not get_json(cluster, "odb", "nowhere", "-n", namespace)
    released = [m for _, r, m in events(cluster, namespace, "nowhere") if r == "Released"]
    assert released and "no PostgreSQL database had been created" in released[0]
