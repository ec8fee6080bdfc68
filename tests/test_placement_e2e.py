"""Placement on two real PostgreSQL servers (the session's and a second one started here), through the
operator and the API server: a pool chosen by labels, databases spread by free capacity until the pool is
full (then Stalled NoCapacity naming the pool), a cordoned server skipped, and each database really made on
the server its status names, with its Secret pointing there. The placement rules step by step:
tests/test_placement.py."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conftest import condition, get_json, odoo_database, wait_until
from odoo_operator.devtools.localcluster import LocalCluster, Postgres

pytestmark = pytest.mark.e2e
SYSTEM = "odoo-system"


def server(cluster: LocalCluster, name: str, pg: Postgres, pool: str, **spec: Any) -> None:
    """A PostgresServer of the pool `pool` (a label, not the default pool: other tests' databases stay away)."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-admin", "namespace": SYSTEM},
              "data": {"username": base64.b64encode(pg.user.encode()).decode(),
                       "password": base64.b64encode(pg.password.encode()).decode()}}
    body = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "PostgresServer",
            "metadata": {"name": name, "labels": {"test.odoo.dbmanager.io/pool": pool}},
            "spec": {"host": "127.0.0.1", "port": pg.port, "sslMode": "disable",
                     "adminSecretRef": {"namespace": SYSTEM, "name": f"{name}-admin"}, **spec}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": [secret, body]}))


def database_count(cluster: LocalCluster, name: str) -> int:
    """The server's database count once its first check reported it."""
    def counted() -> int | None:
        status = get_json(cluster, "pgs", name).get("status") or {}
        return status.get("databaseCount") if status.get("reachable") else None

    wait_until(lambda: counted() is not None, 60, f"{name} checked")
    return int(counted() or 0)


def databases_on(pg: Postgres) -> set[str]:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def placed(cluster: LocalCluster, namespace: str, name: str) -> str:
    return str(wait_until(lambda: (get_json(cluster, "odb", name, "-n", namespace).get("status") or {}).get(
        "createdAt") and get_json(cluster, "odb", name, "-n", namespace)["status"]["server"], 90, f"{name} placed"))


@pytest.fixture
def pool(cluster: LocalCluster) -> Iterator[str]:
    name = uuid.uuid4().hex[:6]
    yield name
    cluster.kubectl("delete", "pgs", "-l", f"test.odoo.dbmanager.io/pool={name}", "--wait=false", check=False)


def test_a_pool_fills_its_servers_by_free_capacity_then_says_it_is_full(
        cluster: LocalCluster, operator: Any, namespace: str, second_postgres: Postgres, pool: str) -> None:
    assert cluster.postgres is not None
    first, second = f"pa-{pool}", f"pb-{pool}"
    server(cluster, first, cluster.postgres, pool)
    server(cluster, second, second_postgres, pool)
    # Two free places on each: whatever each holds already, each ends up with two of the four new databases.
    for name in (first, second):
        count = database_count(cluster, name)
        cluster.kubectl("patch", "pgs", name, "--type=merge", "-p", json.dumps({"spec": {"maxDatabases": count + 2}}))
    selector = {"matchLabels": {"test.odoo.dbmanager.io/pool": pool}}
    names = [f"p{i}-{pool}" for i in range(4)]
    cluster.kubectl("apply", "-f", "-", input="---\n".join(
        odoo_database(name, namespace, serverSelector=selector) for name in names))  # at once
    where = {name: placed(cluster, namespace, name) for name in names}
    assert sorted(where.values()) == sorted([first, first, second, second]), where
    for name, on in where.items():
        pg = cluster.postgres if on == first else second_postgres
        assert name in databases_on(pg)  # made where its status says
        data = get_json(cluster, "secret", f"{name}-db", "-n", namespace)["data"]
        assert base64.b64decode(data["port"]).decode() == str(pg.port)

    cluster.kubectl("apply", "-f", "-", input=odoo_database(f"p4-{pool}", namespace, serverSelector=selector))

    def stalled() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", f"p4-{pool}", "-n", namespace)
        return obj if condition(obj, "Ready").get("reason") == "NoCapacity" else None

    full = wait_until(stalled, 60, "NoCapacity")
    assert condition(full, "Stalled")["status"] == "True"
    message = condition(full, "Ready")["message"]
    assert f'the pool of spec.serverSelector {{"matchLabels": {{"test.odoo.dbmanager.io/pool": "{pool}"}}}}' \
        in message and f"{first} holds" in message and f"{second} holds" in message, message
    assert not (full.get("status") or {}).get("server")
    for name in [*names, f"p4-{pool}"]:
        cluster.kubectl("delete", "odb", name, "-n", namespace, "--timeout=90s")
    assert not set(names) & databases_on(second_postgres)


def test_a_cordoned_server_gets_no_new_database(
        cluster: LocalCluster, operator: Any, namespace: str, second_postgres: Postgres, pool: str) -> None:
    assert cluster.postgres is not None
    busy, idle = f"pa-{pool}", f"pb-{pool}"
    server(cluster, busy, cluster.postgres, pool)  # the session's server: many databases
    server(cluster, idle, second_postgres, pool, cordoned=True)  # the fewest databases, but cordoned
    for name in (busy, idle):
        database_count(cluster, name)
    selector = {"matchLabels": {"test.odoo.dbmanager.io/pool": pool}}
    cluster.kubectl("apply", "-f", "-", input=odoo_database(f"c1-{pool}", namespace, serverSelector=selector))
    assert placed(cluster, namespace, f"c1-{pool}") == busy
    assert "cordoned" in condition(get_json(cluster, "pgs", idle), "Ready")["message"]

    cluster.kubectl("patch", "pgs", idle, "--type=merge", "-p", '{"spec": {"cordoned": false}}')
    wait_until(lambda: "cordoned" not in condition(get_json(cluster, "pgs", idle), "Ready")["message"], 60,
               "the server's check to see it uncordoned")
    cluster.kubectl("apply", "-f", "-", input=odoo_database(f"c2-{pool}", namespace, serverSelector=selector))
    assert placed(cluster, namespace, f"c2-{pool}") == idle
    assert f"c2-{pool}" in databases_on(second_postgres) and f"c1-{pool}" not in databases_on(second_postgres)
    for name in (f"c1-{pool}", f"c2-{pool}"):
        cluster.kubectl("delete", "odb", name, "-n", namespace, "--timeout=90s")
