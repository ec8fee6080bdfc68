"""The logout step of an OdooDatabase (`kubectl odoo logout`, issue 13): end every session of one user, or of
every user, on request.

The request is the annotation odoo.dbmanager.io/logout (specs/sessions.py: `<RFC 3339 time> <e-mail or *>`).
`ensure_logout`, called by odoodatabase.Reconciler.converge once per pass after the app's children (on an
initialised database, whether the app runs or is scaled to 0), carries out a request that status.lastLogout
has not answered yet: a run-once Job of the database's image (named after a digest of the request, so a
restarted operator finds it again and never runs a request twice) deletes the sessions through Odoo's own
session store on the database's sessions volume. Once the Job is Complete, the count it left (an Odoo system
parameter, written through Odoo's ORM) is read back as the database's role, and status.lastLogout
{request, completedAt, sessionsEnded} and an Event LoggedOut say it. A failed Job or an invalid request is
answered too (lastLogout.message, a Warning Event), so `kubectl odoo logout` stops waiting. A logout never
makes the database un-Ready.

`logout_requested` tells the watch (handlers.py) that an annotation asks for something not yet answered: an
annotation does not bump metadata.generation, so the loop must be woken for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg

from odoo_operator import pg
from odoo_operator.api.conditions import now, now_iso
from odoo_operator.api.errors import SpecError
from odoo_operator.api.labels import LOGOUT_ANNOTATION
from odoo_operator.controller.odoodatabase_create import DatabasePass
from odoo_operator.specs import sessions


def requested_value(body: Mapping[str, Any]) -> str | None:
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(LOGOUT_ANNOTATION)
    return None if value is None else str(value)[:sessions.VALUE_MAX]


def logout_requested(body: Mapping[str, Any]) -> bool:
    """An annotation asks for a logout that status.lastLogout has not answered."""
    value = requested_value(body)
    return value is not None and ((body.get("status") or {}).get("lastLogout") or {}).get("request") != value


def ensure_logout(r: DatabasePass, tenant: pg.ServerAddress) -> None:
    """Carry out the pending logout request, if any (see the module's docstring). Writes status.lastLogout
    and posts Events through `r`; never raises for a request a user can get wrong."""
    db = r.obj
    value = requested_value(r.body)
    if value is None or (r.status.get("lastLogout") or {}).get("request") == value:
        return
    try:
        request = sessions.parse_logout(value, now())
    except SpecError as exc:
        r.new_status["lastLogout"] = {"request": value, "completedAt": now_iso(), "message": f"refused: {exc}"}
        r.events.append(("Warning", "LogoutRefused", str(exc)))
        return
    name = sessions.logout_job_name(db, request)
    run = r.ensure_job(name, lambda: sessions.build_logout_job(db, r.endpoint, request))
    if run.created:
        r.events.append(("Normal", "LoggingOut", f"Job {name} ends {request.describe()}"))
    if run.state == "Running":
        return  # the Job's watch events wake the loop
    if run.state == "Failed":
        message = f"Job {name} failed: {run.failure}"
        r.new_status["lastLogout"] = {"request": value, "completedAt": now_iso(), "message": message}
        r.events.append(("Warning", "LogoutFailed", f"{request.describe()} not ended: {message}"))
        return
    ended = reported_count(tenant, db.database_name, request.digest)
    if ended is None:
        message = f"Job {name} completed without reporting how many sessions it ended"
        r.new_status["lastLogout"] = {"request": value, "completedAt": now_iso(), "message": message}
        r.events.append(("Warning", "LogoutFailed", message))
        return
    r.new_status["lastLogout"] = {"request": value, "completedAt": now_iso(), "sessionsEnded": ended}
    who = request.login or "every user"
    r.events.append(("Normal", "LoggedOut", f"{ended} session{'s' if ended != 1 else ''} of {who} ended "
                     f"(Job {name})"))


def reported_count(tenant: pg.ServerAddress, dbname: str, digest: str) -> int | None:
    """The number of sessions the Job of this request ended, as it left it (None: it did not)."""
    with pg.connect(tenant, dbname) as conn:
        try:
            row = conn.execute("SELECT value FROM public.ir_config_parameter WHERE key = %s",
                               (sessions.RESULT_PARAMETER,)).fetchone()
        except psycopg.Error:
            return None
    try:
        result = json.loads(row[0]) if row else None
    except (TypeError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("request") != digest:
        return None
    ended = result.get("sessionsEnded")
    return ended if isinstance(ended, int) and ended >= 0 else None
