"""The PostgreSQL layer against the real server the harness starts."""

from __future__ import annotations

import contextlib
import json
import threading
import time
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
        sizes = pg.database_sizes(conn)  # the server's check: every database at once, the same figures
        assert sizes[dbname] == pg.database_size(conn, dbname) and {"postgres", "template1"} <= set(sizes)
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


# ---- a hostile tenant: nothing it owns may run with the admin role -------------------------------

PLANT_PWNED = """
CREATE TABLE public.pwned (who text, what text);
GRANT INSERT, SELECT ON public.pwned TO PUBLIC;
CREATE TABLE public.attackers (role name);
GRANT SELECT ON public.attackers TO PUBLIC;
CREATE FUNCTION public.escalate(what text) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE r name;
BEGIN
    INSERT INTO public.pwned VALUES (current_user, what);
    FOR r IN SELECT role FROM public.attackers LOOP
        BEGIN
            EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER CREATEROLE CREATEDB', r);
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END LOOP;
END $f$;
"""

# Functions more specific than pg_catalog's (format(text, VARIADIC "any"), quote_ident(text)), so that
# PostgreSQL would pick them for the calls in a DO block run with public on the search_path.
PLANT_SHADOWS = """
CREATE FUNCTION public.format(text, name, text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('format(text,name,text)'); RETURN pg_catalog.format($1, $2, $3); END $f$;
CREATE FUNCTION public.format(text, text, text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('format(text,text,text)'); RETURN pg_catalog.format($1, $2, $3); END $f$;
CREATE FUNCTION public.format(text, regclass, text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('format(text,regclass,text)'); RETURN pg_catalog.format($1, $2, $3); END $f$;
CREATE FUNCTION public.format(text, text, regclass, text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('format(text,text,regclass,text)'); RETURN pg_catalog.format($1, $2, $3, $4); END $f$;
CREATE FUNCTION public.format(text, regprocedure, text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('format(text,regprocedure,text)'); RETURN pg_catalog.format($1, $2, $3); END $f$;
CREATE FUNCTION public.format(text, regtype, text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('format(text,regtype,text)'); RETURN pg_catalog.format($1, $2, $3); END $f$;
CREATE FUNCTION public.shobj_description(oid, name) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('shobj_description'); RETURN pg_catalog.shobj_description($1, $2); END $f$;
CREATE TABLE public.ir_config_parameter (id serial PRIMARY KEY, key varchar NOT NULL UNIQUE, value text NOT NULL);
INSERT INTO public.ir_config_parameter (key, value) VALUES ('database.uuid', 'old');
CREATE FUNCTION public.on_param() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate('trigger on ir_config_parameter'); RETURN NEW; END $f$;
CREATE TRIGGER on_param BEFORE INSERT OR UPDATE ON public.ir_config_parameter
    FOR EACH ROW EXECUTE FUNCTION public.on_param();
"""


def _privileged_roles(conn) -> set[tuple[str, bool, bool, bool]]:
    return set(conn.execute(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
        " WHERE rolsuper OR rolcreaterole OR rolcreatedb").fetchall())


