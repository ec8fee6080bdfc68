"""The data folders of local PostgreSQL servers whose owner was killed (SIGKILL leaves no time to remove them)
are removed by a later start — and nothing a live or recent server uses is."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from odoo_operator.devtools.localcluster import PG_DIR_PREFIX, STALE_PG_DIR_SECONDS, sweep_stale_pg_dirs

OLD = time.time() - STALE_PG_DIR_SECONDS - 60


def folder(parent: Path, name: str, pid: int | None = None, age: float | None = OLD) -> Path:
    path = parent / f"{PG_DIR_PREFIX}{name}"
    (path / "data").mkdir(parents=True)
    (path / "postgres.log").write_text("LOG:  database system is ready to accept connections\n")
    if pid is not None:
        (path / "data" / "postmaster.pid").write_text(f"{pid}\n{path / 'data'}\n")
    if age is not None:
        for item in (path / "postgres.log", path / "data", path):
            os.utime(item, (age, age))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_the_folders_of_dead_and_long_untouched_servers_are_removed(tmp_path: Path) -> None:
    stopped = folder(tmp_path, "stopped")  # stopped cleanly, never removed: no postmaster.pid
    killed = folder(tmp_path, "killed", pid=dead_pid())  # SIGKILLed: its postmaster.pid names a dead process
    running = folder(tmp_path, "running", pid=os.getpid())
    young = folder(tmp_path, "young", age=None)  # being set up by another run: no postmaster yet
    # A live server in another PID namespace looks dead from here, but touches its socket's lock file hourly.
    elsewhere = folder(tmp_path, "elsewhere", pid=dead_pid())
    (elsewhere / ".s.PGSQL.5432.lock").write_text("5432\n")
    other = tmp_path / "odoo-test-kept"
    other.mkdir()
    os.utime(other, (OLD, OLD))
    link = tmp_path / f"{PG_DIR_PREFIX}link"
    link.symlink_to(running)

    removed = sweep_stale_pg_dirs(tmp_path)

    assert sorted(removed) == sorted([stopped, killed])
    assert not stopped.exists() and not killed.exists()
    assert running.exists() and young.exists() and elsewhere.exists() and other.exists() and link.is_symlink()
