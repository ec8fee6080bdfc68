"""The users step of an OdooDatabase (issue 13): spec.users and spec.owner brought into Odoo by
controller/users.py (sync_users) over Odoo's JSON-RPC, as the database's admin user, once its app serves.

When a pass syncs (`ensure_users`, called by odoodatabase.Reconciler.converge last, with whether the app
runs):
- the spec's users or owner changed since the last sync (a digest of them is kept in the registry, in
  memory: a restarted operator syncs each database with users once, which also finishes a pass that was
  killed before its status was written — sync_users adopts by login, so nobody is invited twice);
- every USERS_RESYNC_SECONDS otherwise, so that Invited users who signed in show as Active;
- after a failed or partial pass (UsersSynced False), every USERS_RETRY_SECONDS; while the app does not
  answer, on every pass (its Deployment's changes wake the loop) and at least every USERS_RETRY_SECONDS.
A database that never had users nor an owner gets no UsersSynced condition and costs nothing. UsersSynced
is a detail condition: it never makes the database un-Ready. While the app is suspended, scaled to 0,
starting or rolling out, changes wait (UsersSynced False, AppSuspended or OdooUnavailable).

Where: a ready endpoint of the database's Service, as its EndpointSlices publish it (a Pod's address and
port), not the Service's DNS name. That works in a cluster (RBAC get/list on endpointslices; the chart's
NetworkPolicy lets the operator reach the app Pods on 8069) and in the local harness, which has neither
cluster DNS nor kube-proxy, with one code path. Odoo's dbfilter is the database's name (not the host), so
the Pod's address needs no Host header.

Credentials: the password of the `<name>-admin` Secret (read by name, never logged; its `username` becomes
the owner's e-mail once the admin user carries it); a duplicate, whose
init Job never ran, has its source's admin (and password) until someone changes it, so it falls back on
`<source>-admin`. Every RPC call has a timeout (RPC_TIMEOUT; creating users and installing auth_signup have
their own, longer ones in controller/users.py), so a pass that waits for a silent app holds its reconcile
thread (one of the pool) for seconds, not forever.

A duplicate keeps its source's users: its own status.users starts empty, so nothing of the source's is
archived or re-invited in it; spec.users of the copy adopts users that exist already (no mail), and a copy
for testing is neutralized before its app starts, so its invitations never leave.
"""

from __future__ import annotations

import base64
import time

from odoo_operator import odoorpc, specs
from odoo_operator.api.conditions import Condition, get_condition
from odoo_operator.api.model import OdooDatabase
from odoo_operator.api.users import STATE_ARCHIVED, parse_users_status
from odoo_operator.controller import users
from odoo_operator.controller.base import decode, digest
from odoo_operator.controller.odoodatabase_create import DatabasePass

USERS_RESYNC_SECONDS = 600.0
USERS_RETRY_SECONDS = 30.0
RPC_TIMEOUT = 30.0
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# Only slices Kubernetes itself derives from the Service: a slice written by hand could point the operator (and
# the admin password it sends) anywhere. (The `edit` role cannot write EndpointSlices since 1.22.)
SLICE_MANAGER_LABEL = "endpointslice.kubernetes.io/managed-by"
SLICE_MANAGER = "endpointslice-controller.k8s.io"
CONDITION = users.CONDITION


def ensure_users(r: DatabasePass, app_running: bool) -> tuple[Condition | None, float | None]:
    """The UsersSynced condition to publish (None: the database never had users) and the seconds until the
    next sync is due (None: nothing to wait for). Writes status.users and posts Events through `r`."""
    db = r.obj
    previous = r.status.get("users")
    before = get_condition(r.status, CONDITION)
    carried = Condition(CONDITION, str(before.get("status")), str(before.get("reason") or ""),
                        str(before.get("message") or "")) if before else None
    involved = bool(db.users) or db.owner is not None or any(
        u.state != STATE_ARCHIVED for u in parse_users_status(previous))
    if not involved:  # no users (any more): nothing to ask Odoo
        return (None if carried is None else Condition.true(CONDITION, "NoUsers", "spec.users is empty")), None

    key = (db.namespace, db.name)
    wanted = spec_digest(db)
    last = r.ctx.registry.users_synced.get(key)
    changed = last is None or last[0] != wanted
    if not app_running:
        if not changed:
            return carried, None
        if db.app.suspended or db.app.replicas == 0:
            why = "the app is scaled to 0 (spec.app.suspended or spec.app.replicas 0)"
            return Condition.false(CONDITION, "AppSuspended", f"{why}: the users wait until it runs again"), None
        return Condition.false(CONDITION, "OdooUnavailable", "waiting for the app to be available"), None

    if not changed:
        assert last is not None
        # status.users not (yet) what the spec says (a status write lost, a user that failed): sooner.
        settled = carried is not None and carried.status == "True" and _listed(previous) == {
            u.email: u.role for u in db.users}
        period = USERS_RESYNC_SECONDS if settled else USERS_RETRY_SECONDS
        due = last[1] + period - time.monotonic()
        if due > 0:
            return carried, due

    condition = _sync(r, db, previous)
    if condition.reason != "OdooUnavailable":  # the app not answering: the next pass (woken by it) tries again
        r.ctx.registry.users_synced[key] = (wanted, time.monotonic())
    return condition, USERS_RESYNC_SECONDS if condition.status == "True" else USERS_RETRY_SECONDS


