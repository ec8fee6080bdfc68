"""The PostgresServer kind: observing one (reachable?, version, database count), who may use it
(spec.allowedNamespaces), and resolving the server an OdooDatabase lives on to an admin connection.

Not here: the SQL itself (pg.py), what is done on a server for a database (odoodatabase_create.py,
odoodatabase_delete.py), the loop that calls `check` (handlers.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from odoo_operator import API_VERSION, pg, specs
from odoo_operator.api.conditions import Condition, now_iso, summary
from odoo_operator.api.model import (
    OdooDatabase,
    PostgresServer,
    SpecError,
    human_bytes,
    parse_postgres_server,
    selector_matches,
)
from odoo_operator.controller import templates
from odoo_operator.controller.base import Context, NotReady, decode
from odoo_operator.kube import KubeError
from odoo_operator.runtime.registry import ServerUsage

log = logging.getLogger(__name__)


def check(body: Mapping[str, Any], ctx: Context) -> tuple[dict[str, Any], list[Condition]]:
    """Status fields and conditions of one PostgresServer, from a real connection."""
    name = body["metadata"]["name"]
    status: dict[str, Any] = {"lastCheckTime": now_iso()}
    try:
        server = parse_postgres_server(body)
        address, _ = server_address(name, ctx)
        with pg.connect(address) as conn:
            version, usage, measured = measure(ctx, conn, name)
            count = usage.databases
            status["templates"] = _templates(ctx, conn, server, address)
    except SpecError as exc:
        return status | {"phase": "Failed", "reachable": False}, _stalled("InvalidSpec", str(exc))
    except NotReady as exc:
        return status | {"phase": "Failed", "reachable": False}, _not_ready(exc.reason, exc.message)
    except pg.PostgresUnavailable as exc:
        return status | {"phase": "Unreachable", "reachable": False}, _not_ready(
            "Unreachable", f"cannot connect to {server.host}:{server.port}: {exc}")
    status.update({"phase": "Ready", "reachable": True, "serverVersion": version, "databaseCount": count})
    if usage.bytes_used is not None:
        status["bytesUsed"] = usage.bytes_used
        if server.max_storage is not None:
            status["bytesFree"] = max(server.max_storage - usage.bytes_used, 0)
    # Drift: a database dropped behind the operator's back wakes its OdooDatabase, which reports it
    # (DatabaseMissing) — one query per server and check, not one per database.
    for key in ctx.registry.newly_missing(name, set(usage.present)):
        ctx.registry.wake(key)
    # Sizes: measured here for every database of the server at once (one query, every size_refresh_seconds);
    # only the OdooDatabases whose size changed are woken to write their status.sizeBytes.
    if measured:
        for key in ctx.registry.sizes_changed(name, usage.sizes):
            ctx.registry.wake(key)
    message = f"PostgreSQL {version} reachable, {count} database(s)"
    if server.max_databases is not None:
        message += f" of at most {server.max_databases}"
    if usage.bytes_used is not None:
        message += f", {human_bytes(usage.bytes_used)}" + (
            f" of at most {human_bytes(server.max_storage)}" if server.max_storage is not None else "")
    if server.cordoned:
        message += "; cordoned: no new database is placed on it"
    return status, list(summary("ready", "Reachable", message))


def measure(ctx: Context, conn: Any, name: str) -> tuple[str, ServerUsage, bool]:
    """The server's version and usage (one query for the count and the names; the sizes, which stat every
    file, at most every size_refresh_seconds), recorded for placement and for the databases' sizeBytes.
    The last item: whether the sizes were measured now."""
    version, count = pg.server_info(conn)
    present = frozenset(pg.database_names(conn))
    before = ctx.registry.server_usage(name)
    now = time.monotonic()
    measured = before is None or before.bytes_used is None or \
        now - before.measured_at >= ctx.settings.size_refresh_seconds
    if measured:
        sizes = pg.database_sizes(conn)
        usage = ServerUsage(count, present, sum(sizes.values()), now, sizes)
    else:
        assert before is not None
        usage = ServerUsage(count, present, before.bytes_used, before.measured_at, before.sizes)
    ctx.registry.record_usage(name, usage)
    return version, usage, measured


def _templates(ctx: Context, conn: Any, server: PostgresServer, address: pg.ServerAddress) -> list[dict[str, Any]]:
    """Its template databases moved on (templates.py); a failure there is logged, never the server's."""
    endpoint = specs.app.DatabaseEndpoint(server.host, server.port, server.ssl_mode)
    try:
        return templates.advance(ctx, conn, server, address, endpoint)
    except (KubeError, psycopg.Error) as exc:
        log.warning("templates of PostgresServer %s: %s", server.name, exc)
        return []