def _tenant(server, role: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(host=server.host, port=server.port, user=role, password="pw", dbname=dbname,
                           autocommit=True)


def test_a_hostile_copy_never_runs_tenant_code_as_the_admin(server):
    """The source's tenant plants functions that shadow the catalog's and a trigger; the copy's tenant
    (it has the copy's password from the moment the copy exists) points its database's search_path at
    them before the operator hands the objects over. The hand-over and the identity reset must call
    none of them as the admin, and no role may gain a privilege."""
    from odoo_operator import neutralize

    src_role, dst_role, src_db, dst_db = unique("odoo"), unique("odoo"), unique("src"), unique("dst")
    src_owner, dst_owner = OWNER | {"name": "src"}, OWNER | {"name": "dst"}
    with pg.connect(server) as conn:
        before = _privileged_roles(conn)
        pg.ensure_role(conn, src_role, "pw", src_owner, reset_password=False)
        pg.ensure_role(conn, dst_role, "pw", dst_owner, reset_password=False)
        pg.create_database(conn, src_db, src_role, src_owner | {pg.MARKER_KEY: pg.MARKER_VALUE})
    with _tenant(server, src_role, src_db) as own:
        own.execute(PLANT_PWNED)
        own.execute(PLANT_SHADOWS)
        own.execute("INSERT INTO public.attackers VALUES (%s), (%s)", (src_role, dst_role))
        own.execute(sql.SQL("ALTER ROLE {} SET search_path = public, pg_catalog").format(sql.Identifier(src_role)))
    with pg.connect(server) as conn:
        pg.copy_database(conn, src_db, dst_db, dst_role, dst_owner | {pg.MARKER_KEY: pg.MARKER_VALUE})
    with _tenant(server, dst_role, dst_db) as own:  # the copy's tenant, racing the operator
        own.execute(sql.SQL("ALTER DATABASE {} SET search_path = public, pg_catalog").format(sql.Identifier(dst_db)))
    with pg.connect(server, dst_db) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog,pg_temp",)
        pg.reassign_owned(conn, src_role, dst_role)
    # The identity reset writes the tenant's table, so as the tenant: its trigger runs with its rights.
    with pg.connect(server.as_role(dst_role, "pw"), dst_db) as conn:
        neutralize.reset_identity(conn, "https://copy.example.com")
    with pg.connect(server) as conn:
        assert _privileged_roles(conn) == before
    with _tenant(server, dst_role, dst_db) as own:
        rows = own.execute("SELECT who, what FROM public.pwned").fetchall()
    assert rows and {who for who, _ in rows} == {dst_role}, rows  # the trigger ran, as the tenant only
    with pg.connect(server) as conn:
        for db in (src_db, dst_db):
            pg.drop_database(conn, db)
        pg.drop_role(conn, src_role, src_owner)
        pg.drop_role(conn, dst_role, dst_owner)


def test_the_source_role_owns_nothing_in_the_copy_and_can_be_dropped(server):
    """Extensions, large objects, default privileges and grants to the source role: PostgreSQL refuses
    DROP ROLE while any of them remains in any database."""
    src_role, dst_role, src_db, dst_db = unique("odoo"), unique("odoo"), unique("src"), unique("dst")
    src_owner, dst_owner = OWNER | {"name": "src"}, OWNER | {"name": "dst"}
    with pg.connect(server) as conn:
        pg.ensure_role(conn, src_role, "pw", src_owner, reset_password=False)
        pg.ensure_role(conn, dst_role, "pw", dst_owner, reset_password=False)
        pg.create_database(conn, src_db, src_role, src_owner | {pg.MARKER_KEY: pg.MARKER_VALUE})
    assert pg.create_odoo_extensions(server, src_db, src_role)
    with _tenant(server, src_role, src_db) as own:
        own.execute("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC")
        own.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO PUBLIC")
        own.execute("SELECT lo_from_bytea(0, 'attachment')")
        own.execute("CREATE TABLE t (id int)")
        own.execute("CREATE TYPE mood AS ENUM ('ok')")
    with pg.connect(server) as conn:
        pg.copy_database(conn, src_db, dst_db, dst_role, dst_owner | {pg.MARKER_KEY: pg.MARKER_VALUE})
    with pg.connect(server, dst_db) as conn:
        pg.reassign_owned(conn, src_role, dst_role)
        pg.reassign_owned(conn, src_role, dst_role)  # a pass after a crash does it again, harmlessly
    with _tenant(server, dst_role, dst_db) as own:  # the copy's role has everything, large objects too
        assert own.execute("SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata").fetchone() == (
            "attachment",)
        own.execute("DROP TABLE t")
    with _tenant(server, src_role, src_db) as own:  # the source is untouched and still its own
        assert own.execute("SELECT count(*) FROM pg_default_acl").fetchone() == (2,)
        assert own.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
                           ).fetchone() == (src_role,)
    with pg.connect(server) as conn:
        pg.drop_database(conn, src_db)
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(src_role)))  # raises if anything depends on it
        pg.drop_database(conn, dst_db)
        pg.drop_role(conn, dst_role, dst_owner)


