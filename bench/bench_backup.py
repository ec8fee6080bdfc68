#!/usr/bin/env python3
"""Benchmark (issue 4): back up and restore a 1 GB database with its filestore, against Odoo's own method.

Starts a throwaway PostgreSQL 15 (odoo_operator.devtools.localcluster.Postgres, in a temp dir; no Kubernetes),
fills the database `src` with --size-mb of Odoo-like data generated in SQL (bench_duplicate's tables:
tests/fixtures/odoo_schema.sql plus res_partner, account_move, account_move_line and mail_message with
their indexes), writes a --filestore-mb filestore in Odoo's `<sha[:2]>/<sha>` layout (mostly
incompressible, like real attachments), VACUUMs and CHECKPOINTs. Then, in one run, on the same data,
each measurement after autovacuum is idle, a CHECKPOINT and a sync(2) of the previous one's files,
--rounds rounds (default 2, the order rotating; medians reported) of the backups:

1. raw `pg_dump --no-owner -f /dev/null` (what dumping alone costs);
2. Odoo's method, reproduced from `odoo/service/db.py` `dump_db` and `odoo/tools/osutil.py` `zip_dir`
   in a Python child process: a temporary folder with a copy of the filestore (shutil.copytree),
   manifest.json and `pg_dump --no-owner --file=dump.sql`, then that folder zipped with zipfile's
   ZIP_DEFLATED at its default level (6), dump.sql first;
3. ours: `python -m odoo_operator.backupjob create --format zip` (pg_dump streamed into the zip at
   deflate level 1 while it is produced, written to a file:// storage, fsynced, read back and checked);

then --rounds rounds (the order alternating) of the restores, each into a fresh empty database that is
checked and dropped before the next one:

4. raw `psql -X -q -f dump.sql` (the restore baseline);
5. ours: `python -m odoo_operator.backupjob restore` (database and filestore);

then, as references for where the time goes: deflate level 1 of dump.sql and of the filestore's files
in one thread, inflating our artifact's dump.sql entry, and the sha256 of our artifact. The restores
are checked (row counts of every table, every filestore file's sha1 against its name).

Peak memory of each child is followed through /proc (the process and its descendants, every 50 ms:
VmRSS summed over the tree, VmHWM per process; not wait4's ru_maxrss, which keeps the peak of the
forked benchmark process across exec); CPU time is split between the child's tree, PostgreSQL and
everything else (this machine is shared, so other work is made visible). It reports times, MB/s
(of pg_database_size), ratios, artifact sizes, peak RSS and the targets of issue 4 (ours >= 1.5x
faster than Odoo's method; backup peak RSS < 100 MB; our restore within 1.2x of raw psql -f) as
PASS/FAIL, to stdout and into the `bench_backup` section of BENCHMARKS.md. Targets are reported, never
asserted: the exit status is 1 only when a step fails outright (a tool exiting non-zero, a restore
that does not match the source).

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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness import (
    MB,
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

SOURCE = "src"
ODOO_VERSION = "17.0"
TARGET_SPEEDUP = 1.5  # ours >= 1.5 x faster than Odoo's method
TARGET_RSS_MB = 100.0  # backup process peak RSS
TARGET_RESTORE_RATIO = 1.2  # our restore <= 1.2 x raw psql -f
# Issue 4's figures for 1 GB "on this kind of machine", shown for reference.
ISSUE_REFERENCE = {"raw_dump": 3.2, "odoo": 11.4, "deflate1": 5.3, "psql": 11.6}
SAMPLE_INTERVAL = 0.05
WORKER_FLAG = "--odoo-dump-worker"


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


def check_filestore(root: Path) -> tuple[int, int, list[str]]:
    """(files, bytes, problems): every file's sha1 must be its name and its folder the name's first 2 characters."""
    files, total, problems = 0, 0, []
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        data = path.read_bytes()
        files += 1
        total += len(data)
        if hashlib.sha1(data).hexdigest() != path.name or path.parent.name != path.name[:2]:
            problems.append(str(path.relative_to(root)))
    return files, total, problems


# ---- Odoo's method, reproduced ---------------------------------------------------------------------------

def odoo_zip_dir(path: str, stream: IO[bytes], include_dir: bool = True,
                 fnct_sort: Callable[[str], Any] | None = None) -> None:
    """The behaviour of Odoo's `odoo.tools.osutil.zip_dir`: ZIP_DEFLATED at zipfile's default level, allowZip64,
    os.walk order with each folder's files sorted by `fnct_sort`, a few editor/bytecode files left out."""
    path = os.path.normpath(path)
    prefix = len(os.path.dirname(path)) if include_dir else len(path)
    if prefix:
        prefix += 1
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for dirpath, _dirnames, filenames in os.walk(path):
            for name in sorted(filenames, key=fnct_sort):
                stem, ext = os.path.splitext(name)
                if (ext or stem) in (".pyc", ".pyo", ".swp", ".DS_Store"):
                    continue
                file_path = os.path.normpath(os.path.join(dirpath, name))
                if os.path.isfile(file_path):
                    archive.write(file_path, file_path[prefix:])


