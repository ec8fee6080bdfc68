"""Users inside a database (issue 13): spec.users / spec.owner parsed, then synced into a real Odoo 16.0.

The Odoo part runs Odoo's own server (`odoo-bin`, .cache/odoo/current) on a real PostgreSQL (the harness's
Postgres class, not the whole control plane) and a real SMTP server on loopback (aiosmtpd) that the
database's outgoing mail server points at. People sign up as people do: the link from the invitation mail,
the form at /web/reset_password, then Odoo's own login.
"""

from __future__ import annotations

import html
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

import psycopg
import pytest
from psycopg import sql

from odoo_operator import odoorpc
from odoo_operator.api.model import SpecError
from odoo_operator.api.users import (
    MAX_USERS,
    Owner,
    UserSpec,
    parse_owner,
    parse_users,
    parse_users_spec,
    parse_users_status,
)
from odoo_operator.controller import users as sync
from odoo_operator.devtools.localcluster import Postgres, free_port, wait_for
from odoo_real import ODOO_BIN, ODOO_PYTHON, DirectOdoo, authenticate, request

ADMIN_PASSWORD = "admin-" + "Secret-pw-13"
DB = "u13"
COPY = "u13copy"  # a neutralized copy for testing


# --- spec.users / spec.owner / status.users -----------------------------------------------------------

def test_users_are_normalised_and_default_to_the_user_role() -> None:
    users = parse_users([{"email": " Jane@Example.COM "}, {"email": "p@example.com", "role": "portal"},
                         {"email": "a@example.com", "role": "admin"}])
    assert users == (UserSpec("jane@example.com", "user"), UserSpec("p@example.com", "portal"),
                     UserSpec("a@example.com", "admin"))
    assert parse_users(None) == ()


