"""Fresh identity of a duplicated database, against the real PostgreSQL. (Neutralization is Odoo's own
`odoo neutralize`, in a Job: see test_builders and test_duplicate.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from conftest import pg_exec, pg_query
from odoo_operator import neutralize as nz

pytestmark = pytest.mark.integration
ODOO_SCHEMA = (Path(__file__).parent / "fixtures" / "odoo_schema.sql").read_text()


@pytest.fixture
def empty_db(cluster) -> Iterator[str]:
    """DSN of a new, empty database, dropped after the test."""
    admin = cluster.postgres.dsn
    name = f"neutralize_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def odoo_db(empty_db: str) -> str:
    """DSN of a new database holding the Odoo fixture schema and its production rows."""
    pg_exec(empty_db, ODOO_SCHEMA)
    return empty_db


def run(dsn: str, function, *args):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return function(conn, *args)


def params(dsn: str) -> dict[str, str]:
    return dict(pg_query(dsn, "SELECT key, value FROM ir_config_parameter"))


def test_reset_identity_gives_the_copy_its_own_identity(odoo_db):
    before = params(odoo_db)
    started = datetime.now(UTC).replace(tzinfo=None, microsecond=0)

    identity = run(odoo_db, nz.reset_identity, "https://shop-copy.example.com")

    after = params(odoo_db)
    assert set(identity) == {"database.uuid", "database.create_date", "web.base.url"}  # never the secret
    assert {key: after[key] for key in identity} == identity
    assert after["web.base.url"] == "https://shop-copy.example.com"
    for key in ("database.uuid", "database.secret", "database.create_date", "web.base.url"):
        assert after[key] != before[key], key
    assert uuid.UUID(after["database.uuid"]).version == 1
    assert uuid.UUID(after["database.secret"]).version == 4
    created = datetime.strptime(after["database.create_date"], "%Y-%m-%d %H:%M:%S")
    assert started <= created <= started + timedelta(minutes=1)
    assert after["base.login_cooldown_after"] == before["base.login_cooldown_after"]
    # Written as Odoo's ORM does: by the superuser, now (UTC); rows keep their creator.
    rows = pg_query(odoo_db, "SELECT create_uid, create_date, write_uid, write_date FROM ir_config_parameter"
                             " WHERE key = 'web.base.url'")
    assert rows[0][:3] == (1, datetime(2023, 1, 1), nz.SUPERUSER_ID)
    assert started - timedelta(seconds=1) <= rows[0][3] <= started + timedelta(minutes=1)


def test_reset_identity_creates_missing_parameters(odoo_db):
    pg_exec(odoo_db, "DELETE FROM ir_config_parameter WHERE key IN ('database.uuid', 'database.secret')")

    identity = run(odoo_db, nz.reset_identity, "https://copy.example.com")

    assert pg_query(odoo_db, "SELECT value, create_uid, write_uid, create_date IS NOT NULL FROM ir_config_parameter"
                             " WHERE key = 'database.uuid'") == [(identity["database.uuid"], 1, 1, True)]
    assert pg_query(odoo_db, "SELECT count(*) FROM ir_config_parameter WHERE key = 'database.secret'") == [(1,)]


def test_reset_identity_twice_gives_two_identities(odoo_db):
    first = run(odoo_db, nz.reset_identity, "https://a.example.com")
    secret = params(odoo_db)["database.secret"]

    second = run(odoo_db, nz.reset_identity, "https://a.example.com")

    assert second["database.uuid"] != first["database.uuid"]
    assert params(odoo_db)["database.secret"] != secret
    assert pg_query(odoo_db, "SELECT count(*) FROM ir_config_parameter") == [(len(params(odoo_db)),)]


def test_a_database_that_is_not_odoo_is_left_alone(empty_db):
    pg_exec(empty_db, "CREATE TABLE things (id int)")

    assert run(empty_db, nz.reset_identity, "https://x.example.com") == {}
    assert pg_query(empty_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(1,)]


def test_reset_identity_is_one_transaction(odoo_db):
    before = params(odoo_db)
    pg_exec(odoo_db, """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.key = 'web.base.url' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON ir_config_parameter FOR EACH ROW EXECUTE FUNCTION refuse();
    """)

    with pytest.raises(psycopg.errors.RaiseException):
        run(odoo_db, nz.reset_identity, "https://copy.example.com")

    assert params(odoo_db) == before
