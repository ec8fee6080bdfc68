#!/usr/bin/env python3
"""Benchmark (issue 5): many tenants racing for the same custom domains, then taking them over.

Starts the local control plane + PostgreSQL, the default PostgresServer and the operator as a process,
as bench_create does. Two namespaces (`bench-a`, `bench-b`) get one OdooDatabase each, Ready first.
Then --domains domains are each claimed by one DomainMapping in each namespace, the two POSTs of a
domain sent together (2 x --domains mappings, --parallel client threads), and a watch follows the
mappings until each has settled: Routed (Ready=True) or DomainConflict (Stalled). Checked: exactly one
winner per domain, its namespace the one its DomainClaim names. Then every winner is deleted at once
and the time until each loser has taken its domain over (Routed) is measured.

Reports totals, per-mapping latencies (p50/p95/max) and operator requests per mapping (the API
server's audit log, by User-Agent) to stdout and into the `bench_domains` section of BENCHMARKS.md.
Nothing is asserted on time; the exit status is 1 when a domain has not exactly one winner or a
mapping does not settle before --timeout.

    .venv/bin/python bench/bench_domains.py --domains 100
"""

from __future__ import annotations

import argparse
import functools
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import (
    GROUP,
    VERSION,
    AuditedCluster,
    Stack,
    collection,
    condition,
    log,
    odoo_database,
    read_audit,
    wait_for,
)
from report import (
    bench_parser,
    command_line,
    fmt_s,
    machine_info,
    machine_line,
    now,
    percentile,
    run_and_publish,
    run_line,
    table,
)

NAMESPACES = ("bench-a", "bench-b")
SETTLED = ("Routed", "DomainConflict")


