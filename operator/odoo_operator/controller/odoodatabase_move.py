"""Moving one OdooDatabase to another PostgresServer: spec.server changed (or `kubectl odoo move DB SERVER`).

The source database's marker (its JSON comment, pg.py) records the move while it runs, `move` {from, to,
step, startedAt, downSince}; the target database's marker says whether it is usable: `moveTarget:
"incomplete"` (with the object's uid) while it is made and filled, then the source's marker (version,
initialized, …) with `movedFrom` {server, database} until the source is dropped. Every step reads them and
writes the next one before it acts, so an operator killed anywhere resumes: an incomplete target is dropped
and made again, never served; the source is dropped only once the target is verified, marked complete and
status.server names it. The steps:

    (checked)  the target exists, allows the namespace, is not cordoned, has room (placement's rules);
               otherwise Stalled MoveRefused and nothing stops
    stopping   the app scaled to 0 (as upgrades do), its Pods gone, the source's sessions terminated
    copying    on the target: the role (the <name>-db Secret's password), the database (owned by it, Odoo's
               extensions, marker incomplete); `pg_dump | pg_restore` as the tenant's role on both ends
               (pg.stream_copy); every table's row count and every sequence compared; marker complete
    (switch)   status.server = target (patched at once); the pass goes on with the target: the Secret's
               host/port, odoo.conf and the app follow, the app starts
    (cleanup)  once the app was started on the target: the source database dropped (and its role, if it
               owns nothing else there), `movedFrom` removed; status.move Done, the downtime reported when
               the app is available again (Event Moved)

A failed copy or verification puts everything back as it was (target dropped, app started on the source)
and is tried again after MOVE_RETRY_SECONDS. spec.server set back while a move runs cancels it the same way.

Not here: which server a new database goes to (postgresserver.py), the streamed copy itself (pg.stream_copy),
`kubectl odoo move` and `drain` (kubectl/move.py).
"""

from __future__ import annotations

import logging
from typing import Any, cast

from odoo_operator import API_VERSION, failpoints, pg, specs
from odoo_operator.api.conditions import now, now_iso, parse_time
from odoo_operator.controller import odoodatabase_upgrade
from odoo_operator.controller.base import NotReady, decode
from odoo_operator.controller.odoodatabase_create import DatabasePass
from odoo_operator.controller.postgresserver import check_move_target, server_address

log = logging.getLogger(__name__)

PHASE_MOVING = "Moving"
MOVE_RETRY_SECONDS = 600.0
INCOMPLETE = "incomplete"