def namespace_allowed(server: PostgresServer, namespace: str,
                      namespace_labels: Callable[[], Mapping[str, str]]) -> bool:
    """spec.allowedNamespaces: absent, every namespace; else the listed ones and those its selector matches
    (labels are fetched only when the name is not listed)."""
    allowed = server.allowed_namespaces
    if allowed is None or namespace in allowed.names:
        return True
    return allowed.selector is not None and selector_matches(allowed.selector, namespace_labels())


def require_allowed(server_name: str, namespace: str, ctx: Context) -> None:
    """NotReady (Stalled, ServerNotAllowed) unless an OdooDatabase of `namespace` may use the server.
    An unknown server passes: server_address reports it."""
    server = ctx.registry.server(server_name)
    if server is None:
        refresh_servers(ctx)
        server = ctx.registry.server(server_name)
    if server is None:
        return

    def labels() -> Mapping[str, str]:
        body = ctx.kube.get("v1", "Namespace", namespace) or {}
        return (body.get("metadata") or {}).get("labels") or {}

    if not namespace_allowed(server, namespace, labels):
        raise NotReady("ServerNotAllowed", f"PostgresServer {server_name!r} does not allow namespace {namespace!r} "
                       "(its spec.allowedNamespaces); use another server in spec.server or ask the platform "
                       "administrators to allow this namespace", stalled=True, retry_after=60)


def _not_ready(reason: str, message: str) -> list[Condition]:
    return list(summary("progressing", reason, message))


def _stalled(reason: str, message: str) -> list[Condition]:
    return list(summary("stalled", reason, message))


# ---- PostgresServer resolution ---------------------------------------------------------------

def resolve_server_name(db: OdooDatabase | None, spec_server: str | None, status_server: str | None, ctx: Context,
                        uid: str = "", database_name: str = "") -> str:
    """The server a database lives on: recorded in status once placed, else spec.server, else placed in its pool
    (`db` given: a pass that may create it) or found there (`db` None: a deletion, `uid`/`database_name` of the
    object being deleted; ServerNotFound when no server holds it)."""
    if status_server:
        return status_server
    if spec_server:
        return spec_server
    if db is not None:
        return place(db, ctx)
    servers = ctx.registry.all_servers()  # any pool: its selector may be gone
    reachable = [server for server in servers if _usage(server, ctx, {}) is not None]
    found = _placed_before(ctx, reachable, database_name, uid)
    if found is None:
        raise NotReady("ServerNotFound", f"database {database_name!r} was placed on no server", retry_after=30)
    return found


def _pool(selector: Mapping[str, Any] | None, ctx: Context) -> tuple[list[PostgresServer], str]:
    """The servers of a pool (spec.serverSelector's, or the default one) and how to name the pool."""
    servers = ctx.registry.all_servers()
    if not servers:
        refresh_servers(ctx)  # just started: the PostgresServer watch may not have delivered them yet
        servers = ctx.registry.all_servers()
    if selector is None:
        return [s for s in servers if s.default], "the default pool (PostgresServers with spec.default: true)"
    return ([s for s in servers if selector_matches(selector, s.labels)],
            f"the pool of spec.serverSelector {json.dumps(selector, sort_keys=True)}")


