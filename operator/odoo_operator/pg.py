"""Everything that talks to PostgreSQL. Knows nothing of Kubernetes.

One connection policy: short connect timeout, autocommit (CREATE/DROP DATABASE cannot run in a
transaction), identifiers always composed with `sql.Identifier`, values with parameters or
`sql.Literal` where PostgreSQL's utility statements take no parameters.

Nothing a tenant owns runs with the admin role. A tenant owns its database and everything in it
(tables, triggers, functions, its database-level settings), so an admin connection — also one into a
tenant's database — has its `search_path` pinned to `pg_catalog, pg_temp` in the startup packet (which
takes precedence over `ALTER DATABASE … SET`), and only runs catalog statements there (`REASSIGN
OWNED`, `DROP OWNED`); every write into a tenant's tables is made as the tenant's own role
(`ServerAddress.as_role`, `SET LOCAL ROLE`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
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
APPLICATION_NAME = "odoo-db-operator"


class PostgresUnavailable(Exception):
    """The server cannot be reached or refused our credentials; worth retrying."""


class StatementCancelled(PostgresUnavailable):
    """PostgreSQL cancelled a statement (an administrator's pg_cancel_backend, a timeout): the server is
    up; the step is retried as it is."""


class CopyInProgress(Exception):
    """A CREATE DATABASE … TEMPLATE for this name still runs (started by an operator that was stopped
    since): wait for it instead of copying again and disconnecting the source's users again."""


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
    tenant: bool = False  # a tenant's own role: its own search_path; the admin's is pinned

    def __repr__(self) -> str:  # never print the password
        return f"ServerAddress(host={self.host!r}, port={self.port}, user={self.user!r})"

    def as_role(self, user: str, password: str) -> ServerAddress:
        """The same server, as a tenant's own login role."""
        return dataclasses.replace(self, user=user, password=password, tenant=True)


# Every statement of the operator is short, except the ones whose duration grows with the database
# (copy, rename, drop): those run under `long_statement`, without a timeout.
STATEMENT_TIMEOUT = "120s"
ADMIN_SEARCH_PATH = "pg_catalog,pg_temp"


def _open(server: ServerAddress, dbname: str) -> psycopg.Connection[Any]:
    options = f"-c statement_timeout={STATEMENT_TIMEOUT}"
    if not server.tenant:
        options += f" -c search_path={ADMIN_SEARCH_PATH}"
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
            application_name=APPLICATION_NAME,
            options=options,
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
        except psycopg.errors.QueryCanceled as exc:
            conn.close()
            raise StatementCancelled(_short(exc)) from None
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


@contextlib.contextmanager
def long_statement(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """No statement timeout for a statement whose duration grows with the data (a 100 GB copy takes
    as long as it takes: cancelling it only makes the retry start over). Back to the connection's own
    timeout afterwards: pooled connections are reused."""
    conn.execute("SET statement_timeout = 0")
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("RESET statement_timeout")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def database_names(conn: psycopg.Connection[Any]) -> set[str]:
    """Every database of the server: one query for all of them (drift is checked per server, not per database)."""
    return {str(row[0]) for row in conn.execute("SELECT datname FROM pg_database").fetchall()}


TEMPLATE_PREFIX = "_odoo_template_"  # the operator's template databases (and their roles): never counted, listed
_TEMPLATE_LIKE = TEMPLATE_PREFIX.replace("_", "\\_") + "%"


def server_info(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    """Server version (e.g. '15.18') and the number of databases: PostgreSQL's own templates
    (template0/1) and the operator's (templates.py) are not counted."""
    row = conn.execute(
        "SELECT current_setting('server_version'), (SELECT count(*) FROM pg_database WHERE NOT datistemplate"
        " AND datname NOT LIKE %s)", (_TEMPLATE_LIKE,)
    ).fetchone()
    assert row is not None
    return str(row[0]).split(" ")[0], int(row[1])


def template_databases(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any] | None]:
    """The operator's template databases on the server, with their markers (None: no marker yet)."""
    rows = conn.execute("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
                        " WHERE datname LIKE %s", (_TEMPLATE_LIKE,)).fetchall()
    return {str(name): _parse_marker(comment) for name, comment in rows}


def ensure_template_role(conn: psycopg.Connection[Any], role: str, password: str, marker: dict[str, Any]) -> None:
    """The login role a template database belongs to while Odoo initialises it (never a superuser, no
    CREATEDB): created, or its password set again (the Secret is the source of truth). It carries the
    template's marker before the database exists, so a database left without its own (CREATE DATABASE and
    its COMMENT are two statements) is recognised and given it (`role_marker`)."""
    verifier = sql.Literal(password_verifier(conn, role, password))
    comment = sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(json.dumps(
        marker, sort_keys=True)))
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    with conn.transaction():
        if exists:
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(role), verifier))
        else:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), verifier))
        conn.execute(comment)


