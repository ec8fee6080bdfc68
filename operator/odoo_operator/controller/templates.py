"""Template databases: a new OdooDatabase as a file-level copy of a database Odoo initialised once, instead of
Odoo's `-i base` for each one.

Per PostgresServer, Odoo version and image, one template database `_odoo_template_<key>` (specs/template.py),
built on demand: the first fresh database of a version on a server asks for it (`request`) and is itself
initialised by its own init Job meanwhile; every later one is `CREATE DATABASE … TEMPLATE … STRATEGY
WAL_LOG` of it (small: no checkpoint forced per database; odoodatabase_create.ensure_database) made its own by
`make_own` below: its objects handed to its role, a fresh identity (neutralize.reset_identity: database.uuid,
database.secret, database.create_date, web.base.url) and its admin's own password, all before any Odoo process
sees it.

The state of a template lives in its database's marker (PostgreSQL), so it survives operator restarts:
`Building` (its Job runs) → `Ready` (the Job completed and Odoo's modules are installed in it; the role is
made NOLOGIN and the Job and Secret removed) or `Failed` (the Job's message kept; built again from
scratch after TEMPLATE_RETRY). The PostgresServer's check (`advance`, every 15 s) moves them on and reports
them in status.templates; a template whose image is no longer the version table's is dropped and built
again with the new image. Templates are never served (CONNECT only for their owner, no Ingress, no app),
never counted (pg.server_info) and never a database of anyone's.

Not here: the template's Job and Secret (specs/template.py), the copy's SQL (pg.py), Odoo's identity reset
(neutralize.py), when a database asks for its template (odoodatabase_create.py).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import psycopg

from odoo_operator import failpoints, neutralize, pg, specs
from odoo_operator.api.conditions import format_time, now, now_iso, parse_time
from odoo_operator.api.model import OdooDatabase, PostgresServer
from odoo_operator.controller.base import Context, decode, job_failure, job_state, password
from odoo_operator.runtime.leader import default_namespace
from odoo_operator.specs import template as spec

log = logging.getLogger(__name__)

BUILDING, READY, FAILED = "Building", "Ready", "Failed"
TEMPLATE_RETRY = datetime.timedelta(minutes=10)  # after a failed build, before building it again
MODULES = ("base", "auth_signup")
LOG_TAIL = 600  # characters of a failed build's output kept in status.templates  # what specs.app.INIT_SCRIPT installs


def namespace(ctx: Context) -> str:
    return ctx.settings.template_namespace or default_namespace()


def key_for(server: str, db: OdooDatabase, ctx: Context) -> str | None:
    """The template a fresh database of this spec can be made from; None when it can have none: templates
    off, or an image of its own (spec.image: not the version table's, so no template of it is kept)."""
    if not ctx.settings.templates or db.image_pinned or ctx.settings.images.get(db.version) != db.image:
        return None
    return spec.template_key(server, db.version, db.image)


def ready(conn: Any, key: str) -> str | None:
    """The template database of `key` when it is Ready (one query), else None."""
    name = spec.database_name(key)
    marker = pg.database_info(conn, name).marker or {}
    return name if marker.get("state") == READY and marker.get("key") == key else None


def request(ctx: Context, conn: Any, server: PostgresServer, admin: pg.ServerAddress,
            endpoint: specs.app.DatabaseEndpoint, version: str, image: str) -> bool:
    """Start building the template of (server, version, image) unless it exists; True if started. Called by
    a fresh database's pass that found none Ready, and by `advance` to rebuild. `conn`: the admin's."""
    server_name = server.name
    key = spec.template_key(server_name, version, image)
    name = spec.database_name(key)
    if pg.database_info(conn, name).exists:
        return False
    secret = password()
    # The Secret is the source of truth of the role's password: written before the role, which carries the
    # marker before the database exists.
    objects = spec.build_objects(key, namespace(ctx), server_name, server.uid, image, endpoint, secret)
    ctx.kube.apply(objects[0])
    marker = {pg.MARKER_KEY: pg.MARKER_VALUE, "key": key, "server": server_name, "version": version, "image": image,
              "state": BUILDING, "startedAt": now_iso()}
    pg.ensure_template_role(conn, name, secret, marker)
    try:
        pg.create_database(conn, name, name, marker)
    except psycopg.errors.DuplicateDatabase:
        return False  # another pass started it
    pg.create_odoo_extensions(admin, name, name)
    failpoints.hit("template-after-database", namespace(ctx))
    _start_job(ctx, objects)
    return True


def _start_job(ctx: Context, objects: list[dict[str, Any]]) -> None:
    """The Job created (a Job is never changed: its template is immutable); its Secret is applied already."""
    ctx.kube.create(objects[1])


def advance(ctx: Context, conn: Any, server: PostgresServer, admin: pg.ServerAddress,
            endpoint: specs.app.DatabaseEndpoint) -> list[dict[str, Any]]:
    """Move this server's templates on (a Job finished, an image changed, a failure old enough to retry) and
    return them for status.templates. `conn`: the admin's."""
    server_name = server.name
    reported = []
    for name, marker in sorted(pg.template_databases(conn).items()):
        if marker is None:  # between CREATE DATABASE and its COMMENT (or killed there): its role's marker
            marker = pg.role_marker(conn, name)
            if marker is None or marker.get("key") != name.removeprefix(pg.TEMPLATE_PREFIX):
                continue  # not one the operator started: never touched
            pg.set_database_marker(conn, name, marker)
        if marker.get("server") != server_name:
            continue  # another PostgresServer object naming the same PostgreSQL: its own templates
        key, version, image = str(marker.get("key")), str(marker.get("version")), str(marker.get("image"))
        wanted = ctx.settings.images.get(version)
        if not ctx.settings.templates or wanted != image:
            _drop(ctx, conn, name, key)
            if ctx.settings.templates and wanted:  # a new image for this version: built again with it
                request(ctx, conn, server, admin, endpoint, version, wanted)
            continue
        state = marker.get("state")
        if state == BUILDING:
            marker = _building(ctx, conn, server, admin, endpoint, name, marker)
        elif state == FAILED and now() - parse_time(str(marker.get("failedAt"))) >= TEMPLATE_RETRY:
            _drop(ctx, conn, name, key)
            request(ctx, conn, server, admin, endpoint, version, image)
            continue
        message = marker.get("message")
        if marker.get("state") == FAILED:  # the output's end, read from the failed Job's Pod while it is kept
            tail = _log_tail(ctx, namespace(ctx), spec.object_name(key))
            message = f"{message}; its output ends: {tail}" if tail else message
        reported.append({k: v for k, v in (("version", version), ("image", image), ("database", name),
                                            ("state", marker.get("state")), ("startedAt", marker.get("startedAt")),
                                            ("builtAt", marker.get("builtAt")), ("message", message))
                         if v is not None})
    return reported


def _building(ctx: Context, conn: Any, server: PostgresServer, admin: pg.ServerAddress,
              endpoint: specs.app.DatabaseEndpoint, name: str, marker: dict[str, Any]) -> dict[str, Any]:
    key = str(marker["key"])
    ns, object_name = namespace(ctx), spec.object_name(key)
    # Read, not base.ensure_job's watched copy: that keeps no creationTimestamp, which tells this build's Job
    # from an earlier build's (below); a template is built rarely, one GET per check while it builds is cheap.
    job = ctx.kube.get("batch/v1", "Job", object_name, ns)
    if job is None:  # stopped between the database and its Job (or the Job was deleted): Job again
        secret = decode(ctx.kube.get("v1", "Secret", object_name, ns), "password") or password()
        objects = spec.build_objects(key, ns, server.name, server.uid, str(marker["image"]), endpoint, secret)
        ctx.kube.apply(objects[0])
        pg.ensure_template_role(conn, name, secret, marker)
        _start_job(ctx, objects)
        return marker
    created = job["metadata"].get("creationTimestamp")
    if created and marker.get("startedAt") and parse_time(created) < parse_time(str(marker["startedAt"])) - \
            datetime.timedelta(seconds=2):
        # The Job of an earlier build of this template (its deletion not finished when this one started):
        # not this build's verdict. Deleted; the next check creates this build's.
        ctx.kube.delete("batch/v1", "Job", object_name, ns)
        return marker
    state = job_state(job)
    if state == "Running":
        return marker
    if state == "Complete":
        missing = _missing_modules(admin, name)
        if not missing:
            # Built: nobody logs in as its role again; copies are made by the admin.
            pg.template_built(conn, name)
            marker = marker | {"state": READY, "builtAt": now_iso()}
            pg.set_database_marker(conn, name, marker)
            _delete_objects(ctx, key)
            return marker
        failure = f"Job {object_name} completed but {', '.join(missing)} is not installed in {name}"
    else:
        failure = f"Job {object_name} failed: {job_failure(job)}"
    # The marker (readable by every role of the server) keeps the Job's verdict, never its output; the Job
    # stays for inspection until the retry, its Secret goes now.
    marker = marker | {"state": FAILED, "failedAt": now_iso(), "message": failure[:300],
                       "retryAt": format_time(now() + TEMPLATE_RETRY)}
    pg.set_database_marker(conn, name, marker)
    log.warning("template %s (Odoo %s, %s) failed: %s; built again after %s", name, marker.get("version"),
                marker.get("image"), failure, marker["retryAt"])
    _delete_objects(ctx, key, keep_job=True)
    return marker


def _log_tail(ctx: Context, ns: str, job: str) -> str | None:
    """The container's termination message: the end of its output (FallbackToLogsOnError)."""
    for pod in ctx.kube.list("v1", "Pod", ns, label_selector=f"job-name={job}"):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                return " ".join(str(message).split())[-LOG_TAIL:]
    return None


def _missing_modules(admin: pg.ServerAddress, name: str) -> list[str]:
    installed = pg.installed_modules(admin, name, list(MODULES))
    return [m for m in MODULES if m not in installed]


def _delete_objects(ctx: Context, key: str, keep_job: bool = False) -> None:
    ns, object_name = namespace(ctx), spec.object_name(key)
    kinds = (("v1", "Secret"),) + (() if keep_job else (("batch/v1", "Job"),))
    for api_version, kind in kinds:
        ctx.kube.delete(api_version, kind, object_name, ns)


def _drop(ctx: Context, conn: Any, name: str, key: str) -> None:
    pg.drop_database(conn, name)
    pg.drop_template_role(conn, name)  # kept while a copy not yet made its own still has objects of it
    _delete_objects(ctx, key)


def make_own(admin: pg.ServerAddress, tenant: pg.ServerAddress, db: OdooDatabase, template: str, base_url: str,
             admin_password: str) -> None:
    """A copy of `template` made this database's: every object handed to its role (the admin, inside it,
    catalog statements only), then — as the database's own role — a fresh identity and its admin's own
    password. Idempotent: a pass killed in between does it all again."""
    with pg.connect(admin) as conn:
        role_exists = pg.role_exists(conn, template)
    if role_exists:
        with pg.connect(admin, db.database_name) as conn:
            pg.reassign_owned(conn, template, db.role_name)
    with pg.connect(tenant, db.database_name) as conn:
        neutralize.reset_identity(conn, base_url)
        if not neutralize.set_admin_password(conn, admin_password):
            raise RuntimeError(f"{db.database_name}: no base.user_admin in a copy of template {template}")