def odoo_dump_worker(spec: dict[str, str]) -> dict[str, Any]:
    """Odoo's `dump_db(db_name, stream, 'zip')`, step by step and timed; the zip goes to spec['out']. After the
    timing, dump.sql is hard-linked to spec['keep_sql'] (the psql restore baseline reads it)."""
    from odoo_operator.backupjob.archive import read_manifest

    phases: dict[str, float] = {}
    started = mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = now - mark
        mark = now

    with open(spec["out"], "wb") as stream:
        with tempfile.TemporaryDirectory(dir=spec["tmp"]) as dump_dir:
            if os.path.exists(spec["filestore"]):
                shutil.copytree(spec["filestore"], os.path.join(dump_dir, "filestore"))
            lap("copytree")
            with open(os.path.join(dump_dir, "manifest.json"), "w") as fh:
                json.dump(read_manifest(spec["db"], ODOO_VERSION, dict(os.environ)), fh, indent=4)
            lap("manifest")
            cmd = [str(PG_BIN_DIR / "pg_dump"), "--no-owner", spec["db"]]
            cmd.insert(-1, "--file=" + os.path.join(dump_dir, "dump.sql"))
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=True)
            lap("pg_dump")
            odoo_zip_dir(dump_dir, stream, include_dir=False, fnct_sort=lambda file_name: file_name != "dump.sql")
            lap("zip_dir")
            os.link(os.path.join(dump_dir, "dump.sql"), spec["keep_sql"])  # not Odoo's: for the baseline (~0 s)
        lap("cleanup")
    phases["total"] = time.perf_counter() - started
    return phases


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
    db_bytes: int = 0
    fill_s: float = 0.0
    facts: list[TableFacts] = field(default_factory=list)
    fs_files: int = 0
    fs_bytes: int = 0
    dump_sql_bytes: int = 0
    odoo_zip_bytes: int = 0
    ours_zip_bytes: int = 0
    raw_runs: list[Measured] = field(default_factory=list)
    odoo_runs: list[Measured] = field(default_factory=list)
    odoo_phases: list[dict[str, float]] = field(default_factory=list)
    ours_runs: list[Measured] = field(default_factory=list)
    psql_runs: list[Measured] = field(default_factory=list)
    restore_runs: list[Measured] = field(default_factory=list)
    backup_orders: list[str] = field(default_factory=list)
    restore_orders: list[str] = field(default_factory=list)
    deflate1: Timed | None = None
    deflate1_fs: Timed | None = None
    inflate: Timed | None = None
    sha256: Timed | None = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)


LABELS = {"raw": "raw pg_dump", "odoo": "Odoo's dump_db", "ours": "our backup", "psql": "raw psql -f",
          "restore": "our restore"}


