"""Everything that talks to PostgreSQL. Knows nothing of Kubernetes.

One connection policy: short connect timeout, autocommit (CREATE/DROP DATABASE cannot run in a
transaction), identifiers always composed with `sql.Identifier`, values with parameters or
`sql.Literal` where PostgreSQL's utility statements take no parameters.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

MARKER_KEY = "managedBy"
MARKER_VALUE = "odoo-db-operator"


class PostgresUnavailable(Exception):
    """The server cannot be reached or refused our credentials; worth retrying."""


class OwnershipConflict(Exception):
    """A database or role of that name exists and belongs to someone else."""


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int
    user: str
    password: str
    sslmode: str = "prefer"
    connect_timeout: int = 5

    def __repr__(self) -> str:  # never print the password
        return f"ServerAddress(host={self.host!r}, port={self.port}, user={self.user!r})"


def _open(server: ServerAddress, dbname: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            dbname=dbname,
            sslmode=server.sslmode,
            connect_timeout=server.connect_timeout,
            autocommit=True,
            application_name="odoo-db-operator",
            options="-c statement_timeout=120s",
        )
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(_short(exc)) from None


class ConnectionPool:
    """A few idle admin connections per server, reused across reconciles: a SCRAM handshake per
    reconcile costs both sides more than the work itself when hundreds of databases are created."""

    def __init__(self, max_idle_per_server: int = 4) -> None:
        self.max_idle = max_idle_per_server
        self._idle: dict[tuple[ServerAddress, str], list[psycopg.Connection[Any]]] = {}
        self._lock = threading.Lock()

    def _checkout(self, key: tuple[ServerAddress, str]) -> psycopg.Connection[Any] | None:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return None
            try:
                conn.execute("SELECT 1")  # an idle connection may have died with a server restart
                return conn
            except psycopg.Error:
                conn.close()

    def _checkin(self, key: tuple[ServerAddress, str], conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            return
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()

    @contextlib.contextmanager
    def connection(self, server: ServerAddress, dbname: str = "postgres") -> Iterator[psycopg.Connection[Any]]:
        key = (server, dbname)
        # Only connections to the maintenance database are kept: an idle connection to a tenant
        # database would block CREATE DATABASE … TEMPLATE and ALTER DATABASE … RENAME.
        conn = (self._checkout(key) if dbname == "postgres" else None) or _open(server, dbname)
        try:
            yield conn
        except psycopg.OperationalError as exc:
            conn.close()
            raise PostgresUnavailable(_short(exc)) from None
        except BaseException:
            conn.close()
            raise
        if dbname == "postgres":
            self._checkin(key, conn)
        else:
            conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


_pool = ConnectionPool()


def connect(server: ServerAddress, dbname: str = "postgres") -> contextlib.AbstractContextManager[
        psycopg.Connection[Any]]:
    """An autocommit connection with the operator's timeouts, from the shared pool."""
    return _pool.connection(server, dbname)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def server_info(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    """Server version (e.g. '15.18') and the number of non-template databases."""
    row = conn.execute(
        "SELECT current_setting('server_version'), (SELECT count(*) FROM pg_database WHERE NOT datistemplate)"
    ).fetchone()
    assert row is not None
    return str(row[0]).split(" ")[0], int(row[1])


def _parse_marker(comment: str | None) -> dict[str, Any] | None:
    if not comment:
        return None
    try:
        marker = json.loads(comment)
    except ValueError:
        return None
    return marker if isinstance(marker, dict) and marker.get(MARKER_KEY) == MARKER_VALUE else None


def _same_owner(marker: dict[str, Any] | None, owner: dict[str, str]) -> bool:
    return marker is not None and all(marker.get(k) == v for k, v in owner.items())


@dataclass(frozen=True)
class DatabaseInfo:
    exists: bool
    marker: dict[str, Any] | None = None
    owner: str | None = None

    def owned_by(self, owner: dict[str, str], role: str) -> bool:
        """Ours if our comment says so, or — when a crash came between CREATE DATABASE and COMMENT —
        if it has no comment and belongs to our own role (created only by us, marked as ours)."""
        if self.marker is not None:
            return _same_owner(self.marker, owner)
        return self.owner == role


def database_info(conn: psycopg.Connection[Any], dbname: str) -> DatabaseInfo:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database'), pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
        (dbname,),
    ).fetchone()
    if row is None:
        return DatabaseInfo(False)
    return DatabaseInfo(True, _parse_marker(row[0]), row[1])


def database_marker(conn: psycopg.Connection[Any], dbname: str) -> tuple[bool, dict[str, Any] | None]:
    """(exists, marker) for a database; the marker is our JSON comment, if any."""
    info = database_info(conn, dbname)
    return info.exists, info.marker


def terminate_connections(conn: psycopg.Connection[Any], dbname: str) -> int:
    """Disconnect every session of a database (as Odoo does before duplicating or renaming)."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    ).fetchall()
    return len(rows)


def copy_database(conn: psycopg.Connection[Any], source: str, target: str, owner_role: str,
                  marker: dict[str, Any], attempts: int = 5) -> int:
    """CREATE DATABASE target TEMPLATE source (FILE_COPY: fastest for large databases), after
    terminating the source's sessions; retried while the app reconnects in between.
    Returns how many sessions were terminated."""
    terminated = 0
    for attempt in range(attempts):
        terminated += terminate_connections(conn, source)
        try:
            conn.execute(
                sql.SQL("CREATE DATABASE {} WITH TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
                    sql.Identifier(target), sql.Identifier(source), sql.Identifier(owner_role)
                )
            )
            break
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    set_database_marker(conn, target, marker)
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(target)))
    return terminated


_REASSIGN_IN_DATABASE = """
DO $reassign$
DECLARE
    r record;
    src oid := (SELECT oid FROM pg_roles WHERE rolname = {source});
    dst text := {target};
