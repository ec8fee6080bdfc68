"""The copy of a move (pg.stream_copy, pg.content_summary) between two real PostgreSQL servers started here:
pg_dump | pg_restore as the tenant's role on both ends (the admin never runs the tenant's dump), data,
sequences and pg_trgm identical, no password in any argv, a failing restore leaves the target empty."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from odoo_operator import pg
from odoo_operator.devtools.localcluster import Postgres

pytestmark = pytest.mark.integration
OWNER = {"managedBy": "odoo-db-operator", "namespace": "ns", "name": "shop"}


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[pg.ServerAddress, pg.ServerAddress]]:
    servers: list[Postgres] = []
    try:
        for name in ("a", "b"):
            postgres = Postgres(Path(tmp_path_factory.mktemp(f"move-{name}")) / "pg")
            postgres.init()
            postgres.start()
            servers.append(postgres)
        yield tuple(pg.ServerAddress("127.0.0.1", p.port, p.user, p.password, "disable", 5)  # type: ignore[misc]
                    for p in servers)
    finally:
        for postgres in servers:
            postgres.remove()


def make(admin: pg.ServerAddress, role: str, password: str, dbname: str) -> pg.ServerAddress:
    with pg.connect(admin) as conn:
        pg.ensure_role(conn, role, password, OWNER, reset_password=True)
        pg.create_database(conn, dbname, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
    pg.create_odoo_extensions(admin, dbname, role)
    return admin.as_role(role, password)


def test_a_move_copy_runs_as_the_tenant_and_is_identical(two: tuple[pg.ServerAddress, pg.ServerAddress]) -> None:
    source_admin, target_admin = two
    role, dbname, password = f"odoo_{uuid.uuid4().hex[:8]}", f"shop-{uuid.uuid4().hex[:6]}", "pw-" + uuid.uuid4().hex
    source = make(source_admin, role, password, dbname)
    with psycopg.connect(host=source.host, port=source.port, user=role, password=password, dbname=dbname,
                         autocommit=True) as own:
        own.execute('CREATE TABLE "Notes" (id serial PRIMARY KEY, body text, at timestamptz DEFAULT now())')
        own.execute('INSERT INTO "Notes" (body) SELECT md5(g::text) FROM generate_series(1, 5000) g')
        own.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name text)")
        own.execute("INSERT INTO res_partner (name) VALUES ('a'), ('b')")
        own.execute("CREATE INDEX ON res_partner USING gin (name gin_trgm_ops)")
        own.execute("CREATE FUNCTION whoami() RETURNS text LANGUAGE sql AS 'SELECT current_user'")
    target = make(target_admin, role, password, dbname)

    seen: list[list[str]] = []
    stop = threading.Event()

    def watch() -> None:  # every argv of the copy's processes, while it runs
        while not stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            seen.extend([line.split() for line in out.splitlines() if "pg_dump" in line or "pg_restore" in line])
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        pg.stream_copy(source, target, dbname)
    finally:
        stop.set()
        watcher.join()
    assert not any(password in " ".join(argv) for argv in seen)
    before, after = pg.content_summary(source, dbname), pg.content_summary(target, dbname)
    assert before == after and before['table public.Notes'] == 5000 and before["table public.res_partner"] == 2
    assert before['sequence public.Notes_id_seq'] == [5000, True]
    with psycopg.connect(host=target.host, port=target.port, user=role, password=password, dbname=dbname,
                         autocommit=True) as own:
        owners = {r[0] for r in own.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'public'::regnamespace")}
        assert owners == {role}  # everything the tenant's, nothing the admin's
        assert own.execute("SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'pg_trgm'"
                           ).fetchone() == (role,)
        assert own.execute("SELECT nextval('\"Notes_id_seq\"')").fetchone() == (5001,)


def test_a_failing_restore_leaves_the_target_empty_and_says_why(
        two: tuple[pg.ServerAddress, pg.ServerAddress]) -> None:
    source_admin, target_admin = two
    role, dbname, password = f"odoo_{uuid.uuid4().hex[:8]}", f"shop-{uuid.uuid4().hex[:6]}", "pw-" + uuid.uuid4().hex
    source = make(source_admin, role, password, dbname)
    with psycopg.connect(host=source.host, port=source.port, user=role, password=password, dbname=dbname,
                         autocommit=True) as own:
        own.execute("CREATE TABLE a (id int)")
        own.execute("INSERT INTO a VALUES (1)")
        own.execute("CREATE TABLE b (id int)")
    target = make(target_admin, role, password, dbname)
    with psycopg.connect(host=target.host, port=target.port, user=role, password=password, dbname=dbname,
                         autocommit=True) as own:
        own.execute("CREATE TABLE b (x text)")  # the restore fails on it, after creating a
    with pytest.raises(pg.MoveCopyFailed, match="pg_restore exited 1") as failed:
        pg.stream_copy(source, target, dbname)
    assert password not in str(failed.value)
    assert "table public.a" not in pg.content_summary(target, dbname)  # one transaction: nothing left of it
    with pytest.raises(AssertionError):
        pg.stream_copy(source_admin, target, dbname)  # never as the admin