@pytest.mark.parametrize("raw, field_path", [
    ([{"email": "a@example.com"}, {"email": "A@Example.com"}], "spec.users[1].email"),
    ([{"email": "not-an-email"}], "spec.users[0].email"),
    ([{"email": "Jane <jane@example.com>"}], "spec.users[0].email"),
    ([{"email": "a@example.com, b@example.com"}], "spec.users[0].email"),
    ([{"email": "a@localhost"}], "spec.users[0].email"),
    ([{"role": "admin"}], "spec.users[0].email"),
    ([{"email": "a@example.com", "role": "owner"}], "spec.users[0].role"),
    ([{"email": "a@example.com", "groups": ["x"]}], "spec.users[0].groups"),
    ("a@example.com", "spec.users"),
    ([{"email": f"u{i}@example.com"} for i in range(MAX_USERS + 1)], "spec.users"),
])
def test_bad_users_are_refused_naming_the_field(raw: Any, field_path: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_users(raw)
    assert str(caught.value).startswith(field_path + " "), caught.value


def test_the_owner_is_parsed_and_is_never_also_a_spec_user() -> None:
    assert parse_owner({"email": "Olga@Example.com", "name": "Olga Owner"}) == Owner("olga@example.com", "Olga Owner")
    assert parse_owner({"email": "olga@example.com"}) == Owner("olga@example.com", "olga@example.com")
    assert parse_owner(None) is None
    for raw, field_path in (({"name": "x"}, "spec.owner.email"), ({"email": "o@example.com", "name": "a\nb"},
                                                                   "spec.owner.name"), ("o@example.com", "spec.owner")):
        with pytest.raises(SpecError, match=f"^{re.escape(field_path)}"):
            parse_owner(raw)
    with pytest.raises(SpecError, match=r"^spec\.users\[1\]\.email 'olga@example.com' is spec\.owner\.email"):
        parse_users_spec({"owner": {"email": "olga@example.com"},
                          "users": [{"email": "a@example.com"}, {"email": "OLGA@example.com"}]})


def test_status_users_are_read_back_leniently() -> None:
    raw = [{"email": "a@example.com", "role": "user", "state": "Invited", "lastTransitionTime": "t"},
           {"email": "b@example.com", "role": "root", "state": "Invited"}, "junk",
           {"email": "a@example.com", "role": "admin", "state": "Active"}]
    assert [u.to_dict() for u in parse_users_status(raw)] == [
        {"email": "a@example.com", "role": "user", "state": "Invited", "lastTransitionTime": "t"}]
    assert parse_users_status(None) == ()


def test_role_commands_keep_hand_given_rights_unless_the_user_type_changes() -> None:
    ids = {"user": 1, "system": 4, "erp_manager": 2, "sanitize": 3, "portal": 10}
    assert sync.role_of([1, 2, 4], ids) == "admin" and sync.role_of([1, 7], ids) == "user"
    assert sync.role_of([10], ids) == "portal" and sync.role_of([], ids) is None
    assert sync.role_commands("user", "admin", ids) == [(4, 4)]
    assert sync.role_commands("portal", "admin", ids) == [(6, 0, [1, 4])]
    assert sync.role_commands("admin", "user", ids) == [(3, 4), (3, 2), (3, 3)]
    assert sync.role_commands("portal", "user", ids) == [(6, 0, [1])]
    assert sync.role_commands("admin", "portal", ids) == [(6, 0, [10])]


def test_nothing_to_do_makes_no_call_and_an_absent_app_is_waited_for() -> None:
    nobody = odoorpc.OdooRPC(f"http://127.0.0.1:{free_port()}", DB, 2, ADMIN_PASSWORD, timeout=3)
    result = sync.sync_users(nobody, (), None, None)
    assert result.condition.status == "True" and result.calls == 0 and result.users == []

    previous = [{"email": "a@example.com", "role": "user", "state": "Active", "lastTransitionTime": "t"}]
    result = sync.sync_users(nobody, [UserSpec("a@example.com", "admin")], None, previous)
    assert result.users == previous and result.events == []
    assert (result.condition.status, result.condition.reason) == ("False", "OdooUnavailable")
    assert ADMIN_PASSWORD not in result.condition.message


# --- a real Odoo 16.0 ---------------------------------------------------------------------------------

@dataclass
class Sink:
    """Mails received by the loopback SMTP server: (envelope recipients, parsed message)."""

    mails: list[tuple[list[str], Any]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(([r.lower() for r in envelope.rcpt_tos], message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[Any]:
        return [message for rcpt, message in self.mails if address in rcpt]


@dataclass
class Odoo:
    url: str
    port: int
    sink: Sink
    direct: DirectOdoo

    def admin(self, database: str = DB) -> odoorpc.OdooRPC:
        return odoorpc.connect_admin(self.url, database, ADMIN_PASSWORD)

    def host(self, database: str = DB) -> str:
        """The server picks the database by the host's first label (--db-filter=^%d$), as one per host."""
        return f"{database}.localhost:{self.port}"

    def base_url(self, database: str = DB) -> str:
        return f"http://{self.host(database)}"


@pytest.fixture(scope="module")
def odoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Odoo]:
    from aiosmtpd.controller import Controller

    workdir = tmp_path_factory.mktemp("users")
    postgres = Postgres(workdir / "pg")
    postgres.init()
    postgres.start()
    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    server: subprocess.Popen[bytes] | None = None
    try:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute("CREATE ROLE odoo LOGIN CREATEDB PASSWORD 'odoo-pw'")
        direct = DirectOdoo(host="127.0.0.1", port=postgres.port, user="odoo", password="odoo-pw",
                            data_dir=workdir / "data")
        # Base only (the operator's init Job installs auth_signup too; a restored database may lack it: the sync
        # installs it then, tested here), then the admin password of <name>-admin.
        direct.odoo_bin("-d", DB, "-i", "base", "--without-demo=all", "--stop-after-init", "--no-http")
        direct.shell(DB, f"""
env.ref('base.user_admin').write({{'password': {ADMIN_PASSWORD!r}}})
env['ir.mail_server'].create({{'name': 'loopback sink', 'smtp_host': '127.0.0.1', 'smtp_port': {smtp.port},
                               'smtp_encryption': 'none'}})
""")
        # A copy for testing, neutralized by Odoo's own command.
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER odoo").format(
                sql.Identifier(COPY), sql.Identifier(DB)))
        direct.odoo_bin("neutralize", "-d", COPY)
        port = free_port()
        log = open(workdir / "odoo.log", "ab")
        # The server-wide fallback SMTP is the sink too: only the copy's neutralization keeps its mail in.
        server = subprocess.Popen(
            [str(ODOO_PYTHON), str(ODOO_BIN), "-c", str(direct._conf()), f"--http-port={port}",
             "--http-interface=127.0.0.1", "--db-filter=^%d$", "--smtp=127.0.0.1",
             f"--smtp-port={smtp.port}", "--workers=0", "--max-cron-threads=0"],
            env=direct._env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: bool(odoorpc.version(url, timeout=5)), 120, "Odoo to serve")
        yield Odoo(url, port, sink, direct)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        smtp.stop()
        postgres.remove()


def users_of(client: odoorpc.OdooRPC, login: str) -> list[dict[str, Any]]:
    return list(client.execute("res.users", "search_read", [("login", "=ilike", login)],
                               fields=["id", "login", "active", "share", "groups_id", "name", "email"],
                               context={"active_test": False}))


def group_ids(client: odoorpc.OdooRPC) -> dict[str, int]:
    return {key: odoorpc.xmlids(client, [xmlid])[xmlid] for key, xmlid in sync.GROUPS.items()}


def invitation_link(message: Any) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/html":
            text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
            links = re.findall(r'href="([^"]*/web/(?:reset_password|signup)[^"]*)"', text)
            if links:
                return html.unescape(links[0])
    raise AssertionError(f"no signup link in the invitation: {message.as_string()[:2000]}")


def sign_up(odoo: Odoo, link: str, email: str, password: str) -> None:
    """What the invited person does: opens the link, types a password twice, submits."""
    parts = urllib.parse.urlsplit(link)
    assert parts.netloc == odoo.host(), link
    path = f"{parts.path}?{parts.query}"
    page = request(odoo.port, odoo.host(), "GET", path)
    assert page.status == 200, (page.status, page.body[:500])
    body = page.body.decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', body)
    assert csrf and 'name="confirm_password"' in body, body[:2000]
    token = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)["token"][0]
    form = urllib.parse.urlencode({"csrf_token": csrf.group(1), "token": token, "login": email, "name": email,
                                   "password": password, "confirm_password": password}).encode()
    done = request(odoo.port, odoo.host(), "POST", parts.path, form,
                   {"Content-Type": "application/x-www-form-urlencoded"}, page.cookies)
    assert done.status in (302, 303), (done.status, done.body[:1500])


