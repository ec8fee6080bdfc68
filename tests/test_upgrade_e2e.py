"""Upgrades end to end (issue 14) on a real Odoo 16.0 run by the node runner, with an operator of this module's
own: its version table has, besides 16.0, three "newer versions" of the same tree (only one Odoo series exists
here), each with an upgrade method that runs real Odoo:

    saas~16.1  Odoo's own default method, `odoo -u all --stop-after-init`
    saas~16.2  a failing migration: it writes to the database, then exits non-zero
    17.0       `-u all`, then a migration script (odoo shell) that changes data: the data path

One database goes through the whole flow (Odoo's init is slow on 2 cores): offered (17.0 is the latest
major: a deadline is set); a test upgrade on a neutralized copy while production serves; the production
upgrade with the operator SIGKILLed after each step; a rollback to the pre-upgrade copy; a failing upgrade
rolled back exactly (row counts and a checksum), the operator killed in the middle of the rollback; the
upgrade carried out by itself at the deadline; then, with `kubectl odoo upgrade`, a rollback and an upgrade by
Odoo's own default method.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import OperatorProcess, apply_yaml, condition, get_json, pg_query, wait_until
from odoo_operator.devtools.localcluster import LocalCluster
from odoo_real import request
from test_kubectl_users import kodoo
from test_odoo_real import add_attachments, database_name, host_of, odb, served, wait_ready
from test_users_e2e import events

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(2400)]

SHELL = "odoo shell -c $ODOO_RC -d $ODOO_DATABASE --no-http --log-level=warn"
MIGRATE = ("odoo -c $ODOO_RC -d $ODOO_DATABASE -u all --stop-after-init --no-http --log-level=warn && "
           "printf '%s\\n' \"env['res.partner'].create({'name': 'Migrated to 17.0'})\" "
           "\"env['ir.config_parameter'].set_param('upgrade.marker', '17.0')\" 'env.cr.commit()' | " + SHELL
           + " && echo 'migration to 17.0 done'")
BREAK = ("printf '%s\\n' \"env['res.partner'].search([], order='id', limit=1).write({'name': 'half migrated'})\" "
         "\"env['res.partner.category'].create({'name': 'half migrated'})\" 'env.cr.commit()' | " + SHELL
         + " && echo 'migration step 2 of 3 failed: a column is missing' >&2 && exit 3")
TABLE = {
    "16.0": "odoo:16.0",
    "saas~16.1": {"image": "odoo:16.0"},
    "saas~16.2": {"image": "odoo:16.0", "upgrade": {"command": ["/bin/sh", "-c", BREAK]}},
    "17.0": {"image": "odoo:16.0", "upgrade": {"command": ["/bin/sh", "-c", MIGRATE]}},
}
KILL_POINTS = ["upgrade-after-stop", "upgrade-after-copy", "upgrade-job-created", "upgrade-after-marker"]
ROLLBACK_KILL_POINTS = ["rollback-before-drop", "rollback-after-drop"]


@pytest.fixture(scope="module")
def upgrade_operator(cluster: LocalCluster, default_server: str, pods_server: str,
                     without_session_operator: None) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster, cluster.workdir, name="operator-upgrade", env={
        "ODOO_OPERATOR_IMAGES": json.dumps(TABLE), "ODOO_OPERATOR_UPGRADE_GRACE": "1d",
        "ODOO_OPERATOR_UPGRADE_KEEP": "1h"})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def ns(cluster: LocalCluster, upgrade_operator: OperatorProcess) -> Iterator[str]:
    name = f"real-up-{uuid.uuid4().hex[:6]}"
    cluster.real_namespace(name)
    yield name
    cluster.kubectl("delete", "odb", "--all", "-n", name, "--timeout=240s", check=False, timeout=300)


def status(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return get_json(cluster, "odb", name, "-n", namespace).get("status") or {}


def patch(cluster: LocalCluster, namespace: str, name: str, body: dict[str, Any]) -> None:
    cluster.kubectl("patch", "odb", name, "-n", namespace, "--type=merge", "-p", json.dumps(body))


def tenant_dsn(pg_dsn: str, database: str) -> str:
    return pg_dsn.replace("dbname=postgres", f"dbname={database}")


def fingerprint(dsn: str) -> dict[str, Any]:
    """Row counts of a few tables and a checksum of every partner row: what "restored exactly" means."""
    counts = {table: pg_query(dsn, f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608 - fixed names
              for table in ("res_partner", "res_partner_category", "ir_config_parameter")}
    # Attachments, without the web asset bundles Odoo (re)generates when a page is served.
    counts["ir_attachment"] = pg_query(dsn, "SELECT count(*) FROM ir_attachment WHERE url IS NULL "
                                            "OR url NOT LIKE '/web/assets/%%'")[0][0]
    checksum = pg_query(dsn, "SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM res_partner t")[0][0]
    return {**counts, "res_partner_md5": checksum}


def login_page(port: int, host: str) -> int:
    try:
        return request(port, host, "GET", "/web/login", timeout=10).status
    except OSError:
        return 0


def run_through_kills(proc: OperatorProcess, points: list[str], namespace: str, done: Any, what: str,
                      timeout: float = 900) -> int:
    """The operator dies (as a SIGKILL would) at each failpoint it reaches and is started again without
    delay, until `done()`; returns how many times it was killed."""
    proc.stop()
    left = list(points)
    proc.env["ODOO_OPERATOR_FAILPOINTS"] = ",".join(f"{p}@{namespace}" for p in left)
    kills, deadline = 0, time.monotonic() + timeout
    try:
        proc.start()
        while time.monotonic() < deadline:
            if done():
                return kills
            if not proc.running():
                assert proc.process is not None and proc.process.returncode == 137, proc.log()[-3000:]
                fired = proc.log().rsplit("failpoint ", 1)[1].split(":", 1)[0]
                left.remove(fired)  # each point kills once: the next process goes past it
                proc.env["ODOO_OPERATOR_FAILPOINTS"] = ",".join(f"{p}@{namespace}" for p in left) or "none"
                kills += 1
                proc.start()
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}")
    finally:
        proc.stop()
        proc.env.pop("ODOO_OPERATOR_FAILPOINTS", None)
        proc.start()


def test_offer_test_upgrade_production_upgrade_rollback_failure_and_deadline(
        cluster: LocalCluster, ns: str, pods_server: str, ingress_proxy: Any, pg_dsn: str,
        upgrade_operator: OperatorProcess) -> None:
    name = "shop"
    apply_yaml(cluster, odb(name, ns, pods_server))
    wait_ready(cluster, ns, name)
    host, db = host_of(cluster, ns, name), database_name(cluster, ns, name)
    dsn = tenant_dsn(pg_dsn, db)
    attachments = add_attachments(cluster, ns, name, ingress_proxy.port)

    # ---- offered: the newest version above 16.0, a deadline (17.0 is a newer major) ----------------------
    st = wait_until(lambda: (s := status(cluster, ns, name)).get("upgradeDeadline") and s, 60, "the offer")
    assert st["version"] == "16.0" and st["availableUpgrade"] == "17.0"
    offered = datetime.datetime.fromisoformat(st["upgradeOfferedAt"].replace("Z", "+00:00"))
    deadline = datetime.datetime.fromisoformat(st["upgradeDeadline"].replace("Z", "+00:00"))
    assert deadline - offered == datetime.timedelta(days=1)
    obj = get_json(cluster, "odb", name, "-n", ns)
    assert condition(obj, "UpgradeAvailable")["status"] == "True"
    assert any(reason == "UpgradeAvailable" and "17.0" in msg for reason, msg in events(cluster, ns, name))

    # ---- a test upgrade on a neutralized copy, production serving meanwhile -----------------------------
    # The login page once before: its first render compiles the web assets (seconds), which would make the
    # one request the copy may cut (below) far more likely than any page a person opens.
    wait_until(lambda: login_page(ingress_proxy.port, host) == 200, 120, "the login page rendered once")
    before = fingerprint(dsn)
    patch(cluster, ns, name, {"spec": {"upgrade": {"targetVersion": "17.0"}}})
    serving_during_test = []

    def tested() -> dict[str, Any] | None:
        serving_during_test.append(login_page(ingress_proxy.port, host))
        test = (status(cluster, ns, name).get("upgrade") or {}).get("test") or {}
        assert test.get("state") != "Failed", test
        return test if test.get("state") == "Succeeded" else None

    test = wait_until(tested, 900, "the test upgrade", interval=3)
    assert test["database"] == f"{name}-upgrade-test" and test["url"] and test["durationSeconds"] > 0
    # Production served throughout. The copy itself, as Odoo's own duplicate does, terminates the source's
    # sessions for the instant of CREATE DATABASE … TEMPLATE: a request in flight right then may fail (the
    # Copied Event says how many sessions were cut). At most that one.
    assert serving_during_test.count(200) >= len(serving_during_test) - 1 and serving_during_test[-1] == 200, \
        serving_during_test
    copy_db = database_name(cluster, ns, test["database"])
    copy_dsn = tenant_dsn(pg_dsn, copy_db)
    assert pg_query(copy_dsn, "SELECT count(*) FROM res_partner WHERE name = 'Migrated to 17.0'")[0][0] == 1
    assert pg_query(copy_dsn, "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'") \
        == [("true",)]
    assert status(cluster, ns, test["database"])["version"] == "17.0"
    assert fingerprint(dsn) == before  # production untouched
    assert status(cluster, ns, name)["version"] == "16.0"

    # ---- the production upgrade, the operator SIGKILLed after each step -----------------------------------
    patch(cluster, ns, name, {"spec": {"version": "17.0"}})

    def upgraded() -> bool:
        st = status(cluster, ns, name)
        return st.get("version") == "17.0" and condition(get_json(cluster, "odb", name, "-n", ns),
                                                         "Ready").get("status") == "True"

    kills = run_through_kills(upgrade_operator, KILL_POINTS, ns, upgraded, "the production upgrade")
    assert kills >= 3, kills  # the Job's creation is a point only when that pass created it
    wait_ready(cluster, ns, name)
    st = status(cluster, ns, name)
    record = st["upgrade"]
    assert (record["state"], record["from"], record["to"]) == ("Succeeded", "16.0", "17.0"), record
    assert record["durationSeconds"] > 0 and "migration to 17.0 done" in (record.get("logTail") or ""), record
    assert record["preUpgradeCopy"]["version"] == "16.0"
    assert "availableUpgrade" not in st and "upgradeDeadline" not in st
    assert pg_query(dsn, "SELECT count(*) FROM res_partner WHERE name = 'Migrated to 17.0'")[0][0] == 1
    for attachment_id, content in attachments.items():
        assert wait_until(lambda a=attachment_id: served(ingress_proxy.port, host, a), 120, "an attachment") == content
    assert wait_until(lambda: login_page(ingress_proxy.port, host) == 200, 120, "the login page")
    wait_until(lambda: status(cluster, ns, name)["upgrade"].get("downtimeSeconds") is not None, 60, "the downtime")

    # ---- a rollback to the pre-upgrade copy ------------------------------------------------------------
    patch(cluster, ns, name, {"metadata": {"annotations": {"odoo.dbmanager.io/rollback": "now"}},
                              "spec": {"version": "16.0"}})
    wait_until(lambda: (status(cluster, ns, name).get("upgrade") or {}).get("state") == "RolledBack", 600,
               "the rollback")
    wait_ready(cluster, ns, name)
    assert status(cluster, ns, name)["version"] == "16.0"
    assert fingerprint(dsn) == before
    annotations = get_json(cluster, "odb", name, "-n", ns)["metadata"].get("annotations") or {}
    assert "odoo.dbmanager.io/rollback" not in annotations
    for attachment_id, content in attachments.items():
        assert wait_until(lambda a=attachment_id: served(ingress_proxy.port, host, a), 120, "an attachment") == content

    # ---- a failing upgrade is rolled back exactly, the operator killed in the middle of the rollback ------
    patch(cluster, ns, name, {"spec": {"version": "saas~16.2", "upgrade": {"testFirst": False}}})

    def failed() -> bool:
        obj = get_json(cluster, "odb", name, "-n", ns)
        return condition(obj, "Stalled").get("reason") == "UpgradeFailed"

    kills = run_through_kills(upgrade_operator, ROLLBACK_KILL_POINTS, ns, failed, "the failed upgrade's rollback")
    assert kills == 2, kills
    obj = get_json(cluster, "odb", name, "-n", ns)
    record = obj["status"]["upgrade"]
    assert record["state"] == "Failed" and obj["status"]["version"] == "16.0", record
    assert "a column is missing" in (record.get("logTail") or ""), record
    assert "saas~16.2" in condition(obj, "Stalled")["message"]
    assert fingerprint(dsn) == before
    wait_until(lambda: login_page(ingress_proxy.port, host) == 200, 180, "the app back on the old version")
    for attachment_id, content in attachments.items():
        assert served(ingress_proxy.port, host, attachment_id) == content

    # ---- at the deadline the upgrade is carried out by itself ------------------------------------------
    soon = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch(cluster, ns, name, {"spec": {"version": "16.0", "upgrade": {"deadline": soon}}})
    wait_until(lambda: status(cluster, ns, name).get("upgradeDeadline") == soon, 60, "the deadline")
    wait_until(lambda: status(cluster, ns, name).get("version") == "17.0", 900, "the forced upgrade")
    wait_ready(cluster, ns, name)
    assert any(reason == "Upgrading" and "deadline" in msg for reason, msg in events(cluster, ns, name))
    assert pg_query(dsn, "SELECT count(*) FROM res_partner WHERE name = 'Migrated to 17.0'")[0][0] == 1

    # ---- with kubectl odoo: back to the pre-upgrade copy, then Odoo's own default method ------------------
    # saas~16.1 has no method of its own: the operator runs `odoo -u all --stop-after-init` with its image.
    # (The deadline goes first: past, it would upgrade the rolled-back database to 17.0 again at once.)
    patch(cluster, ns, name, {"spec": {"upgrade": {"deadline": None}}})
    wait_until(lambda: status(cluster, ns, name).get("upgradeDeadline") != soon, 60, "the deadline gone")
    out = kodoo(cluster, "-n", ns, "upgrade", name, "--rollback")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: (status(cluster, ns, name).get("upgrade") or {}).get("state") == "RolledBack", 600,
               "the rollback asked with kubectl odoo")
    wait_ready(cluster, ns, name)
    assert status(cluster, ns, name)["version"] == "16.0"
    out = kodoo(cluster, "-n", ns, "upgrade", name, "--now", "--to", "saas~16.1")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: status(cluster, ns, name).get("version") == "saas~16.1", 900, "the default method's upgrade")
    wait_ready(cluster, ns, name)
    record = status(cluster, ns, name)["upgrade"]
    assert (record["state"], record["from"], record["to"]) == ("Succeeded", "16.0", "saas~16.1"), record
    jobs = get_json(cluster, "jobs", "-n", ns, "-l", "app.kubernetes.io/component=upgrade")["items"]
    commands = [j["spec"]["template"]["spec"]["containers"][0]["command"] for j in jobs]
    assert ["odoo", "-c", "/etc/odoo/odoo.conf", "-d", db, "-u", "all", "--stop-after-init", "--no-http"] in [
        c[4:] for c in commands], commands
    assert pg_query(dsn, "SELECT count(*) FROM res_partner WHERE name = 'Migrated to 17.0'")[0][0] == 0
    assert wait_until(lambda: login_page(ingress_proxy.port, host) == 200, 180, "the login page on saas~16.1")
    for attachment_id, content in attachments.items():
        assert served(ingress_proxy.port, host, attachment_id) == content
