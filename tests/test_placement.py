"""Placement of new OdooDatabases on a pool of PostgresServers (controller/postgresserver.place): the eligible
server with the most free capacity, cordoned servers skipped, spec.serverSelector pools, NoCapacity naming the
pool, kill-safety (a database made before a crash stays where it is) and the choice kept in status.server.
Over the fake API server and PostgreSQL of tests/fakes.py; the real thing, with two PostgreSQL servers, is
tests/test_placement_e2e.py."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fakes import NAMESPACE, FakeDatabase, World, database_body
from odoo_operator.controller import odoodatabase, odoodatabase_delete, postgresserver
from odoo_operator.controller.base import NotReady
from odoo_operator.runtime.registry import ServerUsage


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return World(monkeypatch)


def server(world: World, name: str, databases: int = 0, bytes_used: int = 0, labels: dict[str, str] | None = None,
           default: bool = True, **spec: Any) -> None:
    """A PostgresServer with its admin Secret, and its usage as a check measured it."""
    body = world.add_server(name, default=default, **spec)
    body["metadata"]["labels"] = labels or {}
    world.kube.put(body)
    world.registry.record_server(body, deleted=False)
    world.registry.record_usage(name, ServerUsage(databases, frozenset(), bytes_used, time.monotonic()))


def place(world: World, name: str, **spec: Any) -> str:
    return postgresserver.place(odoodatabase.Reconciler(world.add(database_body(name, **spec)), world.ctx).parse(),
                                world.ctx)


def test_the_server_with_the_most_free_capacity_and_each_choice_counts(world: World) -> None:
    server(world, "a", databases=5, maxDatabases=10)
    server(world, "b", databases=2, maxDatabases=10)
    # b: 8/10 free, then 7, 6, 5 — a tie with a (5/10) broken by the count, then the name.
    assert [place(world, f"db{i}") for i in range(5)] == ["b", "b", "b", "a", "b"]


def test_storage_counts_like_databases_and_the_tighter_limit_wins(world: World) -> None:
    server(world, "a", databases=1, bytes_used=900 << 20, maxDatabases=100, maxStorage="1Gi")  # 12% of bytes free
    server(world, "b", databases=50, bytes_used=0, maxDatabases=100, maxStorage="1Gi")  # 50% of databases free
    assert place(world, "one") == "b"


def test_a_cordoned_server_gets_nothing_and_servers_without_limits_take_the_fewest_first(world: World) -> None:
    server(world, "empty", databases=0, cordoned=True)
    server(world, "busy", databases=30)
    server(world, "quiet", databases=10)
    assert place(world, "one") == "quiet"
    world.registry.record_usage("quiet", ServerUsage(31, frozenset(), 0, time.monotonic()))
    assert place(world, "two") == "busy"


def test_server_selector_is_a_pool_of_its_own(world: World) -> None:
    server(world, "std", databases=0)
    server(world, "gold-1", databases=4, labels={"tier": "gold"}, default=False)
    server(world, "gold-2", databases=3, labels={"tier": "gold"}, default=False)
    assert place(world, "one", serverSelector={"matchLabels": {"tier": "gold"}}) == "gold-2"
    assert place(world, "two", serverSelector={"matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["gold"]}]}) in ("gold-1", "gold-2")
    assert place(world, "three") == "std"
    with pytest.raises(NotReady, match="no PostgresServer is in the pool of spec.serverSelector") as none:
        place(world, "four", serverSelector={"matchLabels": {"tier": "platinum"}})
    assert none.value.reason == "ServerNotFound"


def test_a_full_pool_is_stalled_naming_the_pool_and_each_servers_limit(world: World) -> None:
    server(world, "a", databases=2, maxDatabases=2)
    server(world, "b", databases=0, bytes_used=2 << 30, maxStorage="2Gi")
    server(world, "c", databases=0, cordoned=True)
    with pytest.raises(NotReady) as full:
        place(world, "one")
    assert (full.value.reason, full.value.stalled) == ("NoCapacity", True)
    assert full.value.message == (
        "no server of the default pool (PostgresServers with spec.default: true) can take a new database: a holds 2 "
        "of at most 2 databases; b uses 2.0 GiB of at most 2.0 GiB; c is cordoned. Add a server to the pool, raise "
        "its limits or uncordon one")


def test_a_database_made_before_a_crash_stays_on_its_server(world: World) -> None:
    """Killed between CREATE DATABASE and its status write: the next pass finds it by its marker's uid instead
    of placing it again elsewhere (which would orphan the first)."""
    server(world, "a", databases=0, maxDatabases=10)
    server(world, "b", databases=9, maxDatabases=10)
    body = world.add(database_body("shop"))
    world.pg.databases["shop"] = FakeDatabase("r", {"uid": body["metadata"]["uid"]})
    world.registry.record_usage("b", ServerUsage(9, frozenset({"shop"}), 0, time.monotonic()))
    db = odoodatabase.Reconciler(body, world.ctx).parse()
    assert postgresserver.place(db, world.ctx) == "b"


def test_the_choice_is_kept_in_status_and_never_changes_by_itself(world: World) -> None:
    server(world, "a", databases=0, maxDatabases=10)
    server(world, "b", databases=5, maxDatabases=10)
    outcome, body = world.reconcile(odoodatabase.reconcile, world.add(database_body("shop")))
    assert body["status"]["server"] == "a" and world.registry.placements[(NAMESPACE, "shop")] == ("a", "shop")
    world.registry.record_usage("a", ServerUsage(10, frozenset({"shop"}), 0, time.monotonic()))  # a is full now
    outcome, body = world.reconcile(odoodatabase.reconcile, body)
    assert body["status"]["server"] == "a" and outcome.ready.reason != "NoCapacity"


def test_a_deletion_before_any_status_finds_the_database_by_its_marker(world: World) -> None:
    server(world, "a", databases=0, maxDatabases=10)
    server(world, "b", databases=1, maxDatabases=10)
    body = world.add(database_body("shop", deletionPolicy="Delete"))
    world.pg.databases["shop"] = FakeDatabase("r", {"managedBy": "odoo-db-operator", "namespace": NAMESPACE,
                                                    "name": "shop", "uid": body["metadata"]["uid"]})
    world.registry.record_usage("b", ServerUsage(1, frozenset({"shop"}), 0, time.monotonic()))
    world.pg.connections.clear()

    odoodatabase_delete.honour_policy(body, world.ctx)

    assert "shop" not in world.pg.databases
    assert {c.server.host for c in world.pg.connections} == {"b.db.example"}