def log_in(odoo: Odoo, login: str, password: str, database: str = DB) -> tuple[dict[str, Any], dict[str, str]]:
    answer, response = authenticate(odoo.port, odoo.host(database), database, login, password)
    return answer, response.cookies


def mails_settle(sink: Sink, count: int, timeout: float = 30) -> None:
    wait_for(lambda: len(sink.mails) >= count, timeout, f"{count} mails at the sink")


THREE = [UserSpec("ada@example.com", "admin"), UserSpec("bob@example.com", "user"),
         UserSpec("pia@example.com", "portal")]
OWNER = Owner("olga@example.com", "Olga Owner")
STATE: dict[str, Any] = {}  # status.users between the tests, as the reconciler would keep it


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_invites_three_roles_who_sign_up_and_log_in(odoo: Odoo) -> None:
    client = odoo.admin()
    result = sync.sync_users(client, THREE, OWNER, None, base_url=odoo.base_url())
    assert (result.condition.status, result.condition.reason) == ("True", "Synced"), result.condition
    assert [(u["email"], u["role"], u["state"]) for u in result.users] == [
        (u.email, u.role, "Invited") for u in THREE]
    invited = [m for t, r, m in result.events if r == "UserInvited"]
    assert len(invited) == 3 and all("invitation sent" in m for m in invited), result.events
    assert ("Normal", "SignupInstalled", "installed Odoo's auth_signup module (invitations by e-mail)") in result.events

    mails_settle(odoo.sink, 3)
    groups = group_ids(client)
    for user in THREE:
        (record,) = users_of(client, user.email)
        assert sync.role_of(record["groups_id"], groups) == user.role and record["share"] == (user.role == "portal")
        (mail,) = odoo.sink.to(user.email)
        sign_up(odoo, invitation_link(mail), user.email, f"pw-of-{user.email}")
        answer, cookies = log_in(odoo, user.email, f"pw-of-{user.email}")
        assert answer.get("result", {}).get("uid") == record["id"], answer
        backend = request(odoo.port, odoo.host(), "GET", "/web", cookies=cookies)
        if user.role == "portal":  # refused from the backend: sent to the portal's landing page
            assert backend.status in (302, 303) and "/web/login_successful" in backend.headers["location"], backend
        else:
            assert backend.status == 200 and b"odoo.__session_info__" in backend.body, backend.status

    # Re-running changes nothing and invites nobody twice; the people who signed up are Active now.
    mails = len(odoo.sink.mails)
    again = sync.sync_users(client, THREE, OWNER, result.users, base_url=odoo.base_url())
    assert again.events == [] and again.condition.status == "True", again
    assert [u["state"] for u in again.users] == ["Active"] * 3
    assert again.calls <= 3, again.calls
    third = sync.sync_users(client, THREE, OWNER, again.users, base_url=odoo.base_url())
    assert third.users == again.users and third.events == []
    time.sleep(2)
    assert len(odoo.sink.mails) == mails
    assert all(len(users_of(client, u.email)) == 1 for u in THREE)
    STATE["users"] = again.users


