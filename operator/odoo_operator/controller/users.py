"""The users inside an Odoo database (spec.users, spec.owner) brought in line with the spec in one pass,
through Odoo's own external API. Parsing lives in api/users.py, the RPC client in odoorpc.py.

How it is meant to be called (by the OdooDatabase reconciler, once the database is Ready and its app
Deployment is available):

    client = odoorpc.connect_admin(f"http://{service}.{namespace}.svc:8069", database_name,
                                   password_of_the_<name>-admin_Secret)
    users, owner = api.users.parse_users_spec(body["spec"])
    result = controller.users.sync_users(client, users, owner, status.get("users"), base_url=status["url"])
    # write result.users to status.users, result.condition (type UsersSynced) into the conditions, and
    # post result.events (type, reason, message) on the OdooDatabase.

`connect_admin` authenticates as base.user_admin by its id, so it keeps working after the owner's e-mail
replaced the `admin` login. The app must be running: when it is scaled to 0 (spec.app.suspended), starting
or mid-rollout, nothing answers and sync_users returns status.users unchanged with UsersSynced False,
reason OdooUnavailable: the users wait for the next pass once the app is back (the operator's periodic
resync, or the Deployment becoming available). UsersSynced never makes the database un-Ready.

What it does, in a handful of RPC calls whatever the number of users (see sync_users):
- invites each missing user with Odoo's own `res.users.create` (login = e-mail, the role's groups):
  auth_signup's create override sends the invitation mail with its signup link where the database can send
  mail (a neutralized copy cannot: the user is created, no mail leaves). Creates go in lists of CREATE_CHUNK.
- adopts a user that already has the e-mail as login (created by hand, or by a pass killed before its status
  was written): no second user, no second invitation; re-activates it if it was archived.
- changes the groups when the role changes, one write per kind of change.
- archives (active = False, as Odoo's "Archive") users removed from the spec that status.users lists as
  managed; users the operator never listed are never touched.
- gives base.user_admin the owner's login, name and e-mail.
- with base_url, sets web.base.url (frozen) so that the invitation links point at the database's URL.
A database initialised with `-i base` alone has no auth_signup (nor mail): the first pass that invites
installs it through Odoo's own module install (`button_immediate_install`, 70 s on a loaded 2-core machine);
an init with `-i base,auth_signup` avoids that wait.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from odoo_operator import odoorpc
from odoo_operator.api.conditions import Condition, now_iso
from odoo_operator.api.users import (
    MAX_USERS,
    STATE_ACTIVE,
    STATE_ARCHIVED,
    STATE_INVITED,
    Owner,
    UserSpec,
    UserStatus,
    parse_users_status,
)

CONDITION = "UsersSynced"
CREATE_CHUNK = 50  # users per create call: each sends its invitation synchronously (~0.2 s a user)
CREATE_TIMEOUT = 600.0
INSTALL_TIMEOUT = 900.0
MESSAGE_MAX = 1024
GROUPS = {
    "user": "base.group_user",
    "system": "base.group_system",
    "erp_manager": "base.group_erp_manager",
    "sanitize": "base.group_sanitize_override",
    "portal": "base.group_portal",
}
ADMIN = "base.user_admin"
# Odoo's own accounts: never adopted, changed or archived as a spec user.
PROTECTED = (ADMIN, "base.user_root", "base.public_user", "base.default_user")
USER_FIELDS = ["id", "login", "email", "name", "active", "login_date", "share", "groups_id"]

Event = tuple[str, str, str]  # (type, reason, message) as a Kubernetes Event


@dataclass
class UsersResult:
    users: list[dict[str, str]]  # the new status.users
    events: list[Event]
    condition: Condition
    calls: int = 0  # RPC calls made (what a pass costs)


@dataclass
class _Pass:
    client: odoorpc.OdooRPC
    events: list[Event] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # e-mail (or "spec.owner") -> why
    calls: int = 0

    def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.client.execute(model, method, *args, **kwargs)

    def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.events.append((type_, reason, message))

    def fail(self, key: str, why: str) -> None:
        self.failures[key] = why
        self.event("UserSyncFailed", f"{key}: {why}", "Warning")


def sync_users(client: odoorpc.OdooRPC, desired: Sequence[UserSpec], owner: Owner | None,
               previous: Any, *, base_url: str | None = None) -> UsersResult:
    """One pass. `previous` is status.users as last written (raw); returns the new status.users, the Events
    to post and the UsersSynced condition. Kill-safe: every step is found done on the next pass (users by
    their login), so a pass cut anywhere is finished by the next one without a second invitation."""
    known = parse_users_status(previous)
    if not desired and owner is None and not any(u.state != STATE_ARCHIVED for u in known):
        return UsersResult([u.to_dict() for u in known], [], Condition.true(CONDITION, "NoUsers",
                                                                             "spec.users is empty"))
    run = _Pass(client)
    try:
        users = _sync(run, desired, owner, known, base_url)
    except odoorpc.OdooUnavailable as exc:
        return UsersResult([u.to_dict() for u in known], run.events, Condition.false(
            CONDITION, "OdooUnavailable", f"waiting for the Odoo app (scaled to 0, starting or rolling out): {exc}"),
            run.calls)
    except odoorpc.OdooError as exc:
        return UsersResult([u.to_dict() for u in known], run.events, Condition.false(
            CONDITION, "OdooError", _clip(f"Odoo refused the users' sync: {exc.message}")), run.calls)
    return UsersResult([u.to_dict() for u in users], run.events, _condition(users, run.failures), run.calls)


def role_of(groups: Iterable[int], ids: Mapping[str, int]) -> str | None:
    """A user's role as its groups say: portal, admin (Settings), user (internal), or None (no user type)."""
    have = set(groups)
    if ids["portal"] in have:
        return "portal"
    if ids["system"] in have:
        return "admin"
    if ids["user"] in have:
        return "user"
    return None