def role_marker(conn: psycopg.Connection[Any], role: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
                       (role,)).fetchone()
    return _parse_marker(row[0]) if row else None
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidGrantOperation):
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))


def role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def template_built(conn: psycopg.Connection[Any], role: str) -> None:
    """A built template's role may no longer log in: copies are made by the admin."""
    conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))


def installed_modules(server: ServerAddress, dbname: str, modules: list[str]) -> set[str]:
    """Which of Odoo's `modules` are installed in the database (empty when it has no Odoo tables). Only for the
    operator's own databases (templates): the admin's search_path is pinned, the table named in full."""
    with connect(server, dbname) as conn:
        try:
            rows = conn.execute("SELECT name FROM public.ir_module_module WHERE state = 'installed'"
                                " AND name = ANY(%s)", (modules,)).fetchall()
        except psycopg.errors.UndefinedTable:
            return set()
    return {str(row[0]) for row in rows}


def drop_template_role(conn: psycopg.Connection[Any], role: str) -> bool:
    """DROP ROLE of a template's role; False while it still owns something somewhere (a copy of the
    template not yet handed to its own role): tried again at a later check."""
    try:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    except psycopg.errors.DependentObjectsStillExist:
        return False
    return True


def _parse_marker(comment: str | None) -> dict[str, Any] | None:
    if not comment:
        return None
    try:
        marker = json.loads(comment)
    except ValueError:
        return None
    return marker if isinstance(marker, dict) and marker.get(MARKER_KEY) == MARKER_VALUE else None


def owner_key(namespace: str, name: str) -> str:
    """How a marker names its owner: a digest of namespace/name (the one in its role's name), never
    the names: every role connected to the server reads every database's and role's comment."""
    return hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:20]


def _normalised(marker: dict[str, Any]) -> dict[str, Any]:
    """A marker with `namespace` and `name` (as callers give it, and as markers written before were)
    with the two replaced by their `owner` key."""
    if "namespace" not in marker or "name" not in marker:
        return marker
    rest = {k: v for k, v in marker.items() if k not in ("namespace", "name")}
    return rest | {"owner": owner_key(str(marker["namespace"]), str(marker["name"]))}


def _same_owner(marker: dict[str, Any] | None, owner: dict[str, str]) -> bool:
    if marker is None:
        return False
    marker, wanted = _normalised(marker), _normalised(owner)
    return all(marker.get(k) == v for k, v in wanted.items())


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
    """Disconnect every client session of a database (as Odoo does before duplicating or renaming), waiting
    up to a second for each to be gone (PostgreSQL 14+): a session signalled but not yet exited would make
    the next attempt fail again and be counted twice. Only client backends: an autovacuum worker on the
    database is PostgreSQL's own (CREATE/ALTER/DROP DATABASE stop it themselves) and nobody's session."""
    return len(_terminate(conn, dbname))


def _terminate(conn: psycopg.Connection[Any], dbname: str) -> set[int]:
    """terminate_connections, naming the sessions (their pids): a retry counts each session once."""
    rows = conn.execute(
        "SELECT pid, pg_terminate_backend(pid, 1000) FROM pg_stat_activity WHERE datname = %s"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        (dbname,),
    ).fetchall()
    return {int(row[0]) for row in rows}


