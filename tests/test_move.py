"""Moving a database to another PostgresServer (controller/odoodatabase_move.py) step by step, over the fake
API server and two fake PostgreSQL servers: the target checked before anything stops (MoveRefused), the app
stopped, the copy made as the tenant's role and verified, the switch recorded before the app starts on the
target and before the source is dropped; a kill at each failpoint resumes without losing or serving a
half-copied database; a failed copy and a cancelled move put everything back. The same on two real servers
through the operator: tests/test_move_e2e.py."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from fakes import NAMESPACE, SERVER, FakeConnection, FakePostgres, World, condition
from odoo_operator import failpoints, pg
from odoo_operator.controller import odoodatabase
from odoo_operator.controller.base import Outcome
from test_controller_odoodatabase import ROLE, provisioned

TARGET = "second"
CONTENT = {"table public.res_partner": 3, "table public.notes": 2, "sequence public.res_partner_id_seq": [3, True]}
PER_CONNECTION = ("ensure_role", "database_info", "database_marker", "create_database", "ensure_private",
                  "database_size", "server_info", "set_database_marker", "copy_database", "copy_in_progress",
                  "rename_database", "reassign_owned", "terminate_connections", "drop_database", "drop_role",
                  "database_names", "template_databases", "ensure_template_role", "template_built",
                  "drop_template_role", "role_exists", "role_marker", "database_sizes")


class Killed(Exception):
    pass


class Servers:
    """Fake PostgreSQL servers by host: every pg function goes to the server its connection (or address)
    names. `content` holds what the tenant wrote, by (host, database); stream_copy copies it."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.world = world
        self.by_host: dict[str, FakePostgres] = {f"{SERVER}.db.example": world.pg}
        self.content: dict[tuple[str, str], dict[str, Any]] = {}
        self.copies: list[tuple[str, str, str, str]] = []  # (source host, user, target host, user)
        self.copy_fails: str | None = None
        self.corrupt = False
        for name in PER_CONNECTION:
            monkeypatch.setattr(pg, name, self._by_connection(name))
        monkeypatch.setattr(pg, "connect", lambda server, dbname="postgres": self.of(server).connect(server, dbname))
        monkeypatch.setattr(pg, "create_odoo_extensions", lambda server, dbname, role: self.of(
            server).create_odoo_extensions(server, dbname, role))
        monkeypatch.setattr(pg, "stream_copy", self.stream_copy)
        monkeypatch.setattr(pg, "content_summary", self.content_summary)
        monkeypatch.setattr(pg, "drop_role_if_unused", self.drop_role_if_unused)

    def add(self, name: str) -> FakePostgres:
        self.by_host[f"{name}.db.example"] = FakePostgres(journal=self.world.journal)
        return self.by_host[f"{name}.db.example"]

    def of(self, where: Any) -> FakePostgres:
        server = where.server if isinstance(where, FakeConnection) else where
        return self.by_host[server.host]

    def _by_connection(self, name: str) -> Any:
        def call(conn: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(self.of(conn), name)(conn, *args, **kwargs)
        return call

    def stream_copy(self, source: pg.ServerAddress, target: pg.ServerAddress, dbname: str) -> float:
        assert source.tenant and target.tenant
        self.world.journal.append(f"pg stream_copy {source.host}->{target.host}")
        self.copies.append((source.host, source.user, target.host, target.user))
        if self.copy_fails:
            raise pg.MoveCopyFailed(self.copy_fails)
        assert dbname in self.of(target).databases
        data = copy.deepcopy(self.content.get((source.host, dbname), {}))
        if self.corrupt:
            data["table public.notes"] = 1
        self.content[(target.host, dbname)] = data
        return 0.1

    def content_summary(self, server: pg.ServerAddress, dbname: str) -> dict[str, Any]:
        assert server.tenant and dbname in self.of(server).databases
        return copy.deepcopy(self.content.get((server.host, dbname), {}))

    def drop_role_if_unused(self, conn: FakeConnection, role: str, owner: dict[str, str]) -> bool:
        self.of(conn).drop_role(conn, role, owner)
        return True


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return World(monkeypatch)


@pytest.fixture
def servers(world: World, monkeypatch: pytest.MonkeyPatch) -> Servers:
    servers = Servers(world, monkeypatch)
    servers.add(TARGET)
    return servers


def run(world: World, body: dict[str, Any]) -> tuple[Outcome, dict[str, Any]]:
    return world.reconcile(odoodatabase.reconcile, body)


def stored(world: World) -> dict[str, Any]:
    found = world.kube.find("OdooDatabase", "shop")
    assert found is not None
    return copy.deepcopy(found)


def ready_with_data(world: World, servers: Servers, **spec: Any) -> dict[str, Any]:
    body = provisioned(world, **spec)
    servers.content[(f"{SERVER}.db.example", "shop")] = copy.deepcopy(CONTENT)
    world.add_server(TARGET, default=False)
    return body


def move_to(world: World, server: str) -> dict[str, Any]:
    found = world.kube.find("OdooDatabase", "shop")
    assert found is not None
    found["spec"]["server"] = server
    found["metadata"]["generation"] += 1
    return stored(world)


def replicas(world: World) -> int:
    deployment = world.kube.find("Deployment", "shop")
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def secret_host(world: World) -> str:
    secret = world.kube.find("Secret", "shop-db")
    assert secret is not None
    return base64.b64decode(secret["data"]["host"]).decode()


def assert_moved(world: World, servers: Servers) -> None:
    source, target = world.pg, servers.by_host[f"{TARGET}.db.example"]
    assert "shop" not in source.databases and ROLE not in source.roles
    marker = target.databases["shop"].marker or {}
    assert marker.get("initialized") and marker.get("version") == "17.0" and "movedFrom" not in marker
    assert "moveTarget" not in marker and marker.get("uid") == stored(world)["metadata"]["uid"]
    assert servers.content[(f"{TARGET}.db.example", "shop")] == CONTENT
    assert stored(world)["status"]["server"] == TARGET and secret_host(world) == f"{TARGET}.db.example"
    assert replicas(world) == 1


# ---- the move ----------------------------------------------------------------------------------------

def test_a_move_stops_the_app_copies_as_the_tenant_verifies_switches_then_drops_the_source(
        world: World, servers: Servers) -> None:
    ready_with_data(world, servers)
    body = move_to(world, TARGET)
    world.journal.clear()
    applied_before = len(world.kube.calls_of("apply", "Deployment"))

    outcome, body = run(world, body)

    journal = world.journal
    stop = journal.index("apply Deployment/shop")
    copied = journal.index(f"pg stream_copy {SERVER}.db.example->{TARGET}.db.example")
    switch = next(i for i, line in enumerate(journal) if line.startswith("patch_status OdooDatabase/shop"))
    start = max(i for i, line in enumerate(journal) if line == "apply Deployment/shop")
    dropped = journal.index("pg drop_database shop")
    assert stop < copied < switch < start < dropped, journal
    assert world.kube.calls_of("apply", "Deployment")[applied_before].body["spec"]["replicas"] == 0  # stopped first
    assert servers.copies == [(f"{SERVER}.db.example", ROLE, f"{TARGET}.db.example", ROLE)]  # never the admin
    assert ("shop", ROLE) in servers.by_host[f"{TARGET}.db.example"].called("create_odoo_extensions")
    assert_moved(world, servers)
    move = body["status"]["move"]
    assert (move["from"], move["to"], move["phase"]) == (SERVER, TARGET, "Done") and move["downSince"]
    assert [e[1] for e in outcome.events if e[1].startswith("Mov")] == ["Moving"]

    world.kube.make_available("shop")
    outcome, body = run(world, body)
    assert outcome.phase == "Ready" and body["status"]["move"]["downtimeSeconds"] >= 0
    assert [e for e in outcome.events if e[1] == "Moved"]
    outcome, body = run(world, body)
    assert not [e for e in outcome.events if e[1] == "Moved"]  # said once


def test_the_move_waits_for_the_apps_pods_to_stop(world: World, servers: Servers) -> None:
    ready_with_data(world, servers)
    body = move_to(world, TARGET)
    world.kube.put({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "shop-1", "namespace": NAMESPACE, "labels": {"app.kubernetes.io/instance": "shop"}}})
    labels = world.kube.find("Deployment", "shop")["spec"]["selector"]["matchLabels"]  # type: ignore[index]
    world.kube.find("Pod", "shop-1")["metadata"]["labels"] = dict(labels)  # type: ignore[index]
    outcome, body = run(world, body)
    assert outcome.phase == "Moving" and replicas(world) == 0 and not servers.copies
    assert body["status"]["server"] == SERVER and body["status"]["move"]["phase"] == "Stopping"
    down_since = body["status"]["move"]["downSince"]
    assert (world.pg.databases["shop"].marker or {})["move"]["downSince"] == down_since  # counted from the stop
    world.kube.delete("v1", "Pod", "shop-1", NAMESPACE)
    _, body = run(world, stored(world))
    assert_moved(world, servers)
    assert body["status"]["move"]["downSince"] == down_since