def run(args: argparse.Namespace, workdir: Path, result: Result) -> None:
    pg = Postgres(workdir / "pg")
    log(f"starting PostgreSQL in {workdir}")
    pg.init()
    pg.start()
    assert pg.process is not None
    pg_pid = pg.process.pid
    try:
        env = tool_env(pg)
        with connect(pg) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SOURCE)))
        result.facts, result.fill_s = fill(pg, SOURCE, pg.user, args.size_mb)
        result.db_bytes = database_size(pg, SOURCE)
        filestore = workdir / "filestore" / SOURCE
        result.fs_files, result.fs_bytes = make_filestore(filestore, args.filestore_mb)
        log(f"{SOURCE}: {result.db_bytes / MB:.0f} MB database, filestore {result.fs_files} files "
            f"{result.fs_bytes / MB:.0f} MB")
        result.loadavg = loadavg()
        dump_sql = workdir / "dump.sql"
        odoo_dir = workdir / "odoo"
        odoo_dir.mkdir()
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
                    odoo_zip = odoo_dir / f"{SOURCE}-{index + 1}.zip"
                    keep_sql = dump_sql if index == 0 else workdir / f"dump-{index + 1}.sql"
                    spec = {"db": SOURCE, "filestore": str(filestore), "out": str(odoo_zip), "tmp": str(odoo_dir),
                            "keep_sql": str(keep_sql)}
                    run_ = measure(label, [sys.executable, str(Path(__file__).resolve()), WORKER_FLAG,
                                           json.dumps(spec)], env, pg_pid)
                    run_.check()
                    result.odoo_runs.append(run_)
                    result.odoo_phases.append(json.loads(run_.stdout.strip().splitlines()[-1]))
                    result.dump_sql_bytes = keep_sql.stat().st_size
                    result.odoo_zip_bytes = odoo_zip.stat().st_size
                    with zipfile.ZipFile(odoo_zip) as archive:
                        names = archive.namelist()
                    if index == 0:
                        ok = names[0] == "dump.sql" and "manifest.json" in names and sum(
                            n.startswith("filestore/") for n in names) == result.fs_files
                        result.checks.append(("Odoo's zip: dump.sql first, manifest.json, every filestore file",
                                              ok, f"{len(names)} entries"))
                    else:  # only the first round's files are kept
                        keep_sql.unlink()
                        odoo_zip.unlink()
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

        # 4-5. the restores: raw psql and ours, the order alternating each round; each into a fresh empty
        # database, checked, then dropped (so no autovacuum of a previous restore runs during the next one)
        source_counts = table_counts(pg, SOURCE)
        bad: dict[str, list[str]] = {"psql": [], "restore": [], "filestore": []}
        for index in range(args.rounds):
            order = ["psql", "restore"] if index % 2 == 0 else ["restore", "psql"]
            result.restore_orders.append(", ".join(order))
            for which in order:
                label = f"{LABELS[which]} #{index + 1}"
                db = f"{which}_{index + 1}"
                create_database(pg, db)
                settle(pg, autovacuum=True)
                if which == "psql":
                    run_ = measure(label, [str(PG_BIN_DIR / "psql"), "-X", "-q", "-f", str(dump_sql),
                                           f"--dbname={db}"], env, pg_pid)
                    run_.check()
                    if run_.stderr.strip():
                        raise RuntimeError(f"{label} reported errors: {run_.stderr.strip()[-2000:]}")
                    result.psql_runs.append(run_)
                else:
                    restored_fs = workdir / "restored-filestore" / db
                    run_ = measure(label, [
                        sys.executable, "-m", "odoo_operator.backupjob", "restore", "--storage", storage.as_uri(),
                        "--artifact", artifact_id, "--database", db, "--filestore", str(restored_fs)], env, pg_pid)
                    run_.check()
                    result.restore_runs.append(run_)
                    files, size, problems = check_filestore(restored_fs)
                    if files != result.fs_files or size != result.fs_bytes or problems:
                        bad["filestore"].append(f"{db}: {files} files, {size} bytes, bad {problems[:3]}")
                    shutil.rmtree(restored_fs)
                counts = table_counts(pg, db)
                diff = sorted(t for t in set(source_counts) | set(counts) if source_counts.get(t) != counts.get(t))
                if diff:
                    bad[which].append(f"{db}: {diff}")
                drop_database(pg, db)
        rows, rounds = f"{sum(source_counts.values()):,} rows", args.rounds
        result.checks += [
            (f"raw psql restores: the rows of all {len(source_counts)} tables of `{SOURCE}`", not bad["psql"],
             "; ".join(bad["psql"]) or f"{rounds}/{rounds}, {rows}"),
            (f"our restores: the rows of all {len(source_counts)} tables of `{SOURCE}`", not bad["restore"],
             "; ".join(bad["restore"]) or f"{rounds}/{rounds}, {rows}"),
            ("our restores: every filestore file, sha1 = its name", not bad["filestore"],
             "; ".join(bad["filestore"]) or f"{rounds}/{rounds}, {result.fs_files} files, {mb(result.fs_bytes)}"),
        ]

        # references, after every measurement, not to disturb them
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


