"""PostgreSQL for the benchmarks: admin connections to the harness's server, database sizes and row
counts, creating and dropping databases, a quiet starting line before each measurement (`settle`), the
environment of its client tools, watching the operator's copies (`CopyPoller`: when its CREATE DATABASE
started and committed; `create_database_durations`: their durations in the server log; bench_duplicate and
bench_upgrade), and an Odoo-like data set generated in SQL (`fill`, shared by bench_duplicate, bench_backup
and bench_move; its tables and statements reused by bench_upgrade).

Nothing Kubernetes here (harness.py), no report (report.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from harness import MB, PG_BIN_DIR, REPO_ROOT, Postgres, log, proc_cpu
from psycopg import sql

ODOO_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "odoo_schema.sql"


# ---- connections and databases ---------------------------------------------------------------------------

def connect(pg: Postgres, dbname: str = "postgres") -> psycopg.Connection[Any]:
    """An autocommit admin session (application_name odoo-bench)."""
    return psycopg.connect(pg.dsn, dbname=dbname, autocommit=True, application_name="odoo-bench")


def database_size(pg: Postgres, name: str) -> int:
    with connect(pg) as conn:
        row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def create_database(pg: Postgres, name: str) -> None:
    """An empty database `name` (dropped first if it exists)."""
    with connect(pg) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(pg: Postgres, name: str) -> None:
    with connect(pg) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_exists(pg: Postgres, name: str) -> bool:
    with connect(pg) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None and row[0] > 0


def terminate_sessions(conn: psycopg.Connection[Any], dbname: str) -> int:
    rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                        "AND pid <> pg_backend_pid()", (dbname,)).fetchall()
    return len(rows)


def table_counts(pg: Postgres, name: str) -> dict[str, int]:
    """Exact row count of every ordinary table in schema public."""
    with connect(pg, name) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY relname").fetchall()]
        counts = {}
        for t in tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()
            assert row is not None
            counts[t] = int(row[0])
    return counts


def settle(pg: Postgres, autovacuum: bool = False) -> None:
    """Same starting line for every measurement: no dirty shared buffers, no dirty page cache; with
    `autovacuum`, first no autovacuum worker at work (up to 2 minutes)."""
    with connect(pg) as conn:
        deadline = time.monotonic() + 120
        while autovacuum and time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
                               " AND state IS DISTINCT FROM 'idle'").fetchone()
            if not row or not row[0]:
                break
            time.sleep(0.2)
        conn.execute("CHECKPOINT")
    os.sync()


def tool_env(pg: Postgres) -> dict[str, str]:
    """Environment for pg_dump/psql and `python -m odoo_operator.backupjob` against the server."""
    path = f"{PG_BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT / "operator"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "PGHOST": "127.0.0.1", "PGPORT": str(pg.port),
            "PGUSER": pg.user, "PGPASSWORD": pg.password, "PGSSLMODE": "disable"}


def tool_args(pg: Postgres) -> list[str]:
    """Connection options of the client tools (their password: PGPASSWORD, see tool_env)."""
    return ["-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user]


# ---- the operator's copies, seen from PostgreSQL ----------------------------------------------------------

class CopyPoller(threading.Thread):
    """Polls PostgreSQL while the operator duplicates: when its CREATE DATABASE started (from
    pg_stat_activity.query_start, mapped onto this process's monotonic clock) and when the new
    database became visible in pg_database (its CREATE DATABASE committed)."""

    QUERY = """
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %(target)s), copy.query_start, copy.pid, clock_timestamp()
FROM (SELECT 1) AS one LEFT JOIN (
    SELECT query_start, pid FROM pg_stat_activity WHERE application_name = 'odoo-db-operator'
       AND state = 'active' AND query ILIKE 'CREATE DATABASE%%' ORDER BY query_start LIMIT 1) AS copy ON true