def role_commands(current: str | None, wanted: str, ids: Mapping[str, int]) -> list[Any]:
    """groups_id commands from one role to another. Promotions and admin -> user only add or remove the role's
    own groups, so app rights someone gave by hand stay; a change of user type sets the groups outright."""
    if wanted == "admin":
        return [(4, ids["system"])] if current == "user" else [(6, 0, [ids["user"], ids["system"]])]
    if wanted == "user":
        if current == "admin":
            return [(3, ids["system"]), (3, ids["erp_manager"]), (3, ids["sanitize"])]
        return [(6, 0, [ids["user"]])]
    return [(6, 0, [ids["portal"]])]


def _sync(run: _Pass, desired: Sequence[UserSpec], owner: Owner | None, known: Sequence[UserStatus],
          base_url: str | None) -> list[UserStatus]:
    refs = odoorpc.xmlids(run.client, [*GROUPS.values(), *PROTECTED])
    run.calls += 1
    missing = [xmlid for xmlid in [*GROUPS.values(), ADMIN] if xmlid not in refs]
    if missing:
        raise odoorpc.OdooError("", f"the database has no {', '.join(missing)}")
    groups = {key: refs[xmlid] for key, xmlid in GROUPS.items()}
    protected = {refs[xmlid]: xmlid for xmlid in PROTECTED if xmlid in refs}
    admin_id = refs[ADMIN]

    wanted = {u.email: u for u in desired}
    previous = {u.email: u for u in known}
    emails = sorted(set(wanted) | {e for e, u in previous.items() if u.state != STATE_ARCHIVED}
                    | ({owner.email} if owner else set()))
    by_login, by_email, admin = _find(run, emails, admin_id)

    if base_url:
        _ensure_base_url(run, base_url)

    to_create: list[UserSpec] = []
    reactivate: list[int] = []
    role_changes: dict[tuple[str | None, str], list[int]] = {}
    found: dict[str, dict[str, Any]] = {}
    for user in desired:
        record = by_login.get(user.email)
        if record is None:
            other = by_email.get(user.email)
            if other is not None:
                run.fail(user.email, f"already the e-mail of the Odoo user with login {other['login']!r}: not invited "
                                     "twice; give that user this e-mail as login to let the operator adopt it")
            else:
                to_create.append(user)
            continue
        if record["id"] in protected:
            run.fail(user.email, f"the login of Odoo's own {protected[record['id']]}; it cannot be a spec user")
            continue
        found[user.email] = record
        if user.email not in previous:
            run.event("UserAdopted", f"adopted the existing Odoo user {user.email} as {user.role}")
        if not record["active"]:
            reactivate.append(record["id"])
        current = role_of(record["groups_id"], groups)
        if current != user.role:
            role_changes.setdefault((current, user.role), []).append(record["id"])
            run.event("UserRoleChanged", f"{user.email}: {current or 'no role'} -> {user.role}")

    if reactivate:
        run.call("res.users", "write", reactivate, {"active": True})
        for email in sorted(e for e, r in found.items() if r["id"] in reactivate):
            run.event("UserReactivated", f"re-activated {email}")
    for (current, role), ids in role_changes.items():
        run.call("res.users", "write", ids, {"groups_id": role_commands(current, role, groups)})

    created = _create(run, to_create, groups) if to_create else {}

    archive = {email: by_login[email] for email, u in previous.items()
               if email not in wanted and u.state != STATE_ARCHIVED and email in by_login
               and by_login[email]["id"] not in protected}
    active_ids = [r["id"] for r in archive.values() if r["active"]]
    if active_ids:
        run.call("res.users", "write", active_ids, {"active": False})
    for email in sorted(archive):
        run.event("UserArchived", f"archived {email} (removed from spec.users)")

    if owner is not None:
        _set_owner(run, owner, admin, by_login)

    return _statuses(desired, previous, found, created, archive)


