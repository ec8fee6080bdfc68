"""Fresh identity and neutralization of a duplicated database, against the real PostgreSQL."""

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
ALL_STEPS = ["mail servers", "crons", "webhooks", "mail templates", "fetchmail servers", "web push",
             "IAP accounts", "payment providers", "delivery carriers"]


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


def test_neutralize_turns_every_switch_off(odoo_db):
    assert run(odoo_db, nz.is_neutralized) is False

    assert run(odoo_db, nz.neutralize) == ALL_STEPS

    # Only the catch-all server is left active, and it goes nowhere.
    assert pg_query(odoo_db, "SELECT name, smtp_host, smtp_port, smtp_encryption FROM ir_mail_server WHERE active") \
        == [("neutralization - disable emails", "invalid", 1025, "none")]
    # Only base.autovacuum_job runs, not the other module's job of the same name.
    assert pg_query(odoo_db, "SELECT cron_name FROM ir_cron WHERE active") == [("Base: Auto-vacuum internal data",)]
    assert pg_query(odoo_db, "SELECT count(*) FROM fetchmail_server WHERE active") == [(0,)]
    assert pg_query(odoo_db, "SELECT count(*) FROM mail_template WHERE mail_server_id IS NOT NULL") == [(0,)]
    assert pg_query(odoo_db, "SELECT code, state FROM payment_provider ORDER BY id") \
        == [("stripe", "disabled"), ("demo", "test"), ("paypal", "disabled")]
    assert pg_query(odoo_db, "SELECT delivery_type, prod_environment, active FROM delivery_carrier ORDER BY id") \
        == [("fixed", False, True), ("dhl", False, False), ("base_on_rule", False, True)]
    assert pg_query(odoo_db, "SELECT account_token FROM iap_account ORDER BY id") \
        == [("4f3c2b1a0d9e8f7a6b5c4d3e2f1a0b9c+disabled",), ("dummy_value+disabled",)]
    assert pg_query(odoo_db, "SELECT state, webhook_url FROM ir_act_server WHERE id IN (4, 5) ORDER BY id") \
        == [("webhook", "neutralization - disable webhook"), ("object_write", None)]
    assert pg_query(odoo_db, "SELECT (SELECT count(*) FROM mail_partner_device),"
                             " (SELECT count(*) FROM mail_notification_web_push)") == [(0, 0)]

    after = params(odoo_db)
    assert after["database.is_neutralized"] == "true"
    assert not {"mail.web_push_vapid_private_key", "mail.web_push_vapid_public_key", "mail.sfu_server_key"} & set(after)
    assert after["web.base.url"] == "https://shop.example.com"  # identity is reset_identity's business
    assert pg_query(odoo_db, "SELECT write_uid FROM ir_config_parameter WHERE key = 'database.is_neutralized'") \
        == [(nz.SUPERUSER_ID,)]
    assert run(odoo_db, nz.is_neutralized) is True


def test_neutralize_twice_changes_nothing_more(odoo_db):
    first = run(odoo_db, nz.neutralize)
    snapshot = pg_query(odoo_db, "SELECT id, name, smtp_host, active FROM ir_mail_server ORDER BY id")

    assert run(odoo_db, nz.neutralize) == first
    assert pg_query(odoo_db, "SELECT id, name, smtp_host, active FROM ir_mail_server ORDER BY id") == snapshot
    assert pg_query(odoo_db, "SELECT count(*), bool_and(active) FROM ir_mail_server"
                             " WHERE name = 'neutralization - disable emails'") == [(1, True)]
    assert pg_query(odoo_db, "SELECT account_token FROM iap_account ORDER BY id") \
        == [("4f3c2b1a0d9e8f7a6b5c4d3e2f1a0b9c+disabled",), ("dummy_value+disabled",)]
    assert pg_query(odoo_db, "SELECT count(*) FROM ir_config_parameter WHERE key = 'database.is_neutralized'") \
        == [(1,)]


def test_catch_all_server_switched_off_by_hand_is_switched_back_on(odoo_db):
    run(odoo_db, nz.neutralize)
    pg_exec(odoo_db, "UPDATE ir_mail_server SET active = false WHERE smtp_host = 'invalid'")

    run(odoo_db, nz.neutralize)

    assert pg_query(odoo_db, "SELECT name FROM ir_mail_server WHERE active") == [("neutralization - disable emails",)]


def test_database_without_the_modules_is_neutralized_without_error(empty_db):
    pg_exec(empty_db, """
        CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar NOT NULL UNIQUE, value text NOT NULL);
        CREATE TABLE ir_cron (id serial PRIMARY KEY, cron_name varchar, active bool);
        INSERT INTO ir_cron (cron_name, active) VALUES ('one', true), ('two', true);
    """)

    assert run(empty_db, nz.neutralize) == ["crons"]

    assert pg_query(empty_db, "SELECT count(*) FROM ir_cron WHERE active") == [(0,)]
    assert params(empty_db) == {"database.is_neutralized": "true"}
    assert run(empty_db, nz.is_neutralized) is True


def test_neutralize_is_one_transaction(odoo_db):
    # The flag is written last; refusing it must leave nothing half done.
    pg_exec(odoo_db, """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused'; END $$;
        CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON ir_config_parameter FOR EACH ROW EXECUTE FUNCTION refuse();
    """)

    with pytest.raises(psycopg.errors.RaiseException):
        run(odoo_db, nz.neutralize)

    assert pg_query(odoo_db, "SELECT name FROM ir_mail_server WHERE active") == [("Production relay",)]
    assert pg_query(odoo_db, "SELECT count(*) FROM ir_cron WHERE active") == [(3,)]
    assert "mail.web_push_vapid_private_key" in params(odoo_db)


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
    assert run(empty_db, nz.neutralize) == []
    assert run(empty_db, nz.is_neutralized) is False
    assert pg_query(empty_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(1,)]
