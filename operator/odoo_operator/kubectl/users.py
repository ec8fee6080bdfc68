"""The users of a database on the command line: `users` (list), `invite`, `remove-user` and `logout`.

invite / remove-user edit spec.users (the operator does the rest in Odoo): a JSON merge patch carrying the
resourceVersion that was read, so an edit made meanwhile by someone else is never overwritten (the API server
answers 409 Conflict; we read again and retry). E-mails and roles are checked with api/users.py before anything
is sent, and a request that is already satisfied changes nothing (exit 0).

logout asks the operator to end sessions by an annotation (specs/sessions.py) and waits for
status.lastLogout to answer it.

Not here: the other subcommands (commands.py), the options (parser.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.labels import LOGOUT_ANNOTATION
from odoo_operator.api.users import (
    DEFAULT_ROLE,
    ROLES,
    check_email,
    parse_owner,
    parse_users_spec,
    parse_users_status,
)
from odoo_operator.kubectl.connection import Connection, get_database, patch_database
from odoo_operator.kubectl.support import (
    PLUGIN,
    PluginError,
    ago,
    condition,
    now,
    one_line,
    parse_timeout,
    print_object,
    table,
    wait_for,
)
from odoo_operator.specs import sessions

STATE_PENDING = "Pending"  # in spec.users, not (yet) in status.users
OBJECT = "odoodatabase.odoo.dbmanager.io"


# ---- users ---------------------------------------------------------------------------------------
def user_rows(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    """The owner, then status.users (role changes still to be made shown as `old -> new`), then the entries
    of spec.users the operator has not brought in yet (Pending)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    wanted: dict[str, str] = {}
    for entry in spec.get("users") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("email"), str):
            wanted.setdefault(entry["email"].strip().lower(), str(entry.get("role") or DEFAULT_ROLE))
    rows: list[dict[str, str]] = []
    try:
        owner = parse_owner(spec.get("owner"))
    except ValueError:
        owner = None
    if owner is not None:
        rows.append({"email": owner.email, "role": "owner", "state": "-", "lastTransitionTime": "",
                     "name": owner.name})
    seen = set()
    for user in parse_users_status(status.get("users")):
        seen.add(user.email)
        role = user.role
        if user.email in wanted and wanted[user.email] != user.role:
            role = f"{user.role} -> {wanted[user.email]}"
        elif user.email not in wanted and user.state != "Archived":
            role = f"{user.role} (being removed)"
        rows.append({"email": user.email, "role": role, "state": user.state,
                     "lastTransitionTime": user.last_transition_time})
    rows += [{"email": email, "role": role, "state": STATE_PENDING, "lastTransitionTime": ""}
             for email, role in wanted.items() if email not in seen]
    return rows