"""

    def __init__(self, pg: Postgres, target: str, interval: float = 0.01) -> None:
        super().__init__(name="copy-poller", daemon=True)
        self.conn = connect(pg)
        self.target, self.interval = target, interval
        self.copy_started: float | None = None  # monotonic
        self.visible: float | None = None  # monotonic, first poll that saw the database
        self.pid: int | None = None  # the operator's backend running the copy
        self.cpu_first_seen: tuple[float, float] | None = None
        self.cpu_visible: tuple[float, float] | None = None
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                row = self.conn.execute(self.QUERY, {"target": self.target}).fetchone()
                now = time.monotonic()
                assert row is not None
                exists, query_start, pid, server_now = row
                if query_start is not None and self.copy_started is None:
                    self.copy_started = now - (server_now - query_start).total_seconds()
                    self.pid, self.cpu_first_seen = pid, proc_cpu(pid)
                if exists:
                    self.visible = now
                    self.cpu_visible = proc_cpu(self.pid)
                    return
                self.stopping.wait(self.interval)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.conn.close()


DURATION_RE = re.compile(r"duration: (?P<ms>[\d.]+) ms\s+statement: (?P<statement>CREATE DATABASE.*)", re.IGNORECASE)
CREATED_NAME_RE = re.compile(r'CREATE DATABASE\s+"?([\w-]+)"?', re.IGNORECASE)


def create_database_durations(log_path: Path) -> dict[str, float]:
    """Seconds per database name, of the CREATE DATABASE statements the server logged with their duration."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            match = DURATION_RE.search(line)
            name = CREATED_NAME_RE.match(match["statement"]) if match else None
            if match and name:
                found[name[1]] = float(match["ms"]) / 1000
    return found


# ---- the data: Odoo-like tables, generated in SQL -------------------------------------------------------

# Approximate bytes per row on disk (heap + TOAST + indexes), to size the first pass; the fill then
# tops up mail_message until pg_database_size reaches the target.
BYTES_PER_ROW = {"res_partner": 420, "account_move": 190, "account_move_line": 330, "mail_message": 1000}
SHARE = {"res_partner": 0.12, "account_move": 0.08, "account_move_line": 0.45, "mail_message": 0.35}

CREATE_TABLES = """
CREATE TABLE res_partner (
    id serial PRIMARY KEY, name varchar NOT NULL, display_name varchar, ref varchar, email varchar,
    phone varchar, street varchar, street2 varchar, city varchar, zip varchar, country_id int4,
    company_id int4, vat varchar, active bool DEFAULT true, comment text,
    create_uid int4, create_date timestamp, write_uid int4, write_date timestamp);
CREATE TABLE account_move (
    id serial PRIMARY KEY, name varchar NOT NULL, ref varchar, date date NOT NULL, state varchar NOT NULL,
    move_type varchar NOT NULL, journal_id int4 NOT NULL, partner_id int4, company_id int4,
    amount_total numeric, amount_residual numeric, payment_state varchar, invoice_origin varchar,
    create_uid int4, create_date timestamp, write_uid int4, write_date timestamp);
CREATE TABLE account_move_line (
    id serial PRIMARY KEY, move_id int4 NOT NULL, account_id int4 NOT NULL, partner_id int4,
    company_id int4, journal_id int4, name varchar, ref varchar, date date NOT NULL, parent_state varchar,
    debit numeric, credit numeric, balance numeric, amount_currency numeric, amount_residual numeric,
    quantity numeric, price_unit numeric, reconciled bool, display_type varchar,
    create_uid int4, create_date timestamp, write_uid int4, write_date timestamp);
CREATE TABLE mail_message (
    id serial PRIMARY KEY, model varchar, res_id int4, message_type varchar NOT NULL, subject varchar,
    body text, author_id int4, subtype_id int4, record_name varchar, message_id varchar, date timestamp,
    create_uid int4, create_date timestamp, write_uid int4, write_date timestamp);
"""

