"""`kubectl odoo logout` on a real Odoo 16 (issue 13): a live session cookie stops working.

Sessions are opened as a browser opens them (Odoo's /web/session/authenticate through the Ingress proxy,
with the database's Host header) and checked with /web/session/get_session_info. The plugin only annotates
the OdooDatabase; the operator runs a Job of the database's image (`odoo shell` on the node runner, with the
database's sessions volume) that deletes the sessions through Odoo's own session store, and answers in
status.lastLogout; the plugin prints the count.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import apply_yaml, get_json
from fakes import World, database_body
from odoo_operator.api.conditions import now
from odoo_operator.api.labels import LOGOUT_ANNOTATION
from odoo_operator.controller import odoodatabase, odoodatabase_sessions
from odoo_operator.devtools.localcluster import LocalCluster
from odoo_operator.specs import sessions
from odoo_real import authenticate, json_rpc
from test_kubectl_users import kodoo
from test_odoo_real import database_name, host_of, odb, secret_value, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(900)]

OTHER = "bob@example.com"


@pytest.fixture(scope="module")
def logout_ns(cluster: LocalCluster, operator: Any, pods_server: str) -> Iterator[str]:
    name = f"logout-{uuid.uuid4().hex[:6]}"
    cluster.real_namespace(name)
    yield name
    cluster.kubectl("delete", "odb", "--all", "-n", name, "--timeout=180s", check=False, timeout=240)


def session_uid(port: int, host: str, cookies: dict[str, str]) -> int | None:
    """The uid the cookie's session is logged in as; None once Odoo no longer knows it (session expired)."""
    answer = json_rpc(port, host, "/web/session/get_session_info", {}, cookies).json()
    if "error" in answer:
        assert "SessionExpired" in json.dumps(answer["error"]), answer
        return None
    return int(answer["result"]["uid"])


def login(port: int, host: str, db: str, user: str, password: str) -> dict[str, str]:
    answer, response = authenticate(port, host, db, user, password)
    assert answer.get("result", {}).get("uid"), answer
    return {"session_id": response.cookies["session_id"]}


def test_logout_ends_live_sessions_of_one_user_then_of_all(cluster: LocalCluster, logout_ns: str, pods_server: str,
                                                             ingress_proxy: Any) -> None:
    apply_yaml(cluster, odb("shop", logout_ns, pods_server, app={"replicas": 1, "workers": 0}))
    wait_ready(cluster, logout_ns, "shop")
    port, host, db = ingress_proxy.port, host_of(cluster, logout_ns, "shop"), database_name(cluster, logout_ns, "shop")
    password = secret_value(cluster, logout_ns, "shop-admin", "password")

    # A second user with a password of its own (as an administrator would make one by hand).
    other_password = uuid.uuid4().hex
    created = json_rpc(port, host, "/jsonrpc", {"service": "object", "method": "execute_kw", "args": [
        db, 2, password, "res.users", "create", [{"name": "Bob", "login": OTHER, "password": other_password}],
        {"context": {"no_reset_password": True}}]}).json()
    assert isinstance(created.get("result"), int), created
    bob_uid = created["result"]

    admin_1 = login(port, host, db, "admin", password)
    admin_2 = login(port, host, db, "admin", password)
    bob = login(port, host, db, OTHER, other_password)
    assert session_uid(port, host, admin_1) == 2 and session_uid(port, host, admin_2) == 2
    assert session_uid(port, host, bob) == bob_uid

    # Only Bob's session ends.
    result = kodoo(cluster, "-n", logout_ns, "logout", "shop", "--user", OTHER.upper(), "--timeout", "5m",
                   timeout=400)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"shop: 1 session of {OTHER} ended", result.stdout
    assert session_uid(port, host, bob) is None
    assert session_uid(port, host, admin_1) == 2 and session_uid(port, host, admin_2) == 2
    last = get_json(cluster, "odb", "shop", "-n", logout_ns)["status"]["lastLogout"]
    assert last["sessionsEnded"] == 1 and last["request"].endswith(f" {OTHER}") and last["completedAt"], last
    # Bob signs in again: a new session works (his password is untouched).
    bob = login(port, host, db, OTHER, other_password)
    assert session_uid(port, host, bob) == bob_uid

    # Everyone: the admin's two sessions and Bob's new one.
    result = kodoo(cluster, "-n", logout_ns, "logout", "shop", "--timeout", "5m", timeout=400)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "shop: 3 sessions of all users ended", result.stdout
    for cookies in (admin_1, admin_2, bob):
        assert session_uid(port, host, cookies) is None
    assert session_uid(port, host, login(port, host, db, "admin", password)) == 2

    events = get_json(cluster, "events", "-n", logout_ns, "--field-selector",
                      "involvedObject.kind=OdooDatabase,involvedObject.name=shop")["items"]
    logged_out = [e["message"] for e in events if e["reason"] == "LoggedOut"]
    assert any(m.startswith(f"1 session of {OTHER} ended") for m in logged_out), logged_out
    assert any(m.startswith("3 sessions of every user ended") for m in logged_out), logged_out

    # With the app scaled to 0 the Job still runs (it needs the database and the volume, not the app).
    cluster.kubectl("patch", "odb", "shop", "-n", logout_ns, "--type=merge", "-p",
                    '{"spec":{"app":{"suspended":true}}}')
    result = kodoo(cluster, "-n", logout_ns, "logout", "shop", "--timeout", "5m", timeout=400)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "shop: 1 session of all users ended", result.stdout