def cmd_users(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    obj = get_database(conn, namespace, args.database)
    rows = user_rows(obj)
    if args.output in ("json", "yaml"):
        print_object({"users": rows}, args.output)
        return 0
    if not rows:
        print(f"No users in {args.database} (invite one: kubectl odoo invite {args.database} EMAIL --role user).",
              file=sys.stderr)
        return 0
    print(table([[r["email"], r["role"], r["state"], ago(r["lastTransitionTime"]) if r["lastTransitionTime"]
                  else "-"] for r in rows], ["EMAIL", "ROLE", "STATE", "LAST CHANGE"]))
    synced = condition(obj, "UsersSynced")
    if synced.get("status") == "False":
        print(f"note: users not in sync ({synced.get('reason')}): {one_line(synced.get('message'))}", file=sys.stderr)
    return 0


# ---- invite, remove-user -------------------------------------------------------------------------
Edit = Callable[[list[Any], Mapping[str, Any]], tuple[list[Any] | None, str]]


def edit_users(conn: Connection, namespace: str, name: str, edit: Edit) -> tuple[bool, str]:
    """Let `edit` compute the new spec.users from the one read (None: nothing to change) and a message, check
    the result as the operator would (SpecError: exit 1, nothing sent) and patch it with the resourceVersion
    read (`patch_database`: a lost race is read and decided again). Returns (changed, message)."""
    def plan(obj: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
        spec = obj.get("spec") or {}
        new, message = edit(list(spec.get("users") or []), spec)
        if new is None:
            return None, message
        parse_users_spec({**spec, "users": new})
        return {"spec": {"users": new}}, message
    return patch_database(conn, namespace, name, plan, "spec.users was edited")


def _index(users: list[Any], email: str) -> int | None:
    for index, entry in enumerate(users):
        if isinstance(entry, Mapping) and str(entry.get("email") or "").strip().lower() == email:
            return index
    return None


def cmd_invite(args: argparse.Namespace) -> int:
    email = check_email(args.email, "EMAIL")
    role = args.role
    if role not in ROLES:
        raise PluginError(f"--role {role!r} is not one of {', '.join(ROLES)}")
    conn = Connection(args)
    namespace = conn.namespace

    def edit(users: list[Any], spec: Mapping[str, Any]) -> tuple[list[Any] | None, str]:
        owner = (spec.get("owner") or {}).get("email")
        if isinstance(owner, str) and owner.strip().lower() == email:
            return None, f"{email} is the owner of {args.database} (spec.owner): the admin already; nothing to do."
        index = _index(users, email)
        if index is None:
            return [*users, {"email": email, "role": role}], \
                f"invited {email} as {role} (the operator creates the user in Odoo and sends Odoo's invitation)"
        entry = dict(users[index])
        was = str(entry.get("role") or DEFAULT_ROLE)
        if was == role:
            return None, f"{email} is already invited to {args.database} as {role}; nothing to do."
        entry["role"] = role
        return [*users[:index], entry, *users[index + 1:]], f"role of {email}: {was} -> {role}"

    changed, message = edit_users(conn, namespace, args.database, edit)
    print(f"{OBJECT}/{args.database} patched: {message}" if changed else message)
    return 0


def cmd_remove_user(args: argparse.Namespace) -> int:
    email = check_email(args.email, "EMAIL")
    conn = Connection(args)
    namespace = conn.namespace

    def edit(users: list[Any], spec: Mapping[str, Any]) -> tuple[list[Any] | None, str]:
        owner = (spec.get("owner") or {}).get("email")
        if isinstance(owner, str) and owner.strip().lower() == email:
            raise PluginError(f"{email} is the owner of {args.database} (spec.owner), not an invited user: "
                              "change spec.owner instead")
        index = _index(users, email)
        if index is None:
            return None, f"{email} is not in spec.users of {args.database}; nothing to do."
        return [*users[:index], *users[index + 1:]], \
            f"removed {email} from spec.users (the operator archives the user in Odoo; nothing is deleted)"

    changed, message = edit_users(conn, namespace, args.database, edit)
    print(f"{OBJECT}/{args.database} patched: {message}" if changed else message)
    return 0


# ---- logout --------------------------------------------------------------------------------------
def logout_state(value: str) -> Callable[[dict[str, Any] | None], str]:
    def describe(obj: dict[str, Any] | None) -> str:
        if obj is None:
            return "the database is gone"
        last = (obj.get("status") or {}).get("lastLogout") or {}
        if last.get("request") == value:
            return "done"
        return "the operator has not answered the request yet" + (
            f" (the last one it answered: {last.get('request')})" if last.get("request") else "")
    return describe


def cmd_logout(args: argparse.Namespace) -> int:
    login = check_email(args.user, "--user") if args.user else None
    conn = Connection(args)
    namespace = conn.namespace
    get_database(conn, namespace, args.database)
    value = sessions.logout_value(now(), login)
    request = sessions.parse_logout(value)
    conn.kube.merge_patch(API_VERSION, "OdooDatabase", args.database, namespace,
                          {"metadata": {"annotations": {LOGOUT_ANNOTATION: value}}}, field_manager=PLUGIN)
    print(f"{OBJECT}/{args.database} annotated: ending {request.describe()} of {args.database}", file=sys.stderr)
    if args.no_wait:
        print(f"follow it with `kubectl get odb {args.database} -n {namespace} -o jsonpath='{{.status.lastLogout}}'`")
        return 0

    def answered(obj: dict[str, Any] | None) -> bool:
        if obj is None:
            raise PluginError("the OdooDatabase disappeared while waiting")
        return ((obj.get("status") or {}).get("lastLogout") or {}).get("request") == value

    final = wait_for(lambda: conn.kube.get(API_VERSION, "OdooDatabase", args.database, namespace), answered,
                     parse_timeout(args.timeout), f"{args.database}'s sessions to be ended", logout_state(value)) or {}
    last = (final.get("status") or {}).get("lastLogout") or {}
    if last.get("sessionsEnded") is None:
        raise PluginError(f"the logout failed: {one_line(last.get('message')) or 'no count reported'}")
    ended = int(last["sessionsEnded"])
    who = login or "all users"
    print(f"{args.database}: {ended} session{'s' if ended != 1 else ''} of {who} ended")
    return 0
