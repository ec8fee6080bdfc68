"""PostgresServer over a fake API server and a fake PostgreSQL (tests/fakes.py): the status its check
returns (postgresserver.check(body, ctx)) when it is reachable, unreachable, without credentials or
invalid, and who may use it (spec.allowedNamespaces, seen from an OdooDatabase's reconcile)."""

from __future__ import annotations

from typing import Any

import pytest

from fakes import NAMESPACE, SERVER, FakeDatabase, World, b64, database_body
from odoo_operator.api.conditions import Condition
from odoo_operator.controller import odoodatabase, postgresserver


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return World(monkeypatch)


def check(world: World, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Condition]]:
    fields, conditions = postgresserver.check(body, world.ctx)
    return fields, {c.type: c for c in conditions}


def test_a_reachable_server_reports_its_version_databases_and_bytes(world: World) -> None:
    body = world.add_server(maxDatabases=50, maxStorage="1Gi", cordoned=True)
    world.pg.databases.update({"a": FakeDatabase("r", None, size=3 << 20), "b": FakeDatabase("r", None, size=1 << 20)})

    fields, conditions = check(world, body)

    assert fields["phase"] == "Ready" and fields["reachable"] is True
    assert (fields["serverVersion"], fields["databaseCount"]) == ("15.8", 2)
    assert (fields["bytesUsed"], fields["bytesFree"]) == (4 << 20, (1 << 30) - (4 << 20))
    assert fields["lastCheckTime"]
    ready = conditions["Ready"]
    assert (ready.status, ready.reason) == ("True", "Reachable")
    assert ready.message == ("PostgreSQL 15.8 reachable, 2 database(s) of at most 50, 4.0 MiB of at most 1.0 GiB; "
                             "cordoned: no new database is placed on it")
    assert conditions["Stalled"].status == "False" and conditions["Reconciling"].status == "False"
    assert world.pg.called("connect") == [("postgres", "postgres")]  # as the admin of its Secret


def test_an_unreachable_server_is_progressing_not_stalled(world: World) -> None:
    body = world.add_server()
    world.pg.reachable = False

    fields, conditions = check(world, body)

    assert (fields["phase"], fields["reachable"]) == ("Unreachable", False)
    assert "serverVersion" not in fields
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("False", "Unreachable")
    assert conditions["Reconciling"].status == "True" and conditions["Stalled"].status == "False"
    assert "main.db.example:5432" in conditions["Ready"].message


def test_a_server_whose_admin_secret_is_missing(world: World) -> None:
    body = world.add_server(credentials=False)

    fields, conditions = check(world, body)

    assert (fields["phase"], fields["reachable"]) == ("Failed", False)
    assert conditions["Ready"].reason == "ServerCredentialsMissing"
    assert "odoo-system/main-admin" in conditions["Ready"].message
    assert world.pg.calls == []


def test_a_server_whose_admin_secret_lacks_the_password(world: World) -> None:
    body = world.add_server(credentials=False)
    world.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "main-admin", "namespace": "odoo-system"},
               "data": {"username": b64("postgres")}})

    _, conditions = check(world, body)

    assert conditions["Ready"].reason == "ServerCredentialsMissing"


def test_the_admin_credentials_are_read_once_then_cached(world: World) -> None:
    body = world.add_server()
    check(world, body)
    check(world, body)

    assert len(world.kube.calls_of("get", "Secret")) == 1


def test_an_invalid_server_spec_is_stalled(world: World) -> None:
    body = world.add({"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "PostgresServer",
                      "metadata": {"name": "broken"}, "spec": {"port": 5432}})

    fields, conditions = check(world, body)

    assert (fields["phase"], fields["reachable"]) == ("Failed", False)
    assert (conditions["Stalled"].status, conditions["Stalled"].reason) == ("True", "InvalidSpec")
    assert world.pg.calls == []


def test_several_default_servers_are_one_pool(world: World) -> None:
    body = world.add_server()
    world.add_server("second")

    fields, conditions = check(world, body)

    assert fields["reachable"] is True and conditions["Ready"].status == "True"
    assert conditions["Stalled"].status == "False"


