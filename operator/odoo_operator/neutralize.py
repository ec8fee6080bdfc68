"""A duplicated Odoo database: a fresh identity and, for test copies, neutralization. Pure PostgreSQL.

Odoo's own duplicate (`odoo/service/db.py`, `exp_duplicate_database`, 17.0/18.0) copies the database,
then calls `env['ir.config_parameter'].init(force=True)` and, when asked, `neutralize_database(cr)`.
This module reproduces both with plain SQL, so the operator needs no Odoo process to do it.

Identity (`reset_identity`) follows `_default_parameters` in
`odoo/addons/base/models/ir_config_parameter.py` (17.0/18.0): `database.secret` = `uuid4()`,
`database.uuid` = `uuid1()`, `database.create_date` = `fields.Datetime.now()` (UTC, formatted as
`DEFAULT_SERVER_DATETIME_FORMAT`), `web.base.url`; written as Odoo's ORM would, by the superuser (uid 1).

Neutralization (`neutralize`) follows `odoo/modules/neutralize.py` (17.0/18.0), which runs the
`data/neutralize.sql` of every installed module. The statements below are those files' statements:

- `odoo/addons/base/data/neutralize.sql` (17.0/18.0): every `ir_mail_server` deactivated and the
  catch-all server 'neutralization - disable emails' (host `invalid`, port 1025) inserted, so that a
  server given on Odoo's command line is never used; every `ir_cron` deactivated except
  `base.autovacuum_job` (found through `ir_model_data`); `ir_act_server` of state `webhook` pointed
  at 'neutralization - disable webhook'; `database.is_neutralized` set to true.
- `addons/mail/data/neutralize.sql` (17.0/18.0): `mail_template.mail_server_id` cleared,
  `fetchmail_server` deactivated, web push reset: the VAPID keys and `mail.sfu_server_key` deleted from
  `ir_config_parameter`, queued pushes and registered devices deleted (17.0 tables
  `mail_notification_web_push`/`mail_partner_device`, 18.0 `mail_push`/`mail_push_device`).
- `addons/iap/data/neutralize.sql` (17.0/18.0): `iap_account.account_token` suffixed with
  `+disabled`; legacy tokens longer than 33 characters replaced by `dummy_value+disabled`.
- `addons/payment/data/neutralize.sql` (16.0-18.0): `payment_provider.state` set to `disabled` unless
  it is `test` (or already `disabled`).
- `addons/delivery/data/neutralize.sql` (17.0/18.0): `delivery_carrier.prod_environment` false for all,
  and carriers of external providers (not `fixed`/`base_on_rule`) archived.

Where this differs from Odoo, on purpose: Odoo runs a file only for an installed module; here a
statement runs when its table and columns exist (a module that is not installed has no tables).
Odoo inserts the catch-all mail server on every run; here it is inserted once and re-activated, so
neutralizing twice leaves one. Odoo truncates the web push tables; here their rows are deleted, which
leaves the same result without `TRUNCATE … CASCADE` reaching tables this module does not look at.
`init(force=True)` also resets `base.login_cooldown_after`/`_duration` to their defaults; a copy keeps
the customer's settings instead. Everything happens in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

Connection = psycopg.Connection[Any]

IS_NEUTRALIZED_KEY = "database.is_neutralized"
CATCH_ALL_MAIL_SERVER = "neutralization - disable emails"
DISABLED_WEBHOOK_URL = "neutralization - disable webhook"
SUPERUSER_ID = 1  # odoo.SUPERUSER_ID: Odoo writes these parameters as OdooBot
ODOO_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # odoo.tools.DEFAULT_SERVER_DATETIME_FORMAT

# -- base/data/neutralize.sql ------------------------------------------------------------------------
DEACTIVATE_MAIL_SERVERS = "UPDATE ir_mail_server SET active = false"
REACTIVATE_CATCH_ALL_MAIL_SERVER = """
UPDATE ir_mail_server SET active = true
 WHERE name = 'neutralization - disable emails' AND smtp_host = 'invalid'
"""
INSERT_CATCH_ALL_MAIL_SERVER = """
INSERT INTO ir_mail_server (name, smtp_port, smtp_host, smtp_encryption, active, smtp_authentication)
SELECT 'neutralization - disable emails', 1025, 'invalid', 'none', true, 'login'
 WHERE NOT EXISTS (SELECT 1 FROM ir_mail_server
                    WHERE name = 'neutralization - disable emails' AND smtp_host = 'invalid')
"""
# `res_id IS NOT NULL`: one NULL in a NOT IN list would make the condition NULL and keep every cron on.
DEACTIVATE_CRONS_BUT_AUTOVACUUM = """
UPDATE ir_cron SET active = false
 WHERE id NOT IN (SELECT res_id FROM ir_model_data
                   WHERE model = 'ir.cron' AND name = 'autovacuum_job' AND module = 'base'
                     AND res_id IS NOT NULL)
