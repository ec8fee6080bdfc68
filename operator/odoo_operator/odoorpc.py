"""A small client for Odoo's external API (JSON-RPC at /jsonrpc): `common.login` and `object.execute_kw`.

Stateless: the password travels with every call (as Odoo's external API wants), so there is no session to
expire. Timeouts on every call; errors are `OdooUnavailable` (nothing answered: the app is scaled to 0,
starting or mid-rollout — try again later) or `OdooError` (Odoo answered with an error: a refusal, a
constraint). Nothing here logs or formats a password. What to call and when lives in the controllers.

What answers is treated as hostile (whoever runs Pods behind the database's Service answers): an answer is
read up to MAX_ANSWER_BYTES, redirects are not followed (the password is never sent, nor a request made,
anywhere else), and an error's text is clipped to MESSAGE_MAX before it can reach a status.
"""

from __future__ import annotations

import http.client
import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMEOUT = 60.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # 500 users' search_read is a few hundred kB
MESSAGE_MAX = 500
# base.user_admin is created right after the superuser by base's data: id 2 in every database Odoo makes.
ADMIN_UID = 2
_ids = itertools.count(1)


class OdooUnavailable(Exception):
    """Nothing (or a proxy's error page) answered: the app is not running. Retry later."""


class OdooError(Exception):
    """Odoo answered with an error. `name` is its exception class (`odoo.exceptions.AccessDenied`, ...),
    `message` the text a user would read in Odoo."""

    def __init__(self, name: str, message: str) -> None:
        name, message = name[:200], message if len(message) <= MESSAGE_MAX else message[:MESSAGE_MAX - 3] + "..."
        super().__init__(f"{message} ({name})" if name else message)
        self.name = name
        self.message = message

    @property
    def access_denied(self) -> bool:
        return self.name.endswith("AccessDenied")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx answer is raised as an HTTPError: "answered HTTP 302"


_opener = urllib.request.build_opener(_NoRedirect)


def _post(url: str, params: Mapping[str, Any], timeout: float) -> Any:
    payload = json.dumps({"jsonrpc": "2.0", "method": "call", "id": next(_ids), "params": params}).encode()
    request = urllib.request.Request(url, data=payload, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with _opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        # A 404 is Odoo's answer for an unknown database (db-filter) as well as a proxy's "no backend".
        raise OdooUnavailable(f"{url} answered HTTP {exc.code}") from None
    except (http.client.HTTPException, OSError) as exc:  # URLError, timeouts, refused connections
        reason = getattr(exc, "reason", exc)
        raise OdooUnavailable(f"{url} did not answer: {reason}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise OdooUnavailable(f"{url} answered more than {MAX_ANSWER_BYTES // 1024 // 1024} MB; not read")
    try:
        answer = json.loads(body)
    except ValueError:
        raise OdooUnavailable(f"{url} answered something that is not JSON-RPC") from None
    if not isinstance(answer, dict):
        raise OdooUnavailable(f"{url} answered something that is not JSON-RPC")
    if "error" in answer:
        error = answer["error"] or {}
        data = error.get("data") or {}
        raise OdooError(str(data.get("name") or ""), str(data.get("message") or error.get("message") or error))
    # A method returning None yields an answer without "result".
    return answer.get("result")


@dataclass
class OdooRPC:
    """A database of an Odoo server, as one user. `url` is the server's root (`http://shop.ns.svc:8069`)."""

    url: str
    database: str
    uid: int
    password: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT

    def execute(self, model: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """`model.method(*args, **kwargs)` through `execute_kw`, as this client's user."""
        params = {"service": "object", "method": "execute_kw",
                  "args": [self.database, self.uid, self.password, model, method, list(args), kwargs]}
        return _post(f"{self.url.rstrip('/')}/jsonrpc", params, timeout or self.timeout)


def version(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The server's `common.version` (no credentials): answers as soon as the app serves requests."""
    return dict(_post(f"{url.rstrip('/')}/jsonrpc", {"service": "common", "method": "version", "args": []}, timeout))


def login(url: str, database: str, login_name: str, password: str, timeout: float = DEFAULT_TIMEOUT) -> OdooRPC:
    """Odoo's `common.login`. Note that Odoo records it as the user's last login (its state becomes active)."""
    params = {"service": "common", "method": "login", "args": [database, login_name, password]}
    uid = _post(f"{url.rstrip('/')}/jsonrpc", params, timeout)
    if not uid:
        raise OdooError("odoo.exceptions.AccessDenied", f"the login {login_name!r} with that password is refused")
    return OdooRPC(url, database, int(uid), password, timeout)


def connect_admin(url: str, database: str, password: str, timeout: float = DEFAULT_TIMEOUT) -> OdooRPC:
    """The database's admin user (base.user_admin) by its id, whatever its login is now (`admin`, or the
    owner's e-mail), checked with one call. No login is recorded, so the admin's state is not touched."""
    client = OdooRPC(url, database, ADMIN_UID, password, timeout)
    try:
        client.execute("res.users", "check_access_rights", "write", raise_exception=False)
    except OdooError as exc:
        if exc.access_denied:
            raise OdooError(exc.name, "the admin password does not open the database's admin user") from None
        raise
    return client


def xmlids(client: OdooRPC, names: Sequence[str]) -> dict[str, int]:
    """`module.name` -> record id, in one call; names not found are left out."""
    pairs = [name.split(".", 1) for name in names]
    domain: list[Any] = ["|"] * (len(pairs) - 1)
    for module, name in pairs:
        domain += ["&", ("module", "=", module), ("name", "=", name)]
    rows = client.execute("ir.model.data", "search_read", domain, fields=["module", "name", "res_id"]) if pairs else []
    return {f"{row['module']}.{row['name']}": int(row["res_id"]) for row in rows}