@pytest.mark.parametrize("why, spec", [
    ("cordoned", {"cordoned": True}),
    ("holds 1 of at most 1 databases", {"maxDatabases": 1}),
    ("does not allow namespace", {"allowedNamespaces": {"names": ["other"]}}),
])
def test_a_move_to_a_server_that_cannot_take_it_is_refused_and_the_database_keeps_serving(
        world: World, servers: Servers, why: str, spec: dict[str, Any]) -> None:
    ready_with_data(world, servers)
    world.add_server(TARGET, default=False, **spec)
    servers.by_host[f"{TARGET}.db.example"].databases["other"] = servers.by_host[
        f"{TARGET}.db.example"].databases.get("other") or __import__("fakes").FakeDatabase("x", None)
    body = move_to(world, TARGET)
    outcome, body = run(world, body)
    assert condition(outcome, "Stalled").status == "True" and outcome.ready.reason == "MoveRefused"
    assert why in outcome.ready.message and "keeps being served" in outcome.ready.message
    assert replicas(world) == 1 and body["status"]["server"] == SERVER and "shop" in world.pg.databases
    assert "move" not in (world.pg.databases["shop"].marker or {}) and not servers.copies
    assert "shop" not in servers.by_host[f"{TARGET}.db.example"].databases


def test_a_move_to_an_unknown_server_or_a_taken_name_is_refused(world: World, servers: Servers) -> None:
    ready_with_data(world, servers)
    body = move_to(world, "nowhere")
    outcome, body = run(world, body)
    assert outcome.ready.reason == "MoveRefused" and "does not exist" in outcome.ready.message
    servers.by_host[f"{TARGET}.db.example"].databases["shop"] = __import__("fakes").FakeDatabase("someone", None)
    body = move_to(world, TARGET)
    outcome, body = run(world, body)
    assert outcome.ready.reason == "MoveRefused" and "exists there already" in outcome.ready.message
    assert replicas(world) == 1 and body["status"]["server"] == SERVER