# {first} / {last}: the ids to generate; {partners}: how many partners exist (for references).
FILL = {
    "res_partner": """
INSERT INTO res_partner (name, display_name, ref, email, phone, street, street2, city, zip, country_id, company_id,
                         vat, comment, create_uid, create_date, write_uid, write_date)
SELECT 'Partner ' || substr(md5(g::text), 1, 10),
       'Company ' || (g % 5000) || ', Partner ' || substr(md5(g::text), 1, 10),
       'C' || lpad(g::text, 8, '0'), 'contact' || g || '@' || substr(md5((g % 5000)::text), 1, 8) || '.example.com',
       '+32 4' || lpad((g::int8 * 7919 % 100000000)::text, 8, '0'), (g % 997) || ' ' || md5((g * 3)::text) || ' street',
       CASE WHEN g % 3 = 0 THEN 'Building ' || (g % 40) END, 'City ' || (g % 5000), lpad((g % 99999)::text, 5, '0'),
       g % 250 + 1, 1, 'BE0' || lpad((g::int8 * 104729 % 1000000000)::text, 9, '0'),
       CASE WHEN g % 4 = 0 THEN md5(g::text || 'c') || ' ' || md5(g::text || 'd') || ' ' || md5(g::text || 'e') END,
       2, timestamp '2020-01-01' + g * interval '37 second', 2, timestamp '2024-01-01' + g * interval '11 second'
FROM generate_series({first}, {last}) g
""",
    "account_move": """
INSERT INTO account_move (name, ref, date, state, move_type, journal_id, partner_id, company_id, amount_total,
                          amount_residual, payment_state, invoice_origin, create_uid, create_date, write_uid,
                          write_date)
SELECT 'INV/' || (2020 + g % 5) || '/' || lpad(g::text, 7, '0'), 'SO' || lpad((g * 7 % 999999)::text, 6, '0'),
       date '2020-01-01' + g % 1800, CASE WHEN g % 20 = 0 THEN 'draft' ELSE 'posted' END,
       (ARRAY['out_invoice', 'in_invoice', 'out_refund', 'entry'])[g % 4 + 1], g % 12 + 1,
       (g * 31) % {partners} + 1, 1, round(((g::int8 * 7919) % 1000000) / 100.0, 2),
       CASE WHEN g % 3 = 0 THEN round(((g::int8 * 7919) % 1000000) / 100.0, 2) ELSE 0 END,
       (ARRAY['paid', 'not_paid', 'partial', 'in_payment'])[g % 4 + 1], 'S' || lpad((g % 99999)::text, 5, '0'),
       2, timestamp '2020-01-01' + g * interval '13 second', 2, timestamp '2024-01-01' + g * interval '5 second'
FROM generate_series({first}, {last}) g
""",
    "account_move_line": """
INSERT INTO account_move_line (move_id, account_id, partner_id, company_id, journal_id, name, ref, date,
                               parent_state, debit, credit, balance, amount_currency, amount_residual, quantity,
                               price_unit, reconciled, display_type, create_uid, create_date, write_uid,
                               write_date)
SELECT g / 4 + 1, 100 + (g * 13) % 300, (g / 4 * 31) % {partners} + 1, 1, (g / 4) % 12 + 1,
       '[' || substr(md5((g % 20000)::text), 1, 8) || '] Product ' || (g % 20000) || ' ' || substr(md5(g::text), 1, 12),
       'INV/' || (2020 + (g / 4) % 5) || '/' || lpad((g / 4)::text, 7, '0'), date '2020-01-01' + (g / 4) % 1800,
       'posted', CASE WHEN g % 2 = 0 THEN round(((g::int8 * 7919) % 1000000) / 100.0, 2) ELSE 0 END,
       CASE WHEN g % 2 = 1 THEN round(((g::int8 * 7919) % 1000000) / 100.0, 2) ELSE 0 END,
       round(((g::int8 * 7919) % 1000000) / 100.0, 2) * (1 - 2 * (g % 2)),
       round(((g::int8 * 7919) % 1000000) / 100.0, 2) * (1 - 2 * (g % 2)),
       CASE WHEN g % 3 = 0 THEN round(((g::int8 * 7919) % 1000000) / 100.0, 2) ELSE 0 END, g % 17 + 1,
       round(((g::int8 * 104729) % 100000) / 100.0, 2), g % 3 <> 0,
       CASE WHEN g % 4 = 3 THEN 'payment_term' ELSE 'product' END,
       2, timestamp '2020-01-01' + g * interval '3 second', 2, timestamp '2024-01-01' + g * interval '1 second'
FROM generate_series({first}, {last}) g
""",
    "mail_message": """
INSERT INTO mail_message (model, res_id, message_type, subject, body, author_id, subtype_id, record_name, message_id,
                          date, create_uid, create_date, write_uid, write_date)
SELECT (ARRAY['account.move', 'res.partner', 'sale.order', 'crm.lead'])[g % 4 + 1], (g * 7) % 500000 + 1,
       CASE WHEN g % 3 = 0 THEN 'email' ELSE 'comment' END,
       CASE WHEN g % 3 = 0 THEN 'Re: order ' || substr(md5(g::text), 1, 8) END,
       '<div><p>Dear customer,</p><p>' || md5(g::text) || ' ' || md5((g + 1)::text) || ' '
       || md5((g * 3)::text) || ' ' || md5((g * 5)::text) || '</p><p>Your order ' || substr(md5((g * 7)::text), 1, 8)
       || ' has been ' || (ARRAY['confirmed', 'shipped', 'invoiced', 'paid'])[g % 4 + 1] || '.</p><p>'
       || md5((g * 11)::text) || ' ' || md5((g * 13)::text) || ' ' || md5((g * 17)::text)
       || '</p><p>Best regards,<br/>The team</p></div>',
       (g * 31) % {partners} + 1, g % 8 + 1, 'Record ' || substr(md5((g % 500000)::text), 1, 10),
       '<' || md5(g::text) || '.' || g || '@odoo.example.com>', timestamp '2020-01-01' + g * interval '7 second',
       2, timestamp '2020-01-01' + g * interval '7 second', 2, timestamp '2024-01-01' + g * interval '2 second'
FROM generate_series({first}, {last}) g
""",
}