FILE_COPY = "FILE_COPY"  # files copied as they are, after a checkpoint: fastest for large databases
WAL_LOG = "WAL_LOG"  # block by block through the WAL, no checkpoint: PostgreSQL's choice for small templates


def _copy_statement(source: str, target: str, owner_role: str, strategy: str = FILE_COPY) -> sql.Composed:
    assert strategy in (FILE_COPY, WAL_LOG)
    return sql.SQL("CREATE DATABASE {} WITH TEMPLATE {} OWNER {} STRATEGY {}").format(
        sql.Identifier(target), sql.Identifier(source), sql.Identifier(owner_role), sql.SQL(strategy))


def copy_in_progress(conn: psycopg.Connection[Any], source: str, target: str, owner_role: str,
                     strategy: str = FILE_COPY) -> bool:
    """Whether another session (an operator stopped mid-copy: PostgreSQL finishes the statement) still
    runs this very copy."""
    row = conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query = %s",
        (_copy_statement(source, target, owner_role, strategy).as_string(conn),),
    ).fetchone()
    return row is not None


def copy_database(conn: psycopg.Connection[Any], source: str, target: str, owner_role: str,
                  marker: dict[str, Any], attempts: int = 5, strategy: str = FILE_COPY) -> int:
    """CREATE DATABASE target TEMPLATE source (FILE_COPY by default: fastest for large databases; WAL_LOG
    for a small template, which forces no checkpoint on a server many tenants share), without a
    statement timeout. The source's sessions are terminated (as Odoo does before it duplicates) only
    when PostgreSQL refuses the copy because of them, and again while the app reconnects in between.
    Returns how many sessions were terminated. Raises CopyInProgress when a previous attempt's
    statement still runs: nobody is disconnected for a copy already being made."""
    if copy_in_progress(conn, source, target, owner_role, strategy):
        raise CopyInProgress(f"a copy of {source!r} to {target!r} is still running on the server")
    terminated: set[int] = set()
    with long_statement(conn):
        for attempt in range(attempts):
            try:
                conn.execute(_copy_statement(source, target, owner_role, strategy))
                break
            except psycopg.errors.ObjectInUse:
                if attempt == attempts - 1:
                    raise
                terminated |= _terminate(conn, source)
                time.sleep(0.2 * attempt)
    set_database_marker(conn, target, marker)
    ensure_private(conn, target)
    return len(terminated)


def reassign_owned(conn_to_target: psycopg.Connection[Any], from_role: str, to_role: str) -> None:
    """Inside a copied database, hand the source role's objects to the copy's own role, and leave the
    source role nothing there: PostgreSQL's own way to free a role (REASSIGN OWNED, then DROP OWNED, in
    each database), so `DROP ROLE` of the source succeeds once the source is deleted.

    `REASSIGN OWNED` moves every object (tables, sequences, functions, types, schemas, extensions — Odoo
    creates pg_trgm as its own role —, large objects); `DROP OWNED` then removes the source role's
    default privileges and the privileges granted to it in the copy (REASSIGN leaves both). REASSIGN
    also moves the role's shared objects, i.e. it would give the *source database* itself to the
    copy's role: the role's databases are given back in the same transaction, so no other session
    ever sees them moved.

    Runs as the admin inside a database the tenant owns: only catalog statements, on a connection
    whose search_path is pinned (`_open`): no function, operator, trigger or setting of the tenant's
    is ever called."""
    conn = conn_to_target
    with conn.transaction():
        databases = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_catalog.pg_database"
            " WHERE datdba OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_roles"
            " WHERE rolname OPERATOR(pg_catalog.=) %s)", (from_role,)).fetchall()]
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(sql.Identifier(from_role), sql.Identifier(to_role)))
        for name in databases:
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name),
                                                                      sql.Identifier(from_role)))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(from_role)))


