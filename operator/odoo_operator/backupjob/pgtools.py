"""The PostgreSQL side of a backup or restore: pg_dump, psql and pg_restore run as subprocesses, and the few
queries the Job makes (how many relations a database holds, its installed modules).

PostgreSQL is reached through the standard libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE),
from the environment or `pg_env`. A dump is tenant-controlled input: psql reads it through `RestrictedSql`,
which makes psql refuse every backslash command of it (`\\restrict`). What is not here: the artifact's
formats (archive.py) and the order of the steps (create.py, restore.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import subprocess
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, Protocol

import psycopg
from psycopg.conninfo import make_conninfo

from odoo_operator.backupjob.artifacts import CHUNK, BackupError

log = logging.getLogger("odoo_operator.backupjob")

APPLICATION_NAME = "odoo-db-operator-backup"
LIBPQ_ENV = {"PGHOST": "host", "PGPORT": "port", "PGUSER": "user", "PGPASSWORD": "password",
             "PGSSLMODE": "sslmode"}


def conninfo_dbname(database: str) -> str:
    escaped = database.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def _tool_env(pg_env: Mapping[str, str] | None) -> dict[str, str]:
    return {**os.environ, **(pg_env or {}), "PGAPPNAME": APPLICATION_NAME}


def connect(database: str, pg_env: Mapping[str, str] | None) -> psycopg.Connection[Any]:
    params = {key: value for var, key in LIBPQ_ENV.items() if (value := (pg_env or {}).get(var))}
    conninfo = make_conninfo("", dbname=database, connect_timeout=10, application_name=APPLICATION_NAME, **params)
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot connect to database {database!r}: {str(exc).strip()}") from None


def _tail(handle: IO[bytes], lines: int = 8) -> str:
    handle.seek(0, os.SEEK_END)
    handle.seek(max(0, handle.tell() - 4096))
    text = handle.read().decode(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "(no message)"


@contextlib.contextmanager
def pg_dump(database: str, fmt: str, pg_env: Mapping[str, str] | None) -> Iterator[IO[bytes]]:
    """pg_dump's stdout; on leaving, BackupError with the end of its stderr unless it exited 0."""
    # The custom format compresses itself: level 1 for the same reason as ZIP_COMPRESSLEVEL.
    formats = ["--format=plain"] if fmt == "zip" else ["--format=custom", "--compress=1"]
    argv = ["pg_dump", "--no-owner", "--no-password", *formats, f"--dbname={conninfo_dbname(database)}"]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                env=_tool_env(pg_env))
        assert proc.stdout is not None
        try:
            yield proc.stdout
            proc.stdout.close()
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if code != 0:
            raise BackupError(f"pg_dump of {database!r} failed (exit {code}): {_tail(stderr)}")