def _find(run: _Pass, emails: Sequence[str], admin_id: int) -> tuple[
        dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any]]:
    """One search: users whose login or e-mail is one of `emails` (archived ones too), and the admin."""
    domain: list[Any] = ["|"] * (2 * len(emails))
    for email in emails:
        # =ilike: Odoo keeps logins as typed (Jane@Example.com); _ and % match loosely, compared exactly below.
        domain += [("login", "=ilike", email), ("email", "=ilike", email)]
    domain.append(("id", "=", admin_id))
    rows = run.call("res.users", "search_read", domain, fields=USER_FIELDS, context={"active_test": False})
    wanted = set(emails)
    by_login: dict[str, dict[str, Any]] = {}
    by_email: dict[str, dict[str, Any]] = {}
    admin: dict[str, Any] = {}
    # The exact (lower-case) login first, then case variants; then the lowest id.
    for row in sorted(rows, key=lambda r: (str(r["login"]) != str(r["login"]).lower(), r["id"])):
        login = str(row["login"] or "").lower()
        email = str(row["email"] or "").strip().lower()
        if row["id"] == admin_id:
            admin = row
        if login in wanted:
            by_login.setdefault(login, row)
        if email in wanted and login != email:
            by_email.setdefault(email, row)
    return by_login, by_email, admin


def _ensure_base_url(run: _Pass, base_url: str) -> None:
    """The invitation links point at web.base.url, which Odoo rewrites on an admin's login unless frozen."""
    base_url = base_url.rstrip("/")
    rows = run.call("ir.config_parameter", "search_read", [("key", "in", ["web.base.url", "web.base.url.freeze"])],
                    fields=["key", "value"])
    have = {row["key"]: row["value"] for row in rows}
    for key, value in (("web.base.url", base_url), ("web.base.url.freeze", "True")):
        if have.get(key) != value:
            run.call("ir.config_parameter", "set_param", key, value)


def _ensure_signup(run: _Pass) -> None:
    """Odoo's invitation is auth_signup's (a database made with `-i base` has no mail module): installed once,
    as the Apps menu does, before the first invitation."""
    rows = run.call("ir.module.module", "search_read", [("name", "=", "auth_signup")], fields=["state"])
    if not rows:
        raise odoorpc.OdooError("", "the auth_signup module is not available in this Odoo")
    if rows[0]["state"] != "installed":
        run.calls += 1
        run.client.execute("ir.module.module", "button_immediate_install", [rows[0]["id"]], timeout=INSTALL_TIMEOUT)
        run.event("SignupInstalled", "installed Odoo's auth_signup module (invitations by e-mail)")


