#!/usr/bin/env python3
"""Benchmark (issue 16): moving a database of --size-mb between two PostgreSQL servers, downtime and total time,
against the floor of a streamed copy between the same servers measured in the same run.

Starts the local control plane + PostgreSQL (PostgresServer `local`, the default) and a second PostgreSQL 15
(PostgresServer `second`), the operator as a process; one OdooDatabase `big` on `local` (its app faked by kwok),
grown to --size-mb with bench/pgtools.py's Odoo-like tables owned by its role; then `spec.server: second` (what
`kubectl odoo move big second` writes) and, from the watch of the object, until `status.move.phase` is Done: the
operator's own figures (status.move.downtimeSeconds: the app's stop → available on the target;
durationSeconds: the start → the switch) and the wall time from the patch to Done. Every table's row count is
compared on the target. The floor, in the same run, --repeat times each, median: `pg_dump -Fc -Z0 | pg_restore
--single-transaction` (the operator's pipeline) and `pg_dump | psql --single-transaction` (the fastest streamed
copy) of the moved database from `second` into a scratch database on `local`, as the admin. Summary to stdout
and the `bench_move` section of BENCHMARKS.md; nothing is asserted; exit status 1 when the move does not finish.

    .venv/bin/python bench/bench_move.py
    .venv/bin/python bench/bench_move.py --size-mb 100    # a quick run
"""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import BENCH_NAMESPACE, Stack, collection, condition, loadavg, log, odoo_database, wait_for
from pgtools import create_database, database_size, drop_database, fill, settle, table_counts, tool_env
from report import bench_parser, command_line, machine_info, machine_line, now, run_and_publish, run_line, table

from odoo_operator.devtools.localcluster import Postgres

NAME = "big"
SECOND = "second"
SCRATCH = "floor_copy"


@dataclass
class Result:
    started_at: Any = None
    size_bytes: int = 0
    fill_s: float = 0.0
    downtime_s: float | None = None
    switch_s: float | None = None
    total_s: float | None = None
    rows_equal: bool = False
    tables: int = 0
    floor_restore: list[float] = field(default_factory=list)
    floor_psql: list[float] = field(default_factory=list)
    load_before: str = ""
    failure: str = ""


def streamed_copy(source: Postgres, target: Postgres, dbname: str, restore: bool) -> float:
    """pg_dump of `dbname` on `source` into a fresh SCRATCH on `target`, as the admin; seconds."""
    drop_database(target, SCRATCH)
    create_database(target, SCRATCH)
    dump_args = ["pg_dump", "--no-owner", "--no-privileges", "-d", dbname]
    dump_args += ["--format=custom", "--compress=0"] if restore else []
    load_args = (["pg_restore", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
                  "-d", SCRATCH] if restore else
                 ["psql", "--single-transaction", "-v", "ON_ERROR_STOP=1", "-q", "-d", SCRATCH])
    started = time.monotonic()
    dump = subprocess.Popen(dump_args, env=tool_env(source), stdout=subprocess.PIPE)
    assert dump.stdout is not None
    load = subprocess.run(load_args, env=tool_env(target), stdin=dump.stdout, stdout=subprocess.DEVNULL, check=True)
    dump.stdout.close()
    if dump.wait() != 0 or load.returncode != 0:
        raise RuntimeError("the floor's copy failed")
    elapsed = time.monotonic() - started
    drop_database(target, SCRATCH)
    return elapsed


def second_server(stack: Stack, pg: Postgres) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "second-admin", "namespace": "odoo-system"},
              "data": {"username": base64.b64encode(pg.user.encode()).decode(),
                       "password": base64.b64encode(pg.password.encode()).decode()}}
    server = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "PostgresServer", "metadata": {"name": SECOND},
              "spec": {"host": "127.0.0.1", "port": pg.port, "sslMode": "disable",
                       "adminSecretRef": {"namespace": "odoo-system", "name": "second-admin"}}}
    stack.cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                 "items": [secret, server]}))


