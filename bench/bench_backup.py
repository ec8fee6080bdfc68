#!/usr/bin/env python3
"""Benchmark (issues 4 and 15): back up and restore a 1 GB Odoo database with its filestore, against Odoo's own
`dump_db` and `restore_db`, run by a real Odoo.

Starts a throwaway PostgreSQL 15 (odoo_operator.devtools.localcluster.Postgres, in a temp dir; no Kubernetes)
and makes `src` a real Odoo 16.0 database: `odoo-bin -i base --without-demo=all` (Odoo from
.cache/odoo/current, its own Python, role `odoo` with CREATEDB, data_dir in the work directory), then
--size-mb of bulk data generated in SQL by bench_duplicate's generator (`fill` of bench/pgtools.py, with
`real_odoo`): rows added to Odoo's own res_partner, and account_move, account_move_line and mail_message with
their indexes (tables of modules not installed, which Odoo's registry ignores). Odoo's filestore
`<data_dir>/filestore/src`, in Odoo's `<sha[:2]>/<sha>` layout, gets --filestore-mb of attachments (mostly
incompressible, like real ones). VACUUM, CHECKPOINT. Then, in one run, on the same data, each measurement
after autovacuum is idle, a CHECKPOINT and a sync(2) of the previous one's files, --rounds rounds (default 2,
the order rotating; medians reported) of the backups:

1. raw `pg_dump --no-owner -f /dev/null` (what dumping alone costs);
2. Odoo's own `odoo.service.db.dump_db(db, stream, 'zip')` (what /web/database/backup runs), called by
   bench/odoo_dump_driver.py in Odoo's Python with odoo-bin's configuration, into a file;
3. ours: `python -m odoo_operator.backupjob create --format zip` (pg_dump streamed into the zip while it is
   produced, written to a file:// storage, fsynced, read back and checked);

then --rounds rounds (the order rotating) of the restores, each into a fresh database that is checked and
dropped (its filestore removed) before the next one:

4. raw `psql -X -q -f dump.sql` into an empty database (the floor; dump.sql is the one of Odoo's zip);
5. ours: `python -m odoo_operator.backupjob restore` of our artifact (database and filestore);
6. Odoo's own `odoo.service.db.restore_db(db, zip, copy=False)` (what /web/database/restore runs) of Odoo's
   zip, by the same driver: CREATE DATABASE, unzip, `psql -f`, the registry loaded, the filestore moved;

then, as references for where the time goes: deflate level 1 of dump.sql and of the filestore's files in
one thread, inflating our artifact's dump.sql entry, and the sha256 of our artifact. The restores are
checked: row counts of every table, and the restored filestore file by file (sha1) against the source's.

Peak memory of each child is followed through /proc (the process and its descendants, every 50 ms:
VmRSS summed over the tree, VmHWM per process; not wait4's ru_maxrss, which keeps the peak of the
forked benchmark process across exec); CPU time is split between the child's tree, PostgreSQL and
everything else (this machine is shared, so other work is made visible). It reports times, MB/s
(of pg_database_size), ratios, artifact sizes, peak RSS and the targets (issue 15: ours >= 2.5x faster
than Odoo's dump_db, our restore within 1.15x of raw psql -f; issue 4: backup peak RSS < 100 MB) as
PASS/FAIL, and Odoo's restore_db against the same floor, to stdout and into the `bench_backup` section of
BENCHMARKS.md. Targets are reported, never asserted: the exit status is 1 only when a step fails outright
(a tool exiting non-zero, a restore that does not match the source).

    .venv/bin/python bench/bench_backup.py                                # 1 GB + 100 MB filestore
    .venv/bin/python bench/bench_backup.py --size-mb 100 --output ''      # a quick run, nothing written
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    MB,
    ODOO_HOME,
    PG_BIN_DIR,
    Postgres,
    Sampler,
    cpu_snapshot,
    loadavg,
    log,
    machine_cpu,
    proc_status,
    process_table,
)
from pgtools import (
    TableFacts,
    connect,
    create_database,
    database_size,
    drop_database,
    fill,
    settle,
    table_counts,
    tool_env,
)
from psycopg import sql
from report import bench_parser, command_line, machine_info, machine_line, now, run_and_publish, run_line, table

from odoo_operator.backupjob.deflate import MAX_WORKERS, default_workers

SOURCE = "src"
ODOO_VERSION = "16.0"  # the Odoo of .cache/odoo/current (shared/odoo: 16.0 Community)
ODOO_PYTHON = ODOO_HOME / "venv" / "bin" / "python"
DRIVER = Path(__file__).resolve().parent / "odoo_dump_driver.py"
ODOO_ROLE = "odoo"
TARGET_SPEEDUP = 2.5  # issue 15: our ZIP backup >= 2.5 x faster than Odoo's own dump_db
TARGET_RSS_MB = 100.0  # issue 4: backup process peak RSS
TARGET_RESTORE_RATIO = 1.15  # issue 15: our restore <= 1.15 x raw psql -f
SAMPLE_INTERVAL = 0.05
DUMP_STEPS = ("copytree", "pg_dump", "zip_dir")
RESTORE_STEPS = ("create_database", "extractall", "psql", "registry", "move_filestore")


# ---- the filestore ----------------------------------------------------------------------------------------

def make_filestore(root: Path, size_mb: int, seed: int = 4) -> tuple[int, int]:
    """~size_mb of attachments in Odoo's layout `<sha1[:2]>/<sha1>`: sizes log-normal around 60 kB (2 kB to
    4 MB); 85% random bytes (images, PDFs: already compressed), 15% text. Returns (files, bytes)."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 9)).hex() for _ in range(4000)]
    corpus = " ".join(rng.choice(words) + ("\n" if rng.random() < 0.08 else "") for _ in range(250_000)).encode()
    target, total, files = size_mb * MB, 0, 0
    root.mkdir(parents=True, exist_ok=True)
    while total < target:
        size = int(min(4 * MB, max(2048, rng.lognormvariate(math.log(60_000), 1.3))))
        size = max(1024, min(size, target - total))
        if rng.random() < 0.15:
            start = rng.randrange(0, len(corpus) - 1)
            data = (corpus[start:] + corpus * (size // len(corpus) + 1))[:size]
        else:
            data = rng.randbytes(size)
        sha = hashlib.sha1(data).hexdigest()
        path = root / sha[:2] / sha
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        total += size
        files += 1
    return files, total


def filestore_tree(root: Path) -> dict[str, str]:
    """Relative path -> sha1 of every file under `root` (Odoo's own `checklist/` entries included)."""
    return {path.relative_to(root).as_posix(): hashlib.sha1(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def filestore_problems(source: dict[str, str], root: Path) -> list[str]:
    """The files of `root` missing, extra or different from `source` (a filestore_tree)."""
    restored = filestore_tree(root) if root.is_dir() else {}
    return sorted(name for name in set(source) | set(restored) if source.get(name) != restored.get(name))


# ---- a real Odoo database -----------------------------------------------------------------------------

def odoo_env() -> dict[str, str]:
    """Odoo's processes get their database settings from odoo.conf only, as a server does."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def write_odoo_conf(path: Path, pg: Postgres, password: str, data_dir: Path) -> None:
    path.write_text(f"[options]\ndb_host = 127.0.0.1\ndb_port = {pg.port}\ndb_user = {ODOO_ROLE}\n"
                    f"db_password = {password}\ndb_sslmode = disable\ndata_dir = {data_dir}\n")


def odoo_init(conf: Path, log_path: Path) -> float:
    """`odoo-bin -d src -i base --without-demo=all --stop-after-init --no-http`; its seconds."""
    t0 = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.run([str(ODOO_PYTHON), str(ODOO_HOME / "src" / "odoo-bin"), "-c", str(conf), "-d", SOURCE,
                               "-i", "base", "--without-demo=all", "--stop-after-init", "--no-http"],
                              env=odoo_env(), stdout=out, stderr=subprocess.STDOUT, cwd=log_path.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"odoo-bin -i base exited with {proc.returncode}; see {log_path}")
    return time.monotonic() - t0


def odoo_driver(conf: Path, action: str, db: str, path: Path) -> list[str]:
    """The argv of bench/odoo_dump_driver.py: Odoo's own dump_db / restore_db in Odoo's Python."""
    return [str(ODOO_PYTHON), str(DRIVER), "-c", str(conf), "--odoo-src", str(ODOO_HOME / "src"), action, db,
            str(path)]


# ---- measuring a child process ---------------------------------------------------------------------------

@dataclass
class ProcInfo:
    pid: int
    name: str
    first: float
    last: float
    hwm_kb: int = 0


class TreeSampler(Sampler):
    """Every SAMPLE_INTERVAL: the descendants of `root` (from /proc/*/stat, pids above root's), their VmRSS
    summed (peak kept) and each one's VmHWM (the kernel's own peak, so nothing is missed between samples
    except a last growth in the final interval before exit)."""

    def __init__(self, root: int, t0: float) -> None:
        super().__init__("rss-tree", SAMPLE_INTERVAL)
        self.root, self.t0 = root, t0
        self.procs: dict[int, ProcInfo] = {}
        self.tree_peak_kb = 0

    def _members(self) -> dict[int, str]:
        parents = process_table(min_pid=self.root)  # descendants have higher pids (no pid wrap during a run)
        found: dict[int, str] = {}
        for pid in sorted(parents):  # parents before children
            ppid, name = parents[pid]
            if pid == self.root or ppid in found:
                found[pid] = name
        return found

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        total = 0
        for pid, name in self._members().items():
            values = proc_status(pid, "VmRSS", "VmHWM")
            if "VmRSS" not in values:  # gone, or a zombie
                continue
            info = self.procs.setdefault(pid, ProcInfo(pid, name, now, now))
            info.name, info.last = name, now
            info.hwm_kb = max(info.hwm_kb, values.get("VmHWM", 0))
            total += values["VmRSS"]
        self.tree_peak_kb = max(self.tree_peak_kb, total)


@dataclass
class Measured:
    label: str
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    tree_peak_kb: int  # sampled: VmRSS summed over the tree
    procs: list[ProcInfo]
    cpu_tree: float  # CPU seconds of the tree (wait4's rusage)
    cpu_pg: float  # CPU seconds of the PostgreSQL server and its backends
    cpu_other: float  # CPU seconds of everything else on the machine (other work, the benchmark's sampling)
    machine_busy: float  # fraction of all CPUs busy during the run

    @property
    def hwm_sum_kb(self) -> int:
        """Sum of every process's own peak: an upper bound of the tree's simultaneous RSS."""
        return sum(p.hwm_kb for p in self.procs)

    @property
    def peak_kb(self) -> int:
        return max(self.hwm_sum_kb, self.tree_peak_kb)

    def hwm_of(self, name: str) -> int:
        return max((p.hwm_kb for p in self.procs if p.name == name), default=0)

    def root_hwm_kb(self) -> int:
        return self.procs[0].hwm_kb if self.procs else 0

    def check(self) -> None:
        if self.returncode != 0:
            raise RuntimeError(f"{self.label} failed (exit {self.returncode}): {self.stderr.strip()[-2000:]}")


def measure(label: str, argv: list[str], env: dict[str, str], pg_pid: int) -> Measured:
    log(f"{label}: {' '.join(argv)}")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        busy0, total0 = machine_cpu()
        pg0 = cpu_snapshot({"pg": pg_pid})["pg"]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        sampler = TreeSampler(proc.pid, t0)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - t0
        sampler.stop()
        sampler.join()
        busy1, total1 = machine_cpu()
        pg1 = cpu_snapshot({"pg": pg_pid})["pg"]
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        tree = usage.ru_utime + usage.ru_stime
        result = Measured(label, seconds, proc.returncode, out.read().decode(errors="replace"),
                          err.read().decode(errors="replace"), sampler.tree_peak_kb,
                          sorted(sampler.procs.values(), key=lambda p: p.pid), tree, pg1 - pg0,
                          max(0.0, (busy1 - busy0) - tree - (pg1 - pg0)),
                          (busy1 - busy0) / max(total1 - total0, 1e-9))
    log(f"{label}: {result.seconds:.2f} s, exit {result.returncode}, peak RSS {result.peak_kb / 1024:.0f} MB; CPU "
        f"{result.cpu_tree:.1f} s, PostgreSQL {result.cpu_pg:.1f} s, other {result.cpu_other:.1f} s")
    return result


@dataclass
class Timed:
    seconds: float
    out_bytes: int = 0


def deflate_files(paths: list[Path], level: int) -> Timed:
    """Raw deflate of each file at `level` (one stream per file, as zip entries), one thread, 1 MiB reads
    (the files are in the page cache)."""
    t0 = time.perf_counter()
    size = 0
    for path in paths:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        with open(path, "rb") as handle:
            while chunk := handle.read(MB):
                size += len(compressor.compress(chunk))
        size += len(compressor.flush())
    return Timed(time.perf_counter() - t0, size)


def inflate_entry(path: Path, entry: str) -> Timed:
    t0 = time.perf_counter()
    size = 0
    with zipfile.ZipFile(path) as archive, archive.open(entry) as stream:
        while chunk := stream.read(MB):
            size += len(chunk)
    return Timed(time.perf_counter() - t0, size)


def sha256_file(path: Path) -> Timed:
    t0 = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MB):
            digest.update(chunk)
    return Timed(time.perf_counter() - t0, path.stat().st_size)


# ---- the benchmark ---------------------------------------------------------------------------------------------

@dataclass
class Result:
    started_at: datetime.datetime
    machine: dict[str, str]
    loadavg: str = ""
    loadavg_after: str = ""
    db_bytes: int = 0
    odoo_init_s: float = 0.0
    fill_s: float = 0.0
    facts: list[TableFacts] = field(default_factory=list)
    modules: int = 0
    fs_files: int = 0
    fs_bytes: int = 0
    dump_sql_bytes: int = 0
    odoo_zip_bytes: int = 0
    ours_zip_bytes: int = 0
    raw_runs: list[Measured] = field(default_factory=list)
    odoo_runs: list[Measured] = field(default_factory=list)
    odoo_steps: list[dict[str, float]] = field(default_factory=list)
    ours_runs: list[Measured] = field(default_factory=list)
    psql_runs: list[Measured] = field(default_factory=list)
    restore_runs: list[Measured] = field(default_factory=list)
    odoo_restore_runs: list[Measured] = field(default_factory=list)
    odoo_restore_steps: list[dict[str, float]] = field(default_factory=list)
    backup_orders: list[str] = field(default_factory=list)
    restore_orders: list[str] = field(default_factory=list)
    deflate1: Timed | None = None
    deflate1_fs: Timed | None = None
    inflate: Timed | None = None
    sha256: Timed | None = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)


LABELS = {"raw": "raw pg_dump", "odoo": "Odoo's dump_db", "ours": "our backup", "psql": "raw psql -f",
          "restore": "our restore", "odoo_restore": "Odoo's restore_db"}
RESTORE_ROTATION = ["psql", "restore", "odoo_restore"]


def driver_steps(run_: Measured) -> dict[str, float]:
    """The JSON line of odoo_dump_driver.py: seconds of the call (`total`) and of each of its steps."""
    return {key: float(value) for key, value in json.loads(run_.stdout.strip().splitlines()[-1]).items()}


def run(args: argparse.Namespace, workdir: Path, result: Result) -> None:
    pg = Postgres(workdir / "pg")
    log(f"starting PostgreSQL in {workdir}")
    pg.init()
    pg.start()
    assert pg.process is not None
    pg_pid = pg.process.pid
    try:
        env = tool_env(pg)
        password = secrets.token_urlsafe(18)
        with connect(pg) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(ODOO_ROLE), sql.Literal(password)))
        data_dir, conf = workdir / "odoo-data", workdir / "odoo.conf"
        write_odoo_conf(conf, pg, password, data_dir)
        log(f"{SOURCE}: odoo-bin -i base (Odoo {ODOO_VERSION} from {ODOO_HOME.resolve()})")
        result.odoo_init_s = odoo_init(conf, workdir / "odoo-init.log")
        with connect(pg, SOURCE) as conn:
            row = conn.execute("SELECT count(*) FROM ir_module_module WHERE state = 'installed'").fetchone()
        result.modules = int(row[0]) if row else 0
        result.facts, result.fill_s = fill(pg, SOURCE, ODOO_ROLE, args.size_mb, real_odoo=True)
        result.db_bytes = database_size(pg, SOURCE)
        filestore = data_dir / "filestore" / SOURCE  # Odoo's own, with what -i base put there
        make_filestore(filestore, args.filestore_mb)
        source_tree = filestore_tree(filestore)
        result.fs_files = len(source_tree)
        result.fs_bytes = sum(p.stat().st_size for p in filestore.rglob("*") if p.is_file())
        log(f"{SOURCE}: {result.db_bytes / MB:.0f} MB database, filestore {result.fs_files} files "
            f"{result.fs_bytes / MB:.0f} MB")
        result.loadavg = loadavg()
        dump_sql = workdir / "dump.sql"
        odoo_dir = workdir / "odoo"
        odoo_dir.mkdir()
        odoo_zip = odoo_dir / f"{SOURCE}-1.zip"
        ours_zip: Path | None = None
        artifact_id, storage = "", workdir / "artifacts"

        # 1-3. the backups, --rounds times, the order rotating
        for index in range(args.rounds):
            order = ["raw", "odoo", "ours"] if index % 2 == 0 else ["ours", "odoo", "raw"]
            result.backup_orders.append(", ".join(order))
            for which in order:
                label = f"{LABELS[which]} #{index + 1}"
                settle(pg, autovacuum=True)
                if which == "raw":
                    run_ = measure(label, [str(PG_BIN_DIR / "pg_dump"), "--no-owner", "-f", "/dev/null",
                                           f"--dbname={SOURCE}"], env, pg_pid)
                    run_.check()
                    result.raw_runs.append(run_)
                elif which == "odoo":
                    zip_path = odoo_dir / f"{SOURCE}-{index + 1}.zip"
                    run_ = measure(label, odoo_driver(conf, "dump", SOURCE, zip_path), odoo_env(), pg_pid)
                    run_.check()
                    result.odoo_runs.append(run_)
                    result.odoo_steps.append(driver_steps(run_))
                    result.odoo_zip_bytes = zip_path.stat().st_size
                    if index == 0:  # the first round's zip: restored by Odoo; its dump.sql is the floor's
                        with zipfile.ZipFile(zip_path) as archive:
                            names = archive.namelist()
                            with archive.open("dump.sql") as entry, open(dump_sql, "wb") as out:
                                shutil.copyfileobj(entry, out, MB)
                        result.dump_sql_bytes = dump_sql.stat().st_size
                        ok = names[0] == "dump.sql" and "manifest.json" in names and sum(
                            n.startswith("filestore/") for n in names) == result.fs_files
                        result.checks.append(("Odoo's zip: dump.sql first, manifest.json, every filestore file",
                                              ok, f"{len(names)} entries"))
                    else:
                        zip_path.unlink()
                else:
                    storage = workdir / f"artifacts-{index + 1}"  # a fresh storage: no retention at work
                    run_ = measure(label, [
                        sys.executable, "-m", "odoo_operator.backupjob", "create", "--format", "zip",
                        "--database", SOURCE, "--odoo-version", ODOO_VERSION, "--filestore", str(filestore),
                        "--storage", storage.as_uri()], env, pg_pid)
                    run_.check()
                    output = json.loads(run_.stdout.strip().splitlines()[-1])
                    if not output.get("ok"):
                        raise RuntimeError(f"{label}: {output}")
                    result.ours_runs.append(run_)
                    artifact_id = output["artifact"]["id"]
                    if ours_zip is not None:  # keep one artifact, the latest
                        shutil.rmtree(ours_zip.parent)
                    ours_zip = storage / f"{SOURCE}-{artifact_id}.zip"
                    result.ours_zip_bytes = ours_zip.stat().st_size
        assert ours_zip is not None

        # 4-6. the restores, the order rotating each round; each into a fresh database (created beforehand,
        # except by Odoo's restore_db, which creates its own), checked, then dropped with its filestore (so no
        # autovacuum of a previous restore runs during the next one)
        source_counts = table_counts(pg, SOURCE)
        bad: dict[str, list[str]] = {which: [] for which in RESTORE_ROTATION}
        bad_files: dict[str, list[str]] = {"restore": [], "odoo_restore": []}
        for index in range(args.rounds):
            order = RESTORE_ROTATION[index % 3:] + RESTORE_ROTATION[:index % 3]
            result.restore_orders.append(", ".join(order))
            for which in order:
                label = f"{LABELS[which]} #{index + 1}"
                db = f"{which}_{index + 1}"
                restored_fs = workdir / "restored-filestore" / db if which == "restore" else data_dir / "filestore" / db
                if which != "odoo_restore":
                    create_database(pg, db)
                settle(pg, autovacuum=True)
                if which == "psql":
                    run_ = measure(label, [str(PG_BIN_DIR / "psql"), "-X", "-q", "-f", str(dump_sql),
                                           f"--dbname={db}"], env, pg_pid)
                    run_.check()
                    if run_.stderr.strip():
                        raise RuntimeError(f"{label} reported errors: {run_.stderr.strip()[-2000:]}")
                    result.psql_runs.append(run_)
                elif which == "restore":
                    run_ = measure(label, [
                        sys.executable, "-m", "odoo_operator.backupjob", "restore", "--storage", storage.as_uri(),
                        "--artifact", artifact_id, "--database", db, "--odoo-version", ODOO_VERSION,
                        "--filestore", str(restored_fs)], env, pg_pid)
                    run_.check()
                    result.restore_runs.append(run_)
                else:
                    run_ = measure(label, odoo_driver(conf, "restore", db, odoo_zip), odoo_env(), pg_pid)
                    run_.check()
                    result.odoo_restore_runs.append(run_)
                    result.odoo_restore_steps.append(driver_steps(run_))
                if which in bad_files:
                    problems = filestore_problems(source_tree, restored_fs)
                    if problems:
                        bad_files[which].append(f"{db}: {len(problems)} files differ, e.g. {problems[:3]}")
                    shutil.rmtree(restored_fs, ignore_errors=True)
                counts = table_counts(pg, db)
                diff = sorted(t for t in set(source_counts) | set(counts) if source_counts.get(t) != counts.get(t))
                if diff:
                    bad[which].append(f"{db}: {diff}")
                drop_database(pg, db)
        rows, rounds = f"{sum(source_counts.values()):,} rows", args.rounds
        tables = f"the rows of all {len(source_counts)} tables of `{SOURCE}`"
        files = f"{rounds}/{rounds}, {result.fs_files} files, {mb(result.fs_bytes)}"
        result.checks += [
            (f"raw psql restores: {tables}", not bad["psql"], "; ".join(bad["psql"]) or f"{rounds}/{rounds}, {rows}"),
            (f"our restores: {tables}", not bad["restore"], "; ".join(bad["restore"]) or f"{rounds}/{rounds}, {rows}"),
            ("our restores: the filestore, every file (sha1) as in the source", not bad_files["restore"],
             "; ".join(bad_files["restore"]) or files),
            (f"Odoo's restores: {tables}", not bad["odoo_restore"],
             "; ".join(bad["odoo_restore"]) or f"{rounds}/{rounds}, {rows}"),
            ("Odoo's restores: the filestore, every file (sha1) as in the source", not bad_files["odoo_restore"],
             "; ".join(bad_files["odoo_restore"]) or files),
        ]

        # references, after every measurement, not to disturb them
        result.loadavg_after = loadavg()
        settle(pg, autovacuum=True)
        log("references: deflate level 1 of dump.sql and of the filestore, inflating our dump.sql, sha256")
        result.deflate1 = deflate_files([dump_sql], 1)
        result.deflate1_fs = deflate_files(sorted(p for p in filestore.rglob("*") if p.is_file()), 1)
        result.inflate = inflate_entry(ours_zip, "dump.sql")
        result.sha256 = sha256_file(ours_zip)
    finally:
        pg.remove()


# ---- the report --------------------------------------------------------------------------------------------------

def mb(n_bytes: float) -> str:
    return f"{n_bytes / MB:.0f} MB"


def kb_mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def runs_text(seconds: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in seconds)


def cpu_text(runs: list[Measured]) -> str:
    """Mean CPU seconds per run: the measured process tree / PostgreSQL / everything else on the machine."""
    return " / ".join(f"{statistics.mean(values):.1f}" for values in (
        [m.cpu_tree for m in runs], [m.cpu_pg for m in runs], [m.cpu_other for m in runs]))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def steps_text(steps: list[dict[str, float]], names: tuple[str, ...]) -> str:
    """Medians of a driver's steps, and `other` (what the call did besides them: manifest, clean-up…)."""
    values = {name: median([x.get(name, 0.0) for x in steps]) for name in names}
    other = max(0.0, median([x["total"] - sum(x.get(name, 0.0) for name in names) for x in steps]))
    return ", ".join(f"{name} {value:.2f} s" for name, value in values.items()) + f", other {other:.2f} s"


def report(r: Result, args: argparse.Namespace) -> str:
    assert r.raw_runs and r.odoo_runs and r.ours_runs and r.psql_runs and r.restore_runs and r.odoo_restore_runs
    assert r.deflate1 and r.deflate1_fs and r.inflate and r.sha256
    m, db_mb = r.machine, r.db_bytes / MB
    raw_s = median([x.seconds for x in r.raw_runs])
    odoo_runs_s = [steps["total"] for steps in r.odoo_steps]
    odoo_s, ours_s = median(odoo_runs_s), median([x.seconds for x in r.ours_runs])
    psql_s, restore_s = median([x.seconds for x in r.psql_runs]), median([x.seconds for x in r.restore_runs])
    odoo_restore_runs_s = [steps["total"] for steps in r.odoo_restore_steps]
    odoo_restore_s = median(odoo_restore_runs_s)
    speedup, restore_ratio, odoo_restore_ratio = odoo_s / ours_s, restore_s / psql_s, odoo_restore_s / psql_s
    backup_rss_kb = max(x.peak_kb for x in r.ours_runs)
    zip_dir_s = median([x["zip_dir"] for x in r.odoo_steps])
    medians = " (medians)" if args.rounds > 1 else ""

    def rate(seconds: float) -> str:
        return f"{db_mb / seconds:.0f}"

    def process_s(runs: list[Measured]) -> str:
        return runs_text([x.seconds for x in runs])

    lines = [
        f"## {args.section}: backup and restore of a {db_mb:.0f} MB Odoo database with a {mb(r.fs_bytes)} filestore, "
        "against Odoo's own `dump_db` and `restore_db`",
        "",
        run_line(r.started_at, args.command),
        f"{machine_line(m, kopf=False)}; Odoo {ODOO_VERSION} Community (`.cache/odoo/current`, its own Python); "
        "PostgreSQL local (`fsync=off`, `shared_buffers=128MB`), every file on the local disk and in the page "
        f"cache. Load average before the measurements: {r.loadavg}, after them: {r.loadavg_after}; this machine "
        "is shared with other work, whose CPU use during each run is shown below (`other`).",
        "",
        *table(["target", "measured", "result"], [
            [f"ZIP backup ≥ {TARGET_SPEEDUP}× faster than Odoo's `dump_db` (issue 15)",
             f"{odoo_s:.2f} s / {ours_s:.2f} s = {speedup:.2f}×{medians}", verdict(speedup >= TARGET_SPEEDUP)],
            [f"restore ≤ {TARGET_RESTORE_RATIO}× the floor, raw `psql -f` (issue 15)",
             f"{restore_s:.2f} s / {psql_s:.2f} s = {restore_ratio:.2f}×{medians}",
             verdict(restore_ratio <= TARGET_RESTORE_RATIO)],
            ["Odoo's `restore_db` / the same floor (no target)",
             f"{odoo_restore_s:.2f} s / {psql_s:.2f} s = {odoo_restore_ratio:.2f}×{medians}", "—"],
            [f"backup peak RSS < {TARGET_RSS_MB:.0f} MB, Python + pg_dump (issue 4)",
             f"{kb_mb(backup_rss_kb)} (Python {kb_mb(max(x.root_hwm_kb() for x in r.ours_runs))}, "
             f"pg_dump {kb_mb(max(x.hwm_of('pg_dump') for x in r.ours_runs))})",
             verdict(backup_rss_kb / 1024 < TARGET_RSS_MB)],
            *[[f"check: {what}", detail, verdict(ok)] for what, ok, detail in r.checks],
        ]),
        "",
        f"### Backup ({db_mb:.0f} MB database → {mb(r.dump_sql_bytes)} of plain SQL; filestore {r.fs_files} files, "
        f"{mb(r.fs_bytes)})",
        "",
        *table(["method", "median", "runs (s)", "MB/s", "Odoo's / this", "artifact", "peak RSS",
                "CPU s: tree / PostgreSQL / other"], [
            ["raw `pg_dump --no-owner -f /dev/null`", f"{raw_s:.2f} s", process_s(r.raw_runs),
             rate(raw_s), f"{odoo_s / raw_s:.2f}×", "—", kb_mb(max(x.peak_kb for x in r.raw_runs)),
             cpu_text(r.raw_runs)],
            ["Odoo's own `odoo.service.db.dump_db(db, stream, 'zip')`", f"{odoo_s:.2f} s",
             runs_text(odoo_runs_s), rate(odoo_s), "1.00×", mb(r.odoo_zip_bytes),
             f"{kb_mb(max(x.peak_kb for x in r.odoo_runs))} (Python "
             f"{kb_mb(max(x.root_hwm_kb() for x in r.odoo_runs))})", cpu_text(r.odoo_runs)],
            ["**ours**: `python -m odoo_operator.backupjob create --format zip`", f"**{ours_s:.2f} s**",
             process_s(r.ours_runs), rate(ours_s), f"**{speedup:.2f}×**", mb(r.ours_zip_bytes),
             kb_mb(backup_rss_kb), cpu_text(r.ours_runs)],
        ]),
        "",
        f"Order of each round: {'; '.join(r.backup_orders)}. Odoo's `dump_db` step by step (medians): "
        + steps_text(r.odoo_steps, DUMP_STEPS) + f"; its `zip_dir` (zipfile's default deflate level, 6) over "
        f"dump.sql and the filestore: {mb(r.dump_sql_bytes + r.fs_bytes)} in {zip_dir_s:.2f} s "
        f"({(r.dump_sql_bytes + r.fs_bytes) / MB / zip_dir_s:.0f} MB/s of input). Its time is the `dump_db` call, "
        "timed inside Odoo's process after Odoo was imported and configured (a server runs it without starting "
        f"Python); the process itself took {process_s(r.odoo_runs)} s. Ours is timed from the outside, its "
        "interpreter's start included.",
        "",
        "References, measured after the runs in the benchmark's own process, one thread, from the page cache: "
        f"deflate level 1 of dump.sql {r.deflate1.seconds:.2f} s ({r.dump_sql_bytes / MB / r.deflate1.seconds:.0f} "
        f"MB/s of SQL, {mb(r.dump_sql_bytes)} → {mb(r.deflate1.out_bytes)}); deflate "
        f"level 1 of the filestore's files {r.deflate1_fs.seconds:.2f} s "
        f"({r.fs_bytes / MB / r.deflate1_fs.seconds:.0f} MB/s, {mb(r.fs_bytes)} → {mb(r.deflate1_fs.out_bytes)}); "
        f"inflating our artifact's dump.sql {r.inflate.seconds:.2f} s "
        f"({r.inflate.out_bytes / MB / r.inflate.seconds:.0f} MB/s of SQL); sha256 of our artifact "
        f"{r.sha256.seconds:.2f} s ({mb(r.sha256.out_bytes)}).",
        "",
        "### Restore",
        "",
        *table(["method", "median", "runs (s)", "MB/s", "ratio to the floor", "peak RSS",
                "CPU s: tree / PostgreSQL / other"], [
            ["the floor: raw `psql -X -q -f dump.sql` (database only, into an empty database)", f"{psql_s:.2f} s",
             process_s(r.psql_runs), rate(psql_s), "1.00×",
             kb_mb(max(x.peak_kb for x in r.psql_runs)), cpu_text(r.psql_runs)],
            ["**ours**: `python -m odoo_operator.backupjob restore` (database + filestore, into an empty database)",
             f"**{restore_s:.2f} s**", process_s(r.restore_runs), rate(restore_s), f"**{restore_ratio:.2f}×**",
             f"{kb_mb(max(x.peak_kb for x in r.restore_runs))} (Python "
             f"{kb_mb(max(x.root_hwm_kb() for x in r.restore_runs))}, psql "
             f"{kb_mb(max(x.hwm_of('psql') for x in r.restore_runs))})", cpu_text(r.restore_runs)],
            ["Odoo's own `odoo.service.db.restore_db(db, zip, copy=False)` (creates the database; + filestore)",
             f"{odoo_restore_s:.2f} s", runs_text(odoo_restore_runs_s), rate(odoo_restore_s),
             f"{odoo_restore_ratio:.2f}×", f"{kb_mb(max(x.peak_kb for x in r.odoo_restore_runs))} (Python "
             f"{kb_mb(max(x.root_hwm_kb() for x in r.odoo_restore_runs))})", cpu_text(r.odoo_restore_runs)],
        ]),
        "",
        f"Order of each round: {'; '.join(r.restore_orders)}; each restore into a fresh database, checked and "
        "dropped (its filestore removed) before the next one. Ours restores our artifact, Odoo's its own zip of "
        "the first round; the floor loads that zip's dump.sql. Odoo's `restore_db` step by step (medians): "
        + steps_text(r.odoo_restore_steps, RESTORE_STEPS) + " (`registry`: `Registry.new` of the restored "
        "database; `psql` is `psql -q -f dump.sql` after unzipping it to a temporary folder). Its time is the "
        f"call, timed inside the process as for `dump_db`; the process took {process_s(r.odoo_restore_runs)} s.",
        "",
        "### Processes",
        "",
        "The first round's processes as followed through /proc (every 50 ms): when each was first and last seen, "
        "from the start of the run, and its peak RSS (VmHWM).",
        "",
    ]
    rows = []
    for run_ in (r.raw_runs[0], r.odoo_runs[0], r.ours_runs[0], r.psql_runs[0], r.restore_runs[0],
                 r.odoo_restore_runs[0]):
        for p in run_.procs:
            rows.append([run_.label, p.name, f"{p.first:.2f} → {p.last:.2f} s", kb_mb(p.hwm_kb)])
        rows.append([run_.label, "(all, summed VmRSS, sampled)", f"run {run_.seconds:.2f} s",
                     kb_mb(run_.tree_peak_kb)])
    lines += table(["run", "process", "seen", "peak RSS"], rows)
    lines += [
        "",
        "### The data",
        "",
        f"`{SOURCE}`: {db_mb:.0f} MB (`pg_database_size`): a real Odoo {ODOO_VERSION} database (`odoo-bin -i base "
        f"--without-demo=all`, {r.modules} modules installed, {r.odoo_init_s:.0f} s), then bench_duplicate's "
        f"generator in SQL ({r.fill_s:.0f} s): rows added to Odoo's own `res_partner`, and three tables of modules "
        "not installed, which Odoo's registry leaves alone:",
        "",
        *table(["table", "rows", "table + TOAST", "indexes"], [
            [f.name, f"{f.rows:,}", mb(f.heap_bytes), mb(f.index_bytes)] for f in r.facts]),
        "",
        f"Filestore: Odoo's own (`<data_dir>/filestore/{SOURCE}`: what `-i base` wrote there, `checklist/` "
        f"included), {r.fs_files} files, {mb(r.fs_bytes)}, the benchmark's attachments `<sha1[:2]>/<sha1>` with "
        "sizes log-normal around 60 kB (2 kB – 4 MB); 85% random bytes (like images and PDFs, incompressible), "
        "15% text.",
        "",
        "### How it is measured",
        "",
        f"- {args.rounds} round(s) of the backups and then of the restores, the order rotating; medians. Before each "
        "measurement: no autovacuum worker at work, `CHECKPOINT` and `sync` (so none pays for the previous one's "
        "dirty pages); the database and the files stay in the page cache. MB/s = database size / time.",
        "- Every method runs as a child process, timed from its start until wait4(2) returns, except Odoo's: "
        "`bench/odoo_dump_driver.py`, run by Odoo's Python with odoo-bin's configuration (`db_host`, `db_port`, "
        "`db_user` `odoo`, `db_password`, `data_dir`; role `odoo` with CREATEDB, the database's owner), parses "
        "the configuration and imports the server-wide modules (base, web) as a server has done before a request "
        "comes, then times the `dump_db` / `restore_db` call (the code of /web/database/backup and /restore, "
        "unchanged; its steps timed by wrapping the functions it calls) and prints the figures.",
        "- Odoo's `dump_db`: a temporary folder with `shutil.copytree` of the filestore, manifest.json (from "
        "`ir_module_module`) and `pg_dump --no-owner --file=dump.sql`, zipped by `odoo.tools.osutil.zip_dir` "
        "(ZIP_DEFLATED at the default level, dump.sql first) into a file (no fsync). Ours: pg_dump's output "
        f"deflated at level 1 while it is produced, by {default_workers()} threads here (one per CPU, at most "
        f"{MAX_WORKERS}: 1 MiB blocks, each primed with the previous one's last 32 KiB, as pigz does), the "
        "filestore's files after it, each stored as it is when its first 64 KiB do not deflate below 97%; a "
        "fresh file:// storage on the same disk per round; the artifact is fsynced, read back (sha256, zip "
        "directory) and published with its sidecar before the command exits.",
        "- Our restore reads the sidecar, checks the sha256, streams dump.sql from the zip into "
        "`psql --single-transaction -v ON_ERROR_STOP=1` (through the filter that refuses psql's backslash "
        "commands) while a thread extracts the filestore beside its place, lets psql commit once both are done, "
        "then moves the files into place; the floor only loads "
        "dump.sql (`psql -X -q -f`, no transaction); Odoo's `restore_db` creates the database (template0, "
        "`LC_COLLATE 'C'`, `pg_trgm`), extracts dump.sql and the filestore to a temporary folder, runs "
        "`psql -q -f`, loads the registry and moves the filestore into `data_dir`.",
        "- Peak RSS: `VmHWM` of each process of the tree; the figure is the larger of the sum of those peaks and "
        "the sampled sum of VmRSS, so an upper bound of what a container would hold at once. (wait4's "
        "`ru_maxrss` is not used: Linux keeps the peak of the forked benchmark process across exec, 60+ MB for "
        "every child.)",
        "- CPU seconds per run (means): the measured tree (wait4's rusage, pg_dump or psql included), the "
        "PostgreSQL server and its backends (/proc), and `other` = all CPUs' busy time (/proc/stat) minus those "
        "two: other work on this machine, the kernel's writeback and the benchmark's own sampling.",
        "- Restores are checked afterwards: row counts of every table against the source, and every restored "
        "filestore file's path and sha1 against the source's filestore.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = bench_parser(__doc__, "bench_backup")
    parser.add_argument("--size-mb", type=int, default=1024, help="database size (pg_database_size; default 1024)")
    parser.add_argument("--filestore-mb", type=int, default=100, help="filestore size (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the backups, then of the restores, the "
                        "order rotating; medians reported (default 2)")
    args = parser.parse_args(argv)
    if args.size_mb < 10 or args.filestore_mb < 1 or args.rounds < 1:
        parser.error("--size-mb must be at least 10, --filestore-mb and --rounds at least 1")
    if not ODOO_PYTHON.exists():
        parser.error(f"no Odoo in {ODOO_HOME}: run `make odoo` first")
    args.command = command_line("bench_backup.py", parser, args,
                                shown=["size_mb", "filestore_mb", "rounds", "section"])

    def body(workdir: Path) -> tuple[str, list[str]]:
        result = Result(started_at=now(), machine=machine_info())
        run(args, workdir, result)
        failed = [what for what, ok, _ in result.checks if not ok]
        return report(result, args), ["checks failed: " + "; ".join(failed)] if failed else []

    return run_and_publish(args, "odoo-bench-backup-", body)


if __name__ == "__main__":
    sys.exit(main())