INDEXES = {
    "res_partner": [
        "CREATE INDEX res_partner__name_index ON res_partner (name)",
        "CREATE INDEX res_partner__email_index ON res_partner (email)",
        "CREATE INDEX res_partner__ref_index ON res_partner (ref)",
        "CREATE INDEX res_partner__company_id_index ON res_partner (company_id)",
    ],
    "account_move": [
        "CREATE INDEX account_move__name_index ON account_move (name)",
        "CREATE INDEX account_move__date_index ON account_move (date)",
        "CREATE INDEX account_move__partner_id_index ON account_move (partner_id)",
        "CREATE INDEX account_move__journal_id_index ON account_move (journal_id)",
    ],
    "account_move_line": [
        "CREATE INDEX account_move_line__move_id_index ON account_move_line (move_id)",
        "CREATE INDEX account_move_line__account_id_index ON account_move_line (account_id)",
        "CREATE INDEX account_move_line__partner_id_index ON account_move_line (partner_id)",
        "CREATE INDEX account_move_line__date_index ON account_move_line (date)",
        "CREATE INDEX account_move_line__journal_id_index ON account_move_line (journal_id)",
    ],
    "mail_message": [
        "CREATE INDEX mail_message__model_res_id_index ON mail_message (model, res_id)",
        "CREATE INDEX mail_message__author_id_index ON mail_message (author_id)",
        "CREATE INDEX mail_message__message_id_index ON mail_message (message_id)",
    ],
}


@dataclass
class TableFacts:
    name: str
    rows: int
    heap_bytes: int  # table + TOAST
    index_bytes: int