def test_the_sizes_are_measured_at_most_every_size_refresh(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_database_size stats every file of every database: not at each 15 s check."""
    clock = [1000.0]
    monkeypatch.setattr(postgresserver.time, "monotonic", lambda: clock[0])
    body = world.add_server()
    check(world, body)
    clock[0] += world.settings.size_refresh_seconds - 1
    world.pg.databases["a"] = FakeDatabase("r", None, size=5 << 20)
    fields, _ = check(world, body)
    assert len(world.pg.called("database_sizes")) == 1 and fields["databaseCount"] == 1 and fields["bytesUsed"] == 0
    clock[0] += 1
    fields, _ = check(world, body)
    assert len(world.pg.called("database_sizes")) == 2 and fields["bytesUsed"] == 5 << 20


# ---- spec.allowedNamespaces, as an OdooDatabase meets it --------------------------------------------

@pytest.mark.parametrize(("allowed", "labels", "expected"), [
    pytest.param(None, {}, True, id="no-restriction"),
    pytest.param({"names": [NAMESPACE]}, {}, True, id="listed"),
    pytest.param({"names": ["team-b"]}, {}, False, id="not-listed"),
    pytest.param({"selector": {"matchLabels": {"tier": "gold"}}}, {"tier": "gold"}, True, id="selector-matches"),
    pytest.param({"selector": {"matchLabels": {"tier": "gold"}}}, {"tier": "free"}, False, id="selector-differs"),
    pytest.param({"names": ["team-b"], "selector": {"matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["gold", "silver"]}]}}, {"tier": "silver"}, True,
        id="expression-matches"),
    pytest.param({"selector": {"matchExpressions": [{"key": "sandbox", "operator": "DoesNotExist"}]}},
                 {"sandbox": "yes"}, False, id="expression-differs"),
])
def test_allowed_namespaces(world: World, allowed: dict[str, Any] | None, labels: dict[str, str],
                            expected: bool) -> None:
    spec: dict[str, Any] = {"allowedNamespaces": allowed} if allowed is not None else {}
    world.add_server(**spec)
    world.add_namespace(**labels)

    outcome, _ = world.reconcile(odoodatabase.reconcile, world.add(database_body()))

    if expected:
        assert (outcome.phase, outcome.ready.reason) == ("Provisioning", "Initializing")
        assert "shop" in world.pg.databases
    else:
        assert (outcome.phase, outcome.ready.reason, outcome.stalled.status) == ("Pending", "ServerNotAllowed", "True")
        assert f"{SERVER!r}" in outcome.stalled.message and world.pg.calls == []
        assert world.kube.find("Secret", "shop-db") is None


def test_a_database_dropped_behind_our_back_wakes_its_odoodatabase_once(world: World) -> None:
    """Drift is found by the server's check (one query for all its databases), not by each database."""
    server = world.add_server()
    body = world.add(database_body())
    odoodatabase.reconcile(body, world.ctx)
    assert world.registry.placements[(NAMESPACE, "shop")] == (SERVER, "shop")
    woken: list[tuple[str, str]] = []
    world.registry.wake = woken.append  # type: ignore[method-assign]

    world.pg.calls.clear()
    check(world, server)
    assert woken == [] and world.pg.called("database_names") == [()]
    del world.pg.databases["shop"]
    check(world, server)
    check(world, server)  # reported once: its pass says DatabaseMissing, nothing to wake again
    assert woken == [(NAMESPACE, "shop")]
    outcome = odoodatabase.reconcile(body | {"status": {"createdAt": "2026-01-01T00:00:00Z",
                                                        "databaseName": "shop"}}, world.ctx)
    assert outcome.ready.reason == "DatabaseMissing"
    world.registry.forget_database(NAMESPACE, "shop")
    assert (NAMESPACE, "shop") not in world.registry.placements and not world.registry.missing


def test_sizes_are_measured_by_the_server_and_wake_only_the_databases_that_grew(world: World,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """status.sizeBytes of every database of a server from one query (each size_refresh_seconds); an
    OdooDatabase whose size did not change is not woken and its pass writes no new size."""
    clock = [1000.0]
    monkeypatch.setattr(postgresserver.time, "monotonic", lambda: clock[0])
    server = world.add_server()
    bodies = {}
    for name in ("idle", "busy"):
        body = world.add(database_body(name))
        outcome = odoodatabase.reconcile(body, world.ctx)
        bodies[name] = body | {"status": outcome.status}
        world.registry.show_database((NAMESPACE, name), bodies[name])  # its loop runs, the watch shows it
    assert bodies["idle"]["status"]["sizeBytes"] == 8_000_000  # its first pass measured it itself
    woken: list[tuple[str, str]] = []
    world.registry.wake = woken.append  # type: ignore[method-assign]

    world.pg.calls.clear()
    check(world, server)
    assert woken == [] and len(world.pg.called("database_sizes")) == 1
    world.pg.databases["busy"].size += 4 << 20
    world.pg.databases["idle"].size += 4096  # a page: not worth a status write
    clock[0] += world.settings.size_refresh_seconds - 1
    check(world, server)
    assert woken == [] and len(world.pg.called("database_sizes")) == 1  # not measured again yet
    clock[0] += 1
    check(world, server)
    assert woken == [(NAMESPACE, "busy")] and len(world.pg.called("database_sizes")) == 2

    # The woken pass writes the server's figure without measuring again; the idle one keeps its status.
    world.pg.calls.clear()
    busy = odoodatabase.reconcile(bodies["busy"], world.ctx)
    idle = odoodatabase.reconcile(bodies["idle"], world.ctx)
    assert busy.status["sizeBytes"] == 8_000_000 + (4 << 20) and world.pg.called("database_size") == []
    assert "sizeBytes" not in idle.status and "sizeUpdatedAt" not in idle.status  # its status keeps them