def test_a_database_left_open_to_public_is_closed_again(server):
    role, dbname = unique("odoo"), unique("db")
    with pg.connect(server) as conn:
        pg.ensure_role(conn, role, "pw", OWNER, reset_password=False)
        pg.create_database(conn, dbname, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
        assert pg.ensure_private(conn, dbname) is False
    with _tenant(server, role, dbname) as own:  # the owning tenant opens its own database to everyone
        own.execute(sql.SQL("GRANT CONNECT, TEMP ON DATABASE {} TO PUBLIC").format(sql.Identifier(dbname)))
    with pg.connect(server) as conn:
        assert pg.ensure_private(conn, dbname) is True
        assert conn.execute("SELECT has_database_privilege('public', %s, 'CONNECT')", (dbname,)).fetchone() == (
            False,)
        pg.drop_database(conn, dbname)
        pg.drop_role(conn, role, OWNER)


def test_role_passwords_reach_the_server_only_as_scram_verifiers(server, cluster):
    """With statement logging on (as many servers have it), the log must not hold the password."""
    role, password = unique("odoo"), "pw-" + uuid.uuid4().hex
    log = cluster.postgres.workdir / "postgres.log"
    start = log.stat().st_size
    with pg.connect(server) as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'ddl'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)
        with pg.connect(server) as conn:
            pg.ensure_role(conn, role, password, OWNER, reset_password=False)
            pg.ensure_role(conn, role, password + "-2", OWNER, reset_password=True)
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
        assert stored is not None and stored[0].startswith("SCRAM-SHA-256$")
        with psycopg.connect(host=server.host, port=server.port, user=role, password=password + "-2",
                             dbname="postgres"):
            pass
    finally:
        with pg.connect(server) as conn:
            conn.execute("ALTER SYSTEM RESET log_statement")
            conn.execute("SELECT pg_reload_conf()")
            pg.drop_role(conn, role, OWNER)
    with log.open("rb") as handle:
        handle.seek(start)
        logged = handle.read().decode(errors="replace")
    assert "ALTER ROLE" in logged and "SCRAM-SHA-256$" in logged  # the statements were logged, verifiers only
    assert password not in logged


def test_a_cancelled_statement_is_not_an_unreachable_server(server):
    with pg.connect(server) as conn:
        pid = conn.info.backend_pid
    canceller = threading.Timer(0.5, lambda: psycopg.connect(
        host=server.host, port=server.port, user=server.user, password=server.password, dbname="postgres",
        autocommit=True).execute("SELECT pg_cancel_backend(%s)", (pid,)))
    canceller.start()
    with pytest.raises(pg.StatementCancelled, match="cancel"):
        with pg.connect(server) as conn:
            assert conn.info.backend_pid == pid  # the pooled connection
            conn.execute("SELECT pg_sleep(5)")
    canceller.join()
    with pg.connect(server) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("2min",)
        with pg.long_statement(conn):
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("2min",)


def test_a_copy_still_running_is_waited_for_without_disconnecting_anyone(server):
    """An operator stopped mid-copy leaves its statement running on the server: the next attempt must
    neither start a second copy nor terminate the source's sessions again."""
    role, src_db, dst_db = unique("odoo"), unique("src"), unique("dst")
    with pg.connect(server) as conn:
        pg.ensure_role(conn, role, "pw", OWNER, reset_password=False)
        pg.create_database(conn, src_db, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
    user = _tenant(server, role, src_db)  # an app session: CREATE DATABASE waits 5 s for it to leave
    statement = sql.SQL("CREATE DATABASE {} WITH TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
        sql.Identifier(dst_db), sql.Identifier(src_db), sql.Identifier(role))
    earlier = psycopg.connect(host=server.host, port=server.port, user=server.user, password=server.password,
                              dbname="postgres", autocommit=True)
    running = threading.Thread(target=lambda: pytest.raises(psycopg.errors.ObjectInUse, earlier.execute, statement))
    running.start()
    try:
        time.sleep(1)
        with pg.connect(server) as conn:
            with pytest.raises(pg.CopyInProgress):
                pg.copy_database(conn, src_db, dst_db, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
        assert user.execute("SELECT 1").fetchone() == (1,)  # not disconnected
    finally:
        running.join()
        earlier.close()
    with pg.connect(server) as conn:  # once it is over, the copy is made, disconnecting the user then
        connected = conn.execute("SELECT pid, backend_type, usename, application_name, state FROM pg_stat_activity"
                                 " WHERE datname = %s", (src_db,)).fetchall()
        cut = pg.copy_database(conn, src_db, dst_db, role, OWNER | {pg.MARKER_KEY: pg.MARKER_VALUE})
        assert cut == 1, f"{cut} sessions cut; connected to {src_db} just before: {connected}"
        for db in (src_db, dst_db):
            pg.drop_database(conn, db)
        pg.drop_role(conn, role, OWNER)
    user.close()


def test_markers_name_no_tenant_to_the_others_and_old_ones_still_count(server):
    """Every role connected to the server reads every database's and role's comment: the marker holds
    a digest of namespace/name (as the role's name does), never the names. Markers written before
    (with the names) are still recognised as the owner's."""
    role, dbname = unique("odoo"), unique("db")
    owner = {"managedBy": "odoo-db-operator", "namespace": "secret-customer", "name": "big-deal"}
    with pg.connect(server) as conn:
        pg.ensure_role(conn, role, "pw", owner, reset_password=False)
        pg.create_database(conn, dbname, role, owner | {pg.MARKER_KEY: pg.MARKER_VALUE, "uid": "u-1"})
        comments = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s UNION ALL "
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (dbname, role)).fetchall()
        assert len(comments) == 2
        for (comment,) in comments:
            assert "secret-customer" not in comment and "big-deal" not in comment
            assert json.loads(comment)["owner"] == pg.owner_key("secret-customer", "big-deal")
        assert pg.database_info(conn, dbname).owned_by(owner, role)
        assert not pg.database_info(conn, dbname).owned_by(owner | {"name": "other"}, role)
        # A marker of an earlier version, with the names in clear:
        legacy = json.dumps(owner | {pg.MARKER_KEY: pg.MARKER_VALUE, "uid": "u-1"})
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(dbname), sql.Literal(legacy)))
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(legacy)))
        assert pg.database_info(conn, dbname).owned_by(owner, role)
        assert pg.ensure_role(conn, role, "pw", owner, reset_password=False) is False  # still ours
        pg.set_database_marker(conn, dbname, (pg.database_info(conn, dbname).marker or {}) | {"initialized": True})
        marker = pg.database_info(conn, dbname).marker or {}
        assert "namespace" not in marker and marker["initialized"] is True and marker["uid"] == "u-1"
        pg.drop_database(conn, dbname)
        pg.drop_role(conn, role, owner)
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None


