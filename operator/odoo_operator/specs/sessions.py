"""`kubectl odoo logout`: the request (an annotation on the OdooDatabase) and the Job that ends the sessions.
Pure: parsing and builders, no I/O.

The request is the annotation `odoo.dbmanager.io/logout: "<RFC 3339 time> <e-mail or *>"` (`*`: every user).
Its whole value identifies it: the Job's name is derived from a digest of it, and status.lastLogout.request
repeats it once done, so a request is carried out once however often the reconciler passes.

The Job runs the database's own image: `odoo shell` (works with the app scaled to 0; it needs the database
for the login -> uid lookup and for the result) with the database's sessions volume mounted where Odoo keeps
sessions (data_dir/sessions). Through Odoo's own session store (odoo.http.root.session_store: one file per
session, <sessions>/<sid[:2]>/<sid>, fields db, uid, login, pre_uid, pre_login), it deletes every logged-in
session of the database (or of that user): the cookie then opens nothing. database.secret is never rotated
(that would also void signup links and other tokens). Anonymous sessions (a website visitor's cart) stay.

The Job cannot reach the Kubernetes API: it leaves its result with Odoo's own ORM as the system parameter
RESULT_PARAMETER (`{"request": <digest>, "sessionsEnded": n}`), which the operator reads back as the
database's role once the Job is Complete.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Any

from odoo_operator.api.conditions import MICROTIME_FORMAT, parse_rfc3339
from odoo_operator.api.errors import SpecError
from odoo_operator.api.labels import LOGOUT_ANNOTATION
from odoo_operator.api.model import OdooDatabase
from odoo_operator.api.users import check_email
from odoo_operator.specs import app

ALL_USERS = "*"
RESULT_PARAMETER = "odoo_operator.logout"
LOGOUT_JOB_TTL_SECONDS = 3600  # a finished Job goes after an hour; its result is in status.lastLogout by then
VALUE_MAX = 300
FUTURE_SLACK = datetime.timedelta(minutes=5)  # clocks differ a little; a request from the future is refused

# Runs in `odoo shell` (env bound to the database). Reads the target from the environment, never argv.
LOGOUT_PY = r"""
import glob, json, os
from odoo.http import root
store = root.session_store
target = os.environ['LOGOUT_LOGIN']
digest = os.environ['LOGOUT_REQUEST']
dbname = env.cr.dbname
uids = set()
if target != '*':
    escaped = target.replace('\\', '\\\\').replace('%', '\\%').replace('_', '\\_')
    users = env['res.users'].with_context(active_test=False).sudo().search([('login', '=ilike', escaped)])
    uids = {u.id for u in users if (u.login or '').lower() == target}
ended = 0
for path in glob.glob(os.path.join(store.path, '*', '*')):
    sid = os.path.basename(path)
    if not store.is_valid_key(sid):
        continue
    session = store.get(sid)
    if session.sid != sid or session.db != dbname:
        continue
    if target == '*':
        match = bool(session.uid or session.pre_uid)
    else:
        logins = {(session.login or '').lower(), (session.pre_login or '').lower()}
        match = session.uid in uids or session.pre_uid in uids or target in logins
    if match:
        store.delete(session)
        ended += 1
env['ir.config_parameter'].sudo().set_param(__PARAMETER__, json.dumps({'request': digest, 'sessionsEnded': ended}))
env.cr.commit()
print('LOGOUT_RESULT', json.dumps({'request': digest, 'sessionsEnded': ended}))
""".replace("__PARAMETER__", repr(RESULT_PARAMETER))

LOGOUT_SCRIPT = """set -eu
odoo shell -c /etc/odoo/odoo.conf -d "$PGDATABASE" --no-http --log-level=warn <<'PY'
""" + LOGOUT_PY + """PY
"""


@dataclass(frozen=True)
class LogoutRequest:
    value: str  # the annotation's value as written: the request's identity
    at: datetime.datetime
    login: str | None  # None: every user

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.value.encode()).hexdigest()[:16]

    @property
    def target(self) -> str:
        return self.login or ALL_USERS

    def describe(self) -> str:
        return f"every session of {self.login}" if self.login else "every session of every user"


def logout_value(at: datetime.datetime, login: str | None) -> str:
    """The annotation's value for a request made now (microseconds: two requests never share a value)."""
    stamp = at.astimezone(datetime.UTC).strftime(MICROTIME_FORMAT)
    return f"{stamp} {login or ALL_USERS}"


def parse_logout(value: Any, now: datetime.datetime | None = None) -> LogoutRequest:
    """The annotation's value checked: `<RFC 3339 time> <e-mail or *>`; SpecError says what is wrong."""
    where = f"annotation {LOGOUT_ANNOTATION}"
    if not isinstance(value, str) or len(value) > VALUE_MAX:
        raise SpecError(f"{where} must be '<RFC 3339 time> <e-mail or *>' (at most {VALUE_MAX} characters)")
    parts = value.split(" ")
    if len(parts) != 2:
        raise SpecError(f"{where} must be '<RFC 3339 time> <e-mail or *>', e.g. '2025-01-01T12:00:00Z *'")
    try:
        at = parse_rfc3339(parts[0])
    except ValueError:
        raise SpecError(f"{where}: {parts[0][:40]!r} is not an RFC 3339 time such as 2025-01-01T12:00:00Z") from None
    if now is not None and at > now + FUTURE_SLACK:
        raise SpecError(f"{where}: {parts[0]} is in the future")
    login = None if parts[1] == ALL_USERS else check_email(parts[1], f"{where}: the user")
    return LogoutRequest(value, at, login)


def logout_job_name(db: OdooDatabase, request: LogoutRequest) -> str:
    return app.child_name(db.name, f"logout-{request.digest[:10]}")


def build_logout_job(db: OdooDatabase, endpoint: app.DatabaseEndpoint, request: LogoutRequest) -> dict[str, Any]:
    """The database's image, its odoo.conf and credentials (app._odoo_job), plus its sessions volume."""
    env = app._db_env(db) + [
        app._secret_env("PGDATABASE", app.db_secret_name(db), "database"),
        {"name": "LOGOUT_LOGIN", "value": request.target},
        {"name": "LOGOUT_REQUEST", "value": request.digest},
    ]
    job = app._odoo_job(db, endpoint, logout_job_name(db, request), "logout", ["/bin/bash", "-c", LOGOUT_SCRIPT], env)
    job["metadata"].setdefault("annotations", {})[LOGOUT_ANNOTATION] = request.value
    spec = job["spec"]
    spec["backoffLimit"] = 1
    spec["ttlSecondsAfterFinished"] = LOGOUT_JOB_TTL_SECONDS
    pod = spec["template"]["spec"]
    volumes, mounts = app._volumes(db, sessions=True)
    pod["volumes"] = volumes
    pod["containers"][0]["volumeMounts"] = mounts
    pod["automountServiceAccountToken"] = False
    return job