def place(db: OdooDatabase, ctx: Context) -> str:
    """The eligible server of the database's pool with the most free capacity (the smallest free share of
    maxDatabases and maxStorage; without limits, the fewest databases), reserved for it until its database
    exists. A database already made on a server of the pool (by a pass killed before it recorded its status)
    stays there. NotReady: no such server (ServerNotFound), or none can take it (Stalled NoCapacity)."""
    pool, pool_name = _pool(db.server_selector, ctx)
    if not pool:
        raise NotReady("ServerNotFound", f"no PostgresServer is in {pool_name}; create one, label one, or set "
                       "spec.server", retry_after=30)
    if len(pool) == 1 and not pool[0].cordoned and pool[0].max_databases is None and pool[0].max_storage is None:
        ctx.registry.reserve((db.namespace, db.name), pool[0].name, db.database_name)
        return pool[0].name  # nothing to choose or measure: the pass reports what is wrong with it, as for spec.server
    with ctx.registry.placing:
        problems: dict[str, Exception] = {}
        usages = {server.name: _usage(server, ctx, problems) for server in pool}
        if len(pool) == 1 and pool[0].name in problems:
            raise problems[pool[0].name]  # its own reason (unreachable, credentials missing…), as for spec.server
        earlier = _placed_before(ctx, [s for s in pool if usages[s.name] is not None], db.database_name, db.uid)
        if earlier is not None:
            ctx.registry.reserve((db.namespace, db.name), earlier, db.database_name)
            return earlier
        candidates: list[tuple[float, int, int, str]] = []
        refused: list[str] = []
        labels: dict[str, Mapping[str, str]] = {}

        def namespace_labels() -> Mapping[str, str]:
            if "labels" not in labels:
                body = ctx.kube.get("v1", "Namespace", db.namespace) or {}
                labels["labels"] = (body.get("metadata") or {}).get("labels") or {}
            return labels["labels"]

        for server in sorted(pool, key=lambda s: s.name):
            usage, count = usages[server.name], ctx.registry.database_count(server.name)
            if server.cordoned:
                refused.append(f"{server.name} is cordoned")
            elif not namespace_allowed(server, db.namespace, namespace_labels):
                refused.append(f"{server.name} does not allow namespace {db.namespace!r}")
            elif usage is None or count is None:
                problem = problems.get(server.name)
                why = problem.message if isinstance(problem, NotReady) else str(problem or "not measured")
                refused.append(f"{server.name} is not usable ({why})")
            elif server.max_databases is not None and count >= server.max_databases:
                refused.append(f"{server.name} holds {count} of at most {server.max_databases} databases")
            elif server.max_storage is not None and (usage.bytes_used or 0) >= server.max_storage:
                refused.append(f"{server.name} uses {human_bytes(usage.bytes_used or 0)} of at most "
                               f"{human_bytes(server.max_storage)}")
            else:
                shares = [1 - count / server.max_databases] if server.max_databases else []
                if server.max_storage:
                    shares.append(1 - (usage.bytes_used or 0) / server.max_storage)
                candidates.append((-min(shares, default=1.0), count, usage.bytes_used or 0, server.name))
        if not candidates:
            listed = "; ".join(refused)
            if problems:  # some may come back: a transient state, retried
                raise NotReady("ServerUnavailable", f"no server of {pool_name} can take a new database now: {listed}",
                               retry_after=ctx.settings.retry_max_seconds)
            if all("does not allow namespace" in reason for reason in refused):
                raise NotReady("ServerNotAllowed", f"no server of {pool_name} allows namespace {db.namespace!r} "
                               f"(spec.allowedNamespaces): {listed}; ask the platform administrators to allow it",
                               stalled=True, retry_after=60)
            raise NotReady("NoCapacity", f"no server of {pool_name} can take a new database: {listed}. "
                           "Add a server to the pool, raise its limits or uncordon one", stalled=True,
                           retry_after=60)
        chosen = min(candidates)[-1]
        ctx.registry.reserve((db.namespace, db.name), chosen, db.database_name)
        return chosen


def _usage(server: PostgresServer, ctx: Context, problems: dict[str, Exception]) -> ServerUsage | None:
    """The server's usage as its last check measured it, or measured now (not checked yet since the start);
    None when it cannot be reached (why: in `problems`)."""
    usage = ctx.registry.server_usage(server.name)
    if usage is not None:
        return usage
    try:
        address, _ = server_address(server.name, ctx)
        with pg.connect(address) as conn:
            return measure(ctx, conn, server.name)[1]
    except (NotReady, pg.PostgresUnavailable) as exc:
        problems[server.name] = exc
        return None


