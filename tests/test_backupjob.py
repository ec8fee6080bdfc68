"""Backups and restores against the real PostgreSQL the harness starts, and a real S3-protocol server (moto)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import types
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import pg_exec, pg_query
from odoo_operator.backupjob import pgtools, restore
from odoo_operator.backupjob import storage as store
from odoo_operator.backupjob.__main__ import main as backupjob_main
from odoo_operator.backupjob.archive import (
    RESTORE_STATE,
    RestoreLimits,
    _server_version_string,
    detect_format,
    odoo_release,
)
from odoo_operator.backupjob.artifacts import CHUNK, Artifact, BackupError, check_path
from odoo_operator.backupjob.create import create_backup
from odoo_operator.backupjob.restore import restore_backup, restore_file
from odoo_operator.backupjob.s3 import EMPTY_SHA256, S3Signer
from odoo_operator.backupjob.storage import FileStore, S3Store, open_store
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent / "fixtures" / "odoo_schema.sql"
MODULES = [("base", "17.0.1.3", "installed"), ("web", "17.0.1.0", "installed"), ("mail", "17.0.1.15", "installed"),
           ("sale", "17.0.1.2", "uninstalled"), ("crm", None, "uninstallable")]
INSTALLED = {"base": "17.0.1.3", "web": "17.0.1.0", "mail": "17.0.1.15"}


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_env(cluster: LocalCluster) -> dict[str, str]:
    """The libpq variables a backup Job gets."""
    assert cluster.postgres is not None
    p = cluster.postgres
    return {"PGHOST": "127.0.0.1", "PGPORT": str(p.port), "PGUSER": p.user, "PGPASSWORD": p.password,
            "PGSSLMODE": "disable"}


@pytest.fixture(scope="module")
def admin_dsn(cluster: LocalCluster) -> str:
    assert cluster.postgres is not None
    return cluster.postgres.dsn


def dsn_of(admin_dsn: str, database: str) -> str:
    return admin_dsn.replace("dbname=postgres", f"dbname={database}")


@pytest.fixture(scope="module")
def databases(admin_dsn: str) -> Iterator[Callable[..., str]]:
    """Create databases (empty, as Odoo's restore does, or from a template); all dropped at the end."""
    made: list[str] = []

    def make(prefix: str = "bk", template: str = "template0") -> str:
        name = unique(prefix)
        pg_exec(admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        made.append(name)
        return name

    yield make
    for name in made:
        pg_exec(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def source(admin_dsn: str, databases: Callable[..., str]) -> str:
    """An Odoo-like database: Odoo's real tables and rows, installed modules, awkward values."""
    name = databases("bk_src", "template1")
    with psycopg.connect(dsn_of(admin_dsn, name), autocommit=True) as conn:
        conn.execute(FIXTURE.read_text())
        conn.execute("CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar NOT NULL, "
                     "latest_version varchar, state varchar)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO ir_module_module (name, latest_version, state) VALUES (%s, %s, %s)", MODULES)
        conn.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar NOT NULL, comment text, "
                     "signature bytea, credit numeric(12, 2), active bool)")
        conn.execute("""INSERT INTO res_partner (name, comment, signature, credit, active)
                        SELECT 'Partner ' || g, CASE WHEN g % 7 = 0 THEN NULL
                               ELSE E'line 1\\nline 2\\ttab \\\\ backslash ünïcödé ' || g END,
                               decode(md5(g::text), 'hex'), g * 1.25, g % 3 <> 0
                        FROM generate_series(1, 2000) g""")
    return name


def sha1_layout(root: Path, contents: list[bytes]) -> dict[str, bytes]:
    """Files as Odoo stores attachments: <sha1[:2]>/<sha1>. Returns {relative path: content}."""
    files = {}
    for content in contents:
        sha = hashlib.sha1(content).hexdigest()
        path = root / sha[:2] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        files[f"{sha[:2]}/{sha}"] = content
    return files


@pytest.fixture(scope="module")
def filestore(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("filestore") / "bk_src"
    contents = [b"%PDF-1.4 invoice " + bytes([n]) * 100 for n in range(5)] + [os.urandom(300_000), b"x"]
    return root, sha1_layout(root, contents)


def snapshot(admin_dsn: str, database: str) -> dict[str, list[tuple[Any, ...]]]:
    dsn = dsn_of(admin_dsn, database)
    tables = [row[0] for row in pg_query(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                              "ORDER BY tablename")]
    return {t: pg_query(dsn, f'SELECT * FROM public."{t}" ORDER BY 1') for t in tables}  # noqa: S608


def table_count(admin_dsn: str, database: str) -> int:
    rows = pg_query(dsn_of(admin_dsn, database),
                    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
    return int(rows[0][0])


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run([sys.executable, "-m", "odoo_operator.backupjob", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, cwd=REPO_ROOT, timeout=timeout)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {result.stdout!r}; stderr: {result.stderr[-2000:]}"
    return result.returncode, json.loads(lines[0]), result.stderr


# --- the zip format, as Odoo reads it ----------------------------------------------------------

def test_zip_backup_is_odoo_s_format_and_restores_identically(tmp_path, admin_dsn, pg_env, source, filestore,
                                                               databases):
    fs_root, files = filestore
    storage = FileStore(tmp_path / "backups")

    artifact = create_backup(storage, source, fmt="zip", odoo_version="17.0", filestore=fs_root, pg_env=pg_env)

    path = tmp_path / "backups" / f"{source}-{artifact.id}.zip"
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", artifact.id)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".json"]  # no .partial left
    assert artifact.size_bytes == path.stat().st_size
    assert artifact.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert artifact.location == path.as_uri()
    sidecar = json.loads((path.parent / (path.name + ".json")).read_text())
    assert sidecar == {"id": artifact.id, "time": artifact.status()["time"], "sizeBytes": artifact.size_bytes,
                       "sha256": artifact.sha256, "format": "zip", "db_name": source, "location": path.as_uri()}

    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist()]
        assert names[0] == "dump.sql"  # Odoo writes it first; streaming readers rely on it
        assert sorted(names) == sorted(["dump.sql", "manifest.json", *(f"filestore/{rel}" for rel in files)])
        for rel, content in files.items():
            assert archive.read(f"filestore/{rel}") == content
        manifest = json.loads(archive.read("manifest.json"))
        dump_sql = archive.read("dump.sql").decode()
    server_version = int(pg_query(admin_dsn, "SHOW server_version_num")[0][0])
    assert manifest == {"odoo_dump": "1", "db_name": source, "version": "17.0",
                        "version_info": [17, 0, 0, "final", 0, ""], "major_version": "17.0",
                        "pg_version": f"{server_version // 10000}.0", "modules": INSTALLED}
    assert "CREATE TABLE public.res_partner" in dump_sql
    assert "OWNER TO" not in dump_sql  # --no-owner: restorable by any role

    # Odoo's own restore_db: extract dump.sql + filestore/, `psql -f dump.sql`, move filestore/ in place.
    odoo_db = databases("bk_odoo")
    extracted = tmp_path / "odoo-restore"
    with zipfile.ZipFile(path) as archive:
        assert zipfile.is_zipfile(path)
        archive.extractall(extracted, ["dump.sql"] + [n for n in archive.namelist() if n.startswith("filestore/")])
    psql = subprocess.run(["psql", "-q", f"--dbname={odoo_db}", "-f", str(extracted / "dump.sql")],
                          env={**os.environ, **pg_env}, capture_output=True, text=True)
    assert psql.returncode == 0 and "ERROR" not in psql.stderr, psql.stderr
    assert snapshot(admin_dsn, odoo_db) == snapshot(admin_dsn, source)
    assert tree(extracted / "filestore") == files

    # Ours: streamed from the storage into an existing empty database and a new filestore directory.
    target = databases("bk_restored")
    target_fs = tmp_path / "restored-filestore" / target
    restored, result = restore_backup(storage, artifact.id, target, target_fs, pg_env=pg_env, odoo_version="17.0")
    assert restored == artifact
    assert result.manifest == {"version": "17.0", "major_version": "17.0", "db_name": source,
                               "pg_version": f"{server_version // 10000}.0", "modules": len(INSTALLED)}
    assert result.warnings == [] and result.files == len(files) and not result.resumed
    assert snapshot(admin_dsn, target) == snapshot(admin_dsn, source)
    assert tree(target_fs) == files


def test_dump_format_round_trip(tmp_path, admin_dsn, pg_env, source, databases):
    storage = FileStore(tmp_path)
    artifact = create_backup(storage, source, fmt="dump", pg_env=pg_env)
    path = tmp_path / f"{source}-{artifact.id}.dump"
    assert path.read_bytes()[:5] == b"PGDMP"
    assert artifact.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    target = databases("bk_dump")
    restore_backup(storage, f"{source}-{artifact.id}", target, None, pg_env=pg_env)  # by name works too
    assert snapshot(admin_dsn, target) == snapshot(admin_dsn, source)


def test_restore_refuses_a_database_that_is_not_empty(tmp_path, pg_env, source, filestore):
    storage = FileStore(tmp_path)
    artifact = create_backup(storage, source, fmt="dump", pg_env=pg_env)
    with pytest.raises(BackupError, match="is not empty"):
        restore_backup(storage, artifact.id, source, None, pg_env=pg_env)


# --- refusing bad input ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_zip(tmp_path_factory, pg_env, source, filestore) -> Path:
    storage = FileStore(tmp_path_factory.mktemp("good"))
    artifact = create_backup(storage, source, filestore=filestore[0], pg_env=pg_env)
    return storage.root / artifact.name


def dump_sql_data_offset(path: Path) -> tuple[int, int]:
    """Where dump.sql's compressed bytes start, and how many there are."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("dump.sql")
    with open(path, "rb") as handle:
        handle.seek(info.header_offset + 26)
        name_length, extra_length = int.from_bytes(handle.read(2), "little"), int.from_bytes(handle.read(2), "little")
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def corrupted_copy(good: Path, where: Path) -> Path:
    data = bytearray(good.read_bytes())
    start, size = dump_sql_data_offset(good)
    for offset in range(start + size // 2, start + size // 2 + 64):
        data[offset] ^= 0x5A
    where.write_bytes(bytes(data))
    return where


def test_truncated_and_corrupt_zips_are_refused_before_anything_is_loaded(tmp_path, admin_dsn, pg_env, good_zip,
                                                                           databases):
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good_zip.read_bytes()[: good_zip.stat().st_size * 2 // 3])
    corrupt = corrupted_copy(good_zip, tmp_path / "corrupt.zip")
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"\xff\xfe not a zip, not a dump, not text " * 100)
    text = tmp_path / "text.zip"  # not a zip by its content: taken for SQL, which psql refuses
    text.write_bytes(b"this is not a zip at all\n" * 100)

    for bad, message in ((truncated, "is not a valid Odoo backup: "), (corrupt, "is not a valid Odoo backup: "),
                         (garbage, "is not an Odoo ZIP backup, a pg_dump -Fc archive nor SQL text"),
                         (text, "failed .*, nothing was restored: .*syntax error")):
        target = databases("bk_bad")
        with pytest.raises(BackupError, match=rf"^(psql loading )?{bad.name} {message}"):
            restore_file(bad, target, tmp_path / "fs" / target, pg_env=pg_env)
        assert table_count(admin_dsn, target) == 0
        assert not (tmp_path / "fs" / target).exists()


def test_corruption_found_while_streaming_rolls_the_load_back(tmp_path, admin_dsn, pg_env, databases):
    """Even when the CRC pre-check is skipped (sha256 already verified), a damaged dump.sql never half-loads.
    Here the first megabyte is complete, valid SQL and the damage only shows at the end of the entry (bad
    CRC): closing psql's stdin then would make it COMMIT that megabyte; it must be killed instead."""
    head = b"CREATE TABLE half_loaded (x int);\nINSERT INTO half_loaded VALUES (1);\n"
    padding = CHUNK - len(head)
    first_chunk = head + b"-" * (padding - 1) + b"\n"  # one long SQL comment up to the chunk boundary
    sql = first_chunk + b"CREATE TABLE after (y int);\n" * 1000
    path = tmp_path / "stored.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("dump.sql", sql)
    data = bytearray(path.read_bytes())
    start, _ = dump_sql_data_offset(path)
    data[start + len(head) + 10] = ord("+")  # inside the comment: same SQL, wrong CRC
    path.write_bytes(bytes(data))

    target = databases("bk_stream")
    with pytest.raises(BackupError, match="stored.zip is not a valid Odoo backup: Bad CRC-32"):
        restore_file(path, target, tmp_path / "fs", pg_env=pg_env, verified=True)
    assert table_count(admin_dsn, target) == 0


def test_an_artifact_that_no_longer_matches_its_sidecar_is_refused(tmp_path, admin_dsn, pg_env, source, databases):
    storage = FileStore(tmp_path)
    artifact = create_backup(storage, source, filestore=tmp_path / "no-filestore", pg_env=pg_env)
    path = tmp_path / artifact.name
    path.write_bytes(path.read_bytes()[:-100])
    target = databases("bk_sidecar")
    with pytest.raises(BackupError, match=rf"^{artifact.name} is not a valid Odoo backup: its sha256 .* recorded"):
        restore_backup(storage, artifact.id, target, tmp_path / "fs", pg_env=pg_env)
    assert table_count(admin_dsn, target) == 0


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def test_zip_layout_rules(tmp_path, admin_dsn, pg_env, databases):
    sql = b"CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (2);\n"

    no_dump = write_zip(tmp_path / "no-dump.zip", {"manifest.json": b"{}", "filestore/ab/abc": b"x"})
    target = databases("bk_layout")
    with pytest.raises(BackupError, match="no-dump.zip is not a valid Odoo backup: it has no dump.sql"):
        restore_file(no_dump, target, tmp_path / "fs1", pg_env=pg_env)

    escaping = write_zip(tmp_path / "escape.zip", {"dump.sql": sql, "filestore/../../etc/evil": b"x"})
    with pytest.raises(BackupError, match="unsafe path 'filestore/../../etc/evil'"):
        restore_file(escaping, target, tmp_path / "fs2", pg_env=pg_env)
    absolute = write_zip(tmp_path / "absolute.zip", {"dump.sql": sql, "filestore//etc/evil": b"x"})
    with pytest.raises(BackupError, match="unsafe path"):
        restore_file(absolute, target, tmp_path / "fs3", pg_env=pg_env)
    assert table_count(admin_dsn, target) == 0

    # Odoo accepts a zip without manifest.json and ignores extra files: so do we.
    minimal = write_zip(tmp_path / "minimal.zip", {"dump.sql": sql, "README.txt": b"hello",
                                                   "filestore/ab/abcdef": b"attachment"})
    restore_file(minimal, target, tmp_path / "fs4", pg_env=pg_env)
    assert pg_query(dsn_of(admin_dsn, target), "SELECT x FROM t ORDER BY x") == [(1,), (2,)]
    assert tree(tmp_path / "fs4") == {"ab/abcdef": b"attachment"}


def test_an_sql_error_stops_the_restore_and_leaves_the_database_empty(tmp_path, admin_dsn, pg_env, databases):
    broken = write_zip(tmp_path / "broken.zip", {"dump.sql": b"CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\n"
                                                             b"SELECT no_such_function();\nCREATE TABLE b (y int);\n"})
    target = databases("bk_sqlerr")
    with pytest.raises(BackupError, match=r"psql loading dump.sql of broken.zip failed .*no_such_function"):
        restore_file(broken, target, tmp_path / "fs", pg_env=pg_env)
    assert table_count(admin_dsn, target) == 0
    assert not (tmp_path / "fs").exists()  # the filestore comes after a successful load


# --- failures while backing up -----------------------------------------------------------------

def test_a_missing_database_fails_cleanly_and_leaves_nothing(tmp_path, pg_env):
    storage = FileStore(tmp_path / "backups")
    with pytest.raises(BackupError, match=r"pg_dump of 'no_such_db' failed \(exit 1\): .*does not exist"):
        create_backup(storage, "no_such_db", filestore=tmp_path, pg_env=pg_env)
    assert list((tmp_path / "backups").iterdir()) == []

    code, out, stderr = cli("create", "--database", "no_such_db", "--filestore", str(tmp_path),
                            "--storage", (tmp_path / "backups").as_uri(), env=pg_env)
    assert code == 1 and out["ok"] is False and "does not exist" in out["error"]
    assert list((tmp_path / "backups").iterdir()) == []
    assert pg_env["PGPASSWORD"] not in stderr + json.dumps(out)


@pytest.fixture(scope="module")
def big_db(admin_dsn: str, databases: Callable[..., str]) -> str:
    """~200 MB on disk, hard to compress (hex digests), so pg_dump takes a while and the zip is large."""
    name = databases("bk_big", "template1")
    pg_exec(dsn_of(admin_dsn, name),
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 31)::text) AS a, "
            "md5((g * 17)::text) || md5((g * 13)::text) AS b FROM generate_series(1, 1400000) g")
    return name


def test_memory_stays_flat_on_a_200_mb_database(tmp_path, admin_dsn, pg_env, big_db, capsys):
    size = int(pg_query(dsn_of(admin_dsn, big_db), "SELECT pg_database_size(current_database())")[0][0])
    assert size > 190e6
    runner = ("import json, resource, subprocess, sys\n"
              "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
              "print(json.dumps({'rc': r.returncode, 'out': r.stdout, 'err': r.stderr,"
              " 'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", runner, sys.executable, "-m", "odoo_operator.backupjob", "create",
                             "--database", big_db, "--filestore", str(tmp_path / "none"),
                             "--storage", (tmp_path / "b").as_uri()],
                            capture_output=True, text=True, env={**os.environ, **pg_env}, cwd=REPO_ROOT, timeout=300)
    elapsed = time.monotonic() - started
    report = json.loads(result.stdout)
    assert report["rc"] == 0, report["err"][-3000:]
    out = json.loads(report["out"])
    peak_mb = report["maxrss_kb"] / 1024
    speed = re.search(r"\(([\d.]+) MB/s of SQL\)", report["err"])
    with capsys.disabled():
        print(f"\n200 MB backup: peak RSS {peak_mb:.0f} MB, {elapsed:.1f} s wall, "
              f"{speed.group(1) if speed else '?'} MB/s of SQL, artifact {out['artifact']['sizeBytes'] / 1e6:.0f} MB")
    assert peak_mb < 100
    assert out["artifact"]["sizeBytes"] > 50e6


def test_a_database_dropped_mid_backup_fails_cleanly(tmp_path, admin_dsn, pg_env, big_db, databases):
    victim = databases("bk_victim", big_db)
    storage_dir = tmp_path / "backups"
    proc = subprocess.Popen([sys.executable, "-m", "odoo_operator.backupjob", "create", "--database", victim,
                             "--filestore", str(tmp_path), "--storage", storage_dir.as_uri()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **pg_env}, cwd=REPO_ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        copying = pg_query(admin_dsn, "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = %s "
                                      "AND query ILIKE 'COPY%%'", victim, pgtools.APPLICATION_NAME)
        if copying:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    else:
        pytest.fail("pg_dump never started copying")
    assert any(p.name.endswith(".partial") for p in storage_dir.iterdir())  # it was writing
    pg_exec(admin_dsn, f'DROP DATABASE "{victim}" WITH (FORCE)')
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 1, stderr
    out = json.loads(stdout)
    assert out["ok"] is False and out["error"].startswith(f"pg_dump of '{victim}' failed"), out
    assert list(storage_dir.iterdir()) == []  # no artifact, no .partial, no sidecar


def test_only_the_partials_of_dead_runs_are_removed(tmp_path, pg_env, source):
    storage = FileStore(tmp_path)
    long_ago = time.time() - 3600
    stale = tmp_path / f"{source}-20200101T000000Z.zip.partial"  # a run that died: no lock, idle for an hour
    stale.write_bytes(b"half a backup")
    young = tmp_path / f"{source}-20200101T000001Z.zip.partial"  # just created, not locked yet
    young.write_bytes(b"")
    other = tmp_path / "otherdb-20200101T000000Z.zip.partial"
    other.write_bytes(b"not ours")
    live = storage.open_writer(f"{source}-20200101T000002Z.dump")  # a live run, idle for an hour (a slow dump)
    live.write(b"PGDMP and more")
    for path in (stale, other, tmp_path / f"{source}-20200101T000002Z.dump.partial"):
        os.utime(path, (long_ago, long_ago))

    artifact = create_backup(storage, source, fmt="dump", pg_env=pg_env)

    assert not stale.exists() and young.exists() and other.exists()
    live.finish()
    live.publish()  # the live run was not disturbed
    assert (tmp_path / f"{source}-20200101T000002Z.dump").read_bytes() == b"PGDMP and more"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [artifact.name, artifact.name + ".json", other.name, young.name, f"{source}-20200101T000002Z.dump"])


def test_two_concurrent_backups_of_one_database_both_complete(tmp_path, admin_dsn, pg_env, source, monkeypatch):
    """Both runs hold a partial while pg_dump waits on a lock; neither removes the other's, even with no grace
    for unlocked partials (only the lock protects them)."""
    monkeypatch.setattr(store, "UNLOCKED_PARTIAL_GRACE", 0.0)
    storage = FileStore(tmp_path)
    results: dict[str, Any] = {}

    def run(label: str) -> None:
        try:
            results[label] = create_backup(storage, source, fmt="dump", pg_env=pg_env)
        except BaseException as exc:  # reported below
            results[label] = exc

    with psycopg.connect(dsn_of(admin_dsn, source)) as blocker:
        blocker.execute("LOCK TABLE res_partner IN ACCESS EXCLUSIVE MODE")  # pg_dump waits for it
        first = threading.Thread(target=run, args=("first",))
        first.start()
        wait_for(lambda: list(tmp_path.glob("*.partial")), "the first run's partial")
        second = threading.Thread(target=run, args=("second",))
        second.start()
        wait_for(lambda: len(list(tmp_path.glob("*.partial"))) == 2,
                 lambda: f"the second run's partial: {results}, {sorted(p.name for p in tmp_path.iterdir())}")
        time.sleep(0.5)
        blocker.rollback()
    first.join(60)
    second.join(60)
    assert isinstance(results["first"], Artifact), results["first"]
    assert isinstance(results["second"], Artifact), results["second"]
    assert {a.id for a in storage.list()} == {results["first"].id, results["second"].id}
    assert not list(tmp_path.glob("*.partial"))


def wait_for(check: Callable[[], Any], what: str | Callable[[], str], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what if isinstance(what, str) else what()}")


# --- the command line: retention, report -------------------------------------------------------

def fake_artifact(root: Path, db_name: str, ident: str) -> None:
    data = f"old backup {ident}".encode()
    name = f"{db_name}-{ident}.dump"
    (root / name).write_bytes(data)
    moment = f"{ident[0:4]}-{ident[4:6]}-{ident[6:8]}T{ident[9:11]}:{ident[11:13]}:{ident[13:15]}Z"
    (root / (name + ".json")).write_text(json.dumps({
        "id": ident, "time": moment, "sizeBytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "format": "dump", "db_name": db_name, "location": (root / name).as_uri()}))


def test_cli_create_applies_retention_and_prints_one_json_line(tmp_path, pg_env, source):
    root = tmp_path / "backups"
    root.mkdir()
    old = [f"202401{d:02d}T020000Z" for d in range(1, 11)]
    for ident in old:
        fake_artifact(root, source, ident)
    fake_artifact(root, "otherdb", "20240101T020000Z")

    code, out, stderr = cli("create", "--format", "dump", "--database", source, "--storage", root.as_uri(),
                            "--keep-daily", "3", "--keep-weekly", "0", "--keep-monthly", "0", env=pg_env)

    assert code == 0, stderr
    new = out["artifact"]
    assert out["ok"] is True and set(new) == {"id", "time", "sizeBytes", "sha256", "location"}
    assert [a["id"] for a in out["artifacts"]] == [new["id"], "20240110T020000Z", "20240109T020000Z"]
    assert sorted(out["pruned"]) == old[:8]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [f"{source}-{i}.dump{ext}" for i in (new["id"], *old[8:]) for ext in ("", ".json")]
        + ["otherdb-20240101T020000Z.dump", "otherdb-20240101T020000Z.dump.json"])  # other databases untouched
    assert pg_env["PGPASSWORD"] not in stderr

    code, listing, _ = cli("list", "--storage", root.as_uri())
    assert code == 0 and [a["id"] for a in listing["artifacts"]][:3] == [new["id"], old[9], old[8]]

    code, out, _ = cli("presign", "--storage", root.as_uri(), "--artifact", new["id"])
    assert code == 1 and "needs S3 storage" in out["error"]


def test_cli_reports_success_and_failure(tmp_path, pg_env, source, monkeypatch, capsys):
    reports: list[tuple[str, str, dict[str, Any]]] = []
    module = types.ModuleType("odoo_operator.backupjob.report")
    module.report = lambda ns, name, result: reports.append((ns, name, result))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "odoo_operator.backupjob.report", module)
    for var, value in pg_env.items():
        monkeypatch.setenv(var, value)
    storage = (tmp_path / "b").as_uri()

    for database, expected_code in ((source, 0), ("no_such_db", 1)):
        with pytest.raises(SystemExit) as exited:
            backupjob_main(["create", "--format", "dump", "--database", database, "--storage", storage,
                         "--report", "shop/shop-daily"])
        assert exited.value.code == expected_code
        printed = json.loads(capsys.readouterr().out.strip())
        assert reports[-1] == ("shop", "shop-daily", printed)
    assert reports[0][2]["ok"] is True and reports[1][2]["ok"] is False


# --- S3 ----------------------------------------------------------------------------------------

@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTBACKUPS")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
    bucket = f"backups-{uuid.uuid4().hex[:8]}"
    urllib.request.urlopen(urllib.request.Request(f"{s3_endpoint}/{bucket}", method="PUT"), timeout=10).close()
    return bucket


def test_s3_round_trip_with_multipart_upload_presigned_url_and_restore(tmp_path, admin_dsn, pg_env, source,
                                                                        s3_endpoint, s3_bucket, databases):
    fs_root = tmp_path / "filestore"
    files = sha1_layout(fs_root, [os.urandom(12 << 20), b"small attachment"])  # > 2 parts of 5 MiB
    storage = open_store(f"s3://{s3_bucket}/prod/shop", s3_endpoint=s3_endpoint, part_size=5 << 20)
    assert isinstance(storage, S3Store)

    artifact = create_backup(storage, source, filestore=fs_root, pg_env=pg_env)

    assert artifact.location == f"s3://{s3_bucket}/prod/shop/{source}-{artifact.id}.zip"
    assert artifact.size_bytes > 12 << 20
    assert storage.list() == [artifact]
    assert sorted(storage.client.list_keys("prod/")) == sorted(
        [f"prod/shop/{artifact.name}", f"prod/shop/{artifact.name}.json"])
    assert storage.client.list_multipart("prod/") == []

    url = storage.presigned_url(artifact.id, 120)
    with urllib.request.urlopen(url, timeout=30) as response:
        downloaded = response.read()
    assert hashlib.sha256(downloaded).hexdigest() == artifact.sha256
    with zipfile.ZipFile(io.BytesIO(downloaded)) as archive:
        assert archive.infolist()[0].filename == "dump.sql"
        assert json.loads(archive.read("manifest.json"))["modules"] == INSTALLED

    target = databases("bk_s3")
    restore_backup(storage, artifact.id, target, tmp_path / "restored", pg_env=pg_env)
    assert snapshot(admin_dsn, target) == snapshot(admin_dsn, source)
    assert tree(tmp_path / "restored") == files

    code, listing, _ = cli("list", "--storage", f"s3://{s3_bucket}/prod/shop", "--s3-endpoint", s3_endpoint,
                           env={"AWS_ACCESS_KEY_ID": "AKIDTESTBACKUPS", "AWS_SECRET_ACCESS_KEY": "test-secret-key"})
    assert code == 0 and [a["id"] for a in listing["artifacts"]] == [artifact.id]

    storage.delete(artifact)
    assert list(storage.client.list_keys("prod/")) == [] and storage.list() == []


def test_s3_failed_backup_leaves_no_object_and_no_pending_upload(tmp_path, pg_env, s3_endpoint, s3_bucket):
    storage = open_store(f"s3://{s3_bucket}/p", s3_endpoint=s3_endpoint)
    assert isinstance(storage, S3Store)
    with pytest.raises(BackupError, match="does not exist"):
        create_backup(storage, "no_such_db", filestore=tmp_path, pg_env=pg_env)
    assert list(storage.client.list_keys("")) == []
    assert storage.client.list_multipart("") == []


def test_s3_signature_matches_aws_published_examples():
    """The examples of the S3 SigV4 documentation (header and presigned forms)."""
    signer = S3Signer("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1")
    headers = signer.sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {}, EMPTY_SHA256,
                          "20130524T000000Z", {"Range": "bytes=0-9"})
    assert headers["authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    query = signer.presign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", 86400, "20130524T000000Z")
    assert "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404" in query
    assert "wJalrXUtnFEMI" not in repr(signer)


def test_odoo_release_fields():
    assert odoo_release("17.0") == ("17.0", [17, 0, 0, "final", 0, ""], "17.0")
    assert odoo_release("saas~17.2") == ("saas~17.2", ["saas~17", 2, 0, "final", 0, ""], "saas~17.2")
    assert odoo_release("18.0+e") == ("18.0+e", [18, 0, 0, "final", 0, "+e"], "18.0")
    with pytest.raises(BackupError):
        odoo_release("latest")
    assert _server_version_string(150018) == "15.0" and _server_version_string(90624) == "9.6"


def test_storage_urls(monkeypatch):
    assert isinstance(open_store("file:///backups/shop"), FileStore)
    with pytest.raises(BackupError, match="file:///path or s3://bucket/prefix"):
        open_store("ftp://x/y")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with pytest.raises(BackupError, match="AWS_ACCESS_KEY_ID"):
        open_store("s3://bucket/prefix")


def test_a_zip_needs_a_filestore_directory_both_ways(tmp_path, pg_env, source, good_zip):
    with pytest.raises(BackupError, match="filestore"):
        create_backup(FileStore(tmp_path), source, fmt="zip", filestore=None, pg_env=pg_env)
    with pytest.raises(BackupError, match="filestore"):
        restore_file(good_zip, "anything", None, pg_env=pg_env)
    assert list(tmp_path.iterdir()) == []


def test_two_backups_in_the_same_second_get_different_ids(tmp_path, pg_env, source):
    storage = FileStore(tmp_path)
    moment = datetime.now(UTC)
    first = create_backup(storage, source, fmt="dump", pg_env=pg_env, now=moment)
    second = create_backup(storage, source, fmt="dump", pg_env=pg_env, now=moment)
    assert first.id != second.id and first.time == second.time
    assert sorted(storage.list(), key=lambda a: a.id) == sorted([first, second], key=lambda a: a.id)


# --- files the operator did not write (Odoo's own ZIP, a dump, SQL): no sidecar ------------------

@pytest.fixture(scope="module")
def tenant(admin_dsn: str) -> Iterator[tuple[dict[str, str], Callable[[], str]]]:
    """A role like a database's own (no superuser, no CREATEROLE) and empty databases it owns, as the
    operator makes them: the restore Job loads a user's SQL connected as that role, never as an admin."""
    role, password = unique("bk_tenant"), uuid.uuid4().hex
    pg_exec(admin_dsn, f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    made: list[str] = []

    def make() -> str:
        name = unique("bk_file")
        pg_exec(admin_dsn, f'CREATE DATABASE "{name}" OWNER "{role}" TEMPLATE template0')
        made.append(name)
        return name

    params = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    env = {"PGHOST": str(params.get("host", "127.0.0.1")), "PGPORT": str(params.get("port", 5432)), "PGUSER": role,
           "PGPASSWORD": password, "PGSSLMODE": "disable"}
    yield env, make
    for name in made:
        pg_exec(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_exec(admin_dsn, f'DROP ROLE IF EXISTS "{role}"')


def test_formats_are_told_by_content_never_by_name():
    assert detect_format(b"PK\x03\x04rest", "x.sql") == "zip"
    assert detect_format(b"PGDMP\x01\x0e", "x.zip") == "dump"
    assert detect_format(b"--\n-- PostgreSQL database dump\n", "x.dump") == "sql"
    assert detect_format("CREATE TABLE café (x int);".encode()[:-3] + b"\xc3", "cut.sql") == "sql"
    for head, message in ((b"\x1f\x8b\x08\x00", "gzip-compressed"), (b"", "is empty"), (b"  \n", "is empty"),
                          (b"\x00" * 300, "nor SQL text"), (b"\xff\xfe\x00binary", "nor SQL text"),
                          (b"x" * 257 + b"ustar\x0000" + b"x" * 50, "tar archive")):
        with pytest.raises(BackupError, match=message):
            detect_format(head, "f")


@pytest.mark.parametrize("path", ["../x.zip", "a/../../x.zip", "/etc/passwd", ".hidden.zip", "a/./b.zip", "a//b.zip",
                                  "a\\b.zip", "", "a/", "x.zip\n", "-rf", "a b.zip", "%2e%2e/x", "x" * 1025])
def test_file_paths_that_could_leave_the_storage_are_refused(tmp_path, path):
    with pytest.raises(BackupError, match="not a relative path inside the storage"):
        check_path(path)
    with pytest.raises(BackupError):
        FileStore(tmp_path).file_location(path)
    with pytest.raises(BackupError):
        FileStore(tmp_path).open_file_writer(path)


def test_a_symlink_on_the_volume_cannot_lead_a_restore_outside(tmp_path, tenant):
    root = tmp_path / "volume"
    (root / "_uploads").mkdir(parents=True)
    secret = tmp_path / "outside.sql"
    secret.write_text("CREATE TABLE leaked (x int);\n")
    (root / "_uploads" / "link.sql").symlink_to(secret)
    (root / "dir").symlink_to(tmp_path)
    env, make = tenant
    for path in ("_uploads/link.sql", "dir/outside.sql"):
        with pytest.raises(BackupError, match="leads outside"):
            restore.restore_storage_file(FileStore(root), path, make(), None, pg_env=env)
    with pytest.raises(BackupError, match="leads outside"):
        FileStore(root).open_file_writer("dir/new.zip")
    assert not (tmp_path / "new.zip").exists()


def test_an_operator_zip_without_its_sidecar_restores_unverified_or_checked_against_a_sha256(
        tmp_path, admin_dsn, source, filestore, good_zip, tenant):
    root = tmp_path / "volume"
    (root / "_uploads").mkdir(parents=True)
    copy = root / "_uploads" / "shop.zip"
    copy.write_bytes(good_zip.read_bytes())  # no sidecar next to it
    storage = FileStore(root)
    env, make = tenant

    target = make()
    result = restore.restore_storage_file(storage, "_uploads/shop.zip", target, tmp_path / "fs1", pg_env=env)
    assert result == {"file": copy.as_uri(), "format": "zip", "verified": False, "sha256": None,
                      "filestoreFiles": len(filestore[1]), "resumed": False, "warnings": [],
                      "manifest": {"version": "17.0", "major_version": "17.0", "db_name": source,
                                   "pg_version": result["manifest"]["pg_version"], "modules": len(INSTALLED)}}
    assert snapshot(admin_dsn, target) == snapshot(admin_dsn, source)
    assert tree(tmp_path / "fs1") == filestore[1]
    owners = pg_query(dsn_of(admin_dsn, target),
                      "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert owners == [(env["PGUSER"],)]  # loaded as the database's own role

    sha = hashlib.sha256(copy.read_bytes()).hexdigest()
    target = make()
    result = restore.restore_storage_file(storage, "_uploads/shop.zip", target, tmp_path / "fs2", sha256=sha,
                                         pg_env=env)
    assert result["verified"] is True and result["sha256"] == sha

    target = make()
    with pytest.raises(BackupError, match=f"its sha256 is {sha}, not the {'0' * 64} given"):
        restore.restore_storage_file(storage, "_uploads/shop.zip", target, tmp_path / "fs3", sha256="0" * 64,
                                    pg_env=env)
    assert table_count(admin_dsn, target) == 0 and not (tmp_path / "fs3").exists()

    with pytest.raises(BackupError, match="no file '_uploads/missing.zip'"):
        restore.restore_storage_file(storage, "_uploads/missing.zip", target, None, pg_env=env)


def test_custom_format_dump_and_plain_sql_whatever_their_names(tmp_path, admin_dsn, pg_env, source, tenant):
    env, make = tenant
    dsn = dsn_of(admin_dsn, source)
    custom = tmp_path / "odoo-backup.zip"  # a pg_dump -Fc archive, misnamed: the content decides
    subprocess.run(["pg_dump", "--format=custom", f"--dbname={source}", f"--file={custom}"], check=True,
                   env={**os.environ, **pg_env})
    plain = tmp_path / "shop.backup"
    subprocess.run(["pg_dump", "--no-owner", f"--dbname={source}", f"--file={plain}"], check=True,
                   env={**os.environ, **pg_env})
    for path, fmt in ((custom, "dump"), (plain, "sql")):
        target = make()
        assert restore_file(path, target, None, pg_env=env).format == fmt
        assert snapshot(admin_dsn, target) == snapshot(admin_dsn, source)
        # --no-owner --no-privileges: everything belongs to the restoring role, no foreign GRANT applied
        owners = pg_query(dsn_of(admin_dsn, target), "SELECT DISTINCT tableowner FROM pg_tables "
                                                     "WHERE schemaname = 'public'")
        assert owners == [(env["PGUSER"],)]
    assert pg_query(dsn, "SELECT 1")  # the source is untouched


def test_backslash_commands_of_a_users_sql_are_refused(tmp_path, admin_dsn, tenant):
    """psql would run `\\! cmd` in the restore Job's container (S3 keys, the backup volume): a dump is a
    user's input. Every backslash command is refused, in plain SQL and in a ZIP's dump.sql alike."""
    env, make = tenant
    marker = tmp_path / "pwned"
    evil = [f"CREATE TABLE a (x int);\nSELECT 1; \\! touch {marker}\n".encode(),
            f"CREATE TABLE a (x int);\n\\unrestrict guess\n\\! touch {marker}\n".encode(),
            b"\\copy (SELECT 1) TO '" + str(marker).encode() + b"'\n",
            b"\\restrict mine\n\\o " + str(marker).encode() + b"\nSELECT 1;\n"]
    for n, sql in enumerate(evil):
        for path in (tmp_path / f"evil{n}.sql", write_zip(tmp_path / f"evil{n}.zip", {"dump.sql": sql})):
            if path.suffix == ".sql":
                path.write_bytes(sql)
            target = make()
            with pytest.raises(BackupError, match="backslash commands are restricted|wrong key|invalid command"):
                restore_file(path, target, tmp_path / "fs", pg_env=env)
            assert table_count(admin_dsn, target) == 0
    assert not marker.exists()

    # A dump of a recent pg_dump restricts itself: its own \restrict/\unrestrict lines are dropped, and
    # the same words inside COPY data are data.
    own = (b"\\restrict abc123\nCREATE TABLE t (v text);\nCOPY public.t (v) FROM stdin;\n\\restrict x\n"
           b"plain\n\\.\n\\unrestrict abc123\n")
    path = tmp_path / "recent.sql"
    path.write_bytes(own)
    target = make()
    restore_file(path, target, None, pg_env=env)
    rows = pg_query(dsn_of(admin_dsn, target), "SELECT v FROM t ORDER BY v")
    assert rows == [("\r" + "estrict x",), ("plain",)]  # kept as data: COPY reads \r as a carriage return


def test_a_backup_of_a_newer_odoo_is_refused(tmp_path, admin_dsn, tenant):
    env, make = tenant
    sql = b"CREATE TABLE t (x int);\n"
    for made_by, into, ok in (("18.0", "17.0", False), ("saas~17.2", "17.0", False), ("16.0", "17.0", True),
                              ("17.0", "17.0", True), ("17.0+e", "saas~17.2", True)):
        manifest = json.dumps({"odoo_dump": "1", "version": made_by, "major_version": made_by}).encode()
        path = write_zip(tmp_path / "v.zip", {"dump.sql": sql, "manifest.json": manifest})
        target = make()
        if ok:
            restore_file(path, target, tmp_path / "fs" / target, pg_env=env, odoo_version=into)
        else:
            with pytest.raises(BackupError, match=f"made by Odoo {re.escape(made_by)}, newer than this database's "
                                                  f"Odoo {into}: Odoo cannot downgrade"):
                restore_file(path, target, tmp_path / "fs" / target, pg_env=env, odoo_version=into)
            assert table_count(admin_dsn, target) == 0


def test_receive_streams_a_new_file_and_never_overwrites(tmp_path, good_zip):
    storage = FileStore(tmp_path / "volume")
    data = good_zip.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    answer = restore.receive(storage, "_uploads/shop.zip", io.BytesIO(data), sha)
    stored = tmp_path / "volume" / "_uploads" / "shop.zip"
    assert answer == {"file": stored.as_uri(), "sizeBytes": len(data), "sha256": sha}
    assert stored.read_bytes() == data
    with pytest.raises(BackupError, match="exists already"):
        restore.receive(storage, "_uploads/shop.zip", io.BytesIO(b"PK\x03\x04other"))
    assert stored.read_bytes() == data
    with pytest.raises(BackupError, match="not the " + "1" * 64 + " sent"):
        restore.receive(storage, "_uploads/bad.zip", io.BytesIO(data[:-10]), "1" * 64)
    with pytest.raises(BackupError, match="gzip-compressed"):
        restore.receive(storage, "_uploads/x.gz", io.BytesIO(b"\x1f\x8b\x08" + b"\x00" * 100))
    assert sorted(p.name for p in stored.parent.iterdir()) == ["shop.zip"]  # no partial left

    # the same through the command line, stdin -> file (what the uploader Pod runs)
    result = subprocess.run([sys.executable, "-m", "odoo_operator.backupjob", "receive", "--storage",
                             (tmp_path / "volume").as_uri(), "--file", "_uploads/cli.zip", "--sha256", sha],
                            input=data, capture_output=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha and (stored.parent / "cli.zip").read_bytes() == data


def test_cli_restore_of_a_file_says_whether_it_was_verified(tmp_path, admin_dsn, source, good_zip, tenant):
    env, make = tenant
    root = tmp_path / "volume"
    (root / "in").mkdir(parents=True)
    (root / "in" / "shop.zip").write_bytes(good_zip.read_bytes())
    target = make()
    code, out, stderr = cli("restore", "--storage", root.as_uri(), "--file", "in/shop.zip", "--database", target,
                            "--filestore", str(tmp_path / "fs"), "--odoo-version", "17.0", env=env)
    assert code == 0, stderr
    assert {k: out[k] for k in ("ok", "file", "format", "verified", "sha256", "database", "warnings")} == {
        "ok": True, "file": (root / "in" / "shop.zip").as_uri(), "format": "zip", "verified": False, "sha256": None,
        "database": target, "warnings": []}
    assert "no checksum given, restoring it unverified" in stderr
    code, out, _ = cli("restore", "--storage", root.as_uri(), "--file", "../volume/in/shop.zip", "--database",
                       make(), env=env)
    assert code == 1 and "not a relative path inside the storage" in out["error"]


def test_s3_upload_then_restore_of_a_file_under_the_prefix(tmp_path, admin_dsn, source, good_zip, tenant,
                                                           s3_endpoint, s3_bucket):
    env, make = tenant
    storage = open_store(f"s3://{s3_bucket}/tenants", s3_endpoint=s3_endpoint, part_size=5 << 20)
    assert isinstance(storage, S3Store)
    data = good_zip.read_bytes()
    with open(good_zip, "rb") as handle:
        sent = restore.receive(storage, "_uploads/shop.zip", handle)
    assert sent["file"] == f"s3://{s3_bucket}/tenants/_uploads/shop.zip"
    assert sent["sha256"] == hashlib.sha256(data).hexdigest()
    assert list(storage.client.list_keys("")) == ["tenants/_uploads/shop.zip"]
    with pytest.raises(BackupError, match="exists already"):
        restore.receive(storage, "_uploads/shop.zip", io.BytesIO(data))
    target = make()
    result = restore.restore_storage_file(storage, "_uploads/shop.zip", target, tmp_path / "fs",
                                         sha256=sent["sha256"], pg_env=env)
    assert result["verified"] is True
    assert snapshot(admin_dsn, target) == snapshot(admin_dsn, source)
    with pytest.raises(BackupError, match="no file"):
        restore.restore_storage_file(storage, "_uploads/nope.zip", make(), None, pg_env=env)


# --- the operator's side of a restore: spec.restoreFrom parsed, the Job's arguments ------------------

def test_restore_from_is_parsed_and_checked_again_by_the_operator():
    from odoo_operator.api.model import SpecError, Storage, parse_odoo_database
    from odoo_operator.config import Settings
    from odoo_operator.specs.backup import build_restore_job

    settings = Settings()

    def parse(restore: dict[str, Any]) -> Any:
        return parse_odoo_database({"metadata": {"name": "shop", "namespace": "ns"},
                                    "spec": {"version": "17.0", "restoreFrom": restore}}, settings)

    db = parse({"file": "_uploads/shop.zip"})
    assert db.restore_from.file == "_uploads/shop.zip" and db.restore_from.identity == "fresh"
    assert db.restore_from.storage == Storage(pvc_claim=settings.backup_pvc) and db.restore_from.sha256 is None
    assert not db.restore_from.keep_identity and parse({"backup": "b", "identity": "keep"}).restore_from.keep_identity
    for bad, message in (({"file": "../x"}, "relative path"), ({"file": "a/../../x"}, "relative path"),
                         ({"file": "x.zip\n"}, "relative path"), ({"backup": "b", "file": "x"}, "exactly one"),
                         ({}, "exactly one"), ({"file": "x", "artifact": "a"}, "artifact goes with backup"),
                         ({"backup": "b", "sha256": "a" * 64}, "go with file"), ({"file": "x", "sha256": "A"}, "64"),
                         ({"file": "x", "identity": "moved"}, "fresh or keep")):
        with pytest.raises(SpecError, match=message):
            parse(bad)

    s3 = parse({"file": "in/a.dump", "sha256": "b" * 64, "storage": {"s3": {
        "bucket": "bk", "prefix": "/tenants/", "endpoint": "http://minio:9000", "credentialsSecret": {"name": "k"}}}})
    job = build_restore_job(s3, s3.restore_from.storage, settings, file="in/a.dump", sha256="b" * 64)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["restore", "--storage", "s3://bk/tenants", "--file", "in/a.dump", "--sha256", "b" * 64,
                                 "--database", "shop", "--filestore", "/filestore", "--odoo-version", "17.0",
                                 "--max-bytes", str(100 << 30), "--max-members", "2000000",
                                 "--spool-limit", str((20 << 30) - (16 << 20))]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}} in pod["volumes"]  # the S3 download's spool, bounded
    assert pod["serviceAccountName"] == "default" and pod["automountServiceAccountToken"] is False
    env = {e["name"]: e for e in container["env"]}
    assert env["PGUSER"]["valueFrom"]["secretKeyRef"] == {"name": "shop-db", "key": "user"}  # the tenant's role
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "k"
    pvc = build_restore_job(db, db.restore_from.storage, settings, file="_uploads/shop.zip")
    assert pvc["spec"]["template"]["spec"]["containers"][0]["args"][:5] == [
        "restore", "--storage", "file:///backups", "--file", "_uploads/shop.zip"]
    artifact = build_restore_job(db, db.restore_from.storage, settings, source_database="old", artifact="20240101T0Z")
    assert artifact["spec"]["template"]["spec"]["containers"][0]["args"][:5] == [
        "restore", "--storage", "file:///backups/ns/old", "--artifact", "20240101T0Z"]


# --- retention scoped to the DatabaseBackup that made the artifacts --------------------------------

def owned_artifact(root: Path, db_name: str, ident: str, owner: str | None) -> None:
    fake_artifact(root, db_name, ident)
    if owner is not None:
        sidecar = root / f"{db_name}-{ident}.dump.json"
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "backup": owner}))