def ensure_server(r: DatabasePass, current: str) -> tuple[str, NotReady | None]:
    """The server this pass continues with: `current` (status.server), or the target once a move switched
    to it. Returns with a problem (raised by the caller once the app is applied: the database keeps being
    served where it is) when a move is refused; raises NotReady while a move keeps the app stopped."""
    db = r.obj
    wanted = db.server
    record = dict(r.status.get("move") or {})
    if record:
        r.new_status["move"] = record
    running = record.get("phase") not in (None, "Done", "Cancelled", "Failed")
    if not wanted or wanted == current:
        if running and record.get("to") != current:
            _cancel(r, current, record)
        return current, None
    if not r.status.get("createdAt") or not r.status.get("initializedAt"):
        return current, NotReady("MoveWaiting", f"spec.server asks for {wanted!r}: the database is moved once it "
                                 f"is initialised on {current!r}", retry_after=30)
    source_admin, _ = server_address(current, r.ctx)
    with pg.connect(source_admin) as conn:
        source = pg.database_info(conn, db.database_name)
    if not source.exists or not source.owned_by(db.owner_marker, db.role_name):
        return current, None  # reported by ensure_database (DatabaseMissing, NameConflict)
    marker = dict(source.marker or {})
    progress = dict(marker.get("move") or {})
    if progress and progress.get("to") != wanted:  # spec.server changed again meanwhile: that target goes
        _drop_incomplete(r, str(progress["to"]))
        marker.pop("move")
        _write(source_admin, db.database_name, marker)
        progress = {}
    if not progress:
        if marker.get("upgrade"):
            return current, NotReady("MoveWaiting", f"spec.server asks for {wanted!r}: the database is moved once "
                                     "its upgrade is done", retry_after=30)
        failed = marker.get("moveFailed") or {}
        if failed.get("to") == wanted and (now() - parse_time(str(failed.get("at")))).total_seconds() < \
                MOVE_RETRY_SECONDS:
            return current, NotReady("MoveFailed", f"the move to {wanted!r} failed ({failed.get('message')}); the "
                                     f"database is served from {current!r} as before, the move is tried again "
                                     f"after {int(MOVE_RETRY_SECONDS)} s", stalled=True, retry_after=60)
        try:
            size = int(r.status.get("sizeBytes") or 0)
            check_move_target(db, wanted, size, r.ctx)
            _check_name_free(r, wanted)
        except NotReady as exc:
            return current, exc
        progress = {"from": current, "to": wanted, "step": "stopping", "startedAt": now_iso()}
        marker = {k: v for k, v in marker.items() if k != "moveFailed"} | {"move": progress}
        _write(source_admin, db.database_name, marker)
        r.events.append(("Normal", "Moving", f"moving the database from {current!r} to {wanted!r}: the app stops, "
                         "the database is copied and verified, then served from there"))
    record = {"from": current, "to": wanted, "phase": "Stopping", "startedAt": progress["startedAt"],
              "downSince": progress.get("downSince")}
    r.new_status["move"] = record
    if progress["step"] == "stopping":
        if not progress.get("downSince"):  # recorded before the wait for the Pods: the downtime counts it
            progress["downSince"] = record["downSince"] = now_iso()
            marker["move"] = progress
            _write(source_admin, db.database_name, marker)
        _stop_app(r, source_admin, marker, record)
        progress |= {"step": "copying", "downSince": record["downSince"]}
        marker["move"] = progress
        _write(source_admin, db.database_name, marker)
        failpoints.hit("move-after-stop", db.namespace)
    record["phase"] = "Copying"
    if progress["step"] == "copying":
        problem = _copy(r, source_admin, wanted, marker)
        if problem is not None:
            _undo(r, source_admin, wanted, marker, problem)
            return current, NotReady("MoveFailed", f"the move to {wanted!r} failed ({problem}); the database is "
                                     f"served from {current!r} as before, the move is tried again after "
                                     f"{int(MOVE_RETRY_SECONDS)} s", stalled=True, retry_after=60)
    # The switch: recorded before anything is served from the target, and before the source can go.
    record["phase"] = "Switching"
    record["durationSeconds"] = round((now() - parse_time(str(progress["startedAt"]))).total_seconds(), 1)
    r.kube.patch_status(API_VERSION, "OdooDatabase", db.name, db.namespace, {"server": wanted, "move": record})
    failpoints.hit("move-after-switch", db.namespace)
    return wanted, None


def finish(r: DatabasePass, server: str, available: bool) -> None:
    """After the app was applied on `server`: the source of a move dropped, then its downtime reported once
    the app is available."""
    db = r.obj
    record = dict(r.new_status.get("move") or {})
    if not record or record.get("to") != server:
        return
    if record.get("phase") == "Switching":
        admin = cast(pg.ServerAddress, cast(Any, r).admin)
        with pg.connect(admin) as conn:
            marker = dict(pg.database_info(conn, db.database_name).marker or {})
        moved = marker.get("movedFrom") or {}
        if moved.get("server") and moved.get("server") != server:
            failpoints.hit("move-before-drop", db.namespace)
            source_admin, _ = server_address(str(moved["server"]), r.ctx)
            with pg.connect(source_admin) as conn:
                source = pg.database_info(conn, db.database_name)
                if source.exists and source.owned_by(db.owner_marker, db.role_name) and \
                        (source.marker or {}).get("uid") in (None, db.uid):
                    pg.drop_database(conn, db.database_name)
                copy = pg.database_info(conn, odoodatabase_upgrade.pre_upgrade_database(db))
                if copy.exists and (copy.marker or {}).get("uid") == db.uid:
                    pg.drop_database(conn, odoodatabase_upgrade.pre_upgrade_database(db))
                pg.drop_role_if_unused(conn, db.role_name, db.owner_marker)
            failpoints.hit("move-after-drop", db.namespace)
            with pg.connect(admin) as conn:
                pg.set_database_marker(conn, db.database_name,
                                       {k: v for k, v in marker.items() if k != "movedFrom"})
        record.update({"phase": "Done", "finishedAt": now_iso()})
    if available and record.get("phase") == "Done" and record.get("downSince") and \
            record.get("downtimeSeconds") is None:
        record["downtimeSeconds"] = round((now() - parse_time(str(record["downSince"]))).total_seconds(), 1)
        r.events.append(("Normal", "Moved", f"moved from {record.get('from')!r} to {server!r}: the app was down "
                         f"{record['downtimeSeconds']} s; the source database is dropped"))
    r.new_status["move"] = record