"""
DEACTIVATE_ALL_CRONS = "UPDATE ir_cron SET active = false"
DISABLE_WEBHOOKS = """
UPDATE ir_act_server SET webhook_url = 'neutralization - disable webhook' WHERE state = 'webhook'
"""
# -- mail/data/neutralize.sql ------------------------------------------------------------------------
DETACH_MAIL_TEMPLATES = "UPDATE mail_template SET mail_server_id = NULL"
DEACTIVATE_FETCHMAIL_SERVERS = "UPDATE fetchmail_server SET active = false"
DELETE_WEB_PUSH_KEYS = """
DELETE FROM ir_config_parameter
 WHERE key IN ('mail.web_push_vapid_private_key', 'mail.web_push_vapid_public_key', 'mail.sfu_server_key')
"""
DELETE_WEB_PUSH_QUEUE_17 = "DELETE FROM mail_notification_web_push"
DELETE_WEB_PUSH_DEVICES_17 = "DELETE FROM mail_partner_device"
DELETE_WEB_PUSH_QUEUE_18 = "DELETE FROM mail_push"
DELETE_WEB_PUSH_DEVICES_18 = "DELETE FROM mail_push_device"
# -- iap/data/neutralize.sql -------------------------------------------------------------------------
DISABLE_IAP_TOKENS = r"""
UPDATE iap_account SET account_token = REGEXP_REPLACE(account_token, '(\+.*)?$', '+disabled')
 WHERE LENGTH(account_token) <= 33
"""
DISABLE_LEGACY_IAP_TOKENS = """
UPDATE iap_account SET account_token = 'dummy_value+disabled'
 WHERE LENGTH(account_token) > 33 AND account_token NOT LIKE '%+disabled'
