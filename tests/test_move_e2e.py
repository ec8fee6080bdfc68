"""Moving a database between two real PostgreSQL servers (the session's and a second one started here),
through the operator and the API server: `kubectl odoo move` sets spec.server; the rows its role wrote are on
the target, the source database and role are dropped, the Secret points at the target, the downtime is
reported; a move to a cordoned or full server is refused and the database keeps serving; the operator
SIGKILLed at each step of the move loses nothing. The steps one by one: tests/test_move.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import OperatorProcess, condition, get_json, odoo_database, pg_query, wait_until
from odoo_operator.api.model import role_name
from odoo_operator.devtools.localcluster import LocalCluster, Postgres
from test_kubectl import kodoo, ok
from test_lifecycle import events, secret_data, wait_ready, wait_reason
from test_placement_e2e import database_count, databases_on, server
from test_reliability import rows_in, write_rows

pytestmark = pytest.mark.e2e


@pytest.fixture
def pair(cluster: LocalCluster, namespace: str, second_postgres: Postgres) -> Iterator[tuple[str, str, str]]:
    """Two PostgresServers of a pool of their own: (pool, source on the session's server, target on the second)."""
    assert cluster.postgres is not None
    pool = uuid.uuid4().hex[:6]
    source, target = f"ma-{pool}", f"mb-{pool}"
    server(cluster, source, cluster.postgres, pool)
    server(cluster, target, second_postgres, pool)
    for name in (source, target):
        database_count(cluster, name)
    yield pool, source, target
    # The databases first (their deletion needs their server), then the servers.
    cluster.kubectl("delete", "odb", "--all", "-n", namespace, "--timeout=90s", check=False, timeout=120)
    cluster.kubectl("delete", "pgs", "-l", f"test.odoo.dbmanager.io/pool={pool}", "--wait=false", check=False)


def roles_on(dsn: str, role: str) -> int:
    return int(pg_query(dsn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", role)[0][0])


def moved(cluster: LocalCluster, name: str, namespace: str, timeout: float = 180) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", name, "-n", namespace)
        move = (obj.get("status") or {}).get("move") or {}
        return obj if move.get("phase") == "Done" and move.get("downtimeSeconds") is not None else None
    return dict(wait_until(done, timeout, f"{name} moved"))


def a_database_with_rows(cluster: LocalCluster, namespace: str, name: str, source: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=odoo_database(name, namespace, server=source))
    wait_ready(cluster, name, namespace, timeout=180)
    write_rows(cluster, name, namespace)  # as the database's own role, through its Secret


def check_moved(cluster: LocalCluster, second_postgres: Postgres, namespace: str, name: str, target: str) -> None:
    assert cluster.postgres is not None
    obj = moved(cluster, name, namespace)
    assert obj["status"]["server"] == target and obj["spec"]["server"] == target
    creds = secret_data(cluster, f"{name}-db", namespace)
    assert creds["port"] == str(second_postgres.port)  # the Secret points at the target
    assert rows_in(cluster, name, namespace) == 100  # through it: the rows are there
    assert name in databases_on(second_postgres) and name not in databases_on(cluster.postgres)
    assert roles_on(cluster.postgres.dsn, role_name(namespace, name)) == 0  # the source's role went with it
    marker = json.loads(pg_query(second_postgres.dsn, "SELECT shobj_description(oid, 'pg_database') FROM "
                                 "pg_database WHERE datname = %s", name)[0][0])
    assert marker.get("initialized") and "moveTarget" not in marker and "movedFrom" not in marker
    wait_ready(cluster, name, namespace, timeout=120)


def test_a_database_moves_with_its_data_and_the_source_is_dropped(
        cluster: LocalCluster, operator: Any, namespace: str, second_postgres: Postgres,
        pair: tuple[str, str, str]) -> None:
    _, source, target = pair
    a_database_with_rows(cluster, namespace, "mover", source)
    out = ok(kodoo(cluster, "move", "mover", target, "-n", namespace, "--wait", "--timeout=5m", timeout=330))
    assert f"mover moved to {target}" in out and "the app was down" in out
    check_moved(cluster, second_postgres, namespace, "mover", target)
    move = get_json(cluster, "odb", "mover", "-n", namespace)["status"]["move"]
    assert move["from"] == source and move["downtimeSeconds"] >= 0
    print(f"\nmove of a small database: down {move['downtimeSeconds']} s, start to switch {move['durationSeconds']} s")
    moved_events = [e for e in events(cluster, namespace, "mover") if e[1] == "Moved"]
    assert moved_events and "down" in moved_events[0][2]
    assert "nothing to do" in ok(kodoo(cluster, "move", "mover", target, "-n", namespace))
    assert f"{source} -> {target}: Done, down" in ok(kodoo(cluster, "status", "mover", "-n", namespace))


@pytest.mark.parametrize("limit", [{"cordoned": True}, {"maxDatabases": 0}], ids=["cordoned", "full"])
def test_a_move_to_a_cordoned_or_full_server_is_refused_and_the_database_keeps_serving(
        cluster: LocalCluster, operator: Any, namespace: str, second_postgres: Postgres,
        pair: tuple[str, str, str], limit: dict[str, Any]) -> None:
    assert cluster.postgres is not None
    _, source, target = pair
    cluster.kubectl("patch", "pgs", target, "--type=merge", "-p", json.dumps({"spec": limit}))
    a_database_with_rows(cluster, namespace, "stay", source)
    cluster.kubectl("patch", "odb", "stay", "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"server": target}}))
    obj = wait_reason(cluster, "stay", namespace, "MoveRefused", timeout=90)
    message = condition(obj, "Ready")["message"]
    assert ("cordoned" if "cordoned" in limit else "at most 0 databases") in message, message
    assert "keeps being served" in message and condition(obj, "Stalled")["status"] == "True"
    assert obj["status"]["server"] == source and rows_in(cluster, "stay", namespace) == 100
    assert get_json(cluster, "deployment", "stay", "-n", namespace)["spec"]["replicas"] == 1
    assert "stay" not in databases_on(second_postgres)


def test_drain_cordons_a_server_and_moves_its_databases_to_its_pool(
        cluster: LocalCluster, operator: Any, namespace: str, second_postgres: Postgres,
        pair: tuple[str, str, str]) -> None:
    pool, source, target = pair
    selector = {"matchLabels": {"test.odoo.dbmanager.io/pool": pool}}
    for name in ("drained1", "drained2"):
        cluster.kubectl("apply", "-f", "-", input=odoo_database(name, namespace, server=source,
                                                                 serverSelector=selector))
    for name in ("drained1", "drained2"):
        wait_ready(cluster, name, namespace, timeout=180)
        write_rows(cluster, name, namespace)
    out = ok(kodoo(cluster, "drain", source, "--wait", "--timeout=5m", timeout=330))
    assert f"{source} drained: 2 database(s) moved" in out, out
    assert get_json(cluster, "pgs", source)["spec"]["cordoned"] is True
    for name in ("drained1", "drained2"):
        check_moved(cluster, second_postgres, namespace, name, target)


KILL_POINTS = ["move-after-stop", "move-after-create", "move-after-copy", "move-after-verify", "move-after-switch",
               "move-before-drop", "move-after-drop"]


@pytest.mark.reliability
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_move_survives_a_sigkill_at_each_step(
        cluster: LocalCluster, operator: OperatorProcess, namespace: str, second_postgres: Postgres,
        pair: tuple[str, str, str], point: str) -> None:
    _, source, target = pair
    name = "killed"
    a_database_with_rows(cluster, namespace, name, source)
    operator.kill()
    operator.env["ODOO_OPERATOR_FAILPOINTS"] = f"{point}@{namespace}"
    try:
        operator.start()
        cluster.kubectl("patch", "odb", name, "-n", namespace, "--type=merge", "-p",
                        json.dumps({"spec": {"server": target}}))
        wait_until(lambda: operator.process is not None and operator.process.poll() is not None, 180,
                   f"the operator to die at {point}")
        assert operator.process is not None and operator.process.returncode == 137
        assert f"failpoint {point}: exiting" in operator.log()
    finally:
        operator.env.pop("ODOO_OPERATOR_FAILPOINTS", None)
        operator.kill()
        operator.start()
    check_moved(cluster, second_postgres, namespace, name, target)