def test_a_one_off_backup_with_retention_0_prunes_nothing_of_the_daily_backup(tmp_path, pg_env, source):
    root = tmp_path / "backups"
    root.mkdir()
    daily = [f"202401{d:02d}T020000Z" for d in range(1, 6)]
    legacy = ["20231201T020000Z", "20231202T020000Z"]  # made before owners were recorded
    for ident in daily:
        owned_artifact(root, source, ident, f"{source}-daily")
    for ident in legacy:
        owned_artifact(root, source, ident, None)
    owned_artifact(root, source, "20240102T120000Z", "earlier-one-off")
    zero = ["--keep-last", "0", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0"]

    code, out, stderr = cli("create", "--format", "dump", "--database", source, "--storage", root.as_uri(), *zero,
                            "--owner", "now", env=pg_env)
    assert code == 0, stderr
    assert out["pruned"] == [] and [a["id"] for a in out["artifacts"]] == [out["artifact"]["id"]]
    listed = {a.id: a.owner for a in FileStore(root).list()}
    assert listed == {**{i: f"{source}-daily" for i in daily}, **{i: None for i in legacy},
                      "20240102T120000Z": "earlier-one-off", out["artifact"]["id"]: "now"}
    restored_ids = set(listed)

    # The daily backup prunes its own artifacts and, told to adopt them, the unowned ones; never another's.
    code, out, stderr = cli("create", "--format", "dump", "--database", source, "--storage", root.as_uri(),
                            "--keep-daily", "2", "--keep-weekly", "0", "--keep-monthly", "0",
                            "--owner", f"{source}-daily", "--adopt-unowned", env=pg_env)
    assert code == 0, stderr
    assert sorted(out["pruned"]) == sorted(legacy + daily[:4])
    remaining = {a.id: a.owner for a in FileStore(root).list()}
    assert set(remaining) == restored_ids - set(out["pruned"]) | {out["artifact"]["id"]}
    assert "20240102T120000Z" in remaining and [i for i, o in remaining.items() if o == "now"]


def test_backup_jobs_carry_their_owner_and_only_the_daily_adopts_unowned_artifacts():
    from odoo_operator.api.model import parse_database_backup, parse_odoo_database
    from odoo_operator.config import Settings
    from odoo_operator.specs.backup import build_backup_job, build_daily_backup, build_final_backup_job

    settings = Settings()
    db = parse_odoo_database({"metadata": {"name": "shop", "namespace": "ns", "uid": "u-1"},
                              "spec": {"version": "17.0"}}, settings)
    daily_body = build_daily_backup(db)
    daily_body["metadata"]["uid"] = "d-1"
    daily = parse_database_backup(daily_body, settings)
    args = build_backup_job(daily, db, "shop", settings)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--owner") + 1] == daily_body["metadata"]["name"] and "--adopt-unowned" in args
    one_off = parse_database_backup({"metadata": {"name": "now", "namespace": "ns"},
                                     "spec": {"databaseRef": {"name": "shop"}}}, settings)
    job = build_backup_job(one_off, db, "shop", settings)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--owner") + 1] == "now" and "--adopt-unowned" not in args
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in job["spec"]["template"]["spec"]["volumes"]
    assert db.backup is not None
    final = build_final_backup_job(db, "shop", db.backup.storage, db.backup.retention, settings)
    args = final["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--owner") + 1] == "shop/final-backup"  # no DatabaseBackup can have that name
    assert final["metadata"]["labels"]["odoo.dbmanager.io/owner-uid"] == "u-1"