# ---- the operator's step on fakes (tests/fakes.py): no cluster, no Odoo -------------------------------
def ready_database(world: World) -> dict[str, Any]:
    world.add_server()
    body = world.add(database_body())
    _, body = world.reconcile(odoodatabase.reconcile, body)
    world.kube.finish_job("shop-init")
    _, body = world.reconcile(odoodatabase.reconcile, body)
    world.kube.make_available("shop")
    outcome, body = world.reconcile(odoodatabase.reconcile, body)
    assert outcome.phase == "Ready", outcome.ready
    return body


def annotate(world: World, body: dict[str, Any], value: str) -> dict[str, Any]:
    stored = world.kube.find("OdooDatabase", "shop")
    assert stored is not None
    stored["metadata"].setdefault("annotations", {})[LOGOUT_ANNOTATION] = value
    return {**body, "metadata": dict(stored["metadata"])}


def test_the_operator_runs_one_job_per_request_and_answers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(monkeypatch)
    body = ready_database(world)
    assert not odoodatabase_sessions.logout_requested(body)
    reported: list[str] = []

    def count(tenant: Any, dbname: str, digest: str) -> int:
        reported.append(digest)
        return 4

    monkeypatch.setattr(odoodatabase_sessions, "reported_count", count)
    value = sessions.logout_value(now(), "jane@example.com")
    body = annotate(world, body, value)
    assert odoodatabase_sessions.logout_requested(body)  # the watch wakes the loop for it
    outcome, body = world.reconcile(odoodatabase.reconcile, body)
    request = sessions.parse_logout(value)
    job_name = sessions.logout_job_name(odoodatabase.parse_odoo_database(body, world.settings), request)
    assert world.kube.names("Job") == ["shop-init", job_name]
    assert outcome.phase == "Ready" and "lastLogout" not in body["status"]
    assert ("Normal", "LoggingOut", f"Job {job_name} ends every session of jane@example.com") in outcome.events

    # Running: nothing more; again: the same Job, not a second one.
    _, body = world.reconcile(odoodatabase.reconcile, body)
    assert world.kube.names("Job") == ["shop-init", job_name] and not reported
    world.kube.finish_job(job_name)
    outcome, body = world.reconcile(odoodatabase.reconcile, body)
    assert reported == [request.digest]
    last = body["status"]["lastLogout"]
    assert last["request"] == value and last["sessionsEnded"] == 4 and last["completedAt"]
    assert ("Normal", "LoggedOut", f"4 sessions of jane@example.com ended (Job {job_name})") in outcome.events
    assert not odoodatabase_sessions.logout_requested(body)
    # Answered: later passes leave it alone.
    outcome, body = world.reconcile(odoodatabase.reconcile, body)
    assert reported == [request.digest] and not [e for e in outcome.events if "Logg" in e[1]]

    # A failed Job is an answer too (the plugin stops waiting), and the database stays Ready.
    value = sessions.logout_value(now(), None)
    body = annotate(world, body, value)
    _, body = world.reconcile(odoodatabase.reconcile, body)
    failed_job = sessions.logout_job_name(odoodatabase.parse_odoo_database(body, world.settings),
                                          sessions.parse_logout(value))
    world.kube.finish_job(failed_job, "Failed", "BackoffLimitExceeded")
    outcome, body = world.reconcile(odoodatabase.reconcile, body)
    assert outcome.phase == "Ready"
    last = body["status"]["lastLogout"]
    assert last["request"] == value and "sessionsEnded" not in last and "failed" in last["message"], last
    assert any(e[:2] == ("Warning", "LogoutFailed") for e in outcome.events)


def test_an_invalid_request_is_refused_without_a_job(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(monkeypatch)
    body = ready_database(world)
    for value in ("tomorrow *", "2020-01-01T00:00:00Z not-an-address", "2999-01-01T00:00:00Z *"):
        body = annotate(world, body, value)
        outcome, body = world.reconcile(odoodatabase.reconcile, body)
        assert world.kube.names("Job") == ["shop-init"]
        assert outcome.phase == "Ready"
        last = body["status"]["lastLogout"]
        assert last["request"] == value and last["message"].startswith("refused: "), last
        assert [e[:2] for e in outcome.events if e[1].startswith("Logout")] == [("Warning", "LogoutRefused")]