@pytest.mark.integration
def test_the_owner_is_the_admin_user_and_admin_is_no_login(odoo: Odoo) -> None:
    answer, _ = log_in(odoo, OWNER.email, ADMIN_PASSWORD)
    assert answer.get("result", {}).get("uid") == 2 and answer["result"]["is_admin"], answer
    answer, _ = log_in(odoo, "admin", ADMIN_PASSWORD)
    assert "error" in answer, answer
    client = odoo.admin()
    assert users_of(client, "admin") == []
    with pytest.raises(odoorpc.OdooError) as caught:  # the admin by id: a wrong password is refused, not echoed
        odoorpc.connect_admin(odoo.url, DB, "not-the-password")
    assert caught.value.access_denied and "not-the-password" not in str(caught.value)
    (admin,) = users_of(client, OWNER.email)
    assert (admin["id"], admin["name"], admin["email"]) == (2, OWNER.name, OWNER.email)


@pytest.mark.integration
def test_a_role_change_changes_the_groups(odoo: Odoo) -> None:
    client = odoo.admin()
    changed = [UserSpec("ada@example.com", "user"), UserSpec("bob@example.com", "portal"),
               UserSpec("pia@example.com", "admin")]
    result = sync.sync_users(client, changed, OWNER, STATE["users"])
    assert result.condition.status == "True", result.condition
    assert sorted(m for _, r, m in result.events if r == "UserRoleChanged") == [
        "ada@example.com: admin -> user", "bob@example.com: user -> portal", "pia@example.com: portal -> admin"]
    groups = group_ids(client)
    for user in changed:
        (record,) = users_of(client, user.email)
        assert sync.role_of(record["groups_id"], groups) == user.role, (user, record)
    (bob,) = users_of(client, "bob@example.com")
    assert bob["share"] and set(bob["groups_id"]) == {groups["portal"]}
    (ada,) = users_of(client, "ada@example.com")
    assert groups["system"] not in ada["groups_id"] and groups["erp_manager"] not in ada["groups_id"]
    # Bob, a portal user now, is sent away from the backend; Pia, an admin now, gets in.
    _, cookies = log_in(odoo, "bob@example.com", "pw-of-bob@example.com")
    assert request(odoo.port, odoo.host(), "GET", "/web", cookies=cookies).status in (302, 303)
    answer, _ = log_in(odoo, "pia@example.com", "pw-of-pia@example.com")
    assert answer["result"]["is_admin"] is True
    STATE["users"] = sync.sync_users(client, THREE, OWNER, result.users).users  # back to the first roles


@pytest.mark.integration
def test_removal_archives_and_the_login_stops_working_others_untouched(odoo: Odoo) -> None:
    client = odoo.admin()
    # A user made by hand in Odoo, never in spec.users: the operator never touches it.
    client.execute("res.users", "create", [{"name": "Hand", "login": "hand@example.com", "email": "hand@example.com",
                                            "password": "hand-pw-123"}], context={"no_reset_password": True})
    result = sync.sync_users(client, THREE[1:], OWNER, STATE["users"])
    assert result.condition.status == "True"
    assert [(t, r, m) for t, r, m in result.events] == [
        ("Normal", "UserArchived", "archived ada@example.com (removed from spec.users)")]
    assert {u["email"]: u["state"] for u in result.users} == {
        "ada@example.com": "Archived", "bob@example.com": "Active", "pia@example.com": "Active"}
    (ada,) = users_of(client, "ada@example.com")
    assert ada["active"] is False  # archived, never deleted
    answer, _ = log_in(odoo, "ada@example.com", "pw-of-ada@example.com")
    assert "error" in answer and "result" not in answer, answer
    (hand,) = users_of(client, "hand@example.com")
    assert hand["active"] is True
    assert sync.sync_users(client, THREE[1:], OWNER, result.users).events == []

    # Back in the spec: re-activated (no second invitation), the old password works again.
    mails = len(odoo.sink.mails)
    back = sync.sync_users(client, THREE, OWNER, result.users)
    assert [r for _, r, _ in back.events] == ["UserReactivated"], back.events
    assert {u["email"]: u["state"] for u in back.users}["ada@example.com"] == "Active"
    assert log_in(odoo, "ada@example.com", "pw-of-ada@example.com")[0].get("result", {}).get("uid") == ada["id"]
    time.sleep(1)
    assert len(odoo.sink.mails) == mails
    STATE["users"] = back.users


