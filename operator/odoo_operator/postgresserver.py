"""Observing a PostgresServer: reachable?, version, database count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import pg
from .conditions import Condition, now_iso, summary
from .model import SpecError, parse_postgres_server
from .odoodatabase import Context, NotReady, server_address


def check(body: Mapping[str, Any], ctx: Context) -> tuple[dict[str, Any], list[Condition]]:
    """Status fields and conditions of one PostgresServer, from a real connection."""
    name = body["metadata"]["name"]
    status: dict[str, Any] = {"lastCheckTime": now_iso()}
    try:
        server = parse_postgres_server(body)
        address, _ = server_address(name, ctx)
        with pg.connect(address) as conn:
            version, count = pg.server_info(conn)
    except SpecError as exc:
        return status | {"phase": "Failed", "reachable": False}, _stalled("InvalidSpec", str(exc))
    except NotReady as exc:
        return status | {"phase": "Failed", "reachable": False}, _not_ready(exc.reason, exc.message)
    except pg.PostgresUnavailable as exc:
        return status | {"phase": "Unreachable", "reachable": False}, _not_ready(
            "Unreachable", f"cannot connect to {body['spec'].get('host')}:{body['spec'].get('port', 5432)}: {exc}")
    status.update({"phase": "Ready", "reachable": True, "serverVersion": version, "databaseCount": count})
    message = f"PostgreSQL {version} reachable, {count} database(s)"
    if server.max_databases is not None:
        message += f" of at most {server.max_databases}"
    defaults = ctx.registry.default_servers()
    if server.default and len(defaults) > 1:
        return status, _stalled("MultipleDefaults", f"several servers are marked default: {', '.join(defaults)}; "
                                "keep one")
    return status, list(summary("ready", "Reachable", message))


def _not_ready(reason: str, message: str) -> list[Condition]:
    return list(summary("progressing", reason, message))


def _stalled(reason: str, message: str) -> list[Condition]:
    return list(summary("stalled", reason, message))