def _placed_before(ctx: Context, servers: list[PostgresServer], database_name: str, uid: str) -> str | None:
    """The server among `servers` that holds this object's database (its marker names its uid), if any: only
    servers whose last check saw a database of that name are asked."""
    for server in servers:
        usage = ctx.registry.server_usage(server.name)
        if usage is None or database_name not in usage.present or not uid:
            continue
        address, _ = server_address(server.name, ctx)
        with pg.connect(address) as conn:
            marker = pg.database_info(conn, database_name).marker or {}
        if marker.get("uid") == uid:
            return server.name
    return None


def refresh_servers(ctx: Context) -> None:
    for body in ctx.kube.list(API_VERSION, "PostgresServer"):
        ctx.registry.record_server(body, deleted=False)


def server_address(server_name: str, ctx: Context) -> tuple[pg.ServerAddress, str]:
    """Connection details (admin) of a server and its sslmode; NotReady if unusable."""
    server = ctx.registry.server(server_name)
    if server is None:
        refresh_servers(ctx)
        server = ctx.registry.server(server_name)
    if server is None:
        raise NotReady("ServerNotFound", f"PostgresServer {server_name!r} does not exist; create it or fix "
                       "spec.server", retry_after=30)
    key = (server.admin_secret_namespace, server.admin_secret_name)
    cached = ctx.registry.cached_credentials(key)
    if cached is None:
        secret = ctx.kube.get("v1", "Secret", server.admin_secret_name, server.admin_secret_namespace)
        user, password = decode(secret, "username"), decode(secret, "password")
        if not user or not password:
            raise NotReady("ServerCredentialsMissing",
                           f"Secret {server.admin_secret_namespace}/{server.admin_secret_name} of PostgresServer "
                           f"{server_name!r} is missing or lacks the keys username/password", retry_after=30)
        ctx.registry.cache_credentials(key, user, password)
        cached = (user, password)
    address = pg.ServerAddress(server.host, server.port, cached[0], cached[1], server.ssl_mode,
                               ctx.settings.pg_connect_timeout)
    return address, server.ssl_mode


def check_move_target(db: OdooDatabase, server_name: str, size_bytes: int, ctx: Context) -> None:
    """A move's target checked by placement's rules before anything stops: it exists, allows the namespace, is
    not cordoned and has room for one more database (maxDatabases) of this size (maxStorage). NotReady
    Stalled MoveRefused otherwise (ServerUnavailable, retried, when it cannot be measured now)."""
    server = ctx.registry.server(server_name)
    if server is None:
        refresh_servers(ctx)
        server = ctx.registry.server(server_name)
    refused = "cannot move the database to PostgresServer {!r}: {}; it keeps being served where it is"
    if server is None:
        raise NotReady("MoveRefused", refused.format(server_name, "it does not exist"), stalled=True, retry_after=30)
    if server.cordoned:
        raise NotReady("MoveRefused", refused.format(server_name, "it is cordoned (spec.cordoned)"), stalled=True,
                       retry_after=60)

    def labels() -> Mapping[str, str]:
        body = ctx.kube.get("v1", "Namespace", db.namespace) or {}
        return (body.get("metadata") or {}).get("labels") or {}

    if not namespace_allowed(server, db.namespace, labels):
        raise NotReady("MoveRefused", refused.format(server_name, f"it does not allow namespace {db.namespace!r} "
                       "(its spec.allowedNamespaces)"), stalled=True, retry_after=60)
    problems: dict[str, Exception] = {}
    usage = _usage(server, ctx, problems)
    count = ctx.registry.database_count(server_name)
    if usage is None or count is None:
        problem = problems.get(server_name)
        why = problem.message if isinstance(problem, NotReady) else str(problem or "not measured")
        raise NotReady("ServerUnavailable", f"cannot move the database to {server_name!r} now: {why}; retrying",
                       retry_after=ctx.settings.retry_max_seconds)
    if server.max_databases is not None and count >= server.max_databases:
        raise NotReady("MoveRefused", refused.format(server_name, f"it holds {count} of at most "
                       f"{server.max_databases} databases"), stalled=True, retry_after=60)
    used = usage.bytes_used or 0
    if server.max_storage is not None and used + size_bytes > server.max_storage:
        raise NotReady("MoveRefused", refused.format(server_name, f"it uses {human_bytes(used)} of at most "
                       f"{human_bytes(server.max_storage)} and the database takes {human_bytes(size_bytes)}"),
                       stalled=True, retry_after=60)