KILL_POINTS = ["move-after-stop", "move-after-create", "move-after-copy", "move-after-verify", "move-after-switch",
               "move-before-drop", "move-after-drop"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_each_step_resumes_and_loses_nothing(world: World, servers: Servers,
                                                       monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    ready_with_data(world, servers)
    body = move_to(world, TARGET)

    def hit(name: str, detail: str | None = None) -> None:
        if name == point:
            raise Killed(name)

    monkeypatch.setattr(failpoints, "hit", hit)
    with pytest.raises(Killed):
        run(world, body)
    monkeypatch.setattr(failpoints, "hit", lambda name, detail=None: None)
    after_kill = stored(world)
    switched = point in ("move-after-switch", "move-before-drop", "move-after-drop")
    # Never served half-copied, never dropped before the switch is recorded.
    assert after_kill["status"]["server"] == (TARGET if switched else SERVER)
    # The app starts again only on the target, and before the source is dropped.
    assert replicas(world) == (1 if point in ("move-before-drop", "move-after-drop") else 0)
    assert ("shop" in world.pg.databases) or point == "move-after-drop"

    outcome, body = run(world, after_kill)
    assert_moved(world, servers)
    world.kube.make_available("shop")
    outcome, body = run(world, body)
    assert outcome.phase == "Ready" and body["status"]["move"]["phase"] == "Done"
    if point in ("move-after-create", "move-after-copy"):  # the incomplete target was made again
        assert world.journal.count("pg drop_database shop") >= 2 and len(servers.copies) == 2 - (
            point == "move-after-create")


@pytest.mark.parametrize("failure", ["copy", "verify"])
def test_a_failed_copy_puts_everything_back_and_is_retried_later(world: World, servers: Servers,
                                                                 failure: str) -> None:
    ready_with_data(world, servers)
    body = move_to(world, TARGET)
    if failure == "copy":
        servers.copy_fails = "pg_restore exited 1: disk full"
    else:
        servers.corrupt = True
    outcome, body = run(world, body)
    assert outcome.ready.reason == "MoveFailed" and condition(outcome, "Stalled").status == "True"
    assert ("disk full" if failure == "copy" else "table public.notes") in outcome.ready.message
    assert "shop" not in servers.by_host[f"{TARGET}.db.example"].databases  # the target is gone
    assert body["status"]["server"] == SERVER and replicas(world) == 1 and secret_host(world) == "main.db.example"
    assert "move" not in (world.pg.databases["shop"].marker or {})
    assert [e for e in outcome.events if e[1] == "MoveFailed"]
    servers.copy_fails, servers.corrupt = None, False
    outcome, body = run(world, body)
    assert outcome.ready.reason == "MoveFailed" and len(servers.copies) == 1  # not again at once


def test_setting_spec_server_back_cancels_a_move(world: World, servers: Servers,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ready_with_data(world, servers)
    body = move_to(world, TARGET)

    def hit(name: str, detail: str | None = None) -> None:
        if name == "move-after-copy":
            raise Killed(name)

    monkeypatch.setattr(failpoints, "hit", hit)
    with pytest.raises(Killed):
        run(world, body)
    monkeypatch.setattr(failpoints, "hit", lambda name, detail=None: None)
    world.kube.find("OdooDatabase", "shop")["status"]["move"] = {  # type: ignore[index]
        "from": SERVER, "to": TARGET, "phase": "Copying"}  # as a pass before the kill published it
    body = move_to(world, SERVER)
    outcome, body = run(world, body)
    assert "shop" not in servers.by_host[f"{TARGET}.db.example"].databases
    assert "move" not in (world.pg.databases["shop"].marker or {}) and replicas(world) == 1
    assert body["status"]["server"] == SERVER and body["status"]["move"]["phase"] == "Cancelled"
    assert [e for e in outcome.events if e[1] == "MoveCancelled"]


# ---- kubectl odoo drain: where each database goes ----------------------------------------------------

def test_drain_sends_each_database_to_the_freest_server_of_its_pool() -> None:
    from odoo_operator.kubectl.move import choose

    def pgs(name: str, count: int, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": spec.pop("labels", {})}, "spec": spec,
                "status": {"reachable": True, "databaseCount": count}}

    servers = [pgs("old", 3, default=True), pgs("a", 4, default=True, maxDatabases=5),
               pgs("b", 1, default=True, maxDatabases=5), pgs("c", 0, default=True, cordoned=True),
               pgs("gold", 0, labels={"tier": "gold"})]
    plain = {"spec": {}}
    planned: dict[str, int] = {}
    picks = []
    for _ in range(5):
        pick = choose(plain, servers, "old", planned)
        picks.append(pick)
        if pick:
            planned[pick] = planned.get(pick, 0) + 1
    assert picks == ["b", "b", "b", "a", "b"]  # b until it is as full as a, never the cordoned c or the gold pool
    assert choose(plain, servers, "old", planned) is None  # the pool is full
    assert choose({"spec": {"serverSelector": {"matchLabels": {"tier": "gold"}}}}, servers, "old", {}) == "gold"
    expressions = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}
    assert choose({"spec": {"serverSelector": expressions}}, servers, "old", {}) == "gold"  # as placement reads it


def test_a_database_deleted_during_a_move_leaves_nothing_on_either_server(
        world: World, servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    ready_with_data(world, servers)
    body = move_to(world, TARGET)

    def hit(name: str, detail: str | None = None) -> None:
        if name == "move-after-copy":
            raise Killed(name)

    monkeypatch.setattr(failpoints, "hit", hit)
    with pytest.raises(Killed):
        run(world, body)
    monkeypatch.setattr(failpoints, "hit", lambda name, detail=None: None)
    body = stored(world)
    body["status"]["move"] = {"from": SERVER, "to": TARGET, "phase": "Copying"}
    body["spec"]["deletionPolicy"] = "Delete"
    assert "shop" in servers.by_host[f"{TARGET}.db.example"].databases
    odoodatabase.delete(body, world.ctx)
    assert "shop" not in world.pg.databases and "shop" not in servers.by_host[f"{TARGET}.db.example"].databases
    assert ROLE not in servers.by_host[f"{TARGET}.db.example"].roles and ROLE not in world.pg.roles


def test_a_duplicate_once_made_moves_like_any_database(world: World, servers: Servers) -> None:
    from test_controller_odoodatabase import source_body

    world.add_server()
    source_body(world)
    body = world.add(__import__("fakes").database_body("copy", duplicateFrom={"name": "shop"}))
    _, body = run(world, body)
    world.kube.make_available("copy")
    outcome, body = run(world, body)
    assert outcome.phase == "Ready", outcome.ready
    servers.content[(f"{SERVER}.db.example", "copy")] = copy.deepcopy(CONTENT)
    world.add_server(TARGET, default=False)
    stored_copy = world.kube.find("OdooDatabase", "copy")
    assert stored_copy is not None
    stored_copy["spec"]["server"] = TARGET
    stored_copy["metadata"]["generation"] += 1
    _, body = run(world, copy.deepcopy(stored_copy))
    target = servers.by_host[f"{TARGET}.db.example"]
    assert "copy" in target.databases and "copy" not in world.pg.databases and "shop" in world.pg.databases
    assert servers.content[(f"{TARGET}.db.example", "copy")] == CONTENT
    world.kube.make_available("copy")
    outcome, body = run(world, body)
    assert outcome.phase == "Ready" and body["status"]["server"] == TARGET, outcome.ready
    assert body["status"]["move"]["phase"] == "Done"