def _listed(previous: object) -> dict[str, str]:
    return {u.email: u.role for u in parse_users_status(previous) if u.state != STATE_ARCHIVED}


def spec_digest(db: OdooDatabase) -> str:
    return digest({"users": [[u.email, u.role] for u in db.users],
                   "owner": [db.owner.email, db.owner.name] if db.owner else None})


def app_url(r: DatabasePass, db: OdooDatabase) -> str | None:
    """http://<address>:<port> of a ready endpoint of the database's Service (its `http` port), None if
    it has none."""
    slices = r.kube.list("discovery.k8s.io/v1", "EndpointSlice", db.namespace,
                         label_selector=f"{SERVICE_NAME_LABEL}={db.name}")
    found: list[tuple[str, int]] = []
    for eps in slices:
        if eps.get("addressType") not in ("IPv4", "IPv6"):
            continue
        if ((eps.get("metadata") or {}).get("labels") or {}).get(SLICE_MANAGER_LABEL) != SLICE_MANAGER:
            continue
        port = next((p.get("port") for p in eps.get("ports") or [] if p.get("name") == "http"), None)
        if not isinstance(port, int):
            continue
        for endpoint in eps.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:  # unset: ready
                continue
            found += [(address, port) for address in (endpoint.get("addresses") or [])[:1]]
    if not found:
        return None
    address, port = sorted(found)[0]
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def admin_password(r: DatabasePass, db: OdooDatabase) -> str | None:
    """The admin user's password: `<name>-admin`, else for a duplicate its source's (the copy's admin is the
    source's). Read from the API server by name (Secrets are not watched); never logged."""
    names = [specs.app.admin_secret_name(db)]
    if db.duplicate_from is not None:
        names.append(f"{db.duplicate_from.name}-admin")
    for name in names:
        found = decode(r.kube.get("v1", "Secret", name, db.namespace), "password")
        if found:
            return found
    return None


def _sync(r: DatabasePass, db: OdooDatabase, previous: object) -> Condition:
    url = app_url(r, db)
    if url is None:
        return Condition.false(CONDITION, "OdooUnavailable", f"the Service {db.name} has no ready endpoint yet; "
                               "the users wait for the app")
    password = admin_password(r, db)
    if password is None:
        return Condition.false(CONDITION, "AdminPasswordMissing", f"the Secret {specs.app.admin_secret_name(db)} "
                               "(key password) holds no password of the database's admin user: create it with "
                               "that password to let the operator manage the users")
    try:
        client = odoorpc.connect_admin(url, db.database_name, password, timeout=RPC_TIMEOUT)
    except odoorpc.OdooUnavailable as exc:
        return Condition.false(CONDITION, "OdooUnavailable", f"the app did not answer: {exc}")
    except odoorpc.OdooError as exc:
        reason = "AdminPasswordRefused" if exc.access_denied else "OdooError"
        return Condition.false(CONDITION, reason, f"{exc.message}: set the admin user's password in Secret "
                               f"{specs.app.admin_secret_name(db)} (key password)" if exc.access_denied
                               else f"Odoo refused the users' sync: {exc.message}")
    result = users.sync_users(client, db.users, db.owner, previous, base_url=r.new_status.get("url"))
    r.new_status["users"] = result.users
    # A user that keeps failing is said once (and in UsersSynced), not again at every retry.
    before = (get_condition(r.status, CONDITION) or {}).get("message") or ""
    r.events.extend(e for e in result.events if not (e[1] == "UserSyncFailed" and e[2] in before))
    if db.owner is not None and result.condition.reason in ("Synced", "UserFailed") \
            and "spec.owner: " not in result.condition.message:
        _ensure_owner_login(r, db, db.owner.email)
    return result.condition


def _ensure_owner_login(r: DatabasePass, db: OdooDatabase, login: str) -> None:
    """`<name>-admin` says the admin's login: the owner's e-mail once it replaced `admin` (a merge patch of
    `username` only; the password is never rewritten)."""
    name = specs.app.admin_secret_name(db)
    secret = r.kube.get("v1", "Secret", name, db.namespace)
    if secret is not None and decode(secret, "username") != login:
        r.refuse_when_deleting()
        r.kube.merge_patch("v1", "Secret", name, db.namespace,
                           {"data": {"username": base64.b64encode(login.encode()).decode()}})