def _create(run: _Pass, users: Sequence[UserSpec], groups: Mapping[str, int]) -> dict[str, int]:
    """Invites `users` with Odoo's own create (auth_signup sends each invitation); e-mail -> new id."""
    _ensure_signup(run)
    role_groups = {"admin": [groups["user"], groups["system"]], "user": [groups["user"]], "portal": [groups["portal"]]}

    def vals(user: UserSpec) -> dict[str, Any]:
        # As Odoo's own "Invite" (base_setup web_create_users): the address is the name until the person sets one.
        return {"name": user.email, "login": user.email, "email": user.email,
                "groups_id": [(6, 0, role_groups[user.role])]}

    created: dict[str, int] = {}
    for start in range(0, len(users), CREATE_CHUNK):
        chunk = users[start:start + CREATE_CHUNK]
        try:
            run.calls += 1
            ids = run.client.execute("res.users", "create", [vals(u) for u in chunk], timeout=CREATE_TIMEOUT)
            created.update(zip((u.email for u in chunk), ids, strict=True))
        except odoorpc.OdooError:
            # One bad entry fails the whole list (one transaction): find it by creating one at a time.
            for user in chunk:
                try:
                    run.calls += 1
                    (new_id,) = run.client.execute("res.users", "create", [vals(user)], timeout=CREATE_TIMEOUT)
                    created[user.email] = new_id
                except odoorpc.OdooError as exc:
                    run.fail(user.email, f"Odoo refused to create the user: {exc.message}")
    if created:
        rows = run.call("res.users", "read", list(created.values()), ["signup_valid"])
        mailed = {row["id"] for row in rows if row.get("signup_valid")}
        roles = {u.email: u.role for u in users}
        for email, new_id in created.items():
            note = "invitation sent" if new_id in mailed else "no invitation mail: the database cannot send mail"
            run.event("UserInvited", f"invited {email} as {roles[email]} ({note})")
    return created


def _set_owner(run: _Pass, owner: Owner, admin: Mapping[str, Any], by_login: Mapping[str, Any]) -> None:
    want = {"login": owner.email, "name": owner.name, "email": owner.email}
    if not admin or all(admin.get(key) == value for key, value in want.items()):
        return
    holder = by_login.get(owner.email)
    if holder is not None and holder["id"] != admin["id"]:
        run.fail("spec.owner", f"{owner.email} is already the login of another Odoo user (id {holder['id']}); "
                               "the database's admin keeps its login")
        return
    try:
        run.call("res.users", "write", [admin["id"]], want)
    except odoorpc.OdooError as exc:
        run.fail("spec.owner", f"Odoo refused the owner's login: {exc.message}")
        return
    run.event("OwnerSet", f"the database's admin user is now {owner.email} ({owner.name})")


def _statuses(desired: Sequence[UserSpec], previous: Mapping[str, UserStatus], found: Mapping[str, Mapping[str, Any]],
              created: Mapping[str, int], archived: Mapping[str, Any]) -> list[UserStatus]:
    moment = now_iso()

    def entry(email: str, role: str, state: str) -> UserStatus:
        before = previous.get(email)
        since = before.last_transition_time if before and before.state == state and before.last_transition_time \
            else moment
        return UserStatus(email, role, state, since)

    result: list[UserStatus] = []
    listed: set[str] = set()
    for user in desired:
        if user.email in created:
            result.append(entry(user.email, user.role, STATE_INVITED))
        elif user.email in found:
            record = found[user.email]
            result.append(entry(user.email, user.role, STATE_ACTIVE if record["login_date"] else STATE_INVITED))
        elif user.email in previous:  # failed this pass: keep what was known
            result.append(previous[user.email])
        else:
            continue
        listed.add(user.email)
    gone = [entry(email, previous[email].role, STATE_ARCHIVED) for email in archived]
    gone += [u for email, u in previous.items()
             if email not in listed and email not in archived and u.state == STATE_ARCHIVED]
    # Archived entries stay listed (re-adding one re-activates it) up to MAX_USERS, the most recent first.
    gone.sort(key=lambda u: (u.last_transition_time, u.email), reverse=True)
    return result + sorted(gone[:MAX_USERS], key=lambda u: u.email)


def _condition(users: Sequence[UserStatus], failures: Mapping[str, str]) -> Condition:
    counts = {state: sum(1 for u in users if u.state == state) for state in (STATE_INVITED, STATE_ACTIVE,
                                                                              STATE_ARCHIVED)}
    summary = (f"{counts[STATE_INVITED]} invited, {counts[STATE_ACTIVE]} active, "
               f"{counts[STATE_ARCHIVED]} archived")
    if failures:
        detail = "; ".join(f"{key}: {why}" for key, why in sorted(failures.items()))
        return Condition.false(CONDITION, "UserFailed", _clip(f"{len(failures)} failed ({detail}); {summary}"))
    return Condition.true(CONDITION, "Synced", summary)


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX - 3] + "..."
