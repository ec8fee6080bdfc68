"""A copied or restored Odoo database's fresh identity (and, for one made from a template, its admin's own
password). Pure PostgreSQL.

Odoo's own duplicate (`odoo/service/db.py`, `exp_duplicate_database`, 16.0-18.0) copies the database,
then calls `env['ir.config_parameter'].init(force=True)` and, when asked, neutralizes it.
Neutralization is Odoo's own code, run by the operator in a Job of the database's image
(`odoo neutralize`, specs.app.build_neutralize_job): the `data/neutralize.sql` of every installed
module, custom ones included, which no fixed list could follow. The identity is reset here, with
plain SQL, so the operator needs no Odoo process for it.

`reset_identity` follows `_default_parameters` in `odoo/addons/base/models/ir_config_parameter.py`
(16.0-18.0): `database.secret` = `uuid4()`, `database.uuid` = `uuid1()`, `database.create_date` =
`fields.Datetime.now()` (UTC, formatted as `DEFAULT_SERVER_DATETIME_FORMAT`), `web.base.url`; written
as Odoo's ORM would, by the superuser (uid 1). `init(force=True)` also resets
`base.login_cooldown_after`/`_duration` to their defaults; a copy keeps the customer's settings
instead. The caller connects as the database's own role: the tables, and any trigger on them, are
the tenant's.

Not here: when it runs, and recording that it ran (controller/odoodatabase_copy.py), the neutralize Job
(specs/app.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

Connection = psycopg.Connection[Any]

SUPERUSER_ID = 1  # odoo.SUPERUSER_ID: Odoo writes these parameters as OdooBot
ODOO_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # odoo.tools.DEFAULT_SERVER_DATETIME_FORMAT


class _Schema:
    """The columns of the tables the identity reset writes, read once from the catalog."""

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


# ---- a new database made from a template: its admin's own password ---------------------------------
# Odoo's `res.users._crypt_context()` (16.0-18.0): passlib's pbkdf2_sha512 with max(MIN_ROUNDS,
# `password.hashing.rounds`) rounds; `_set_encrypted_password` then writes the hash with plain SQL.
MIN_ROUNDS = 600_000
SALT_BYTES = 16  # passlib's pbkdf2_sha512 default salt size
ADMIN_XMLID = ("base", "user_admin")


def _ab64(raw: bytes) -> str:
    """passlib's "adapted base64": standard base64, '.' for '+', no padding."""
    return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")


def odoo_password_hash(password: str, rounds: int = MIN_ROUNDS, salt: bytes | None = None) -> str:
    """The hash Odoo stores for `password`: passlib's `$pbkdf2-sha512$<rounds>$<salt>$<checksum>` (what
    `CryptContext(['pbkdf2_sha512', ...]).hash()` returns), computed by hashlib."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    checksum = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"$pbkdf2-sha512${rounds}${_ab64(salt)}${_ab64(checksum)}"


def set_admin_password(conn: Connection, password: str) -> bool:
    """`env.ref('base.user_admin').write({'password': …})` as Odoo does it (`_set_password`): the hash, with
    the database's own `password.hashing.rounds` if higher, written to res_users.password. As the database's
    own role. Returns False when the database has no base.user_admin (not an Odoo database)."""
    with conn.transaction():
        row = conn.execute("SELECT res_id FROM ir_model_data WHERE module = %s AND name = %s", ADMIN_XMLID).fetchone()
        if row is None:
            return False
        configured = conn.execute("SELECT value FROM ir_config_parameter WHERE key = 'password.hashing.rounds'"
                                  ).fetchone()
        rounds = MIN_ROUNDS
        if configured and str(configured[0]).strip().isdigit():
            rounds = max(rounds, int(str(configured[0]).strip()))
        conn.execute("UPDATE res_users SET password = %s WHERE id = %s", (odoo_password_hash(password, rounds), row[0]))
    return True