@pytest.mark.integration
def test_an_existing_user_is_adopted_and_an_email_of_another_login_is_reported(odoo: Odoo) -> None:
    client = odoo.admin()
    jane = client.execute("res.users", "create", [{"name": "Jane", "login": "Jane@Example.com",
                                                   "email": "jane@example.com"}],
                          context={"no_reset_password": True})[0]
    client.execute("res.users", "create", [{"name": "Carl", "login": "carl", "email": "carl@example.com"}],
                   context={"no_reset_password": True})
    mails = len(odoo.sink.mails)
    wanted = [*THREE, UserSpec("jane@example.com", "admin"), UserSpec("carl@example.com", "user")]
    result = sync.sync_users(client, wanted, OWNER, STATE["users"])
    assert (result.condition.status, result.condition.reason) == ("False", "UserFailed")
    assert "carl@example.com: already the e-mail of the Odoo user with login 'carl'" in result.condition.message
    assert ("Normal", "UserAdopted", "adopted the existing Odoo user jane@example.com as admin") in result.events
    assert "jane@example.com" in {u["email"] for u in result.users}
    assert "carl@example.com" not in {u["email"] for u in result.users}
    (record,) = users_of(client, "jane@example.com")  # not duplicated
    assert record["id"] == jane and sync.role_of(record["groups_id"], group_ids(client)) == "admin"
    assert users_of(client, "carl@example.com") == []
    time.sleep(1)
    assert len(odoo.sink.mails) == mails  # adoption sends no invitation
    STATE["users"] = sync.sync_users(client, THREE, OWNER, result.users).users  # jane archived: managed now


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_pass_cut_before_its_status_is_written_invites_once(odoo: Odoo) -> None:
    client = odoo.admin()
    new = UserSpec("kim@example.com", "user")
    mails = len(odoo.sink.mails)
    sync.sync_users(client, [*THREE, new], OWNER, STATE["users"])  # the status write is lost (operator killed)
    mails_settle(odoo.sink, mails + 1)
    again = sync.sync_users(client, [*THREE, new], OWNER, STATE["users"])
    assert [r for _, r, _ in again.events] == ["UserAdopted"], again.events
    assert {u["email"]: u["state"] for u in again.users}["kim@example.com"] == "Invited"
    assert len(users_of(client, "kim@example.com")) == 1
    time.sleep(1)
    assert len(odoo.sink.to("kim@example.com")) == 1
    STATE["users"] = again.users


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_neutralized_copy_never_mails_its_invitations(odoo: Odoo) -> None:
    client = odoo.admin(COPY)
    mails = len(odoo.sink.mails)
    result = sync.sync_users(client, [UserSpec("tess@example.com", "user")], None, None,
                             base_url=odoo.base_url(COPY))
    assert result.condition.status == "True", result.condition
    assert ("Normal", "UserInvited",
            "invited tess@example.com as user (no invitation mail: the database cannot send mail)") in result.events
    assert [u["state"] for u in result.users] == ["Invited"]
    assert len(users_of(client, "tess@example.com")) == 1
    time.sleep(3)
    assert odoo.sink.mails[mails:] == []


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_hundred_users_in_one_pass(odoo: Odoo) -> None:
    client = odoo.admin()
    hundred = [UserSpec(f"crowd{i:03d}@example.com", ("user", "portal", "admin")[i % 3]) for i in range(100)]
    mails = len(odoo.sink.mails)
    started = time.monotonic()
    result = sync.sync_users(client, [*THREE, *hundred], OWNER, STATE["users"])
    invite_seconds = time.monotonic() - started
    assert result.condition.status == "True", result.condition
    assert sum(1 for u in result.users if u["state"] == "Invited" and u["email"].startswith("crowd")) == 100
    assert result.calls <= 8, result.calls
    mails_settle(odoo.sink, mails + 100, timeout=120)

    started = time.monotonic()
    removed = sync.sync_users(client, THREE, OWNER, result.users)
    archive_seconds = time.monotonic() - started
    assert sum(1 for u in removed.users if u["state"] == "Archived" and u["email"].startswith("crowd")) == 100
    assert removed.calls <= 4, removed.calls
    print(f"\n100-user sync: invite {invite_seconds:.1f} s in {result.calls} calls, "
          f"archive {archive_seconds:.1f} s in {removed.calls} calls")
