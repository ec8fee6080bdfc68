#!/usr/bin/env python3
"""Benchmark (issue 15): the operator's memory, threads and asyncio tasks per OdooDatabase, in stages.

One local cluster and one operator (`python -m odoo_operator` of this checkout, as bench_create starts
it). For each count of --stages (e.g. 200,600): create OdooDatabases in namespace `bench` until that many
exist, wait until all are Ready (or --stage-timeout), let the operator idle --settle seconds (it trims its
heap every 60 s), then read its VmRSS, threads and asyncio tasks. The idle baseline is read before the
first create. Per database = (RSS at the stage - idle RSS) / count; marginal = the difference between two
stages divided by the difference of their counts (what one more database costs, once warmed up).

With --dump, the operator runs with ODOO_OPERATOR_MEMORY_DUMP (tracemalloc on: its RSS is then not the
production figure) and is sent SIGUSR2 at the baseline and at each stage: <workdir>/dumps/dump-<n>.json
(live objects by type, tasks by coroutine) and dump-<n>.tracemalloc, compared by --compare A B.

    .venv/bin/python bench/bench_mem.py --stages 200,600 [--suspended] [--dump] [--output FILE]
    .venv/bin/python bench/bench_mem.py --compare DIR/dump-2.tracemalloc DIR/dump-3.tracemalloc
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import (
    BENCH_NAMESPACE,
    AuditedCluster,
    Stack,
    collection,
    condition,
    free_port,
    loadavg,
    log,
    odoo_database,
    proc_status,
    proc_status_kb,
)
from report import machine_info, machine_line, now, table


def operator_tasks(metrics_port: int) -> float:
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("odoo_operator_asyncio_tasks "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return float("nan")


def measure(stack: Stack, pid: int, metrics_port: int, count: int, dumps: Path | None,
            dump_no: int) -> dict[str, Any]:
    row: dict[str, Any] = {"count": count, "rss_kb": proc_status_kb(pid, "VmRSS") or 0,
                           "hwm_kb": proc_status_kb(pid, "VmHWM") or 0,
                           "threads": proc_status(pid, "Threads").get("Threads", 0),
                           "tasks": operator_tasks(metrics_port), "load": loadavg()}
    if dumps is not None:
        os.kill(pid, signal.SIGUSR2)
        path = dumps / f"dump-{dump_no}.json"
        deadline = time.monotonic() + 300
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(2)
        if path.exists():
            figures = json.loads(path.read_text())
            row["dump"] = str(path)
            row["tasks_by_coroutine"] = figures.get("tasks_by_coroutine")
            row["traced"] = figures.get("traced")
            row["probes"] = figures.get("probes")
            if row["tasks"] != row["tasks"]:  # NaN: no loop has registered its event loop with the metrics yet
                row["tasks"] = float(figures.get("tasks") or 0)
    log(f"count={count} rss={row['rss_kb'] / 1024:.1f}MB threads={row['threads']} tasks={row['tasks']:.0f} "
        f"load={row['load']}")
    return row


def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k.startswith("ODOO_OPERATOR_")}
    metrics_port = free_port()
    env["ODOO_OPERATOR_METRICS_PORT"] = str(metrics_port)
    dumps = workdir / "dumps" if args.dump or args.probe else None
    if dumps is not None:
        env["ODOO_OPERATOR_MEMORY_DUMP"] = str(dumps)
        env["ODOO_OPERATOR_MEMORY_TRACE"] = "16" if args.dump else "0"
    cluster = AuditedCluster(workdir)
    cluster.audit = False
    cluster.apiserver_args = ("--service-cluster-ip-range=10.0.0.0/16",)
    rows: list[dict[str, Any]] = []
    with Stack(workdir, cluster) as stack:
        stack.start_cluster()
        operator = stack.start_operator(env)
        api = stack.api
        ns = BENCH_NAMESPACE
        databases = collection("odoodatabases", ns)
        log(f"idle {args.settle:.0f}s before the baseline")
        time.sleep(args.settle)
        rows.append(measure(stack, operator.pid, metrics_port, 0, dumps, 1))
        made = 0
        spec: dict[str, Any] = {"app": {"suspended": True}} if args.suspended else {}
        for stage, count in enumerate(args.stage_counts, start=2):
            names = [f"bench-{i:05d}" for i in range(made, count)]
            failures: list[str] = []

            def create(name: str, failures: list[str] = failures) -> None:
                status, body = api.request("POST", databases, odoo_database(name, ns, **spec))
                if status != 201:
                    failures.append(f"{name}: {status} {str(body)[:200]}")

            t0 = time.monotonic()
            with ThreadPoolExecutor(max_workers=args.parallel) as pool:
                list(pool.map(create, names))
            if failures:
                raise SystemExit("creates failed:\n  " + "\n  ".join(failures[:10]))
            made = count
            log(f"created {len(names)} (now {count}) in {time.monotonic() - t0:.1f}s")
            ready = 0
            deadline = t0 + args.stage_timeout
            while time.monotonic() < deadline:
                stack.check_operator()
                items = api.get(databases).get("items") or []
                reasons = collections.Counter(condition(o, "Ready").get("reason") or "(none)" for o in items)
                ready = sum(1 for o in items if condition(o, "Ready").get("status") == "True")
                log(f"t={time.monotonic() - t0:.0f}s ready {ready}/{count} rss="
                    f"{(proc_status_kb(operator.pid, 'VmRSS') or 0) / 1024:.0f}MB "
                    + ", ".join(f"{r}={n}" for r, n in reasons.most_common()))
                if ready >= count:
                    break
                time.sleep(10)
            ready_s = time.monotonic() - t0
            log(f"settling {args.settle:.0f}s")
            time.sleep(args.settle)
            row = measure(stack, operator.pid, metrics_port, count, dumps, stage)
            row["ready"], row["ready_s"] = ready, ready_s
            rows.append(row)
    return rows


def report(args: argparse.Namespace, rows: list[dict[str, Any]], started: Any) -> str:
    base = rows[0]
    lines = ["## bench_mem: operator memory per OdooDatabase, in stages", "",
             f"Run {started:%Y-%m-%d %H:%M} UTC with `bench/bench_mem.py {' '.join(sys.argv[1:])}`.",
             machine_line(machine_info()),
             f"Databases {'suspended (spec.app.suspended)' if args.suspended else 'not suspended'}; "
             f"settle {args.settle:.0f} s before each reading; tracemalloc {'ON' if args.dump else 'off'}.", ""]
    out = []
    previous = base
    for row in rows:
        count = row["count"]
        per = (row["rss_kb"] - base["rss_kb"]) / count if count else 0.0
        marginal = ((row["rss_kb"] - previous["rss_kb"]) / (count - previous["count"])
                    if count > previous["count"] else 0.0)
        out.append([str(count), f"{row.get('ready', '—')}", f"{row.get('ready_s', 0):.0f} s",
                    f"{row['rss_kb'] / 1024:.1f} MB", f"{row['rss_kb'] / max(base['rss_kb'], 1):.2f}×",
                    f"{per:.0f} KB" if count else "—", f"{marginal:.0f} KB" if count and previous is not row else "—",
                    str(row["threads"]), f"{row['tasks']:.0f}",
                    f"{(row['tasks'] - base['tasks']) / count:.2f}" if count else "—", row["load"]])
        previous = row
    lines += table(["databases", "Ready", "stage took", "RSS", "RSS / idle", "per database beyond idle",
                    "marginal per database", "threads", "asyncio tasks", "tasks per database beyond idle",
                    "load average"], out)
    for row in rows:
        for name, probe in (row.get("probes") or {}).items():
            shown = ", ".join(f"{k} {v / 1024:.0f} KiB" if k.endswith("bytes") else f"{k} {v}"
                              for k, v in probe.items() if isinstance(v, (int, float)) and v)
            lines += ["", f"Probe {name} at {row['count']}: {shown}"]
        if row.get("tasks_by_coroutine"):
            lines += ["", f"Tasks by coroutine at {row['count']}: "
                      + ", ".join(f"{k} {v}" for k, v in list(row["tasks_by_coroutine"].items())[:12])]
    return "\n".join(lines) + "\n"


def compare(before: str, after: str, top: int) -> None:
    """The growth between two tracemalloc dumps: by file, then by traceback."""
    old, new = tracemalloc.Snapshot.load(before), tracemalloc.Snapshot.load(after)
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    old, new = old.filter_traces(ignore), new.filter_traces(ignore)
    total = sum(s.size_diff for s in new.compare_to(old, "filename"))
    print(f"total growth {total / 1024:.0f} KiB")
    print("\n== by file (allocation site's file) ==")
    for stat in new.compare_to(old, "filename")[:top]:
        print(f"{stat.size_diff / 1024:9.0f} KiB {stat.count_diff:8d} blocks  {stat.traceback[0].filename}")
    print("\n== by line ==")
    for stat in new.compare_to(old, "lineno")[:top]:
        print(f"{stat.size_diff / 1024:9.0f} KiB {stat.count_diff:8d} blocks  {stat.traceback[0]}")
    print("\n== by traceback ==")
    for stat in new.compare_to(old, "traceback")[:top]:
        print(f"{stat.size_diff / 1024:9.0f} KiB {stat.count_diff:8d} blocks")
        for frame in stat.traceback.format(limit=10, most_recent_first=True):
            print("    " + frame)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="200,600", help="counts, in order (default 200,600)")
    parser.add_argument("--suspended", action="store_true", help="create them with spec.app.suspended")
    parser.add_argument("--dump", action="store_true", help="tracemalloc + SIGUSR2 dumps in the operator")
    parser.add_argument("--probe", action="store_true",
                        help="SIGUSR2 dumps (objects, tasks, probes) after each reading, without tracemalloc")
    parser.add_argument("--settle", type=float, default=70.0, help="idle seconds before each reading (default 70)")
    parser.add_argument("--stage-timeout", type=float, default=900.0, help="per stage, until all Ready")
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--workdir", default="", help="default: a new temporary directory")
    parser.add_argument("--output", default="", help="append the Markdown summary to this file")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two .tracemalloc dumps")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare, args.top)
        return 0
    args.stage_counts = [int(n) for n in args.stages.split(",") if n.strip()]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-mem-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = now()
    rows = run(args, workdir)
    summary = report(args, rows, started)
    print(summary)
    (workdir / "rows.json").write_text(json.dumps(rows, indent=1, default=str))
    if args.output:
        with open(args.output, "a") as handle:
            handle.write("\n" + summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