def rename_database(conn: psycopg.Connection[Any], old: str, new: str, attempts: int = 5) -> int:
    """ALTER DATABASE … RENAME (refused while anyone is connected: sessions are terminated, as Odoo's
    rename does, and again while the app reconnects in between). Returns how many were terminated."""
    terminated: set[int] = set()
    with long_statement(conn):
        for attempt in range(attempts):
            terminated |= _terminate(conn, old)
            try:
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old),
                                                                           sql.Identifier(new)))
                return len(terminated)
            except psycopg.errors.ObjectInUse:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
    return len(terminated)


def set_database_marker(conn: psycopg.Connection[Any], dbname: str, marker: dict[str, Any]) -> None:
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(dbname), sql.Literal(json.dumps(_normalised(marker), sort_keys=True))
        )
    )


def password_verifier(conn: psycopg.Connection[Any], role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of a password, computed here by libpq (PQencryptPasswordConn): the
    server stores it as is, and the plaintext never travels in a statement (nor reaches the server's
    log with log_statement, pg_stat_statements or an error message)."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def ensure_role(
    conn: psycopg.Connection[Any], role: str, password: str, owner: dict[str, str], reset_password: bool
) -> bool:
    """Create the login role, or check that the existing one is ours. Returns True if created."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    marker = json.dumps(_normalised(owner | {MARKER_KEY: MARKER_VALUE}), sort_keys=True)
    if row is None:
        try:
            # One transaction: a role never exists without its marker (an operator killed in between would
            # otherwise leave a role it no longer recognises as its own).
            with conn.transaction():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password_verifier(conn, role, password))))
                conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(marker)))
        except psycopg.errors.DuplicateObject:
            return ensure_role(conn, role, password, owner, reset_password)
        # Lets an admin that is not a superuser (managed PostgreSQL) hand databases to the role.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidGrantOperation):
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
        return True
    if not _same_owner(_parse_marker(row[0]), owner):
        raise OwnershipConflict(f"PostgreSQL role {role!r} exists and is not managed for this database")
    if reset_password:
        conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password_verifier(conn, role, password))))
    return False


def create_database(conn: psycopg.Connection[Any], dbname: str, owner_role: str, marker: dict[str, Any]) -> None:
    """Create an empty database owned by `owner_role`, closed to every other role."""
    conn.execute(
        sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
            sql.Identifier(dbname), sql.Identifier(owner_role)
        )
    )
    set_database_marker(conn, dbname, marker)
    ensure_private(conn, dbname)


def ensure_private(conn: psycopg.Connection[Any], dbname: str) -> bool:
    """No CONNECT (nor TEMP) for PUBLIC on a tenant's database: checked on every reconcile, since an
    operator stopped between CREATE DATABASE and the REVOKE (or the owning tenant itself, with a GRANT)
    may have left it open. Returns True if it had to be closed."""
    row = conn.execute(
        "SELECT datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(datacl) a WHERE a.grantee = 0)"
        " FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
    if row is None or not row[0]:
        return False
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
    return True


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
                # In public, where Odoo's own CREATE EXTENSION puts it (the admin's search_path is pinned).
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFile,
                psycopg.errors.FeatureNotSupported):
            return False
    return True


def drop_database(conn: psycopg.Connection[Any], dbname: str) -> bool:
    """Drop the database, terminating its connections. Returns True if something was dropped."""
    exists, _ = database_marker(conn, dbname)
    with long_statement(conn):  # removes every file of the database: grows with its size
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    return exists


def drop_role(conn: psycopg.Connection[Any], role: str, owner: dict[str, str]) -> None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is None or not _same_owner(_parse_marker(row[0]), owner):
        return
    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def database_sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """pg_database_size of every database the admin may measure (CONNECT, or pg_read_all_stats; templates
    included: they take disk too), in one query: what the server's check measures for placement and for every
    OdooDatabase's status.sizeBytes."""
    rows = conn.execute(
        "SELECT datname, pg_database_size(oid) FROM pg_database WHERE has_database_privilege(oid, 'CONNECT')"
        " OR pg_has_role('pg_read_all_stats', 'MEMBER')").fetchall()
    return {str(name): int(size) for name, size in rows}



