"""The PostgresServer kind: observing one (reachable?, version, database count), who may use it
(spec.allowedNamespaces), and resolving the server an OdooDatabase lives on to an admin connection.

Not here: the SQL itself (pg.py), what is done on a server for a database (odoodatabase_create.py,
odoodatabase_delete.py), the loop that calls `check` (handlers.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from odoo_operator import API_VERSION, pg, specs
from odoo_operator.api.conditions import Condition, now_iso, summary
from odoo_operator.api.model import PostgresServer, SpecError, parse_postgres_server
from odoo_operator.controller import templates
from odoo_operator.controller.base import Context, NotReady, decode
from odoo_operator.kube import KubeError
from odoo_operator.runtime.registry import Registry

log = logging.getLogger(__name__)


def check(body: Mapping[str, Any], ctx: Context) -> tuple[dict[str, Any], list[Condition]]:
    """Status fields and conditions of one PostgresServer, from a real connection."""
    name = body["metadata"]["name"]
    status: dict[str, Any] = {"lastCheckTime": now_iso()}
    try:
        server = parse_postgres_server(body)
        address, _ = server_address(name, ctx)
        with pg.connect(address) as conn:
            version, count = pg.server_info(conn)
            present = pg.database_names(conn)
            status["templates"] = _templates(ctx, conn, server, address)
    except SpecError as exc:
        return status | {"phase": "Failed", "reachable": False}, _stalled("InvalidSpec", str(exc))
    except NotReady as exc:
        return status | {"phase": "Failed", "reachable": False}, _not_ready(exc.reason, exc.message)
    except pg.PostgresUnavailable as exc:
        return status | {"phase": "Unreachable", "reachable": False}, _not_ready(
            "Unreachable", f"cannot connect to {server.host}:{server.port}: {exc}")
    status.update({"phase": "Ready", "reachable": True, "serverVersion": version, "databaseCount": count})
    # Drift: a database dropped behind the operator's back wakes its OdooDatabase, which reports it
    # (DatabaseMissing) — one query per server and check, not one per database.
    for key in ctx.registry.newly_missing(name, present):
        ctx.registry.wake(key)
    message = f"PostgreSQL {version} reachable, {count} database(s)"
    if server.max_databases is not None:
        message += f" of at most {server.max_databases}"
    defaults = ctx.registry.default_servers()
    if server.default and len(defaults) > 1:
        return status, _stalled("MultipleDefaults", f"several servers are marked default: {', '.join(defaults)}; "
                                "keep one")
    return status, list(summary("ready", "Reachable", message))


def _templates(ctx: Context, conn: Any, server: PostgresServer, address: pg.ServerAddress) -> list[dict[str, Any]]:
    """Its template databases moved on (templates.py); a failure there is logged, never the server's."""
    endpoint = specs.app.DatabaseEndpoint(server.host, server.port, server.ssl_mode)
    try:
        return templates.advance(ctx, conn, server, address, endpoint)
    except (KubeError, psycopg.Error) as exc:
        log.warning("templates of PostgresServer %s: %s", server.name, exc)
        return []


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels, as the API server evaluates it ({}: everything)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


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

def resolve_server_name(spec_server: str | None, status_server: str | None, registry: Registry,
                        refresh: Callable[[], None] | None = None) -> str:
    """The server a database lives on: recorded in status once created, else spec, else the default."""
    if status_server:
        return status_server
    if spec_server:
        return spec_server
    defaults = registry.default_servers()
    if not defaults and refresh is not None:
        refresh()  # just started: the PostgresServer watch may not have delivered them yet
        defaults = registry.default_servers()
    if len(defaults) == 1:
        return defaults[0]
    if not defaults:
        raise NotReady("ServerNotFound", "no default PostgresServer exists; create one with spec.default: true "
                       "or set spec.server", retry_after=30)
    raise NotReady("ServerNotFound", f"several PostgresServers are marked default ({', '.join(defaults)}); "
                   "keep one or set spec.server", stalled=True, retry_after=60)


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