BEGIN
    IF src IS NULL THEN
        RETURN;
    END IF;
    FOR r IN SELECT nspname FROM pg_namespace WHERE nspowner = src LOOP
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, dst);
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c
             WHERE c.relowner = src AND c.relkind IN ('r', 'p', 'f', 'v', 'm') LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
                       CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                      WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.rel, dst);
    END LOOP;
    -- Sequences owned by a column moved with their table above; the rest now.
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c WHERE c.relowner = src AND c.relkind = 'S' LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO %I', r.rel, dst);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p WHERE p.proowner = src LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.fn, dst);
    END LOOP;
    FOR r IN SELECT t.oid::regtype AS typ FROM pg_type t
             WHERE t.typowner = src AND t.typtype IN ('d', 'e', 'r', 'm') LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO %I', r.typ, dst);
    END LOOP;
END
$reassign$
"""


def reassign_owned(conn_to_target: psycopg.Connection[Any], from_role: str, to_role: str) -> None:
    """Inside a copied database, hand the source role's objects to the copy's own role.

    Not `REASSIGN OWNED` for the objects: it also moves shared objects, i.e. it would give the *source
    database* itself to the copy's role. Object names are quoted by PostgreSQL (regclass, regprocedure,
    %I). An extension the source role owns (Odoo creates pg_trgm as its own role) has no `ALTER … OWNER`:
    only `REASSIGN OWNED` moves it, so the role's databases are given back in the same transaction —
    no other session ever sees them moved. Left with the source role, the extension would keep that
    role from being dropped with its own database."""
    conn = conn_to_target
    with conn.transaction():
        conn.execute(sql.SQL(_REASSIGN_IN_DATABASE).format(source=sql.Literal(from_role), target=sql.Literal(to_role)))
        owns_extension = conn.execute(
            "SELECT 1 FROM pg_extension WHERE extowner = (SELECT oid FROM pg_roles WHERE rolname = %s)", (from_role,)
        ).fetchone()
        if owns_extension:
            databases = [row[0] for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s)",
                (from_role,)).fetchall()]
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(sql.Identifier(from_role),
                                                                       sql.Identifier(to_role)))
            for name in databases:
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name),
                                                                          sql.Identifier(from_role)))


def rename_database(conn: psycopg.Connection[Any], old: str, new: str, attempts: int = 5) -> int:
    terminated = 0
    for attempt in range(attempts):
        terminated += terminate_connections(conn, old)
        try:
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))
            return terminated
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    return terminated


def set_database_marker(conn: psycopg.Connection[Any], dbname: str, marker: dict[str, Any]) -> None:
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(dbname), sql.Literal(json.dumps(marker, sort_keys=True))
        )
    )


def ensure_role(
    conn: psycopg.Connection[Any], role: str, password: str, owner: dict[str, str], reset_password: bool
) -> bool:
    """Create the login role, or check that the existing one is ours. Returns True if created."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    marker = json.dumps(owner | {MARKER_KEY: MARKER_VALUE}, sort_keys=True)
    if row is None:
        try:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
        except psycopg.errors.DuplicateObject:
            return ensure_role(conn, role, password, owner, reset_password)
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(marker)))
        # Lets an admin that is not a superuser (managed PostgreSQL) hand databases to the role.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidGrantOperation):
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
        return True
    if not _same_owner(_parse_marker(row[0]), owner):
        raise OwnershipConflict(f"PostgreSQL role {role!r} exists and is not managed for this database")
    if reset_password:
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
    return False


def create_database(conn: psycopg.Connection[Any], dbname: str, owner_role: str, marker: dict[str, Any]) -> None:
    """Create an empty database owned by `owner_role`, closed to every other role."""
    conn.execute(
        sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
            sql.Identifier(dbname), sql.Identifier(owner_role)
        )
    )
    set_database_marker(conn, dbname, marker)
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))


def create_odoo_extensions(server: ServerAddress, dbname: str, owner_role: str) -> bool:
    """`CREATE EXTENSION IF NOT EXISTS pg_trgm`, as Odoo's own `_create_empty_database` does in every
    database it creates; like Odoo, a server that refuses it is no error (Odoo then works without
    trigram indexes): returns whether the extension is there. Odoo creates `unaccent` only with its
    `unaccent` option, which the operator never sets.

    Run as the database's own role, as Odoo runs it (as its db_user; pg_trgm is a trusted extension
    since PostgreSQL 13): the role owns the extension, so a dump of an Odoo database, which comments on
    it, restores as that role; and nothing runs as the admin inside a database a tenant owns."""
    with connect(server, dbname) as conn:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner_role)))
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFile,
                psycopg.errors.FeatureNotSupported):
            return False
    return True


def drop_database(conn: psycopg.Connection[Any], dbname: str) -> bool:
    """Drop the database, terminating its connections. Returns True if something was dropped."""
    exists, _ = database_marker(conn, dbname)
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    return exists


def drop_role(conn: psycopg.Connection[Any], role: str, owner: dict[str, str]) -> None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is None or not _same_owner(_parse_marker(row[0]), owner):
        return
    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def database_size(conn: psycopg.Connection[Any], dbname: str) -> int | None:
    row = conn.execute("SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
    return int(row[0]) if row else None