# --- S3: uploads in progress belong to live runs until idle for the bound -------------------------------------

def test_s3_only_idle_uploads_are_aborted(pg_env, source, s3_endpoint, s3_bucket):
    storage = open_store(f"s3://{s3_bucket}/ns/{source}", s3_endpoint=s3_endpoint)
    assert isinstance(storage, S3Store)
    client = storage.client
    # moto dates every upload's initiation in 2010: the parts' own times tell idle from moving here.
    idle = client.create_multipart(storage.key(f"{source}-20200101T000000Z.zip"))
    client.upload_part(storage.key(f"{source}-20200101T000000Z.zip"), idle, 1, b"a part, then nothing")
    moving = client.create_multipart(storage.key(f"{source}-20200101T000001Z.zip"))
    time.sleep(2.2)
    client.upload_part(storage.key(f"{source}-20200101T000001Z.zip"), moving, 1, b"a part just uploaded")

    assert storage.clean_partials(source) == []  # the default bound: both are live runs'
    create_backup(storage, source, fmt="dump", pg_env=pg_env)  # a concurrent run leaves them alone
    assert {u for _, u, _ in client.list_multipart(storage.key(""))} == {idle, moving}

    client.upload_part(storage.key(f"{source}-20200101T000001Z.zip"), moving, 2, b"still moving")
    assert storage.clean_partials(source, stale_after=2) == [storage.key(f"{source}-20200101T000000Z.zip")]
    assert {u for _, u, _ in client.list_multipart(storage.key(""))} == {moving}