def test_a_template_role_carries_its_marker_and_templates_are_never_counted(server):
    key = uuid.uuid4().hex[:16]
    name = f"{pg.TEMPLATE_PREFIX}{key}"
    marker = {pg.MARKER_KEY: pg.MARKER_VALUE, "key": key, "state": "Building", "version": "16.0"}
    with pg.connect(server) as conn:
        _, before = pg.server_info(conn)
        pg.ensure_template_role(conn, name, "pw-one", marker)
        pg.ensure_template_role(conn, name, "pw-two", marker | {"state": "Building", "image": "odoo:16.0"})
        assert pg.role_marker(conn, name) == marker | {"image": "odoo:16.0"}
        pg.create_database(conn, name, name, marker)
        try:
            assert pg.template_databases(conn)[name] == marker
            assert pg.server_info(conn)[1] == before  # not counted
            # The second call set the password again: the role logs in with it, and no longer once built.
            with psycopg.connect(host=server.host, port=server.port, user=name, password="pw-two", dbname=name):
                pass
            pg.template_built(conn, name)
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(host=server.host, port=server.port, user=name, password="pw-two", dbname=name)
            assert pg.role_exists(conn, name)
        finally:
            pg.drop_database(conn, name)
            assert pg.drop_template_role(conn, name) and not pg.role_exists(conn, name)


def test_a_session_found_again_by_a_retry_is_counted_once(monkeypatch):
    """A session signalled but still exiting when the copy is tried again is found again: it is one session cut,
    as the Copied Event says, not one per attempt."""
    class Conn:
        copies = 0

        def execute(self, statement, *args):
            if isinstance(statement, sql.Composed):  # the CREATE DATABASE … TEMPLATE
                Conn.copies += 1
                if Conn.copies < 3:
                    raise psycopg.errors.ObjectInUse("source database is being accessed by other users")
            return self

    monkeypatch.setattr(pg, "copy_in_progress", lambda *a, **k: False)
    monkeypatch.setattr(pg, "long_statement", lambda conn: contextlib.nullcontext())
    monkeypatch.setattr(pg, "_terminate", lambda conn, dbname: {4242})
    monkeypatch.setattr(pg, "set_database_marker", lambda *a: None)
    monkeypatch.setattr(pg, "ensure_private", lambda *a: False)
    monkeypatch.setattr(pg.time, "sleep", lambda s: None)
    assert pg.copy_database(Conn(), "src", "dst", "role", {}) == 1
    assert Conn.copies == 3