def report(r: Result, args: argparse.Namespace) -> str:
    assert r.raw_runs and r.odoo_runs and r.ours_runs and r.psql_runs and r.restore_runs
    assert r.deflate1 and r.deflate1_fs and r.inflate and r.sha256
    m, db_mb = r.machine, r.db_bytes / MB
    raw_s = median([x.seconds for x in r.raw_runs])
    odoo_runs_s = [phases["total"] for phases in r.odoo_phases]
    odoo_s, ours_s = median(odoo_runs_s), median([x.seconds for x in r.ours_runs])
    psql_s, restore_s = median([x.seconds for x in r.psql_runs]), median([x.seconds for x in r.restore_runs])
    speedup, restore_ratio = odoo_s / ours_s, restore_s / psql_s
    backup_rss_kb = max(x.peak_kb for x in r.ours_runs)
    phases = {name: median([p[name] for p in r.odoo_phases]) for name in r.odoo_phases[0]}
    ref = (lambda key: f"{ISSUE_REFERENCE[key]:.1f} s") if 900 <= args.size_mb <= 1100 else (lambda key: "—")
    medians = " (medians)" if args.rounds > 1 else ""

    def rate(seconds: float) -> str:
        return f"{db_mb / seconds:.0f}"

    lines = [
        f"## {args.section}: backup and restore of a {db_mb:.0f} MB database with a {mb(r.fs_bytes)} filestore",
        "",
        run_line(r.started_at, args.command),
        f"{machine_line(m, kopf=False)}; PostgreSQL local (`fsync=off`, `shared_buffers=128MB`), every "
        f"file on the local disk and in the page cache. Load average before the measurements: {r.loadavg}; this "
        "machine is shared with other work, whose CPU use during each run is shown below (`other`).",
        "",
        *table(["target (issue 4)", "measured", "result"], [
            [f"ZIP backup ≥ {TARGET_SPEEDUP}× faster than Odoo's method",
             f"{odoo_s:.2f} s / {ours_s:.2f} s = {speedup:.2f}×{medians}", verdict(speedup >= TARGET_SPEEDUP)],
            [f"backup peak RSS < {TARGET_RSS_MB:.0f} MB (Python + pg_dump)",
             f"{kb_mb(backup_rss_kb)} (Python {kb_mb(max(x.root_hwm_kb() for x in r.ours_runs))}, "
             f"pg_dump {kb_mb(max(x.hwm_of('pg_dump') for x in r.ours_runs))})",
             verdict(backup_rss_kb / 1024 < TARGET_RSS_MB)],
            [f"restore ≤ {TARGET_RESTORE_RATIO}× raw `psql -f`",
             f"{restore_s:.2f} s / {psql_s:.2f} s = {restore_ratio:.2f}×{medians}",
             verdict(restore_ratio <= TARGET_RESTORE_RATIO)],
            *[[f"check: {what}", detail, verdict(ok)] for what, ok, detail in r.checks],
        ]),
        "",
        f"### Backup ({db_mb:.0f} MB database → {mb(r.dump_sql_bytes)} of plain SQL; filestore {r.fs_files} files, "
        f"{mb(r.fs_bytes)})",
        "",
        *table(["method", "median", "runs (s)", "MB/s", "Odoo's / this", "artifact", "peak RSS",
                "CPU s: tree / PostgreSQL / other", "issue 4 (1 GB)"], [
            ["raw `pg_dump --no-owner -f /dev/null`", f"{raw_s:.2f} s", runs_text([x.seconds for x in r.raw_runs]),
             rate(raw_s), f"{odoo_s / raw_s:.2f}×", "—", kb_mb(max(x.peak_kb for x in r.raw_runs)),
             cpu_text(r.raw_runs), ref("raw_dump")],
            ["Odoo's `dump_db` (copytree, `pg_dump` to dump.sql, `zip_dir` at level 6)", f"{odoo_s:.2f} s",
             runs_text(odoo_runs_s), rate(odoo_s), "1.00×", mb(r.odoo_zip_bytes),
             f"{kb_mb(max(x.root_hwm_kb() for x in r.odoo_runs))} (Python)", cpu_text(r.odoo_runs), ref("odoo")],
            ["**ours**: `python -m odoo_operator.backupjob create --format zip`", f"**{ours_s:.2f} s**",
             runs_text([x.seconds for x in r.ours_runs]), rate(ours_s), f"**{speedup:.2f}×**", mb(r.ours_zip_bytes),
             kb_mb(backup_rss_kb), cpu_text(r.ours_runs), "—"],
        ]),
        "",
        f"Order of each round: {'; '.join(r.backup_orders)}. Odoo's method step by step (medians): " + ", ".join(
            f"{name} {phases[name]:.2f} s" for name in ("copytree", "manifest", "pg_dump", "zip_dir", "cleanup"))
        + f"; its zip's deflate level 6 over dump.sql and the filestore: {mb(r.dump_sql_bytes + r.fs_bytes)} in "
        f"{phases['zip_dir']:.2f} s ({(r.dump_sql_bytes + r.fs_bytes) / MB / phases['zip_dir']:.0f} MB/s of input). "
        "Its time is measured inside its process (an Odoo server runs it without starting Python); the process "
        "itself took " + runs_text([x.seconds for x in r.odoo_runs]) + " s.",
        "",
        "References, measured after the runs in the benchmark's own process, one thread, from the page cache: "
        f"deflate level 1 of dump.sql {r.deflate1.seconds:.2f} s ({r.dump_sql_bytes / MB / r.deflate1.seconds:.0f} "
        f"MB/s of SQL, {mb(r.dump_sql_bytes)} → {mb(r.deflate1.out_bytes)}; issue 4: {ref('deflate1')}); deflate "
        f"level 1 of the filestore's files {r.deflate1_fs.seconds:.2f} s "
        f"({r.fs_bytes / MB / r.deflate1_fs.seconds:.0f} MB/s, {mb(r.fs_bytes)} → {mb(r.deflate1_fs.out_bytes)}); "
        f"inflating our artifact's dump.sql {r.inflate.seconds:.2f} s "
        f"({r.inflate.out_bytes / MB / r.inflate.seconds:.0f} MB/s of SQL); sha256 of our artifact "
        f"{r.sha256.seconds:.2f} s ({mb(r.sha256.out_bytes)}).",
        "",
        "### Restore",
        "",
        *table(["method", "median", "runs (s)", "MB/s", "ratio to psql", "peak RSS",
                "CPU s: tree / PostgreSQL / other", "issue 4 (1 GB)"], [
            ["raw `psql -X -q -f dump.sql` (database only)", f"{psql_s:.2f} s",
             runs_text([x.seconds for x in r.psql_runs]), rate(psql_s), "1.00×",
             kb_mb(max(x.peak_kb for x in r.psql_runs)), cpu_text(r.psql_runs), ref("psql")],
            ["**ours**: `python -m odoo_operator.backupjob restore` (database + filestore)", f"**{restore_s:.2f} s**",
             runs_text([x.seconds for x in r.restore_runs]), rate(restore_s), f"**{restore_ratio:.2f}×**",
             f"{kb_mb(max(x.peak_kb for x in r.restore_runs))} (Python "
             f"{kb_mb(max(x.root_hwm_kb() for x in r.restore_runs))}, psql "
             f"{kb_mb(max(x.hwm_of('psql') for x in r.restore_runs))})", cpu_text(r.restore_runs), "—"],
        ]),
        "",
        f"Order of each round: {'; '.join(r.restore_orders)}; each restore into a fresh empty database, checked and "
        "dropped before the next one.",
        "",
        "### Processes",
        "",
        "The first round's processes as followed through /proc (every 50 ms): when each was first and last seen, "
        "from the start of the run, and its peak RSS (VmHWM).",
        "",
    ]
    rows = []
    for run_ in (r.raw_runs[0], r.odoo_runs[0], r.ours_runs[0], r.psql_runs[0], r.restore_runs[0]):
        for p in run_.procs:
            rows.append([run_.label, p.name, f"{p.first:.2f} → {p.last:.2f} s", kb_mb(p.hwm_kb)])
        rows.append([run_.label, "(all, summed VmRSS, sampled)", f"run {run_.seconds:.2f} s",
                     kb_mb(run_.tree_peak_kb)])
    lines += table(["run", "process", "seen", "peak RSS"], rows)
    lines += [
        "",
        "### The data",
        "",
        f"`{SOURCE}`: {db_mb:.0f} MB (`pg_database_size`), generated in SQL in {r.fill_s:.0f} s by bench_duplicate's "
        "generator: the Odoo tables of `tests/fixtures/odoo_schema.sql` and",
        "",
        *table(["table", "rows", "table + TOAST", "indexes"], [
            [f.name, f"{f.rows:,}", mb(f.heap_bytes), mb(f.index_bytes)] for f in r.facts]),
        "",
        f"Filestore: {r.fs_files} files, {mb(r.fs_bytes)}, `<sha1[:2]>/<sha1>`, sizes log-normal around 60 kB "
        "(2 kB – 4 MB); 85% random bytes (like images and PDFs, incompressible), 15% text.",
        "",
        "### How it is measured",
        "",
        f"- {args.rounds} round(s) of the backups and then of the restores, the order rotating; medians. Before each "
        "measurement: no autovacuum worker at work, `CHECKPOINT` and `sync` (so none pays for the previous one's "
        "dirty pages); the database and the files stay in the page cache. MB/s = database size / time.",
        "- Every method runs as a child process, timed from its start until wait4(2) returns. Odoo's method is "
        "timed inside its process (imports and interpreter start excluded); ours from the outside, interpreter "
        "start included.",
        "- Odoo's method reproduces `odoo/service/db.py` `dump_db(db, stream, 'zip')` and `odoo/tools/osutil.py` "
        "`zip_dir`: a temporary folder with `shutil.copytree` of the filestore, manifest.json and "
        "`pg_dump --no-owner --file=dump.sql`, zipped with `zipfile.ZIP_DEFLATED` at the default level, "
        "dump.sql first, into a file (no fsync), the folder then removed.",
        "- Ours: a fresh file:// storage on the same disk per round; the artifact is fsynced, read back (sha256, "
        "zip directory) and published with its sidecar before the command exits. Its restore reads the sidecar, "
        "checks the sha256, streams dump.sql from the zip into `psql --single-transaction -v ON_ERROR_STOP=1`, "
        "then extracts the filestore; the raw baseline only loads dump.sql (`psql -X -q -f`, no transaction).",
        "- Peak RSS: `VmHWM` of each process of the tree; the figure is the larger of the sum of those peaks and "
        "the sampled sum of VmRSS, so an upper bound of what a container would hold at once. (wait4's "
        "`ru_maxrss` is not used: Linux keeps the peak of the forked benchmark process across exec, 60+ MB for "
        "every child.)",
        "- CPU seconds per run (means): the measured tree (wait4's rusage, pg_dump or psql included), the "
        "PostgreSQL server and its backends (/proc), and `other` = all CPUs' busy time (/proc/stat) minus those "
        "two: other work on this machine, the kernel's writeback and the benchmark's own sampling.",
        "- Restores go into empty databases created beforehand (not timed) and are checked afterwards: row "
        "counts of every table against the source, and every restored filestore file's sha1 against its name.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WORKER_FLAG]:
        print(json.dumps(odoo_dump_worker(json.loads(argv[1]))), flush=True)
        return 0
    parser = bench_parser(__doc__, "bench_backup")
    parser.add_argument("--size-mb", type=int, default=1024, help="database size (pg_database_size; default 1024)")
    parser.add_argument("--filestore-mb", type=int, default=100, help="filestore size (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the backups, then of the restores, the "
                        "order rotating; medians reported (default 2)")
    args = parser.parse_args(argv)
    if args.size_mb < 10 or args.filestore_mb < 1 or args.rounds < 1:
        parser.error("--size-mb must be at least 10, --filestore-mb and --rounds at least 1")
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