def test_s3_restore_refuses_a_download_larger_than_its_spool(tmp_path, pg_env, source, s3_endpoint, s3_bucket,
                                                              databases):
    storage = open_store(f"s3://{s3_bucket}/ns/{source}", s3_endpoint=s3_endpoint)
    artifact = create_backup(storage, source, fmt="dump", pg_env=pg_env)
    target = databases("bk_spool")
    with pytest.raises(BackupError, match=rf"is {artifact.size_bytes} bytes, more than the 1000 bytes the restore "
                                          "may download to its temporary volume"):
        restore_backup(storage, artifact.id, target, None, pg_env=pg_env, spool_limit=1000)
    restore_backup(storage, artifact.id, target, None, pg_env=pg_env, spool_limit=artifact.size_bytes)


# --- restores that fail half-way are retried; zip bombs; manifest.json ------------------------------------------

def test_a_restore_that_failed_after_its_sql_committed_is_finished_by_the_retry(tmp_path, admin_dsn, pg_env, source,
                                                                               filestore, good_zip, databases,
                                                                               monkeypatch):
    target = databases("bk_retry")
    target_fs = tmp_path / "fs" / target
    real_publish = restore._publish_staging

    def crash(fs: Path) -> int:
        raise OSError("the volume went away")  # e.g. the Pod killed between the SQL commit and the files

    monkeypatch.setattr(restore, "_publish_staging", crash)
    with pytest.raises(OSError, match="went away"):
        restore_file(good_zip, target, target_fs, pg_env=pg_env)
    assert table_count(admin_dsn, target) > 0  # committed
    assert json.loads((target_fs / RESTORE_STATE).read_text())["step"] == "publishing"

    monkeypatch.setattr(restore, "_publish_staging", real_publish)
    other = write_zip(tmp_path / "other.zip", {"dump.sql": b"CREATE TABLE t (x int);\n"})
    with pytest.raises(BackupError, match="is not empty .* no interrupted restore of this same backup"):
        restore_file(other, target, target_fs, pg_env=pg_env)  # another file is never taken for ours

    result = restore_file(good_zip, target, target_fs, pg_env=pg_env)
    assert result.resumed and result.files == len(filestore[1])
    assert snapshot(admin_dsn, target) == snapshot(admin_dsn, source)
    assert tree(target_fs) == filestore[1]  # its state and staging are gone too