def run(args: Any, workdir: Path) -> Result:
    result = Result(started_at=now())
    second = Postgres(workdir / "pg-second")
    with Stack(workdir) as stack:
        stack.start_cluster()
        second.init()
        second.start()
        try:
            second_server(stack, second)
            stack.start_operator()
            first = stack.cluster.postgres
            assert first is not None
            path = f"{collection('odoodatabases', BENCH_NAMESPACE)}/{NAME}"
            status, answer = stack.api.request("POST", collection("odoodatabases", BENCH_NAMESPACE),
                                               odoo_database(NAME, server="local"))
            if status not in (200, 201):
                raise RuntimeError(f"creating {NAME}: {status} {answer}")
            wait_for(lambda: condition(stack.api.get(path), "Ready").get("status") == "True", args.timeout,
                     f"{NAME} Ready")
            role = stack.api.get(path)["status"]["roleName"]
            _, result.fill_s = fill(first, NAME, role, args.size_mb)
            settle(first)
            result.size_bytes = database_size(first, NAME)
            before = table_counts(first, NAME)
            result.tables = len(before)
            result.load_before = loadavg()
            log(f"moving {result.size_bytes / 1e6:.0f} MB to {SECOND} (load {result.load_before})")
            started = time.monotonic()
            status, answer = stack.api.request("PATCH", path, {"spec": {"server": SECOND}},
                                               content_type="application/merge-patch+json")
            if status != 200:
                raise RuntimeError(f"moving {NAME}: {status} {answer}")

            def done() -> bool:
                stack.check_operator()
                move = (stack.api.get(path).get("status") or {}).get("move") or {}
                return move.get("phase") == "Done" and move.get("downtimeSeconds") is not None

            try:
                wait_for(done, args.timeout, f"{NAME} moved", interval=0.2)
            except TimeoutError as exc:
                result.failure = f"the move did not finish: {exc}"
                return result
            result.total_s = time.monotonic() - started
            move = stack.api.get(path)["status"]["move"]
            result.downtime_s, result.switch_s = float(move["downtimeSeconds"]), float(move["durationSeconds"])
            result.rows_equal = table_counts(second, NAME) == before
            for _ in range(args.repeat):
                result.floor_restore.append(streamed_copy(second, first, NAME, restore=True))
                result.floor_psql.append(streamed_copy(second, first, NAME, restore=False))
        finally:
            second.remove()
    return result


def report(result: Result, args: Any) -> str:
    m = machine_info()
    lines = ["## bench_move: a database moved to another PostgreSQL server (issue 16)", "",
             run_line(result.started_at, args.command), f"{machine_line(m)}.", ""]
    if result.failure:
        return "\n".join(lines + [f"**Failed**: {result.failure}"])
    restore, psql = statistics.median(result.floor_restore), statistics.median(result.floor_psql)
    assert result.downtime_s is not None and result.switch_s is not None and result.total_s is not None
    lines += table(["what", "seconds", "ratio to the psql floor"], [
        ["downtime (the app stopped → available on the target; status.move.downtimeSeconds)",
         f"{result.downtime_s:.1f}", f"{result.downtime_s / psql:.2f}×"],
        ["the move's start → the switch to the target (status.move.durationSeconds)", f"{result.switch_s:.1f}",
         f"{result.switch_s / psql:.2f}×"],
        ["`spec.server` patched → `status.move.phase` Done (wall clock)", f"{result.total_s:.1f}",
         f"{result.total_s / psql:.2f}×"],
        [f"floor: `pg_dump -Fc \\| pg_restore --single-transaction` (median of {args.repeat})", f"{restore:.1f}",
         f"{restore / psql:.2f}×"],
        [f"floor: `pg_dump \\| psql --single-transaction` (median of {args.repeat})", f"{psql:.1f}", "1.00×"],
    ])
    lines += ["", f"Database: {result.size_bytes / 1e6:.0f} MB (pg_database_size) in {result.tables} tables, filled "
              f"in {result.fill_s:.0f} s; every table's row count equal on the target: "
              f"{'yes' if result.rows_equal else '**no**'}. Load average before the move: {result.load_before}.",
              "", "The downtime includes the app's stop (Deployment to 0 and its Pods gone, faked by kwok here), the "
              "role and database on the target, the copy as the database's own role, the verification (exact row "
              "counts and sequences on both ends) and the switch; the source is dropped after the app is back."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "bench_move")
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the database in MB (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each floor, median (default 3)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for Ready and for the move")
    args = parser.parse_args(argv)
    if args.size_mb < 10 or not 1 <= args.repeat <= 10:
        parser.error("--size-mb >= 10, 1 <= --repeat <= 10")
    args.command = command_line("bench_move.py", parser, args, shown=["size_mb", "repeat", "timeout", "section"])

    def body(workdir: Path) -> tuple[str, list[str]]:
        result = run(args, workdir)
        return report(result, args), [result.failure] if result.failure else []

    return run_and_publish(args, "odoo-bench-move-", body)


if __name__ == "__main__":
    sys.exit(main())
