"""Template databases step by step over a fake API server and a fake PostgreSQL (tests/fakes.py): who asks for a
template, how its build moves on (postgresserver.check → templates.advance), a failure and its retry, an image
change, a crash between its database and its Job, and a database made from it. The real thing (Odoo building
the template, a copy logging in, a module install, a backup round trip) is tests/test_templates_e2e.py."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from fakes import SERVER, FakeDatabase, World, database_body
from odoo_operator import pg
from odoo_operator.api.conditions import format_time
from odoo_operator.config import Settings
from odoo_operator.controller import odoodatabase, postgresserver, templates
from odoo_operator.specs import template as spec

SYSTEM = "odoo-system"
KEY = spec.template_key(SERVER, "17.0", "odoo:17.0")
TEMPLATE = spec.database_name(KEY)
OBJECT = spec.object_name(KEY)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    w = World(monkeypatch, Settings(base_domain="odoo.test", dns_check=False, templates=True,
                                    template_namespace=SYSTEM))
    w.add_server()
    return w


def ours(world: World, kind: str) -> list[str]:
    """The template objects of that kind in the template namespace (the server's admin Secret is there too)."""
    return [n for n in world.kube.names(kind, SYSTEM) if n.startswith("odoo-template-")]


def run(world: World, body: dict[str, Any]) -> dict[str, Any]:
    return world.reconcile(odoodatabase.reconcile, body)[1]


def check(world: World) -> dict[str, Any]:
    server = world.kube.find("PostgresServer", SERVER, None)
    assert server is not None
    fields, _ = postgresserver.check(server, world.ctx)
    return fields


def build_template(world: World) -> None:
    """The first database asks for it; its Job completes with Odoo's modules installed."""
    run(world, world.add(database_body("first")))
    world.kube.finish_job(OBJECT, namespace=SYSTEM)
    world.pg.installed[TEMPLATE] = {"base", "auth_signup"}
    assert check(world)["templates"][0]["state"] == "Ready"


def test_the_first_fresh_database_inits_itself_and_asks_for_the_template(world: World) -> None:
    run(world, world.add(database_body("first")))

    assert world.kube.names("Job") == ["first-init"]  # not waiting for the template
    marker = world.pg.databases[TEMPLATE].marker or {}
    assert (marker["state"], marker["version"], marker["image"], marker["server"]) == \
        ("Building", "17.0", "odoo:17.0", SERVER)
    assert world.pg.databases[TEMPLATE].owner == TEMPLATE and world.pg.roles[TEMPLATE]["login"]
    # Secret (the role's password) before the role, then the database, then the Job.
    assert ours(world, "Secret") == [OBJECT] and ours(world, "Job") == [OBJECT]
    job = world.kube.find("Job", OBJECT, SYSTEM)
    assert job is not None and job["metadata"]["ownerReferences"][0]["kind"] == "PostgresServer"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "odoo:17.0" and "force_storage" in container["command"][-1]
    assert check(world)["templates"] == [{"version": "17.0", "image": "odoo:17.0", "database": TEMPLATE,
                                          "state": "Building", "startedAt": marker["startedAt"]}]
    # Neither counted nor a database of anyone's.
    assert check(world)["databaseCount"] == 1

    # A second database while it builds: its own init Job too, nothing asked again.
    run(world, world.add(database_body("second")))
    assert world.kube.names("Job") == ["first-init", "second-init"]
    assert len(world.pg.called("create_database")) == 3


def test_a_built_template_is_ready_and_the_next_database_is_a_copy_of_it(world: World) -> None:
    build_template(world)
    assert world.pg.roles[TEMPLATE]["login"] is False  # NOLOGIN once built
    assert ours(world, "Job") == ours(world, "Secret") == ours(world, "ConfigMap") == []

    body = run(world, world.add(database_body("shop")))

    assert "shop-init" not in world.kube.names("Job")
    assert world.pg.called("copy_database")[-1][:2] == (TEMPLATE, "shop")
    role = body["status"]["roleName"]
    assert world.pg.called("reassign_owned")[-1] == ("shop", TEMPLATE, role)
    # Identity and the admin's password as the database's own role, never as the admin.
    assert world.pg.called("reset_identity")[-1][:2] == (role, "shop")
    assert world.pg.called("set_admin_password")[-1] == (role, "shop")
    marker = world.pg.databases["shop"].marker or {}
    assert marker["initialized"] is True and marker["template"] == TEMPLATE and marker["version"] == "17.0"
    assert body["status"]["initializedAt"]
    assert world.kube.names("Secret").count("shop-admin") == 1
    # The app follows at once.
    assert world.kube.find("Deployment", "shop") is not None


def test_a_database_with_an_image_of_its_own_never_uses_a_template(world: World) -> None:
    build_template(world)
    run(world, world.add(database_body("custom", image="registry.example/odoo:17.0-custom")))
    assert "custom-init" in world.kube.names("Job")
    assert not [c for c in world.pg.called("copy_database") if c[1] == "custom"]


def test_a_failed_build_is_reported_cleaned_up_and_built_again_later(world: World) -> None:
    run(world, world.add(database_body("first")))
    world.kube.finish_job(OBJECT, state="Failed", message="Job has reached the specified backoff limit",
                          namespace=SYSTEM)
    world.kube.put({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": f"{OBJECT}-x", "namespace": SYSTEM, "labels": {"job-name": OBJECT}},
        "status": {"containerStatuses": [{"name": "template", "state": {"terminated": {
            "exitCode": 1, "message": "psycopg2.OperationalError: could not connect to server"}}}]}})

    failed = check(world)["templates"][0]
    assert failed["state"] == "Failed"
    assert "backoff limit" in failed["message"] and "could not connect to server" in failed["message"]
    # The Job stays for inspection; the marker, which every role of the server reads, holds no output.
    assert ours(world, "Job") == [OBJECT] and ours(world, "Secret") == ours(world, "ConfigMap") == []
    assert "could not connect" not in str(world.pg.databases[TEMPLATE].marker)
    # Meanwhile databases are initialised by their own Jobs, and nothing is asked again.
    run(world, world.add(database_body("second")))
    assert "second-init" in world.kube.names("Job") and ours(world, "Job") == [OBJECT]
    assert len(world.pg.called("create_database")) == 3  # first, the template, second: nothing asked again

    # After TEMPLATE_RETRY: dropped and built again from scratch.
    marker = world.pg.databases[TEMPLATE].marker or {}
    marker["failedAt"] = format_time(datetime.datetime.now(datetime.UTC) - templates.TEMPLATE_RETRY)
    world.pg.databases[TEMPLATE].marker = marker
    again = check(world)
    assert world.pg.called("drop_database")[-1] == (TEMPLATE,)
    assert (world.pg.databases[TEMPLATE].marker or {})["state"] == "Building"
    job = world.kube.find("Job", OBJECT, SYSTEM)
    assert job is not None and "conditions" not in (job.get("status") or {})  # a new Job, not the failed one
    assert again["templates"] == []  # reported from the next check on


def test_a_new_image_for_the_version_drops_the_template_and_builds_it_again(world: World) -> None:
    build_template(world)
    world.settings = world.ctx.settings = Settings(base_domain="odoo.test", dns_check=False, templates=True,
                                                   template_namespace=SYSTEM, images={"17.0": "odoo:17.0-20261201"})
    check(world)

    new = spec.database_name(spec.template_key(SERVER, "17.0", "odoo:17.0-20261201"))
    assert TEMPLATE not in world.pg.databases and TEMPLATE not in world.pg.roles
    assert (world.pg.databases[new].marker or {})["state"] == "Building"
    job = world.kube.find("Job", spec.object_name(new.removeprefix(pg.TEMPLATE_PREFIX)), SYSTEM)
    assert job is not None and job["spec"]["template"]["spec"]["containers"][0]["image"] == "odoo:17.0-20261201"


def test_templates_turned_off_are_dropped(world: World) -> None:
    build_template(world)
    world.settings = world.ctx.settings = Settings(base_domain="odoo.test", dns_check=False, templates=False)
    assert check(world)["templates"] == []
    assert not [name for name in world.pg.databases if name.startswith(pg.TEMPLATE_PREFIX)]


def test_a_crash_between_the_template_database_and_its_job_is_resumed(world: World) -> None:
    run(world, world.add(database_body("first")))
    world.kube.delete("batch/v1", "Job", OBJECT, SYSTEM)  # as if the operator died before creating it

    check(world)

    assert ours(world, "Job") == [OBJECT]
    assert (world.pg.databases[TEMPLATE].marker or {})["state"] == "Building"


def test_a_template_left_without_its_marker_gets_its_roles_and_a_foreign_one_is_never_touched(world: World) -> None:
    run(world, world.add(database_body("first")))
    world.pg.databases[TEMPLATE].marker = None  # killed between CREATE DATABASE and its COMMENT
    world.pg.databases[f"{pg.TEMPLATE_PREFIX}0123456789abcdef"] = FakeDatabase("someone", None)

    listed = check(world)["templates"]

    assert [t["database"] for t in listed] == [TEMPLATE] and listed[0]["state"] == "Building"
    assert (world.pg.databases[TEMPLATE].marker or {})["key"] == KEY
    assert f"{pg.TEMPLATE_PREFIX}0123456789abcdef" in world.pg.databases  # not ours: left alone