def test_a_restore_killed_before_its_sql_committed_starts_afresh(tmp_path, admin_dsn, pg_env, source, filestore,
                                                                  good_zip, databases, monkeypatch):
    target = databases("bk_retry2")
    target_fs = tmp_path / "fs" / target
    real_loader = pgtools.run_loader

    def killed(*args: Any, **kwargs: Any) -> None:
        raise BackupError("psql was killed")

    monkeypatch.setattr(pgtools, "run_loader", killed)
    with pytest.raises(BackupError, match="killed"):
        restore_file(good_zip, target, target_fs, pg_env=pg_env)
    assert table_count(admin_dsn, target) == 0 and not target_fs.exists()
    monkeypatch.setattr(pgtools, "run_loader", real_loader)
    result = restore_file(good_zip, target, target_fs, pg_env=pg_env)
    assert not result.resumed
    assert snapshot(admin_dsn, target) == snapshot(admin_dsn, source) and tree(target_fs) == filestore[1]


def test_zip_bombs_are_refused_before_anything_is_written(tmp_path, admin_dsn, pg_env, databases):
    target = databases("bk_bomb")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dump.sql", b"CREATE TABLE t (x int);\n")
        with archive.open("filestore/ab/abcdef", "w", force_zip64=True) as entry:
            for _ in range(64):
                entry.write(bytes(1 << 20))  # 64 MiB of zeros, a few kB once compressed
    assert bomb.stat().st_size < 1 << 20
    limits = RestoreLimits(max_bytes=32 << 20, max_members=100)
    with pytest.raises(BackupError, match=r"bomb.zip expands to \d+ bytes, more than the 33554432 a restore accepts "
                                          r"\(the operator's ODOO_OPERATOR_RESTORE_MAX_BYTES; --max-bytes\)"):
        restore_file(bomb, target, tmp_path / "fs", pg_env=pg_env, limits=limits)
    many = write_zip(tmp_path / "many.zip", {"dump.sql": b"CREATE TABLE t (x int);\n",
                                             **{f"filestore/ab/{n:04d}": b"x" for n in range(150)}})
    with pytest.raises(BackupError, match="many.zip holds 151 entries, more than the 100 a restore accepts"):
        restore_file(many, target, tmp_path / "fs", pg_env=pg_env, limits=limits)
    assert table_count(admin_dsn, target) == 0 and not (tmp_path / "fs").exists()

    code, out, _ = cli("restore", "--storage", tmp_path.as_uri(), "--file", "bomb.zip", "--database", target,
                       "--filestore", str(tmp_path / "fs"), "--max-bytes", str(1 << 20), env=pg_env)
    assert code == 1 and "more than the 1048576 a restore accepts" in out["error"]


