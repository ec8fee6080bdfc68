"""The object loop's footprint while it sleeps (issue 15): what thousands of sleeping loops keep.

A loop keeps kopf's live body (no copy), its last published status (as JSON) and one task waiting for
kopf's stop flag; a pass's copy of the body and its Outcome are freed with the pass, and the sleep is a
timer. Behaviour is unchanged: a wake runs a pass that sees its own last status, a stop ends the loop at
once, and the resync timer still runs a pass by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits.aioenums import FlagSetter
from tests.fakes import World, database_body

from odoo_operator import handlers, loop
from odoo_operator.api.conditions import Condition
from odoo_operator.controller.base import Outcome
from odoo_operator.runtime import memory


def outcome(**status: Any) -> Outcome:
    return Outcome(phase="Creating", ready=Condition.false("Ready", "Progressing"),
                   reconciling=Condition.true("Reconciling", "Progressing"),
                   stalled=Condition.false("Stalled", "Progressing"), status=dict(status))


def logger(body: dict[str, Any]) -> kopf.Logger:
    return kopf.LocalObjectLogger(body=kopf.Body(body), settings=kopf.OperatorSettings())


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    world = World(monkeypatch)
    runtime = loop.Runtime(ctx=world.ctx, executor=ThreadPoolExecutor(2), publisher=ThreadPoolExecutor(1))
    monkeypatch.setattr(loop, "_runtime", runtime)
    monkeypatch.setattr(loop, "event", lambda *args, **kwargs: None)
    yield world
    runtime.executor.shutdown(wait=True)
    runtime.publisher.shutdown(wait=True)


def test_stop_event_is_kopfs_own() -> None:
    """The loop waits on kopf's asyncio.Event behind `stopped` (one task, not kopf's two): kopf 1.45's
    layout. Should an upgrade change it, the loop falls back to `await stopped.wait()`; this says so."""
    async def check() -> None:
        setter: FlagSetter[kopf.DaemonStoppingReason] = FlagSetter()
        assert loop._stop_event(setter.async_waiter) is setter.async_event  # type: ignore[arg-type]
    asyncio.run(check())


def test_a_sleeping_loop_keeps_no_pass_and_one_task(world: World) -> None:
    body = world.add(database_body("shop"))
    passes: list[dict[str, Any]] = []

    def reconcile(snapshot: dict[str, Any], ctx: Any, live: Any) -> Outcome:
        passes.append(json.loads(json.dumps(snapshot.get("status") or {})))
        return outcome(databaseName="shop", sizeBytes=len(passes))

    async def scenario() -> None:
        loop._start_trimming()  # the process's one trimming task, not counted below
        await asyncio.sleep(0)
        before = len(asyncio.all_tasks())
        setter: FlagSetter[kopf.DaemonStoppingReason] = FlagSetter()
        task = asyncio.create_task(loop.object_loop(
            kopf.Body(body), setter.async_waiter, logger(body), ("default", "shop"), reconcile, "OdooDatabase",
            trust_own_status=True))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if passes and world.kube.calls_of("patch_status"):
                break
        await asyncio.sleep(0.05)
        assert len(passes) == 1
        # Asleep: the daemon's own task and the one waiting for the stop flag; no pass's copy in its frame.
        assert len(asyncio.all_tasks()) - before == 2
        frame = task.get_coro().cr_frame
        assert frame is not None and not {"snapshot", "outcome"} & set(frame.f_locals)
        # A wake: the next pass sees the status it published, and writes nothing new but sizeBytes.
        world.registry.wake(("default", "shop"))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(passes) == 2:
                break
        assert passes[1]["databaseName"] == "shop" and passes[1]["sizeBytes"] == 1
        # A stop ends it at once, and leaves no task behind.
        setter.set(kopf.DaemonStoppingReason.OPERATOR_EXITING)
        await asyncio.wait_for(task, 2)
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == before
        if loop._trimming is not None:
            loop._trimming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop._trimming

    asyncio.run(scenario())


def test_the_resync_timer_runs_a_pass(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    body = world.add(database_body("shop"))
    passes: list[int] = []

    def reconcile(snapshot: dict[str, Any], ctx: Any, live: Any) -> Outcome:
        passes.append(1)
        result = outcome()
        result.retry_after = 0.05
        return result

    async def scenario() -> None:
        setter: FlagSetter[kopf.DaemonStoppingReason] = FlagSetter()
        task = asyncio.create_task(loop.object_loop(
            kopf.Body(body), setter.async_waiter, logger(body), ("default", "shop"), reconcile, "OdooDatabase",
            trust_own_status=True))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(passes) >= 3:
                break
        setter.set(kopf.DaemonStoppingReason.RESOURCE_DELETED)
        await asyncio.wait_for(task, 2)
        assert len(passes) >= 3
        if loop._trimming is not None:
            loop._trimming.cancel()

    asyncio.run(scenario())


def test_memory_dumps_are_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memory.DUMP_ENV, raising=False)
    assert memory.enable_dumps() is False


def test_a_memory_dump_writes_figures(tmp_path: Any) -> None:
    gc.collect()
    path = memory.dump(str(tmp_path))
    figures = json.loads(open(path).read())
    assert figures["rss_kb"] > 0 and figures["threads"] >= 1 and "dict" in figures["objects"]


def test_deep_size_counts_each_object_once() -> None:
    shared = {"labels": {"a": "b" * 100}}
    alone = memory.deep_size(shared)
    seen: set[int] = set()
    assert memory.deep_size(shared, seen) == alone > 100
    assert memory.deep_size({"one": shared, "two": shared}, seen) < alone


def test_memory_probes_size_the_registry_and_kopf(world: World) -> None:
    world.registry.record_child("ConfigMap", {"metadata": {"name": "c", "namespace": "default"}}, deleted=False)
    sizes = loop._registry_sizes()
    assert sizes["children entries"] == 1 and sizes["children bytes"] > 0
    assert isinstance(loop._kopf_sizes(), dict)


def test_kopfs_kept_bodies_lose_their_managed_fields() -> None:
    """kopf's live body of a daemon'd object (its raw watch event) is kept without metadata.managedFields;
    the metadata is replaced, never changed in place (a thread may be copying it)."""
    raw = database_body("shop")
    raw["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    raw["metadata"]["finalizers"] = ["odoo.dbmanager.io/finalizer"]
    before = raw["metadata"]
    body = kopf.Body(raw)
    handlers.slim_body(body)
    assert "managedFields" not in raw["metadata"] and "managedFields" in before
    assert body.metadata.name == "shop" and list(body.metadata.get("finalizers")) == ["odoo.dbmanager.io/finalizer"]
    assert body.meta.uid == before["uid"]
    handlers.slim_body(body)  # nothing to drop: nothing changes
    assert raw["metadata"] == {k: v for k, v in before.items() if k != "managedFields"}


def test_kopfs_kept_bodies_share_their_words() -> None:
    """Equal keys and short strings of two bodies are one object; the values are unchanged."""
    import copy as copy_

    status = {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                                 "message": "Odoo 17.0 is serving http://shop.example.com" * 2}]}
    first, second = database_body("one", status=status), database_body("two", status=copy_.deepcopy(status))
    second = json.loads(json.dumps(second))  # its own string objects, as a watch event's
    expected = copy_.deepcopy(second)
    for raw in (first, second):
        handlers.slim_body(kopf.Body(raw))
    assert second == expected
    one, two = first["status"]["conditions"][0], second["status"]["conditions"][0]
    assert one["reason"] is two["reason"] and next(iter(one)) is next(iter(two))
    assert second["status"]["phase"] is first["status"]["phase"]


def test_children_are_kept_with_shared_words(world: World) -> None:
    """The Registry keeps the same of a child handed slim (labels, status), with its words shared."""
    from odoo_operator.runtime.registry import _trim

    def child(name: str) -> dict[str, Any]:
        return json.loads(json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "7",
                         "generation": 2, "labels": {"app.kubernetes.io/managed-by": "odoo-db-operator",
                                                     "odoo.dbmanager.io/database": name},
                         "managedFields": [{"manager": "odoo-db-operator"}]},
            "spec": {"replicas": 1}, "status": {"observedGeneration": 2, "availableReplicas": 1}}))

    one, two = child("one"), child("two")
    slim_one, slim_two = handlers.slim_child(kopf.Body(one)), handlers.slim_child(kopf.Body(two))
    assert _trim({"kind": "Deployment", **slim_two}) == _trim({"kind": "Deployment", **two})
    assert "managedFields" not in slim_two["metadata"] and "managedFields" in two["metadata"]
    key_one, key_two = next(iter(slim_one["metadata"]["labels"])), next(iter(slim_two["metadata"]["labels"]))
    assert key_one is key_two
    owner, changed = world.registry.observe_child("Deployment", slim_two, deleted=False)
    assert owner == ("default", "two") and not changed