"""
# -- payment/data/neutralize.sql ---------------------------------------------------------------------
DISABLE_PAYMENT_PROVIDERS = """
UPDATE payment_provider SET state = 'disabled' WHERE state NOT IN ('test', 'disabled')
"""
# -- delivery/data/neutralize.sql --------------------------------------------------------------------
DISABLE_CARRIER_PRODUCTION = "UPDATE delivery_carrier SET prod_environment = false"
ARCHIVE_EXTERNAL_CARRIERS = """
UPDATE delivery_carrier SET active = false WHERE delivery_type NOT IN ('fixed', 'base_on_rule')
"""

_TABLES = (
    "ir_config_parameter", "ir_model_data", "ir_cron", "ir_act_server", "ir_mail_server", "mail_template",
    "fetchmail_server", "mail_notification_web_push", "mail_partner_device", "mail_push", "mail_push_device",
    "iap_account", "payment_provider", "delivery_carrier",
)


class _Schema:
    """The columns of the tables that neutralization may touch, read once from the catalog."""

    def __init__(self, conn: Connection, tables: Iterable[str]) -> None:
        self._columns: dict[str, set[str]] = {}
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ANY(%s)",
            (list(tables),),
        ).fetchall()
        for table, column in rows:
            self._columns.setdefault(table, set()).add(column)

    def has(self, table: str, *columns: str) -> bool:
        return table in self._columns and self._columns[table].issuperset(columns)

    def columns(self, table: str) -> set[str]:
        return self._columns.get(table, set())


def _mail_servers(conn: Connection, schema: _Schema) -> bool:
    if not schema.has("ir_mail_server", "active"):
        return False
    conn.execute(DEACTIVATE_MAIL_SERVERS)
    if schema.has("ir_mail_server", "name", "smtp_port", "smtp_host", "smtp_encryption", "smtp_authentication"):
        conn.execute(REACTIVATE_CATCH_ALL_MAIL_SERVER)
        conn.execute(INSERT_CATCH_ALL_MAIL_SERVER)
    return True


def _crons(conn: Connection, schema: _Schema) -> bool:
    if not schema.has("ir_cron", "id", "active"):
        return False
    if schema.has("ir_model_data", "res_id", "model", "name", "module"):
        conn.execute(DEACTIVATE_CRONS_BUT_AUTOVACUUM)
    else:  # no ir_model_data, no way to recognise the autovacuum job: all off is the safe side
        conn.execute(DEACTIVATE_ALL_CRONS)
    return True


def _webhooks(conn: Connection, schema: _Schema) -> bool:
    if not schema.has("ir_act_server", "state", "webhook_url"):  # before Odoo 17: no webhook actions
        return False
    conn.execute(DISABLE_WEBHOOKS)
    return True


def _mail_templates(conn: Connection, schema: _Schema) -> bool:
    if not schema.has("mail_template", "mail_server_id"):
        return False
    conn.execute(DETACH_MAIL_TEMPLATES)
    return True


def _fetchmail_servers(conn: Connection, schema: _Schema) -> bool:
    if not schema.has("fetchmail_server", "active"):
        return False
    conn.execute(DEACTIVATE_FETCHMAIL_SERVERS)
    return True


def _web_push(conn: Connection, schema: _Schema) -> bool:
    odoo17 = schema.has("mail_partner_device")
    odoo18 = schema.has("mail_push_device")
    if not (odoo17 or odoo18):
        return False
    if schema.has("ir_config_parameter", "key"):
        conn.execute(DELETE_WEB_PUSH_KEYS)
    if odoo17:
        if schema.has("mail_notification_web_push"):
            conn.execute(DELETE_WEB_PUSH_QUEUE_17)
        conn.execute(DELETE_WEB_PUSH_DEVICES_17)
    if odoo18:
        if schema.has("mail_push"):
            conn.execute(DELETE_WEB_PUSH_QUEUE_18)
        conn.execute(DELETE_WEB_PUSH_DEVICES_18)
    return True


def _iap_accounts(conn: Connection, schema: _Schema) -> bool:
    if not schema.has("iap_account", "account_token"):
        return False
    conn.execute(DISABLE_IAP_TOKENS)
    conn.execute(DISABLE_LEGACY_IAP_TOKENS)
    return True


def _payment_providers(conn: Connection, schema: _Schema) -> bool:
    if not schema.has("payment_provider", "state"):
        return False
    conn.execute(DISABLE_PAYMENT_PROVIDERS)
    return True


def _delivery_carriers(conn: Connection, schema: _Schema) -> bool:
    if not schema.has("delivery_carrier", "prod_environment"):
        return False
    conn.execute(DISABLE_CARRIER_PRODUCTION)
    if schema.has("delivery_carrier", "active", "delivery_type"):
        conn.execute(ARCHIVE_EXTERNAL_CARRIERS)
    return True


_STEPS: tuple[tuple[str, Callable[[Connection, _Schema], bool]], ...] = (
    ("mail servers", _mail_servers),
    ("crons", _crons),
    ("webhooks", _webhooks),
    ("mail templates", _mail_templates),
    ("fetchmail servers", _fetchmail_servers),
    ("web push", _web_push),
    ("IAP accounts", _iap_accounts),
    ("payment providers", _payment_providers),
    ("delivery carriers", _delivery_carriers),
)


def _set_param(conn: Connection, schema: _Schema, key: str, value: str) -> None:
    """`ir.config_parameter.set_param` as the superuser: update the row, or create it."""
    columns = schema.columns("ir_config_parameter")
    now = sql.SQL("(now() AT TIME ZONE 'UTC')")  # Odoo's create_date/write_date: transaction time in UTC
    uid = sql.Placeholder("uid")
    written = {"value": sql.Placeholder("value")} | {
        column: expr for column, expr in (("write_uid", uid), ("write_date", now)) if column in columns
    }
    created = {"key": sql.Placeholder("key")} | written | {
        column: expr for column, expr in (("create_uid", uid), ("create_date", now)) if column in columns
    }
    params = {"key": key, "value": value, "uid": SUPERUSER_ID}
    updated = conn.execute(
        sql.SQL("UPDATE ir_config_parameter SET {} WHERE key = %(key)s").format(
            sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), e) for c, e in written.items())
        ),
        params,
    )
    if updated.rowcount == 0:
        conn.execute(
            sql.SQL("INSERT INTO ir_config_parameter ({}) VALUES ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, created)), sql.SQL(", ").join(created.values())
            ),
            params,
        )


def reset_identity(conn: Connection, base_url: str) -> dict[str, str]:
    """Give a copied database its own uuid, secret and creation date, and its URL.

    Returns the new parameters except `database.secret`, or {} when the database is not an Odoo one.
    """
    with conn.transaction():
        schema = _Schema(conn, ["ir_config_parameter"])
        if not schema.has("ir_config_parameter", "key", "value"):
            return {}
        identity = {
            "database.uuid": str(uuid.uuid1()),
            "database.create_date": datetime.now(UTC).strftime(ODOO_DATETIME_FORMAT),
            "web.base.url": base_url,
        }
        _set_param(conn, schema, "database.secret", str(uuid.uuid4()))
        for key, value in identity.items():
            _set_param(conn, schema, key, value)
    return identity


def neutralize(conn: Connection) -> list[str]:
    """Make a copy safe for testing, as Odoo's neutralization does; returns the steps applied.

    A step applies when its tables exist. `database.is_neutralized` is set last (when the database
    has `ir_config_parameter`); it is not listed among the steps.
    """
    applied: list[str] = []
    with conn.transaction():
        schema = _Schema(conn, _TABLES)
        for name, step in _STEPS:
            if step(conn, schema):
                applied.append(name)
        if schema.has("ir_config_parameter", "key", "value"):
            _set_param(conn, schema, IS_NEUTRALIZED_KEY, "true")
    return applied


def is_neutralized(conn: Connection) -> bool:
    """Whether the database carries Odoo's neutralization flag."""
    row = conn.execute("SELECT to_regclass('ir_config_parameter') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return False
    row = conn.execute("SELECT value FROM ir_config_parameter WHERE key = %s", (IS_NEUTRALIZED_KEY,)).fetchone()
    return row is not None and str(row[0]).strip().lower() not in ("", "false", "0")
