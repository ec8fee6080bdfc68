"""Fresh identity of a duplicated database, against the real PostgreSQL. (Neutralization is Odoo's own
`odoo neutralize`, in a Job: see test_specs_app and test_duplicate.)"""

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


# ---- the admin's own password in a copy of a template -------------------------------------------------

def test_the_password_hash_is_the_one_odoos_passlib_verifies() -> None:
    """Checked by Odoo's own dependency (passlib, in the real Odoo's virtualenv), with the context Odoo
    builds in res.users._crypt_context: verified, and not flagged for an update (rounds, scheme)."""
    import subprocess

    from odoo_real import ODOO_PYTHON

    hashed = nz.odoo_password_hash("correct horse")
    assert hashed.startswith("$pbkdf2-sha512$600000$")
    script = (
        "import sys\nfrom passlib.context import CryptContext\n"
        "ctx = CryptContext(['pbkdf2_sha512', 'plaintext'], deprecated=['auto'], pbkdf2_sha512__rounds=600000)\n"
        "h = sys.stdin.read()\n"
        "print(ctx.verify('correct horse', h), ctx.verify('wrong', h), ctx.needs_update(h), ctx.identify(h))\n")
    out = subprocess.run([str(ODOO_PYTHON), "-c", script], input=hashed, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False", "False", "pbkdf2_sha512"]


def test_set_admin_password_writes_base_user_admin_and_honours_the_rounds_setting(odoo_db) -> None:
    pg_exec(odoo_db, "CREATE TABLE res_users (id int, password varchar)")
    pg_exec(odoo_db, "DELETE FROM ir_model_data WHERE module = 'base' AND name IN ('user_admin', 'user_root')")
    pg_exec(odoo_db, "INSERT INTO ir_model_data (module, name, model, res_id) VALUES "
                     "('base', 'user_admin', 'res.users', 2), ('base', 'user_root', 'res.users', 1)")
    pg_exec(odoo_db, "INSERT INTO res_users VALUES (1, NULL), (2, 'old')")
    pg_exec(odoo_db, "DELETE FROM ir_config_parameter WHERE key = 'password.hashing.rounds'")
    pg_exec(odoo_db, "INSERT INTO ir_config_parameter (key, value) VALUES ('password.hashing.rounds', '700000')")
    with psycopg.connect(odoo_db, autocommit=True) as conn:
        assert nz.set_admin_password(conn, "s3cret")
    rows = dict(pg_query(odoo_db, "SELECT id, password FROM res_users"))
    assert rows[1] is None and rows[2].startswith("$pbkdf2-sha512$700000$")


def test_set_admin_password_leaves_a_database_without_odoo_alone(empty_db) -> None:
    pg_exec(empty_db, "CREATE TABLE ir_model_data (module varchar, name varchar, res_id int)")
    pg_exec(empty_db, "CREATE TABLE ir_config_parameter (key varchar, value varchar)")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert not nz.set_admin_password(conn, "s3cret")
