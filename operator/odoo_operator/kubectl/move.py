"""kubectl odoo move DB SERVER (spec.server set: the operator moves the database) and kubectl odoo drain SERVER
(the server cordoned, each of its databases moved to the server of its pool with the most free capacity)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.model import selector_matches
from odoo_operator.kubectl.connection import Connection, patch_database
from odoo_operator.kubectl.support import PLUGIN, PluginError, parse_timeout, wait_for

FINISHED = ("Done", "Failed", "Cancelled")


def _server_plan(server: str) -> Any:
    def plan(obj: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if spec.get("server") == server and status.get("server") == server:
            return None, f"{obj['metadata']['name']} is on {server} already; nothing to do"
        if spec.get("server") == server:
            return None, f"{obj['metadata']['name']} is already being moved to {server}"
        return {"spec": {"server": server}}, (f"{obj['metadata']['name']}: spec.server {status.get('server') or '?'} "
                                              f"-> {server} (the app stops while the database is copied)")
    return plan


def _moved(name: str, server: str) -> Any:
    def done(body: dict[str, Any] | None) -> bool:
        if body is None:
            raise PluginError(f"{name} was deleted while waiting")
        status = body.get("status") or {}
        move = status.get("move") or {}
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        if ready.get("reason") in ("MoveRefused", "MoveFailed"):
            raise PluginError(f"{name}: {ready.get('message')}")
        return status.get("server") == server and move.get("phase") == "Done"
    return done


def _describe(body: dict[str, Any] | None) -> str:
    move = ((body or {}).get("status") or {}).get("move") or {}
    return f"move {move.get('phase') or 'not started'}"


def cmd_move(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    if conn.kube.get(API_VERSION, "PostgresServer", args.server) is None:
        raise PluginError(f"PostgresServer {args.server!r} not found")
    changed, message = patch_database(conn, namespace, args.database, _server_plan(args.server), "moving it")
    print(message)
    if args.wait and (changed or "being moved" in message):
        final = wait_for(lambda: conn.kube.get(API_VERSION, "OdooDatabase", args.database, namespace),
                         _moved(args.database, args.server), parse_timeout(args.timeout),
                         f"{args.database} to move to {args.server}", _describe) or {}
        move = (final.get("status") or {}).get("move") or {}
        print(f"{args.database} moved to {args.server}" + (
            f" (the app was down {move['downtimeSeconds']} s)" if move.get("downtimeSeconds") is not None else ""))
    return 0


def choose(database: Mapping[str, Any], servers: list[dict[str, Any]], leaving: str,
           planned: dict[str, int]) -> str | None:
    """The server of the database's pool (spec.serverSelector's matchLabels, else the default servers) with
    the most free capacity, as the servers' status reports it (plus the moves planned by this drain):
    cordoned ones and `leaving` excluded. None: no server can take it."""
    selector = (database.get("spec") or {}).get("serverSelector")
    best: tuple[float, str] | None = None
    for server in servers:
        name, spec, status = server["metadata"]["name"], server.get("spec") or {}, server.get("status") or {}
        labels = server["metadata"].get("labels") or {}
        in_pool = selector_matches(selector, labels) if selector is not None else bool(spec.get("default"))
        if name == leaving or not in_pool or spec.get("cordoned") or not status.get("reachable"):
            continue
        count = int(status.get("databaseCount") or 0) + planned.get(name, 0)
        limit = spec.get("maxDatabases")
        if limit is not None and count >= int(limit):
            continue
        share = 1 - count / int(limit) if limit else 1.0
        candidate = (-share, name) if limit else (-1.0 + count * 1e-9, name)
        if best is None or candidate < best:
            best = candidate
    return best[1] if best else None


def cmd_drain(args: argparse.Namespace) -> int:
    conn = Connection(args)
    if conn.kube.get(API_VERSION, "PostgresServer", args.server) is None:
        raise PluginError(f"PostgresServer {args.server!r} not found")
    conn.kube.merge_patch(API_VERSION, "PostgresServer", args.server, None, {"spec": {"cordoned": True}},
                          field_manager=PLUGIN)
    print(f"postgresserver.odoo.dbmanager.io/{args.server} cordoned: no new database is placed on it")
    servers = conn.kube.list(API_VERSION, "PostgresServer")
    databases = [d for d in conn.kube.list(API_VERSION, "OdooDatabase")
                 if (d.get("status") or {}).get("server") == args.server and not d["metadata"].get("deletionTimestamp")]
    planned: dict[str, int] = {}
    stuck: list[str] = []
    moving: list[tuple[str, str, str]] = []
    for database in sorted(databases, key=lambda d: (d["metadata"]["namespace"], d["metadata"]["name"])):
        namespace, name = database["metadata"]["namespace"], database["metadata"]["name"]
        target = choose(database, servers, args.server, planned)
        if target is None:
            stuck.append(f"{namespace}/{name}")
            continue
        planned[target] = planned.get(target, 0) + 1
        _, message = patch_database(conn, namespace, name, _server_plan(target), "moving it")
        print(f"{namespace}/{message}")
        moving.append((namespace, name, target))
    if stuck:
        print(f"no server of their pool can take: {', '.join(stuck)}; add or uncordon a server, then drain again")
    if args.wait:
        timeout = parse_timeout(args.timeout)
        for namespace, name, target in moving:
            wait_for(lambda ns=namespace, n=name: conn.kube.get(API_VERSION, "OdooDatabase", n, ns),  # type: ignore[misc]
                     _moved(name, target), timeout, f"{namespace}/{name} to move to {target}", _describe)
        print(f"{args.server} drained: {len(moving)} database(s) moved")
    return 1 if stuck else 0