class _Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def run_loader(argv: list[str], source: _Reader | None, pg_env: Mapping[str, str] | None, what: str,
                corrupt: Callable[[Exception], BackupError]) -> None:
    """Run psql / pg_restore, feeding it `source`. A read error kills it before its input ends, so the
    single transaction it runs in is rolled back instead of committing half a dump."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if source is None else subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=stderr, env=_tool_env(pg_env))
        try:
            if source is not None:
                assert proc.stdin is not None
                try:
                    while chunk := source.read(CHUNK):
                        proc.stdin.write(chunk)
                except BrokenPipeError:
                    pass  # it stopped at an error: its exit code and stderr say which
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise corrupt(exc) from None
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            code = proc.wait()
        except BaseException:
            proc.kill()  # before its stdin closes: EOF would make psql COMMIT what it has read
            proc.wait()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            raise
        if code != 0:
            raise BackupError(f"{what} failed (exit {code}), nothing was restored: {_tail(stderr)}")

_PSQL_RESTRICT_LINE = re.compile(rb"^\\(un)?restrict [^\s]+\s*$")
_COPY_FROM_STDIN = re.compile(rb"^COPY .* FROM stdin;\s*$")


class RestrictedSql:
    """What psql reads: `\\restrict <random key>` first, so that psql refuses every backslash command of the SQL
    that follows (`\\!` would run a shell in the Job, `\\copy` and `\\o` touch its files, `\\c` another
    database). A dump by a recent pg_dump restricts itself the same way: its own `\\restrict`/`\\unrestrict`
    lines (outside COPY data) are dropped, ours stays in force. Statements are read line by line in bounded
    pieces, so a huge row never sits in memory whole; COPY data, most of a dump, passes in blocks of whole
    lines up to its end line `\\.`, found with bytes.find (a data line never starts with `\\.`: COPY escapes a
    backslash), which costs a fraction of a line-by-line pass."""

    PIECE = 1 << 16

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.pending = bytearray(b"\\restrict " + secrets.token_hex(16).encode() + b"\n")
        self.buffer = bytearray()
        self.in_copy = False
        self.line_start = True
        self.eof = False

    def read(self, size: int = CHUNK) -> bytes:
        while len(self.pending) < size and not self.eof:
            if not (self.in_copy and self.line_start and self._copy_lines()):
                self._piece()
        out = bytes(self.pending[:size])
        del self.pending[:size]
        return out

    def _fill(self) -> bool:
        chunk = self.source.read(CHUNK)
        self.buffer += chunk
        return bool(chunk)

    def _piece(self) -> None:
        """One line, or a PIECE of a longer one, checked at the start of a line."""
        while (end := self.buffer.find(b"\n", 0, self.PIECE) + 1) == 0:
            if len(self.buffer) >= self.PIECE or not self._fill():
                end = min(len(self.buffer), self.PIECE)
                break
        piece = bytes(self.buffer[:end])
        del self.buffer[:end]
        if not piece:
            self.eof = True
            return
        starts, self.line_start = self.line_start, piece.endswith(b"\n")
        if starts:
            if self.in_copy:
                self.in_copy = piece.rstrip(b"\r\n") != b"\\."
            elif _PSQL_RESTRICT_LINE.match(piece):
                return
            elif _COPY_FROM_STDIN.match(piece):
                self.in_copy = True
        self.pending += piece

    def _copy_lines(self) -> bool:
        """The whole COPY data lines in the buffer, up to and including the end line `\\.`; False when there is no
        whole line within CHUNK bytes (a long row, the end of the input: `_piece` goes on)."""
        while (end := self.buffer.rfind(b"\n") + 1) == 0:
            if len(self.buffer) >= CHUNK or not self._fill():
                return False
        stop = _copy_end(self.buffer, end)
        cut = end if stop is None else stop
        self.pending += self.buffer[:cut]
        del self.buffer[:cut]
        self.in_copy = stop is None
        return True


def _copy_end(block: bytearray, end: int) -> int | None:
    """Where the line after COPY data's end line `\\.` starts, in `block[:end]` (whole lines); None without one."""
    start = 0 if block.startswith(b"\\.") else None
    search = 0
    while True:
        if start is None:
            found = block.find(b"\n\\.", search, end)
            if found < 0:
                return None
            start = found + 1
        line_end = block.index(b"\n", start, end) + 1
        if block[start:line_end].rstrip(b"\r\n") == b"\\.":
            return line_end
        search, start = line_end - 1, None


def psql_argv(target: list[str]) -> list[str]:
    return ["psql", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-X", "-q", *target, "-f", "-"]


def database_state(database: str, pg_env: Mapping[str, str] | None) -> tuple[int, int]:
    """How many relations `database` holds (0: empty, as a restore needs it), and the server's version."""
    with connect(database, pg_env) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
        ).fetchone()
        return (int(row[0]) if row else 0), conn.info.server_version


def installed_modules(database: str, pg_env: Mapping[str, str] | None) -> tuple[dict[str, str | None], int]:
    """The installed Odoo modules of `database` and their versions (none before Odoo's schema exists), and the
    server's version."""
    with connect(database, pg_env) as conn:
        modules: dict[str, str | None] = {}
        if conn.execute("SELECT to_regclass('ir_module_module') IS NOT NULL").fetchone() == (True,):
            rows = conn.execute("SELECT name, latest_version FROM ir_module_module WHERE state = 'installed'")
            modules = dict(rows.fetchall())
        return modules, conn.info.server_version