def test_manifest_versions_are_checked_and_reported(tmp_path, admin_dsn, pg_env, databases):
    sql = b"CREATE TABLE t (x int);\n"
    server = int(pg_query(admin_dsn, "SHOW server_version_num")[0][0])

    def manifest(**fields: Any) -> bytes:
        return json.dumps({"odoo_dump": "1", "db_name": "x", "modules": {"base": "16.0.1.3"}, **fields}).encode()

    older = write_zip(tmp_path / "older.zip", {"dump.sql": sql, "manifest.json": manifest(
        version="15.0", version_info=[15, 0, 0, "final", 0, ""], major_version="15.0", pg_version="99.0")})
    result = restore_file(older, databases("bk_mf"), tmp_path / "fs1", pg_env=pg_env, odoo_version="16.0")
    assert result.manifest == {"version": "15.0", "major_version": "15.0", "pg_version": "99.0", "db_name": "x",
                               "modules": 1}
    assert len(result.warnings) == 2
    assert "made by Odoo 15.0, older than this database's Odoo 16.0" in result.warnings[0]
    assert f"dumped from PostgreSQL 99.0, newer than this server's {server // 10000}.0" in result.warnings[1]

    missing = write_zip(tmp_path / "missing.zip", {"dump.sql": sql})
    result = restore_file(missing, databases("bk_mf"), tmp_path / "fs2", pg_env=pg_env, odoo_version="16.0")
    assert result.warnings == ["missing.zip has no manifest.json: the Odoo version that made it is unknown and was "
                               "not checked"]

    newer = write_zip(tmp_path / "newer.zip", {"dump.sql": sql, "manifest.json": manifest(major_version="17.0")})
    target = databases("bk_mf")
    with pytest.raises(BackupError, match="made by Odoo 17.0, newer than this database's Odoo 16.0: Odoo cannot "
                                          "downgrade"):
        restore_file(newer, target, tmp_path / "fs3", pg_env=pg_env, odoo_version="16.0")
    assert table_count(admin_dsn, target) == 0

    code, out, _ = cli("restore", "--storage", tmp_path.as_uri(), "--file", "older.zip", "--database",
                       databases("bk_mf"), "--filestore", str(tmp_path / "fs4"), "--odoo-version", "16.0", env=pg_env)
    assert code == 0 and out["manifest"]["version"] == "15.0" and len(out["warnings"]) == 2


def test_artifacts_of_earlier_versions_stay_restorable_by_their_id(tmp_path, admin_dsn, pg_env, source, databases):
    """Before owners and id suffixes: `<db>-<timestamp>.dump` with a sidecar that names no backup."""
    storage = FileStore(tmp_path)
    made = create_backup(storage, source, fmt="dump", pg_env=pg_env, owner="shop-daily")
    legacy_id = made.id.split("-")[0]
    (tmp_path / made.name).rename(tmp_path / f"{source}-{legacy_id}.dump")
    sidecar = json.loads((tmp_path / (made.name + ".json")).read_text())
    (tmp_path / (made.name + ".json")).unlink()
    del sidecar["backup"]
    sidecar.update(id=legacy_id, location=(tmp_path / f"{source}-{legacy_id}.dump").as_uri())
    (tmp_path / f"{source}-{legacy_id}.dump.json").write_text(json.dumps(sidecar))

    [listed] = storage.list()
    assert listed.id == legacy_id and listed.owner is None
    target = databases("bk_legacy")
    restored, _ = restore_backup(storage, legacy_id, target, None, pg_env=pg_env)
    assert restored.id == legacy_id and snapshot(admin_dsn, target) == snapshot(admin_dsn, source)
