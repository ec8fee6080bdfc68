"""spec.users and spec.owner end to end (issue 13): the operator, a real control plane and a real Odoo 16.0
run by the node runner, reached through the local Ingress proxy with the database's Host.

One database lifecycle (Odoo's init is slow on 2 cores): created with an owner and three users of the three
roles, then its spec changes (a removal, a role change, an e-mail that another login already has). What
controller/users.py does inside Odoo is tested in detail (invitation mails, sign-up links, adoption, 100
users) by tests/test_users.py; here: the wiring — the app reached at its Service's endpoint, the admin
password of `<name>-admin`, status.users, the UsersSynced condition, the Events, Ready untouched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import apply_yaml, condition, get_json, wait_until
from odoo_operator.devtools.localcluster import LocalCluster
from odoo_real import authenticate, json_rpc
from test_odoo_real import database_name, host_of, odb, secret_value, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(1500)]

OWNER = {"email": "olga@example.com", "name": "Olga Owner"}
THREE = [{"email": "ada@example.com", "role": "admin"}, {"email": "Bob@Example.com", "role": "user"},
         {"email": "pia@example.com", "role": "portal"}]


@pytest.fixture(scope="module")
def users_ns(cluster: LocalCluster, operator: Any, pods_server: str) -> Iterator[str]:
    name = f"users-{uuid.uuid4().hex[:6]}"
    cluster.real_namespace(name)
    yield name
    cluster.kubectl("delete", "odb", "--all", "-n", name, "--timeout=180s", check=False, timeout=240)


def users_synced(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return condition(get_json(cluster, "odb", name, "-n", namespace), "UsersSynced")


def status_users(cluster: LocalCluster, namespace: str, name: str) -> dict[str, tuple[str, str]]:
    status = get_json(cluster, "odb", name, "-n", namespace).get("status") or {}
    return {u["email"]: (u["role"], u["state"]) for u in status.get("users") or []}


def events(cluster: LocalCluster, namespace: str, name: str) -> list[tuple[str, str]]:
    listed = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json",
                                        f"--field-selector=involvedObject.name={name}").stdout)
    return [(e.get("reason") or "", e.get("message") or "") for e in listed["items"]]


class Rpc:
    """Odoo's JSON-RPC at the database's host, through the Ingress proxy, as one login."""

    def __init__(self, port: int, host: str, database: str, login: str, password: str) -> None:
        self.port, self.host, self.database, self.password = port, host, database, password
        answer = json_rpc(port, host, "/jsonrpc", {"service": "common", "method": "login",
                                                   "args": [database, login, password]}).json()
        assert answer.get("result"), answer
        self.uid = int(answer["result"])

    def __call__(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        answer = json_rpc(self.port, self.host, "/jsonrpc", {
            "service": "object", "method": "execute_kw",
            "args": [self.database, self.uid, self.password, model, method, list(args), kwargs]}).json()
        assert "error" not in answer, answer["error"]
        return answer.get("result")


def logs_in(port: int, host: str, database: str, login: str, password: str) -> int | None:
    answer, _ = authenticate(port, host, database, login, password)
    return (answer.get("result") or {}).get("uid")


def test_owner_and_users_of_a_real_database(cluster: LocalCluster, users_ns: str, pods_server: str,
                                            ingress_proxy: Any) -> None:
    name = "team"
    apply_yaml(cluster, odb(name, users_ns, pods_server, app={"replicas": 1, "workers": 0}, owner=OWNER,
                            users=THREE))
    wait_ready(cluster, users_ns, name)

    # Invited, as the spec says (e-mails in lower case), once the app serves: UsersSynced True.
    wait_until(lambda: users_synced(cluster, users_ns, name).get("status") == "True", 300, "UsersSynced True",
               interval=2)
    assert status_users(cluster, users_ns, name) == {
        "ada@example.com": ("admin", "Invited"), "bob@example.com": ("user", "Invited"),
        "pia@example.com": ("portal", "Invited")}
    assert users_synced(cluster, users_ns, name)["reason"] == "Synced"
    posted = wait_until(lambda: (found := events(cluster, users_ns, name)) and
                        sum(1 for r, _ in found if r == "UserInvited") == 3 and found, 60, "the Events")
    messages = [m for r, m in posted if r == "UserInvited"]
    assert sorted(m.split(" (")[0] for m in messages) == [
        "invited ada@example.com as admin", "invited bob@example.com as user", "invited pia@example.com as portal"]
    assert ("OwnerSet", "the database's admin user is now olga@example.com (Olga Owner)") in posted

    # The owner logs in with the <name>-admin password at the database's host; `admin` is no login any more.
    port, host = ingress_proxy.port, host_of(cluster, users_ns, name)
    database = database_name(cluster, users_ns, name)
    password = secret_value(cluster, users_ns, f"{name}-admin", "password")
    assert secret_value(cluster, users_ns, f"{name}-admin", "username") == OWNER["email"]
    assert logs_in(port, host, database, OWNER["email"], password) == 2
    assert logs_in(port, host, database, "admin", password) is None
    odoo = Rpc(port, host, database, OWNER["email"], password)
    found = {u["login"]: u for u in odoo("res.users", "search_read", [("login", "like", "@example.com")],
                                         fields=["login", "share", "active", "groups_id", "name"])}
    assert set(found) == {"olga@example.com", "ada@example.com", "bob@example.com", "pia@example.com"}
    assert found["olga@example.com"]["name"] == "Olga Owner" and found["pia@example.com"]["share"] is True
    refs = {r["name"]: r["res_id"] for r in odoo("ir.model.data", "search_read",
                                                  [("module", "=", "base"), ("name", "=", "group_system")],
                                                  fields=["name", "res_id"])}
    assert refs["group_system"] in found["ada@example.com"]["groups_id"]
    assert refs["group_system"] not in found["bob@example.com"]["groups_id"]
    # Pia gets a password from the admin (as a person would through the link), so her login can be tried.
    odoo("res.users", "write", [found["pia@example.com"]["id"]], {"password": "pia-pw-123456"})
    assert logs_in(port, host, database, "pia@example.com", "pia-pw-123456") == found["pia@example.com"]["id"]
    # Carl exists in Odoo by hand with login `carl`: his e-mail cannot be invited as a second login.
    odoo("res.users", "create", [{"name": "Carl", "login": "carl", "email": "carl@example.com"}],
         context={"no_reset_password": True})

    # The spec changes: Pia removed, Bob promoted to admin, Carl's e-mail added.
    generation = get_json(cluster, "odb", name, "-n", users_ns)["metadata"]["generation"]
    cluster.kubectl("patch", "odb", name, "-n", users_ns, "--type=merge", "-p", json.dumps({"spec": {"users": [
        {"email": "ada@example.com", "role": "admin"}, {"email": "bob@example.com", "role": "admin"},
        {"email": "carl@example.com", "role": "user"}]}}))

    def settled() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", name, "-n", users_ns)
        cond = condition(obj, "UsersSynced")
        return obj if cond.get("observedGeneration", 0) > generation and cond.get("reason") == "UserFailed" else None

    obj = wait_until(settled, 300, "the new spec synced", interval=2)
    cond = condition(obj, "UsersSynced")
    assert cond["status"] == "False" and "carl@example.com: already the e-mail of the Odoo user with login 'carl'" \
        in cond["message"], cond
    assert condition(obj, "Ready")["status"] == "True", obj["status"]["conditions"]  # a detail, never un-Ready
    assert status_users(cluster, users_ns, name) == {
        "ada@example.com": ("admin", "Invited"), "bob@example.com": ("admin", "Invited"),
        "pia@example.com": ("portal", "Archived")}
    assert logs_in(port, host, database, "pia@example.com", "pia-pw-123456") is None  # archived
    (bob,) = odoo("res.users", "search_read", [("login", "=", "bob@example.com")], fields=["groups_id"])
    assert refs["group_system"] in bob["groups_id"]
    (pia,) = odoo("res.users", "search_read", [("login", "=", "pia@example.com")], fields=["active"],
                  context={"active_test": False})
    assert pia["active"] is False  # archived, never deleted
    assert odoo("res.users", "search_count", [("login", "=", "carl@example.com")]) == 0
    posted = wait_until(lambda: (found := events(cluster, users_ns, name)) and
                        any(r == "UserArchived" for r, _ in found) and found, 60, "the Events of the change")
    assert ("UserArchived", "archived pia@example.com (removed from spec.users)") in posted
    assert ("UserRoleChanged", "bob@example.com: user -> admin") in posted
    assert any(r == "UserSyncFailed" and m.startswith("carl@example.com: ") for r, m in posted), posted

    # A copy for testing keeps the source's users (the data is copied as it is) and never mails them: it is
    # neutralized (Odoo's own dummy mail server, which cannot send), and its spec lists no users to invite.
    apply_yaml(cluster, odb(f"{name}-test", users_ns, pods_server, app={"replicas": 1, "workers": 0},
                            duplicateFrom={"name": name, "forTesting": True}))
    wait_ready(cluster, users_ns, f"{name}-test")
    copy_host, copy_db = host_of(cluster, users_ns, f"{name}-test"), database_name(cluster, users_ns, f"{name}-test")
    copy = Rpc(port, copy_host, copy_db, OWNER["email"], password)  # its admin is its source's (same password)
    copied = {u["login"]: u["active"] for u in copy("res.users", "search_read", [("login", "like", "@example.com")],
                                                    fields=["login", "active"], context={"active_test": False})}
    assert copied == {"olga@example.com": True, "ada@example.com": True, "bob@example.com": True,
                      "pia@example.com": False}, copied
    servers = copy("ir.mail_server", "search_read", [], fields=["smtp_host"])
    assert [s["smtp_host"] for s in servers] == ["invalid"], servers  # neutralize.sql's "disable emails" server
    assert not (get_json(cluster, "odb", f"{name}-test", "-n", users_ns).get("status") or {}).get("users")
