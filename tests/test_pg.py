"""The PostgreSQL layer against the real server the harness starts."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from psycopg import sql

from odoo_operator import pg

pytestmark = pytest.mark.integration
OWNER = {"managedBy": "odoo-db-operator", "namespace": "ns", "name": "shop"}


@pytest.fixture
def server(cluster) -> pg.ServerAddress:
    p = cluster.postgres
    return pg.ServerAddress("127.0.0.1", p.port, p.user, p.password, "disable", 5)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_unreachable_server_is_a_clear_temporary_error(cluster):
    address = pg.ServerAddress("127.0.0.1", 1, "u", "secret-pw", "disable", 2)
    with pytest.raises(pg.PostgresUnavailable) as info:
        with pg.connect(address):
            pass
    assert "secret-pw" not in str(info.value) and "secret-pw" not in repr(address)


def test_wrong_password_is_reported_without_the_password(server):
    bad = pg.ServerAddress(server.host, server.port, server.user, "not-the-password", "disable", 2)
    with pytest.raises(pg.PostgresUnavailable, match="password authentication failed"):
        with pg.connect(bad):
            pass


def test_role_and_database_lifecycle_with_hostile_looking_names(server):
    role = unique("odoo") + '"; DROP ROLE postgres; --'
    dbname = unique("Shop.Test-1")
    with pg.connect(server) as conn:
        assert pg.ensure_role(conn, role, "pw-1", OWNER, reset_password=False) is True
        assert pg.ensure_role(conn, role, "pw-1", OWNER, reset_password=False) is False
        pg.create_database(conn, dbname, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
        info = pg.database_info(conn, dbname)
        assert info.exists and info.owned_by(OWNER, role)
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        assert owner == (role,)
        version, count = pg.server_info(conn)
        assert version.startswith("15") and count >= 2
        assert pg.database_size(conn, dbname) > 0
    # The role can log in with its password and use its database.
    with psycopg.connect(host=server.host, port=server.port, user=role, password="pw-1", dbname=dbname) as own:
        own.execute("CREATE TABLE t (id int)")
    with pg.connect(server) as conn:
        assert pg.drop_database(conn, dbname) is True
        pg.drop_role(conn, role, OWNER)
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None
        assert pg.drop_database(conn, dbname) is False  # idempotent


def test_other_roles_cannot_connect_to_a_tenant_database(server):
    role, other, dbname = unique("odoo"), unique("odoo"), unique("db")
    with pg.connect(server) as conn:
        pg.ensure_role(conn, role, "pw", OWNER, reset_password=False)
        pg.ensure_role(conn, other, "pw", OWNER | {"name": "other"}, reset_password=False)
        pg.create_database(conn, dbname, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(host=server.host, port=server.port, user=other, password="pw", dbname=dbname)
    with pg.connect(server) as conn:
        pg.drop_database(conn, dbname)
        pg.drop_role(conn, role, OWNER)
        pg.drop_role(conn, other, OWNER | {"name": "other"})


def test_existing_role_or_database_of_someone_else_is_never_taken_over(server):
    role, dbname = unique("admin"), unique("foreign")
    with pg.connect(server) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD \'theirs\'')
        with pytest.raises(pg.OwnershipConflict):
            pg.ensure_role(conn, role, "mine", OWNER, reset_password=True)
        conn.execute(f'CREATE DATABASE "{dbname}"')
        info = pg.database_info(conn, dbname)
        assert info.exists and not info.owned_by(OWNER, role)
        pg.drop_role(conn, role, OWNER)  # not ours: left alone
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (1,)
        conn.execute(f'DROP DATABASE "{dbname}"')
        conn.execute(f'DROP ROLE "{role}"')


def test_a_created_database_gets_pg_trgm_as_odoo_creates_it(server):
    """Odoo's `_create_empty_database` creates pg_trgm, as its own role (unaccent only with its option)."""
    role, dbname = unique("odoo"), unique("trgm")
    with pg.connect(server) as conn:
        pg.ensure_role(conn, role, "pw", OWNER, reset_password=False)
        pg.create_database(conn, dbname, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
    assert pg.create_odoo_extensions(server, dbname, role) is True
    assert pg.create_odoo_extensions(server, dbname, role) is True  # idempotent
    with psycopg.connect(host=server.host, port=server.port, user=role, password="pw", dbname=dbname,
                         autocommit=True) as own:
        rows = own.execute("SELECT extname, pg_get_userbyid(extowner), extnamespace::regnamespace::text"
                           " FROM pg_extension WHERE extname <> 'plpgsql'").fetchall()
        assert rows == [("pg_trgm", role, "public")]
        assert own.execute("SELECT similarity('odoo', 'odo') > 0").fetchone() == (True,)
        # What a dump of an Odoo database carries, restored as the database's role: it owns the extension.
        own.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
        own.execute("COMMENT ON EXTENSION pg_trgm IS 'text similarity measurement'")
    with pg.connect(server) as conn:
        pg.drop_database(conn, dbname)
        pg.drop_role(conn, role, OWNER)
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None


def test_a_server_that_refuses_the_extension_is_no_error(server):
    role, dbname = unique("odoo"), unique("noext")
    with pg.connect(server) as conn:
        pg.ensure_role(conn, role, "pw", OWNER, reset_password=False)
        pg.create_database(conn, dbname, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
        conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(sql.Identifier(dbname),
                                                                             sql.Identifier(role)))
    try:
        assert pg.create_odoo_extensions(server, dbname, role) is False
    finally:
        with pg.connect(server) as conn:
            pg.drop_database(conn, dbname)
            pg.drop_role(conn, role, OWNER)


def test_drop_terminates_open_connections(server):
    role, dbname = unique("odoo"), unique("busy")
    with pg.connect(server) as conn:
        pg.ensure_role(conn, role, "pw", OWNER, reset_password=False)
        pg.create_database(conn, dbname, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
    holder = psycopg.connect(host=server.host, port=server.port, user=role, password="pw", dbname=dbname)
    started = threading.Event()

    def hold() -> None:
        started.set()
        try:
            holder.execute("SELECT pg_sleep(30)")
        except psycopg.Error:
            pass

    thread = threading.Thread(target=hold)
    thread.start()
    started.wait()
    with pg.connect(server) as conn:
        assert pg.drop_database(conn, dbname) is True
        pg.drop_role(conn, role, OWNER)
    thread.join(10)
    assert not thread.is_alive()


def test_pool_reuses_connections_and_replaces_dead_ones(server):
    pool = pg.ConnectionPool(max_idle_per_server=2)
    with pool.connection(server) as conn:
        first = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with pool.connection(server) as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == first
    with pg.connect(server) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    with pool.connection(server) as conn:  # the dead idle connection is noticed and replaced
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != first
    pool.close()


def test_copy_hands_objects_to_the_copys_role_and_never_the_source_database(server):
    src_role, dst_role, src_db, dst_db = unique("odoo"), unique("odoo"), unique("src"), unique("dst")
    src_owner = OWNER | {"name": "src"}
    dst_owner = OWNER | {"name": "dst"}
    with pg.connect(server) as conn:
        pg.ensure_role(conn, src_role, "pw", src_owner, reset_password=False)
        pg.ensure_role(conn, dst_role, "pw", dst_owner, reset_password=False)
        pg.create_database(conn, src_db, src_role, src_owner | {pg.MARKER_KEY: pg.MARKER_VALUE})
    assert pg.create_odoo_extensions(server, src_db, src_role)  # owned by the source's role
    with psycopg.connect(host=server.host, port=server.port, user=src_role, password="pw", dbname=src_db,
                         autocommit=True) as own:
        own.execute("CREATE SCHEMA extra")
        own.execute('CREATE TABLE "Weird ""name""" (id serial PRIMARY KEY, v text)')
        own.execute("CREATE SEQUENCE standalone_seq")
        own.execute("CREATE VIEW v AS SELECT 1 AS one")
        own.execute("CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT a'")
        own.execute("INSERT INTO \"Weird \"\"name\"\"\" (v) VALUES ('x')")
        held = psycopg.connect(host=server.host, port=server.port, user=src_role, password="pw", dbname=src_db)
    with pg.connect(server) as conn:
        terminated = pg.copy_database(conn, src_db, dst_db, dst_role, dst_owner | {pg.MARKER_KEY: pg.MARKER_VALUE})
        assert terminated >= 1  # the open session was disconnected, as Odoo does
    held.close()
    with pg.connect(server, dst_db) as conn:
        pg.reassign_owned(conn, src_role, dst_role)
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('public', 'extra') AND relkind IN ('r', 'S', 'v')").fetchall()
        assert owners == [(dst_role,)]
        assert conn.execute("SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'f'").fetchone() == (
            dst_role,)
        assert conn.execute("SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'pg_trgm'"
                            ).fetchone() == (dst_role,)
    with pg.connect(server) as conn:
        assert pg.database_info(conn, src_db).owner == src_role  # the source database is still the source's
        assert pg.database_info(conn, dst_db).owner == dst_role
        for db in (src_db, dst_db):
            pg.drop_database(conn, db)
        pg.drop_role(conn, src_role, src_owner)
        pg.drop_role(conn, dst_role, dst_owner)
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)", (src_role, dst_role)
                            ).fetchone() == (0,)