def fill(pg: Postgres, dbname: str, role: str, size_mb: int,
         real_odoo: bool = False) -> tuple[list[TableFacts], float]:
    """Fill `dbname` with ~size_mb of Odoo-like data owned by `role`; returns per-table facts and the time.

    `real_odoo`: `dbname` is a real Odoo database (`odoo-bin -i base`): no fixture, and partners go into Odoo's
    own res_partner after its rows (its columns and indexes are Odoo's; the generator's country ids 1-250 are
    Odoo's countries); account_move, account_move_line and mail_message are created as here (their modules are
    not installed: Odoo's registry ignores those tables). Otherwise the Odoo tables of the fixture and all four
    tables with their indexes are created. Either way mail_message is then topped up to the size."""
    target = size_mb * MB
    started = time.monotonic()
    rows = {t: max(100, int(target * SHARE[t] / BYTES_PER_ROW[t])) for t in SHARE}
    partners = rows["res_partner"]

    def session() -> psycopg.Connection[Any]:
        conn = connect(pg, dbname)
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute("SET synchronous_commit = off")
        return conn

    first_partner = 1
    if real_odoo:
        with connect(pg, dbname) as conn:
            row = conn.execute("SELECT max(id) FROM res_partner").fetchone()
        first_partner = int(row[0] if row and row[0] else 0) + 1
    kept = ("res_partner",) if real_odoo else ()  # Odoo's own table, with its own indexes
    with session() as conn:
        if not real_odoo:
            conn.execute(ODOO_FIXTURE.read_text())  # Odoo's config parameters, crons, mail servers…: a real identity
        for statement in (s.strip() for s in CREATE_TABLES.split(";")):
            if statement and not any(statement.startswith(f"CREATE TABLE {name} ") for name in kept):
                conn.execute(statement)

    def insert(name: str, first: int, last: int) -> None:
        with session() as conn:
            conn.execute(sql.SQL(FILL[name]).format(first=sql.Literal(first), last=sql.Literal(last),
                                                    partners=sql.Literal(partners)))

    def index(name: str) -> None:
        with session() as conn:
            for statement in INDEXES[name]:
                conn.execute(statement)

    # Two cores: the two largest tables in halves, so both cores stay busy until the end.
    chunks: list[tuple[str, int, int]] = []
    for name, count in sorted(rows.items(), key=lambda kv: -kv[1] * BYTES_PER_ROW[kv[0]]):
        first = first_partner if name == "res_partner" else 1
        halves = 2 if name in ("account_move_line", "mail_message") else 1
        step = count // halves
        for h in range(halves):
            chunks.append((name, first + h * step, first + (count if h == halves - 1 else (h + 1) * step) - 1))
    log(f"filling {dbname!r}: " + ", ".join(f"{n} {c:,} rows" for n, c in rows.items()))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(insert, *chunk) for chunk in chunks]:
            future.result()
    log(f"rows in after {time.monotonic() - started:.0f}s; creating indexes")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(index, name) for name in sorted(INDEXES, key=lambda n: -rows[n])
                       if name not in kept]:
            future.result()

    # Top up mail_message (its indexes exist now) until the database has the requested size.
    next_id = rows["mail_message"] + 1
    for _ in range(8):
        size = database_size(pg, dbname)
        if size >= target * 0.99:
            break
        with session() as conn:
            row = conn.execute("SELECT pg_total_relation_size('mail_message'), count(*) FROM mail_message").fetchone()
        assert row is not None
        per_row = max(200.0, row[0] / max(1, row[1]))
        extra = int((target - size) / per_row) + 100
        log(f"{size / MB:.0f} MB so far; {extra:,} more mail_message rows")
        insert("mail_message", next_id, next_id + extra - 1)
        next_id += extra
    log("VACUUM ANALYZE")
    with session() as conn:
        conn.execute("RESET ROLE")
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
        facts = []
        for name in SHARE:
            row = conn.execute(
                sql.SQL("SELECT (SELECT count(*) FROM {}), pg_table_size(%s), pg_indexes_size(%s)").format(
                    sql.Identifier(name)), (name, name)).fetchone()
            assert row is not None
            facts.append(TableFacts(name, int(row[0]), int(row[1]), int(row[2])))
    return facts, time.monotonic() - started