def mapping(name: str, namespace: str, domain: str, database: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DomainMapping",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"domain": domain, "databaseRef": {"name": database}}}


class Tracker:
    """First time each mapping was seen with each Ready reason (watch events)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, str], dict[str, float]] = {}
        self.reason: dict[tuple[str, str], str] = {}
        self.changed = threading.Condition(self.lock)

    def on_event(self, type_: str, obj: dict[str, Any], t: float) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        reason = condition(obj, "Ready").get("reason") or ""
        observed = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation")
        with self.changed:
            if type_ == "DELETED":
                self.reason.pop(key, None)
            elif observed and reason:
                self.reason[key] = reason
                self.seen.setdefault(key, {}).setdefault(reason, t)
            self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(min(remaining, 1.0))
            return True


def run(args: argparse.Namespace, workdir: Path) -> tuple[str, list[str]]:
    """The section's Markdown and its problems (a domain without exactly one winner, a phase not settled)."""
    cluster = AuditedCluster(workdir)
    cluster.audit = True
    problems: list[str] = []
    with Stack(workdir, cluster) as stack:
        started_at = now()
        stack.start_cluster(namespaces=NAMESPACES)
        stack.start_operator()
        api = stack.api
        databases = {ns: f"shop-{ns[-1]}" for ns in NAMESPACES}
        for ns, db in databases.items():
            status, body = api.request("POST", collection("odoodatabases", ns), odoo_database(db, ns))
            assert status == 201, body

        def ready(path: str) -> bool:
            return condition(api.get(path), "Ready").get("status") == "True"

        for ns, db in databases.items():
            wait_for(functools.partial(ready, f"{collection('odoodatabases', ns)}/{db}"), 120, f"{ns}/{db} Ready")
        log("both databases Ready")

        tracker = Tracker()
        stack.watch(collection("domainmappings"), tracker.on_event)
        stack.synced()

        domains = [f"shop{i:04d}.example.com" for i in range(args.domains)]
        created: dict[tuple[str, str], float] = {}
        barrier_lock = threading.Lock()

        def post(ns: str, i: int) -> None:
            name = f"d{i:04d}"
            status, body = api.request("POST", collection("domainmappings", ns),
                                       mapping(name, ns, domains[i], databases[ns]))
            with barrier_lock:
                created[(ns, name)] = time.monotonic()
            if status != 201:
                raise RuntimeError(f"POST {ns}/{name}: {status} {body}")

        t0 = time.monotonic()
        wall0 = time.time()
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda job: post(*job), [(ns, i) for i in range(args.domains) for ns in NAMESPACES]))
        posted = time.monotonic() - t0
        keys = list(created)
        settled = tracker.wait(lambda: all(tracker.reason.get(k) in SETTLED for k in keys), args.timeout)
        t_settled = time.monotonic()
        wall_settled = time.time()
        if not settled:
            problems.append(f"not all {len(keys)} mappings settled after {args.timeout:.0f}s")
            stuck = [f"{k}: {tracker.reason.get(k)}" for k in keys if tracker.reason.get(k) not in SETTLED]
            log(f"not settled: {stuck[:10]}")
        log(f"{len(keys)} mappings settled in {t_settled - t0:.1f}s")

        # Exactly one winner per domain, and it is the claim's holder.
        winners: dict[int, str] = {}
        bad: list[str] = []
        for i, domain in enumerate(domains):
            routed = [ns for ns in NAMESPACES if tracker.reason.get((ns, f"d{i:04d}")) == "Routed"]
            claim = api.get(f"{collection('domainclaims')}/{domain}")
            holder = claim["spec"]["mappingRef"]["namespace"]
            if len(routed) != 1 or routed[0] != holder:
                bad.append(f"{domain}: routed in {routed}, claim held by {holder}")
            else:
                winners[i] = routed[0]
        problems += bad
        latencies = {k: tracker.seen[k][tracker.reason[k]] - created[k] for k in keys if tracker.reason.get(k)
                     in SETTLED}
        win_lat = [v for k, v in latencies.items() if tracker.reason[k] == "Routed"]
        lose_lat = [v for k, v in latencies.items() if tracker.reason[k] == "DomainConflict"]

        # Release and takeover: delete every winner at once.
        t1 = time.monotonic()
        wall1 = time.time()
        deleted: dict[tuple[str, str], float] = {}

        def delete(i: int) -> None:
            ns = winners[i]
            status, body = api.request("DELETE", f"{collection('domainmappings', ns)}/d{i:04d}")
            deleted[(ns, f"d{i:04d}")] = time.monotonic()
            if status not in (200, 202):
                raise RuntimeError(f"DELETE {ns}/d{i:04d}: {status} {body}")

        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(delete, list(winners)))
        losers = {i: next(ns for ns in NAMESPACES if ns != winners[i]) for i in winners}
        taken = tracker.wait(lambda: all(tracker.reason.get((ns, f"d{i:04d}")) == "Routed"
                                         for i, ns in losers.items()), args.timeout)
        t_taken = time.monotonic()
        wall_taken = time.time()
        if not taken:
            problems.append(f"not every loser Routed {args.timeout:.0f}s after the winners' deletion")
        takeover = [tracker.seen[(ns, f"d{i:04d}")]["Routed"] - deleted[(winners[i], f"d{i:04d}")]
                    for i, ns in losers.items() if "Routed" in tracker.seen.get((ns, f"d{i:04d}"), {})]

        audit = read_audit(cluster.audit_log, wall0, wall_settled) if cluster.audit_log.exists() else None
        audit2 = read_audit(cluster.audit_log, wall1, wall_taken) if cluster.audit_log.exists() else None

        def operator_requests(summary: Any) -> int | None:
            return None if summary is None else int(summary.by_client["operator"])

        machine = machine_info()
        per = len(keys)
        lines = [
            f"## {args.section}: DomainMappings racing for domains, then taking them over",
            "",
            run_line(started_at, args.command),
            f"{machine_line(machine, software=False)}; control plane, PostgreSQL and the operator on this machine "
            "(as bench_create).",
            "",
            *table(["measure", "value"], [
                ["mappings (2 namespaces x domains)", f"{per} ({args.domains} domains)"],
                ["POSTs sent (both of a domain together)", fmt_s(posted)],
                ["first POST -> all settled (Routed or DomainConflict)", fmt_s(t_settled - t0)],
                ["domains with exactly one winner, the claim's holder", f"{len(winners)}/{args.domains}"],
                ["winner latency p50 / p95 / max", " / ".join(secs(percentile(win_lat, q)) for q in (0.5, 0.95, 1.0))
                 if win_lat else "-"],
                ["loser (DomainConflict) latency p50 / p95 / max",
                 " / ".join(secs(percentile(lose_lat, q)) for q in (0.5, 0.95, 1.0)) if lose_lat else "-"],
                ["winners deleted -> every loser Routed", fmt_s(t_taken - t1)],
                ["takeover latency (winner DELETE -> loser Routed) p50 / p95 / max",
                 " / ".join(secs(percentile(takeover, q)) for q in (0.5, 0.95, 1.0)) if takeover else "-"],
                ["operator requests while racing (audit log)", _per(operator_requests(audit), per)],
                ["operator requests during the takeover (audit log)", _per(operator_requests(audit2), per // 2)],
            ]),
            "",
            "Wins per namespace: " + ", ".join(f"{ns} {list(winners.values()).count(ns)}" for ns in NAMESPACES)
            + ". " + ("No domain had two winners or none." if not bad else f"PROBLEMS: {bad[:5]}"),
        ]
        return "\n".join(lines) + "\n", problems


def secs(value: float) -> str:
    return "-" if value != value else f"{value:.2f} s"


def _per(total: int | None, count: int) -> str:
    return "-" if total is None else f"{total} ({total / max(count, 1):.1f} per mapping)"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "bench_domains")
    parser.add_argument("--domains", type=int, default=100, help="domains, each claimed from both namespaces")
    parser.add_argument("--parallel", type=int, default=16, help="client threads sending the POSTs")
    parser.add_argument("--timeout", type=float, default=300, help="seconds each phase may take")
    args = parser.parse_args(argv)
    args.command = command_line("bench_domains.py", parser, args, always=["domains"],
                                shown=["domains", "parallel", "timeout", "section"])
    return run_and_publish(args, "odoo-bench-domains-", lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