# ---- the steps ---------------------------------------------------------------------------------------

def _stop_app(r: DatabasePass, source_admin: pg.ServerAddress, marker: dict[str, Any], record: dict[str, Any]) -> None:
    """The app at 0 replicas (its image unchanged), its Pods gone, the source's sessions terminated."""
    db = r.obj
    version = str(marker.get("version") or r.status.get("version") or db.version)
    serving = specs.upgrade.serving(db, version, odoodatabase_upgrade.image_for(r, version))
    if r.ctx.registry.child("Deployment", db.namespace, db.name) or r.kube.get(
            "apps/v1", "Deployment", db.name, db.namespace):
        # The template as the app runs it (its credentials' fingerprint, its server): only replicas change.
        credentials = specs.app.credentials_fingerprint(db, _tenant_password(r))
        endpoint = specs.app.DatabaseEndpoint(source_admin.host, source_admin.port, source_admin.sslmode)
        r.apply(specs.app.build_deployment(serving, 0, credentials, endpoint))
    pods = r.kube.list("v1", "Pod", db.namespace, label_selector=",".join(
        f"{k}={v}" for k, v in specs.app.selector_labels(db).items()))
    if pods:
        raise NotReady(PHASE_MOVING, f"moving to {record['to']!r}: waiting for the app's {len(pods)} Pod(s) to stop",
                       retry_after=1, warning=False, phase=PHASE_MOVING)
    with pg.connect(source_admin) as conn:
        pg.terminate_connections(conn, db.database_name)


def _tenant_password(r: DatabasePass) -> str:
    db = r.obj
    secret = r.kube.get("v1", "Secret", specs.app.db_secret_name(db), db.namespace)
    value = decode(secret, "password")
    if value is None or decode(secret, "user") != db.role_name:
        raise NotReady(PHASE_MOVING, f"Secret {specs.app.db_secret_name(db)} lacks the role's password; the move "
                       "waits for it to be repaired", retry_after=30, phase=PHASE_MOVING)
    return value


def _copy(r: DatabasePass, source_admin: pg.ServerAddress, target: str, marker: dict[str, Any]) -> str | None:
    """The target made (again: an incomplete one is dropped first), filled and verified, then marked complete.
    Returns why it failed (the caller puts everything back), None once the target is complete."""
    db = r.obj
    password = _tenant_password(r)
    target_admin, _ = server_address(target, r.ctx)
    source_name = str(marker["move"]["from"])
    with pg.connect(target_admin) as conn:
        pg.ensure_role(conn, db.role_name, password, db.owner_marker, reset_password=True)
        info = pg.database_info(conn, db.database_name)
        if info.exists:
            if not _ours(r, info):
                raise NotReady("MoveRefused", f"database {db.database_name!r} exists on {target!r} and belongs to "
                               "something else; the app stays stopped until it is removed or spec.server is set "
                               f"back to {source_name!r}", stalled=True, retry_after=60, phase=PHASE_MOVING)
            if (info.marker or {}).get("movedFrom") and not (info.marker or {}).get("moveTarget"):
                return None  # verified and marked complete by a pass killed before the switch
            pg.drop_database(conn, db.database_name)  # incomplete: made again
        incomplete = db.owner_marker | {"uid": db.uid, "moveTarget": INCOMPLETE, "movedFrom": {
            "server": source_name, "database": db.database_name}}
        pg.create_database(conn, db.database_name, db.role_name, incomplete)
    failpoints.hit("move-after-create", db.namespace)
    pg.create_odoo_extensions(target_admin, db.database_name, db.role_name)
    source_tenant = source_admin.as_role(db.role_name, password)
    target_tenant = target_admin.as_role(db.role_name, password)
    try:
        seconds = pg.stream_copy(source_tenant, target_tenant, db.database_name)
    except pg.MoveCopyFailed as exc:
        return str(exc)
    failpoints.hit("move-after-copy", db.namespace)
    before, after = pg.content_summary(source_tenant, db.database_name), pg.content_summary(
        target_tenant, db.database_name)
    if before != after:
        differ = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return f"the copy differs from the source in {len(differ)} table(s)/sequence(s): {', '.join(differ[:5])}"
    complete = {k: v for k, v in marker.items() if k not in ("move", "preUpgrade", "moveFailed")} | {
        "uid": db.uid, "movedFrom": {"server": source_name, "database": db.database_name}}
    with pg.connect(target_admin) as conn:
        pg.set_database_marker(conn, db.database_name, complete)
    failpoints.hit("move-after-verify", db.namespace)
    log.info("%s/%s: copied to %s in %.1f s (%d tables and sequences verified)", db.namespace, db.name, target,
             seconds, len(after))
    return None


