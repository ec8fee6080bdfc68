"""`kubectl odoo users / invite / remove-user / logout` against the real API server (no Odoo needed): the
spec edits they make, and the listing of a status written here as the operator would write it.

The plugin runs as `python -m odoo_operator.kubectl` from this checkout (PYTHONPATH), as a user runs it.
Objects name an absent PostgresServer (tests/test_kubectl.py explains why the operator then leaves the
status we write alone)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import get_json
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster
from test_kubectl import fabricate, failed, ok, table_names

pytestmark = pytest.mark.e2e

LOGOUT_ANNOTATION = "odoo.dbmanager.io/logout"


def kodoo(cluster: LocalCluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(REPO_ROOT) / "operator")}
    result = subprocess.run([sys.executable, "-m", "odoo_operator.kubectl", f"--kubeconfig={cluster.kubeconfig}",
                             *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def spec_users(cluster: LocalCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return list(get_json(cluster, "odb", name, "-n", namespace)["spec"].get("users") or [])


def resource_version(cluster: LocalCluster, namespace: str, name: str) -> str:
    return str(get_json(cluster, "odb", name, "-n", namespace)["metadata"]["resourceVersion"])


def test_invite_and_remove_user_edit_spec_users_idempotently(cluster: LocalCluster, operator: Any,
                                                             namespace: str) -> None:
    fabricate(cluster, namespace, "shop", owner={"email": "olga@example.com", "name": "Olga"})
    out = ok(kodoo(cluster, "-n", namespace, "invite", "shop", "Jane@Example.com"))
    assert "patched: invited jane@example.com as user" in out, out
    assert spec_users(cluster, namespace, "shop") == [{"email": "jane@example.com", "role": "user"}]

    # Again: nothing sent (the object is not even written).
    before = resource_version(cluster, namespace, "shop")
    out = ok(kodoo(cluster, "-n", namespace, "invite", "shop", "jane@example.com"))
    assert "already invited to shop as user; nothing to do" in out, out
    assert resource_version(cluster, namespace, "shop") == before

    # Another role: the entry changes, no second entry.
    out = ok(kodoo(cluster, "-n", namespace, "invite", "shop", "jane@example.com", "--role", "admin"))
    assert "role of jane@example.com: user -> admin" in out, out
    ok(kodoo(cluster, "-n", namespace, "invite", "shop", "paul@example.com", "--role", "portal"))
    assert spec_users(cluster, namespace, "shop") == [{"email": "jane@example.com", "role": "admin"},
                                                      {"email": "paul@example.com", "role": "portal"}]

    # Refused before anything is sent: not an address, an unknown role, the owner.
    before = resource_version(cluster, namespace, "shop")
    failed(kodoo(cluster, "-n", namespace, "invite", "shop", "Jane <jane@example.com>"), "is not an e-mail address")
    failed(kodoo(cluster, "-n", namespace, "invite", "shop", "jane@localhost"), "is not an e-mail address")
    bad_role = kodoo(cluster, "-n", namespace, "invite", "shop", "x@example.com", "--role", "root")
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr
    out = ok(kodoo(cluster, "-n", namespace, "invite", "shop", "OLGA@example.com"))
    assert "is the owner of shop" in out, out
    failed(kodoo(cluster, "-n", namespace, "remove-user", "shop", "olga@example.com"), "is the owner of shop")
    failed(kodoo(cluster, "-n", namespace, "invite", "nope", "x@example.com"), 'OdooDatabase "nope" not found')
    assert resource_version(cluster, namespace, "shop") == before

    out = ok(kodoo(cluster, "-n", namespace, "remove-user", "shop", "JANE@example.com"))
    assert "patched: removed jane@example.com from spec.users" in out and "archives" in out, out
    assert spec_users(cluster, namespace, "shop") == [{"email": "paul@example.com", "role": "portal"}]
    out = ok(kodoo(cluster, "-n", namespace, "remove-user", "shop", "jane@example.com"))
    assert "jane@example.com is not in spec.users of shop; nothing to do" in out, out


def test_concurrent_invites_keep_every_entry(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    """Each edit carries the resourceVersion it read: a lost race is a 409, read again and retried, so no
    invitation overwrites another; ten at once (more than a fixed handful of retries would survive, the operator's
    status writes racing too) all land."""
    fabricate(cluster, namespace, "crowd")
    emails = sorted(f"user{i}@example.com" for i in range(10))
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda e: kodoo(cluster, "-n", namespace, "invite", "crowd", e), emails))
    for result in results:
        ok(result)
    assert sorted(u["email"] for u in spec_users(cluster, namespace, "crowd")) == emails


def test_users_lists_status_and_pending_entries(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    users = [{"email": "ann@example.com", "role": "user"}, {"email": "bob@example.com", "role": "admin"},
             {"email": "cid@example.com", "role": "portal"}]
    status_users = [
        {"email": "ann@example.com", "role": "user", "state": "Active", "lastTransitionTime": "2024-01-01T00:00:00Z"},
        {"email": "bob@example.com", "role": "user", "state": "Invited", "lastTransitionTime": "2024-01-02T00:00:00Z"},
        {"email": "dan@example.com", "role": "user", "state": "Archived",
         "lastTransitionTime": "2024-01-03T00:00:00Z"},
    ]
    fabricate(cluster, namespace, "team", status={"users": status_users,
                                                  "conditions": [{"type": "UsersSynced", "status": "False",
                                                                  "reason": "UserFailed",
                                                                  "message": "cid@example.com: login in use",
                                                                  "lastTransitionTime": "2024-01-03T00:00:00Z"}]},
              users=users, owner={"email": "olga@example.com"})
    result = kodoo(cluster, "-n", namespace, "users", "team")
    out = ok(result)
    lines = out.splitlines()
    assert lines[0].split() == ["EMAIL", "ROLE", "STATE", "LAST", "CHANGE"], out
    assert table_names(out) == ["olga@example.com", "ann@example.com", "bob@example.com", "dan@example.com",
                                "cid@example.com"], out
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["olga@example.com"].split()[1:3] == ["owner", "-"]
    assert rows["ann@example.com"].split()[1:3] == ["user", "Active"] and " ago" in rows["ann@example.com"]
    assert "user -> admin" in rows["bob@example.com"] and "Invited" in rows["bob@example.com"]
    assert rows["dan@example.com"].split()[1:3] == ["user", "Archived"]
    assert rows["cid@example.com"].split()[1:4] == ["portal", "Pending", "-"]
    assert "users not in sync (UserFailed): cid@example.com: login in use" in result.stderr

    data = json.loads(ok(kodoo(cluster, "-n", namespace, "users", "team", "-o", "json")))
    assert {r["email"]: r["state"] for r in data["users"]} == {
        "olga@example.com": "-", "ann@example.com": "Active", "bob@example.com": "Invited",
        "dan@example.com": "Archived", "cid@example.com": "Pending"}

    fabricate(cluster, namespace, "empty")
    result = kodoo(cluster, "-n", namespace, "users", "empty")
    assert ok(result) == "" and "No users in empty" in result.stderr


def test_logout_validates_and_asks_by_annotation(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    fabricate(cluster, namespace, "shop")
    failed(kodoo(cluster, "-n", namespace, "logout", "shop", "--user", "not-an-address"), "is not an e-mail address")
    assert LOGOUT_ANNOTATION not in (get_json(cluster, "odb", "shop", "-n", namespace)["metadata"]
                                     .get("annotations") or {})
    ok(kodoo(cluster, "-n", namespace, "logout", "shop", "--user", "Jane@Example.com", "--no-wait"))
    value = get_json(cluster, "odb", "shop", "-n", namespace)["metadata"]["annotations"][LOGOUT_ANNOTATION]
    stamp, who = value.split(" ")
    assert who == "jane@example.com" and stamp.endswith("Z") and "T" in stamp, value
    ok(kodoo(cluster, "-n", namespace, "logout", "shop", "--no-wait"))
    assert get_json(cluster, "odb", "shop", "-n", namespace)["metadata"]["annotations"][LOGOUT_ANNOTATION] \
        .endswith(" *")
    # Nobody answers (no operator works on a database whose server is absent): the wait ends with a reason.
    last = failed(kodoo(cluster, "-n", namespace, "logout", "shop", "--timeout", "3s"), "timed out after 3s")
    assert "has not answered" in last, last


# ---- the logout request and its Job (pure) ------------------------------------------------------------
def test_logout_request_is_checked_and_its_job_mounts_the_sessions() -> None:
    import datetime

    from odoo_operator.api.model import parse_odoo_database
    from odoo_operator.api.users import SpecError
    from odoo_operator.config import Settings
    from odoo_operator.specs import app, sessions

    ENDPOINT = app.DatabaseEndpoint("pg", 5432, "disable")
    moment = datetime.datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)
    value = sessions.logout_value(moment, "jane@example.com")
    assert value == "2030-01-01T12:00:00.123456Z jane@example.com"
    request = sessions.parse_logout(value, moment)
    assert request.login == "jane@example.com" and request.at == moment and request.target == "jane@example.com"
    assert sessions.parse_logout("2030-01-01T12:00:00Z *").login is None
    for bad in ("", "2030-01-01T12:00:00Z", "yesterday *", "2030-01-01T12:00:00Z a@b", "2030-01-01T12:00:00Z * x",
                "x" * 400, None):
        with pytest.raises(SpecError):
            sessions.parse_logout(bad)
    with pytest.raises(SpecError, match="in the future"):
        sessions.parse_logout("2030-01-02T12:00:00Z *", moment)

    body = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "OdooDatabase",
            "metadata": {"name": "shop", "namespace": "ns", "uid": "u-1"}, "spec": {"version": "16.0"}}
    db = parse_odoo_database(body, Settings.from_env())
    job = sessions.build_logout_job(db, ENDPOINT, request)
    assert job["metadata"]["name"] == sessions.logout_job_name(db, request)
    assert job["metadata"]["name"].startswith("shop-logout-")
    assert job["metadata"]["annotations"][LOGOUT_ANNOTATION] == value
    pod = job["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["sessions"] == "/var/lib/odoo/sessions"
    assert {"name": "sessions", "persistentVolumeClaim": {"claimName": "shop-sessions"}} in pod["volumes"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["LOGOUT_LOGIN"] == "jane@example.com" and env["LOGOUT_REQUEST"] == request.digest
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"]
    # Another request, another Job; the same request, the same Job.
    other = sessions.parse_logout(sessions.logout_value(moment, None))
    assert sessions.logout_job_name(db, other) != job["metadata"]["name"]
    assert sessions.build_logout_job(db, ENDPOINT, request) == job