def database_size(conn: psycopg.Connection[Any], dbname: str) -> int | None:
    row = conn.execute("SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
    return int(row[0]) if row else None


# ---- moving a database to another server (controller/odoodatabase_move.py) ----------------------------

class MoveCopyFailed(Exception):
    """pg_dump | pg_restore of a move failed; the message ends with the tools' last words (never a password)."""


def _libpq_env(server: ServerAddress, dbname: str) -> dict[str, str]:
    """How pg_dump / pg_restore reach a server: libpq's variables only, so no password is ever in an argv
    (visible to every user of the host in /proc) or a log."""
    import os
    keep = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return keep | {"PGHOST": server.host, "PGPORT": str(server.port), "PGUSER": server.user,
                   "PGPASSWORD": server.password, "PGDATABASE": dbname, "PGSSLMODE": server.sslmode,
                   "PGCONNECT_TIMEOUT": str(server.connect_timeout), "PGAPPNAME": APPLICATION_NAME + "-move"}


def stream_copy(source: ServerAddress, target: ServerAddress, dbname: str) -> float:
    """`pg_dump -Fc -Z0 | pg_restore --single-transaction --exit-on-error`, each as the database's own role
    (`source` and `target` are tenant addresses: nothing the tenant owns runs with the admin's rights):
    the whole database in one stream, never on disk. Restored in one transaction, so an interrupted copy
    leaves the target as empty as it was. Returns the seconds it took; MoveCopyFailed on failure."""
    import subprocess
    import tempfile
    assert source.tenant and target.tenant, "a move copies as the tenant's role, never as the admin"
    started = time.monotonic()
    with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as restore_err:
        dump = subprocess.Popen(["pg_dump", "--format=custom", "--compress=0", "--no-owner", "--no-privileges",
                                 "--no-password"], env=_libpq_env(source, dbname), stdout=subprocess.PIPE,
                                stderr=dump_err, stdin=subprocess.DEVNULL)
        assert dump.stdout is not None
        try:
            restore = subprocess.Popen(["pg_restore", "--no-owner", "--no-privileges", "--single-transaction",
                                        "--exit-on-error", "--no-password", f"--dbname={dbname}"],
                                       env=_libpq_env(target, dbname), stdin=dump.stdout, stdout=subprocess.DEVNULL,
                                       stderr=restore_err)
        finally:
            dump.stdout.close()  # pg_restore holds it: pg_dump gets SIGPIPE if pg_restore exits early
        restore_code = restore.wait()
        dump_code = dump.wait()
        if dump_code != 0 or restore_code != 0:
            tails = []
            for tool, code, handle in (("pg_dump", dump_code, dump_err), ("pg_restore", restore_code, restore_err)):
                if code != 0:
                    handle.seek(0)
                    text = handle.read()[-2000:].decode(errors="replace").strip().splitlines()
                    tails.append(f"{tool} exited {code}: {' | '.join(text[-4:]) or '(no message)'}")
            raise MoveCopyFailed("; ".join(tails))
    return time.monotonic() - started


def content_summary(server: ServerAddress, dbname: str) -> dict[str, Any]:
    """What a move verifies on both ends, as the database's own role: every table's exact row count and
    every sequence's value ({"table schema.name": count, "sequence schema.name": [last_value, is_called]})."""
    summary: dict[str, Any] = {}
    with connect(server, dbname) as conn, long_statement(conn):
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE c.relkind IN ('r', 'p')"
            " AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'").fetchall()
        for schema, name in tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(name))).fetchone()
            summary[f"table {schema}.{name}"] = int(row[0]) if row else 0
        sequences = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE c.relkind = 'S'"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchall()
        for schema, name in sequences:
            row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(name))).fetchone()
            summary[f"sequence {schema}.{name}"] = [int(row[0]), bool(row[1])] if row else None
    return summary


def drop_role_if_unused(conn: psycopg.Connection[Any], role: str, owner: dict[str, str]) -> bool:
    """DROP ROLE of a database's role on a server it left, if ours; False (kept) while it still owns
    something there."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is None or not _same_owner(_parse_marker(row[0]), owner):
        return False
    try:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    except psycopg.errors.DependentObjectsStillExist:
        return False
    return True