def _ours(r: DatabasePass, info: pg.DatabaseInfo) -> bool:
    db = r.obj
    return info.owned_by(db.owner_marker, db.role_name) and (info.marker or {}).get("uid") in (None, db.uid)


def _check_name_free(r: DatabasePass, target: str) -> None:
    """Before anything stops: the database's name is free on the target (or taken by an earlier, incomplete
    attempt of this very move)."""
    db = r.obj
    target_admin, _ = server_address(target, r.ctx)
    with pg.connect(target_admin) as conn:
        info = pg.database_info(conn, db.database_name)
    if info.exists and not (_ours(r, info) and (info.marker or {}).get("moveTarget") == INCOMPLETE):
        raise NotReady("MoveRefused", f"cannot move the database to PostgresServer {target!r}: a database "
                       f"{db.database_name!r} exists there already; it keeps being served where it is",
                       stalled=True, retry_after=60)


def _drop_incomplete(r: DatabasePass, target: str) -> None:
    """The target of an abandoned move, dropped if it is this object's and was never switched to."""
    db = r.obj
    try:
        target_admin, _ = server_address(target, r.ctx)
    except NotReady:
        return  # gone with its server
    with pg.connect(target_admin) as conn:
        info = pg.database_info(conn, db.database_name)
        if info.exists and _ours(r, info) and (info.marker or {}).get("movedFrom"):
            pg.drop_database(conn, db.database_name)


def _undo(r: DatabasePass, source_admin: pg.ServerAddress, target: str, marker: dict[str, Any], why: str) -> None:
    """A failed copy: the target dropped, the source's marker without the move (the app starts again on it)."""
    db = r.obj
    _drop_incomplete(r, target)
    marker = {k: v for k, v in marker.items() if k != "move"} | {"moveFailed": {
        "to": target, "at": now_iso(), "message": why[-500:]}}
    _write(source_admin, db.database_name, marker)
    record = dict(r.new_status.get("move") or {})
    record.update({"phase": "Failed", "finishedAt": now_iso()})
    r.new_status["move"] = record
    r.events.append(("Warning", "MoveFailed", f"the move to {target!r} failed: {why}"))


def _cancel(r: DatabasePass, current: str, record: dict[str, Any]) -> None:
    """spec.server set back to where the database is while a move ran: its target goes, the app comes back."""
    db = r.obj
    source_admin, _ = server_address(current, r.ctx)
    with pg.connect(source_admin) as conn:
        source = pg.database_info(conn, db.database_name)
    marker = dict(source.marker or {})
    progress = marker.get("move") or {}
    if progress.get("to"):
        _drop_incomplete(r, str(progress["to"]))
    elif record.get("to") and record.get("to") != current:
        _drop_incomplete(r, str(record["to"]))
    if "move" in marker:
        _write(source_admin, db.database_name, {k: v for k, v in marker.items() if k != "move"})
    record.update({"phase": "Cancelled", "finishedAt": now_iso()})
    r.new_status["move"] = record
    r.events.append(("Normal", "MoveCancelled", f"spec.server is {current!r} again: the move to "
                     f"{progress.get('to') or record.get('to')!r} is cancelled, the app returns"))


def _write(admin: pg.ServerAddress, database: str, marker: dict[str, Any]) -> None:
    with pg.connect(admin) as conn:
        pg.set_database_marker(conn, database, marker)
