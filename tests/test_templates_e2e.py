"""Template databases end to end (issue 15), on a real Odoo 16.0 run by the node runner.

An operator of its own, templates on, its template Jobs in a real namespace of their own, and a PostgresServer
of its own (`tplpg`, the same PostgreSQL at the pod network's gateway), so no other test's server or operator
touches these templates. One lifecycle, in order:

1. the first database of the version is initialised by its own init Job and asks for the template, which a
   Job builds with Odoo's own `-i base` (status.templates: Building → Ready);
2. the next database is a file-level copy of it: no init Job, its own identity (uuid, secret, create date,
   URL differ from the template's and from the first's), its own admin password (Odoo's own login
   endpoint), the base attachments served (the company logo, read from the database), a module installed
   through Odoo, a backup restored into a new database that serves the same;
3. the operator restarted: the template is still Ready (its state is in PostgreSQL) and used;
4. the version table's image changed: the template is dropped and built again with the new image, and a
   database created meanwhile falls back to its own init Job.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml

from conftest import OperatorProcess, apply_yaml, get_json, pg_query, wait_until
from odoo_operator.devtools.dev import apply_default_server
from odoo_operator.devtools.localcluster import LocalCluster
from odoo_real import authenticate, request
from test_odoo_real import database_name, host_of, odb, secret_value, wait_ready
from test_users_e2e import Rpc

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(1800)]

SERVER = "tplpg"
TEMPLATE_TIMEOUT = 900  # a real `odoo -i base` beside another on a loaded 2-core machine


class World:
    def __init__(self, cluster: LocalCluster, namespace: str, system: str, operator: OperatorProcess) -> None:
        self.cluster, self.ns, self.system, self.operator = cluster, namespace, system, operator


@pytest.fixture(scope="module")
def world(cluster: LocalCluster, default_server: str, without_session_operator: None) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:6]
    namespace, system = f"tpl-{suffix}", f"tpl-system-{suffix}"
    cluster.real_namespace(namespace)
    cluster.real_namespace(system)
    apply_default_server(cluster, name=SERVER, host=cluster.pod_gateway_ip, default=False)
    proc = OperatorProcess(cluster, cluster.workdir, name="operator-templates", env={
        "ODOO_OPERATOR_TEMPLATES": "true", "ODOO_OPERATOR_TEMPLATE_NAMESPACE": system})
    proc.start()
    yield World(cluster, namespace, system, proc)
    cluster.kubectl("delete", "odb", "--all", "-n", namespace, "--timeout=240s", check=False, timeout=300)
    cluster.kubectl("delete", "postgresserver", SERVER, "--timeout=60s", check=False, timeout=90)
    proc.stop()


def templates(w: World) -> list[dict[str, Any]]:
    return list((get_json(w.cluster, "postgresserver", SERVER).get("status") or {}).get("templates") or [])


def ready_template(w: World, image: str = "odoo:16.0") -> dict[str, Any] | None:
    for entry in templates(w):
        if entry.get("state") == "Failed":
            raise AssertionError(f"template build failed: {entry}")
        if entry.get("image") == image and entry.get("state") == "Ready":
            return entry
    return None


def marker(pg_dsn: str, database: str) -> dict[str, Any]:
    rows = pg_query(pg_dsn, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                    database)
    return dict(json.loads(rows[0][0])) if rows and rows[0][0] else {}


def params(pg_dsn: str, database: str) -> dict[str, str]:
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, dbname=database)
    keys = ["database.uuid", "database.secret", "database.create_date", "web.base.url"]
    return {k: v for k, v in pg_query(dsn, "SELECT key, value FROM ir_config_parameter WHERE key = ANY(%s)", keys)}


def jobs(w: World, namespace: str) -> list[str]:
    return sorted(j["metadata"]["name"] for j in get_json(w.cluster, "jobs", "-n", namespace).get("items", []))


def create(w: World, name: str, **spec: Any) -> float:
    """Applies the OdooDatabase, waits for Ready; returns the seconds from apply to Ready."""
    started = time.monotonic()
    apply_yaml(w.cluster, odb(name, w.ns, SERVER, app={"replicas": 1, "workers": 0}, **spec))
    wait_ready(w.cluster, w.ns, name)
    return time.monotonic() - started


def company_logo(port: int, host: str) -> bytes | None:
    try:
        response = request(port, host, "GET", "/web/binary/company_logo")
    except OSError:
        return None
    return response.body if response.status == 200 else None


def test_a_template_is_built_once_and_copied_into_a_real_database(
        world: World, pg_dsn: str, ingress_proxy: Any) -> None:
    w = world
    # 1. The first database: its own init Job; it asks for the template.
    create(w, "first")
    assert "first-init" in jobs(w, w.ns)
    building = wait_until(lambda: templates(w), 60, "the template asked for")
    assert building[0]["version"] == "16.0" and building[0]["image"] == "odoo:16.0", building
    template = wait_until(lambda: ready_template(w), TEMPLATE_TIMEOUT, "the template Ready", interval=2)
    tpl_db = template["database"]
    assert tpl_db.startswith("_odoo_template_") and marker(pg_dsn, tpl_db)["state"] == "Ready"
    # Never a served database: closed to PUBLIC, its role may not log in, nothing of it left in Kubernetes.
    assert pg_query(pg_dsn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", tpl_db) == [(False,)]
    assert wait_until(lambda: not jobs(w, w.system), 60, "the template's Job removed")

    # 2. The next one is a copy: no init Job, Ready in seconds (measured by make bench; printed here).
    seconds = create(w, "second")
    print(f"second database Ready {seconds:.1f} s after its apply (copied from {tpl_db})")
    assert "second-init" not in jobs(w, w.ns)
    second_db = database_name(w.cluster, w.ns, "second")
    assert marker(pg_dsn, second_db).get("template") == tpl_db
    # Its own identity, and everything in it its own role's.
    mine, first, tpl = params(pg_dsn, second_db), params(pg_dsn, database_name(w.cluster, w.ns, "first")), \
        params(pg_dsn, tpl_db)
    for key in ("database.uuid", "database.secret", "database.create_date"):
        assert mine[key] != tpl[key] and mine[key] != first[key], key
    url = get_json(w.cluster, "odb", "second", "-n", w.ns)["status"]["url"]
    assert mine["web.base.url"] == url
    owners = pg_query(psycopg.conninfo.make_conninfo(pg_dsn, dbname=second_db), "SELECT DISTINCT "
                      "pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'public'::regnamespace")
    role = get_json(w.cluster, "odb", "second", "-n", w.ns)["status"]["roleName"]
    assert owners == [(role,)]

    # The admin logs in with <name>-admin's password, through Odoo's own endpoint; the template's does not.
    port, host = ingress_proxy.port, host_of(w.cluster, w.ns, "second")
    password = secret_value(w.cluster, w.ns, "second-admin", "password")
    answer, _ = authenticate(port, host, second_db, "admin", password)
    assert (answer.get("result") or {}).get("uid") == 2, answer
    answer, _ = authenticate(port, host, second_db, "admin", "admin")
    assert not (answer.get("result") or {}).get("uid"), answer
    assert request(port, host, "GET", "/web/login").status == 200
    # The base attachments (stored in the template's database) are served: the same logo as a fresh init.
    logo = wait_until(lambda: company_logo(port, host), 60, "the company logo")
    assert logo == wait_until(lambda: company_logo(port, host_of(w.cluster, w.ns, "first")), 60, "first's logo")
    assert logo.startswith(b"\x89PNG")

    # A module installed through Odoo, as an administrator would.
    odoo = Rpc(port, host, second_db, "admin", password)
    module = odoo("ir.module.module", "search", [("name", "=", "board")])
    odoo("ir.module.module", "button_immediate_install", module)

    def module_state() -> str | None:  # the Pod may be briefly unready while Odoo reloads its registry
        try:
            return str(odoo("ir.module.module", "read", module, ["state"])[0]["state"])
        except (OSError, ValueError):
            return None

    assert wait_until(module_state, 120, "the module's state", interval=2) == "installed"

    # A backup round trip: the operator's ZIP restored into a new database that serves the same.
    apply_yaml(w.cluster, yaml.safe_dump({
        "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DatabaseBackup",
        "metadata": {"name": "second-now", "namespace": w.ns},
        "spec": {"databaseRef": {"name": "second"}, "format": "zip"}}))

    def artifact() -> dict[str, Any] | None:
        status = get_json(w.cluster, "odbb", "second-now", "-n", w.ns).get("status") or {}
        if status.get("lastFailure"):
            raise AssertionError(status["lastFailure"])
        return (status.get("artifacts") or [None])[-1]

    wait_until(artifact, 600, "the backup's artifact", interval=1)
    create(w, "second-dr", restoreFrom={"backup": "second-now"})
    dr_host, dr_db = host_of(w.cluster, w.ns, "second-dr"), database_name(w.cluster, w.ns, "second-dr")
    answer, _ = authenticate(port, dr_host, dr_db, "admin", password)
    assert (answer.get("result") or {}).get("uid") == 2, answer
    restored = Rpc(port, dr_host, dr_db, "admin", password)
    assert restored("ir.module.module", "search_read", [("name", "=", "board")], fields=["state"])[0]["state"] == \
        "installed"
    assert wait_until(lambda: company_logo(port, dr_host), 60, "the restored logo") == logo

    # 3. Restarted, the operator finds its template where it left it (PostgreSQL) and copies it again.
    w.operator.stop()
    w.operator.start()
    create(w, "third")
    assert "third-init" not in jobs(w, w.ns)
    assert marker(pg_dsn, database_name(w.cluster, w.ns, "third")).get("template") == tpl_db
    assert ready_template(w) == template

    # 4. A new image for 16.0: the template is built again with it; a database created meanwhile gets
    # its own init Job (the fallback), and the next one is a copy of the new template.
    w.operator.stop()
    w.operator.env["ODOO_OPERATOR_IMAGES"] = json.dumps({"16.0": "mirror.example/odoo:16.0"})
    w.operator.start()
    wait_until(lambda: not pg_query(pg_dsn, "SELECT 1 FROM pg_database WHERE datname = %s", tpl_db), 120,
               "the old template dropped")
    create(w, "fourth")
    assert "fourth-init" in jobs(w, w.ns)
    rebuilt = wait_until(lambda: ready_template(w, "mirror.example/odoo:16.0"), TEMPLATE_TIMEOUT,
                         "the template built again", interval=2)
    assert rebuilt["database"] != tpl_db and [t["image"] for t in templates(w)] == ["mirror.example/odoo:16.0"]
    create(w, "fifth")
    assert "fifth-init" not in jobs(w, w.ns)
    assert marker(pg_dsn, database_name(w.cluster, w.ns, "fifth")).get("template") == rebuilt["database"]
    fifth_password = secret_value(w.cluster, w.ns, "fifth-admin", "password")
    answer, _ = authenticate(port, host_of(w.cluster, w.ns, "fifth"), database_name(w.cluster, w.ns, "fifth"),
                             "admin", fifth_password)
    assert (answer.get("result") or {}).get("uid") == 2, answer
