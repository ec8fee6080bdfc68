"""Typed views of an OdooDatabase's users: `spec.users`, `spec.owner` and `status.users`.

Parsing and validation only (e-mails normalised to lower case, duplicates refused with the field path);
what the users become inside Odoo is controller/users.py's business.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odoo_operator.api.errors import SpecError

ROLES = ("admin", "user", "portal")
DEFAULT_ROLE = "user"
MAX_USERS = 500
EMAIL_MAX = 254
NAME_MAX = 128
STATE_INVITED = "Invited"
STATE_ACTIVE = "Active"
STATE_ARCHIVED = "Archived"
STATES = (STATE_INVITED, STATE_ACTIVE, STATE_ARCHIVED)

# One address (no display name, no list): a local part without spaces, quotes or separators, and a domain of
# at least two dot-separated labels. Odoo's own parsing (email_normalize) would split or mangle the rest.
_ATOM = r"[^\s@\"(),:;<>\[\\\].\x00-\x1f\x7f]+"  # the CRD's rule is the same
EMAIL_RE = re.compile(rf"^{_ATOM}(\.{_ATOM})*@{_ATOM}(\.{_ATOM})+$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class UserSpec:
    email: str  # normalised: lower case; also the user's login in Odoo
    role: str  # admin | user | portal


@dataclass(frozen=True)
class Owner:
    """The creator's account: the database's admin user (base.user_admin) carries this login and name."""

    email: str
    name: str


@dataclass(frozen=True)
class UserStatus:
    """One entry of status.users: a user the operator manages (invited or adopted)."""

    email: str
    role: str
    state: str  # Invited | Active | Archived
    last_transition_time: str

    def to_dict(self) -> dict[str, str]:
        return {"email": self.email, "role": self.role, "state": self.state,
                "lastTransitionTime": self.last_transition_time}


def check_email(value: Any, field_path: str) -> str:
    """The address, normalised to lower case (Odoo compares logins as written)."""
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{field_path} is required: an e-mail address such as jane@example.com")
    email = value.strip().lower()
    if len(email) > EMAIL_MAX or not EMAIL_RE.fullmatch(email):
        shown = email if len(email) <= 80 else email[:80] + "..."
        raise SpecError(f"{field_path} {shown!r} is not an e-mail address such as jane@example.com "
                        f"(one address, no display name, at most {EMAIL_MAX} characters)")
    return email


def parse_users(raw: Any, field_path: str = "spec.users") -> tuple[UserSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError(f"{field_path} must be a list of {{email, role}}")
    if len(raw) > MAX_USERS:
        raise SpecError(f"{field_path} has {len(raw)} entries; at most {MAX_USERS} are allowed")
    users: list[UserSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw):
        where = f"{field_path}[{index}]"
        _check_object(entry, where, ("email", "role"), "a user")
        email = check_email(entry.get("email"), f"{where}.email")
        if email in seen:
            raise SpecError(f"{where}.email {email!r} is already {field_path}[{seen[email]}].email "
                            "(e-mails are compared in lower case): list each user once")
        seen[email] = index
        role = entry.get("role", DEFAULT_ROLE)
        if role is None:
            role = DEFAULT_ROLE
        if role not in ROLES:
            raise SpecError(f"{where}.role {str(role)[:40]!r} is not one of {', '.join(ROLES)}")
        users.append(UserSpec(email, str(role)))
    return tuple(users)


def _check_object(raw: Any, where: str, fields: tuple[str, ...], what: str) -> None:
    """An object with only these fields, else SpecError naming the field."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be an object {{{', '.join(fields)}}}")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SpecError(f"{where}.{unknown[0]} is not a field of {what} ({', '.join(fields)})")


def parse_owner(raw: Any, field_path: str = "spec.owner") -> Owner | None:
    if raw is None:
        return None
    _check_object(raw, field_path, ("email", "name"), "the owner")
    email = check_email(raw.get("email"), f"{field_path}.email")
    name = raw.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        name = email
    if not isinstance(name, str) or len(name) > NAME_MAX or _CONTROL_RE.search(name):
        raise SpecError(f"{field_path}.name must be a text of at most {NAME_MAX} characters on one line")
    return Owner(email, name.strip())


def parse_users_spec(spec: Mapping[str, Any]) -> tuple[tuple[UserSpec, ...], Owner | None]:
    """spec.users and spec.owner together: the owner is the admin user already, never a second entry."""
    users = parse_users(spec.get("users"))
    owner = parse_owner(spec.get("owner"))
    if owner is not None:
        for index, user in enumerate(users):
            if user.email == owner.email:
                raise SpecError(f"spec.users[{index}].email {user.email!r} is spec.owner.email: the owner is the "
                                "database's admin user already; remove the entry")
    return users, owner


def parse_users_status(raw: Any) -> tuple[UserStatus, ...]:
    """status.users as the operator wrote it; entries it cannot read are dropped (it rewrites them)."""
    if not isinstance(raw, list):
        return ()
    found: dict[str, UserStatus] = {}
    for entry in raw:
        if not isinstance(entry, Mapping):
            continue
        email, role, state = entry.get("email"), entry.get("role"), entry.get("state")
        if not isinstance(email, str) or not EMAIL_RE.fullmatch(email.lower()) or role not in ROLES \
                or state not in STATES:
            continue
        found.setdefault(email.lower(), UserStatus(email.lower(), str(role), str(state),
                                                   str(entry.get("lastTransitionTime") or "")))
    return tuple(found.values())
