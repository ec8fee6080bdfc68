#!/usr/bin/env python3
"""Benchmark (issue 2): create N OdooDatabases at once and time them until all are Ready.

Starts the local control plane + PostgreSQL (odoo_operator.devtools.localcluster), the default PostgresServer
and the operator as a process (`python -m odoo_operator`, default settings), waits until the server
is reachable, then creates N OdooDatabases in namespace `bench` as fast as possible and watches
them (and their Jobs, Pods, Deployments and PVCs) until every one is Ready.

It reports: total time until all are Ready, per-object latency (time Ready was first observed minus
the time its create returned; p50/p95/max), where the time goes (per-object milestones observed by
watches, each marked as the operator's, kwok's or the Kubernetes controllers' doing), the operator's
peak RSS (VmRSS sampled every 100 ms, and VmHWM), its threads and asyncio tasks, API requests per
object (apiserver_request_total difference, and per client from the API server's audit log), and CPU
time per component. Issue 15's figures come with their floors measured in the same run: the
PostgreSQL floor (as many role + database pairs made directly with the operator's own statements)
for "every database's children applied", the drift detection time (databases dropped in PostgreSQL
once all are Ready, until DatabaseMissing) and, with --scale, RSS, requests, threads and tasks at
other counts. The summary goes to stdout and into the `bench_create` section of BENCHMARKS.md.

Exit status: 0 when every object was Ready before --timeout, 1 otherwise (the stuck objects are
listed with their Ready condition). Targets (60 s, 150 MB) are reported, never asserted.

    .venv/bin/python bench/bench_create.py --count 200 [--scale 1000,2000]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import datetime
import os
import resource
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from harness import (
    BENCH_NAMESPACE,
    REPO_ROOT,
    AuditedCluster,
    AuditSummary,
    CpuSampler,
    RssSampler,
    Sampler,
    Stack,
    collection,
    condition,
    free_port,
    loadavg,
    log,
    log_problems,
    machine_cpu,
    odoo_database,
    proc_status,
    proc_status_kb,
    read_audit,
    request_totals,
    resource_label,
)
from psycopg import sql
from report import (
    bench_parser,
    command_line,
    fmt_s,
    log_problems_lines,
    machine_info,
    machine_line,
    now,
    percentile,
    run_and_publish,
    run_line,
    table,
    write_section,
)

from odoo_operator import pg

TARGET_SECONDS = 60.0
TARGET_RSS_MB = 150.0

# Per-object milestones, in the order the pipeline normally reaches them, with who brings each about.
# Offsets are measured from the moment the object's create request returned, on the benchmark's
# monotonic clock.
OPERATOR, KWOK, CONTROLLERS = "operator", "kwok (fake kubelet and volume provisioner)", "Kubernetes controllers"
MILESTONES: list[tuple[str, str, str]] = [
    ("status", "operator wrote a first status", OPERATOR),
    ("pvc", "filestore PVC applied", OPERATOR),
    ("pvc_bound", "PVC Bound (kwok provisions, the PV controller binds)", KWOK),
    ("job", "init Job created: all children before init applied", OPERATOR),
    ("init_pod", "init Pod created (job controller)", CONTROLLERS),
    ("init_pod_scheduled", "init Pod scheduled (kube-scheduler)", CONTROLLERS),
    ("init_pod_done", "init Pod Succeeded", KWOK),
    ("job_complete", "init Job Complete (job controller)", CONTROLLERS),
    ("initialized", "OdooDatabase Initialized=True", OPERATOR),
    ("deploy_scaled", "Deployment applied (>=1 replica)", OPERATOR),
    ("app_pod", "app Pod created (replicaset controller)", CONTROLLERS),
    ("app_pod_scheduled", "app Pod scheduled (kube-scheduler)", CONTROLLERS),
    ("app_pod_ready", "app Pod Ready", KWOK),
    ("deploy_available", "Deployment available (deployment controller)", CONTROLLERS),
    ("ready", "OdooDatabase Ready=True", OPERATOR),
]
ACTOR = {key: actor for key, _, actor in MILESTONES}
# The operator's own stretches of each object's path (from the milestone before to the one after);
# everything between them waits for kwok and the controllers.
OPERATOR_SPANS = [(None, "job"), ("job_complete", "deploy_scaled"), ("deploy_available", "ready")]
DRIFT_TARGET_S = 30.0
FLOOR_TARGET = 2.0
MEMORY_TARGET_KB = 100.0


class Trace:
    """First time (monotonic) each milestone was observed, per OdooDatabase name."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = set(names)
        self.lock = threading.Lock()
        self.first: dict[str, dict[str, float]] = {name: {} for name in self.names}
        self.ready_condition: dict[str, dict[str, Any]] = {}
        self.phase: dict[str, str] = {}
        self.reasons: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)
        self.ready_count = 0
        self.all_ready = threading.Event()
        self.database_name: dict[str, str] = {}
        self.missing: dict[str, float] = {}  # first DatabaseMissing seen

    def mark(self, name: str, milestone: str, t: float) -> None:
        marks = self.first.get(name)
        if marks is not None and milestone not in marks:
            marks[milestone] = t
            if milestone == "ready":
                self.ready_count += 1
                if self.ready_count == len(self.names):
                    self.all_ready.set()

    def on_database(self, type_: str, obj: dict[str, Any], t: float) -> None:
        name = obj["metadata"]["name"]
        if name not in self.names or type_ == "DELETED":
            return
        ready = condition(obj, "Ready")
        with self.lock:
            if (obj.get("status") or {}).get("conditions"):  # not the CRD default {observedGeneration: 0}
                self.mark(name, "status", t)
            self.ready_condition[name] = ready
            self.phase[name] = (obj.get("status") or {}).get("phase", "")
            reason = ready.get("reason") or "(none)"
            if (obj.get("status") or {}).get("databaseName"):
                self.database_name[name] = obj["status"]["databaseName"]
            if reason == "DatabaseMissing":
                self.missing.setdefault(name, t)
            if not self.reasons[name] or self.reasons[name][-1][1] != reason:
                self.reasons[name].append((t, reason))
            if condition(obj, "Initialized").get("status") == "True":
                self.mark(name, "initialized", t)
            if ready.get("status") == "True":
                self.mark(name, "ready", t)

    def on_child(self, kind: str) -> Callable[[str, dict[str, Any], float], None]:
        def handle(type_: str, obj: dict[str, Any], t: float) -> None:
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            name = labels.get("app.kubernetes.io/instance", "")
            if name not in self.names or type_ == "DELETED":
                return
            status, spec = obj.get("status") or {}, obj.get("spec") or {}
            with self.lock:
                if kind == "pvc":
                    self.mark(name, "pvc", t)
                    if status.get("phase") == "Bound":
                        self.mark(name, "pvc_bound", t)
                elif kind == "job":
                    self.mark(name, "job", t)
                    if condition(obj, "Complete").get("status") == "True":
                        self.mark(name, "job_complete", t)
                elif kind == "deployment":
                    if int(spec.get("replicas") or 0) >= 1:
                        self.mark(name, "deploy_scaled", t)
                    if int(status.get("availableReplicas") or 0) >= 1:
                        self.mark(name, "deploy_available", t)
                elif kind == "pod":
                    prefix = {"init": "init_pod", "app": "app_pod"}.get(labels.get("app.kubernetes.io/component", ""))
                    if prefix is None:
                        return
                    self.mark(name, prefix, t)
                    if spec.get("nodeName"):
                        self.mark(name, f"{prefix}_scheduled", t)
                    if prefix == "init_pod" and status.get("phase") == "Succeeded":
                        self.mark(name, "init_pod_done", t)
                    if prefix == "app_pod" and condition(obj, "Ready").get("status") == "True":
                        self.mark(name, "app_pod_ready", t)
        return handle


@dataclass
class Result:
    count: int
    started_at: datetime.datetime
    machine: dict[str, str]
    cluster_start_s: float = 0.0
    operator_reachable_s: float = 0.0
    create_wall_s: float = 0.0
    create_call_p50: float = 0.0
    create_call_max: float = 0.0
    total_s: float | None = None
    latencies: list[float] = field(default_factory=list)
    ready_curve: list[tuple[int, float]] = field(default_factory=list)
    stuck: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    milestones: list[tuple[str, str, int, float, float, float, float]] = field(default_factory=list)
    rss_baseline_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_end_mb: float = 0.0
    hwm_mb: float = 0.0
    metrics_total: float = 0.0
    metrics_bench_own: int = 0
    metrics_top: list[tuple[str, str, float]] = field(default_factory=list)
    audit: AuditSummary | None = None
    settle_s: float = 0.0
    settle_operator_requests: int = 0
    cpu: list[tuple[str, float]] = field(default_factory=list)
    window_s: float = 0.0
    machine_busy: float = 0.0
    operator_log_problems: list[str] = field(default_factory=list)
    operator_env: dict[str, str] = field(default_factory=dict)
    timeout: float = 0.0
    reasons_seen: collections.Counter[str] = field(default_factory=collections.Counter)
    loadavg_before: str = ""
    timeline: list[list[str]] = field(default_factory=list)
    events: list[tuple[str, str, str, int]] = field(default_factory=list)
    kwok_watch_errors: int = 0
    floor_s: float | None = None  # the PostgreSQL floor: count role+database pairs made directly
    floor_count: int = 0
    children_applied_s: float | None = None  # first create -> every init Job created
    deployments_applied_s: float | None = None
    operator_share: list[float] = field(default_factory=list)  # per object, seconds of the operator's own spans
    others_share: list[float] = field(default_factory=list)
    load_idle: dict[str, float] = field(default_factory=dict)  # threads / asyncio tasks (metrics, /proc)
    load_end: dict[str, float] = field(default_factory=dict)
    threads_peak: int = 0
    drift: list[tuple[str, float | None]] = field(default_factory=list)  # (object, seconds to DatabaseMissing)
    drift_timeout: float = 0.0
    scale: list[Result] = field(default_factory=list)  # further runs at other counts (--scale)
    scale_errors: list[str] = field(default_factory=list)


# ---- the PostgreSQL floor, threads and tasks ----------------------------------------------------------

def postgres_floor(stack: Stack, count: int) -> float:
    """Seconds to make `count` role + database pairs directly, with the operator's own statements
    (odoo_operator.pg: role, database, REVOKE CONNECT, Odoo's extensions), one after the other on one
    admin session; dropped afterwards (not timed)."""
    postgres = stack.cluster.postgres
    assert postgres is not None
    admin = pg.ServerAddress("127.0.0.1", postgres.port, postgres.user, postgres.password, "disable", 30)
    names = [f"floor-{i:04d}" for i in range(count)]
    started = time.monotonic()
    with pg.connect(admin) as conn:
        for name in names:
            owner = {"owner": name}
            pg.ensure_role(conn, name, f"pw-{name}", owner, reset_password=False)
            pg.create_database(conn, name, name, owner | {"uid": name, "version": "17.0"})
            pg.ensure_private(conn, name)
            pg.create_odoo_extensions(admin, name, name)
    elapsed = time.monotonic() - started
    with pg.connect(admin) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute("CHECKPOINT")
    return elapsed


def operator_load(pid: int, metrics_port: int) -> dict[str, float]:
    """The operator's threads (/proc) and its event loop's asyncio tasks (its metrics endpoint)."""
    found = {"threads": float(proc_status(pid, "Threads").get("Threads", 0))}
    with contextlib.suppress(OSError, ValueError):
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                for key in ("threads", "asyncio_tasks"):
                    if line.startswith(f"odoo_operator_{key} "):
                        found[f"{key} (metrics)" if key == "threads" else key] = float(line.split()[1])
    return found


class ThreadSampler(Sampler):
    """The operator's thread count every second (its peak)."""

    def __init__(self, pid: int) -> None:
        super().__init__("threads", 1.0)
        self.pid = pid
        self.peak = 0

    def sample(self) -> None:
        self.peak = max(self.peak, proc_status(self.pid, "Threads").get("Threads", 0))


def run(args: argparse.Namespace, workdir: Path) -> Result:
    names = [f"bench-{i:04d}" for i in range(args.count)]
    operator_env = dict(item.split("=", 1) for item in args.operator_env)
    inherited = {k: v for k, v in os.environ.items() if k.startswith("ODOO_OPERATOR_")}
    operator_env = {**inherited, **operator_env}
    result = Result(count=args.count, started_at=now(), machine=machine_info(),
                    operator_env=operator_env, timeout=args.timeout)
    cluster = AuditedCluster(workdir)
    cluster.audit = args.audit
    cluster.apiserver_args = tuple(args.apiserver_arg)
    if not any(a.startswith("--service-cluster-ip-range") for a in args.apiserver_arg):
        # The local cluster's /24 holds 254 Services: one per database. The first address (the API
        # server's own Service) stays 10.0.0.1.
        cluster.apiserver_args += ("--service-cluster-ip-range=10.0.0.0/16",)
    with Stack(workdir, cluster) as stack:
        # -- control plane, CRDs, default server, operator ------------------------------------------------
        stack.start_cluster()
        result.cluster_start_s = stack.cluster_start_s
        metrics_port = free_port()
        operator = stack.start_operator({"ODOO_OPERATOR_METRICS_PORT": str(metrics_port), **operator_env})
        result.operator_reachable_s = stack.operator_reachable_s
        api, sampler = stack.api, stack.rss
        assert sampler is not None
        if args.floor:
            log(f"PostgreSQL floor: {args.count} role + database pairs made directly")
            result.floor_s, result.floor_count = postgres_floor(stack, args.count), args.count
            log(f"floor: {result.floor_s:.1f}s")

        # -- watches --------------------------------------------------------------------------------------
        trace = Trace(names)
        ns = BENCH_NAMESPACE
        stack.watch(collection("odoodatabases", ns), trace.on_database)
        stack.watch(f"/apis/batch/v1/namespaces/{ns}/jobs", trace.on_child("job"))
        stack.watch(f"/apis/apps/v1/namespaces/{ns}/deployments", trace.on_child("deployment"))
        if args.detail:
            stack.watch(f"/api/v1/namespaces/{ns}/pods", trace.on_child("pod"))
            stack.watch(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", trace.on_child("pvc"))
        stack.synced()

        # -- measurement window ---------------------------------------------------------------------------
        pids = stack.process_pids()
        cpu_sampler = CpuSampler(pids)
        cpu_sampler.sample()
        cpu_before = cpu_sampler.samples[0][1]
        bench_cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        busy_before, total_before = machine_cpu()
        result.loadavg_before = loadavg()
        rss_baseline_kb = proc_status_kb(operator.pid, "VmRSS") or 0
        result.load_idle = operator_load(operator.pid, metrics_port)
        threads = stack.sampler(ThreadSampler(operator.pid))

        own_before = api.requests
        metrics_before = request_totals(api)
        wall_start = time.time()
        t_start = time.monotonic()
        stack.sampler(cpu_sampler)

        created: dict[str, float] = {}
        durations: list[float] = []
        failures: list[str] = []
        databases = collection("odoodatabases", ns)

        def create(name: str) -> None:
            began = time.monotonic()
            status, body = api.request("POST", databases, odoo_database(name, ns))
            done = time.monotonic()
            if status != 201:
                failures.append(f"{name}: {status} {body}")
                return
            created[name] = done
            durations.append(done - began)

        log(f"creating {args.count} OdooDatabases in namespace {ns} with {args.parallel} threads")
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            list(pool.map(create, names))
        result.create_wall_s = time.monotonic() - t_start
        if failures:
            raise SystemExit("creates failed:\n  " + "\n  ".join(failures[:20]))
        result.create_call_p50 = percentile(durations, 0.5)
        result.create_call_max = max(durations)
        log(f"created {len(created)} in {result.create_wall_s:.1f}s; waiting until all are Ready "
            f"(timeout {args.timeout:.0f}s)")

        deadline = t_start + args.timeout
        next_report = time.monotonic() + 5
        while not trace.all_ready.is_set() and time.monotonic() < deadline:
            trace.all_ready.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            stack.check_watchers()
            if operator.poll() is not None:
                log(f"the operator exited with {operator.returncode}")
                break
            if time.monotonic() >= next_report:
                next_report += 5
                with trace.lock:
                    reasons = collections.Counter(
                        (trace.ready_condition.get(n) or {}).get("reason") or "(no status)" for n in names)
                log(f"t={time.monotonic() - t_start:5.1f}s ready={trace.ready_count}/{args.count} "
                    f"rss={(proc_status_kb(operator.pid, 'VmRSS') or 0) / 1024:.0f}MB  "
                    + ", ".join(f"{r}={c}" for r, c in reasons.most_common()))
        t_end = time.monotonic()
        wall_end = time.time()
        own_mid = api.requests
        metrics_after = request_totals(api)
        result.window_s = t_end - t_start
        busy_after, total_after = machine_cpu()
        cpu_sampler.stop()
        cpu_sampler.sample()
        cpu_after = cpu_sampler.samples[-1][1]
        bench_cpu_after = resource.getrusage(resource.RUSAGE_SELF)

        # -- results ----------------------------------------------------------------------------------------
        with trace.lock:
            ready_at = {n: marks["ready"] for n, marks in trace.first.items() if "ready" in marks}
            result.latencies = [ready_at[n] - created[n] for n in names if n in ready_at and n in created]
            if len(ready_at) == len(names):
                result.total_s = max(ready_at.values()) - t_start
            finish = sorted(t - t_start for t in ready_at.values())
            for fraction in (0.25, 0.5, 0.75, 0.9, 1.0):
                k = max(1, int(round(fraction * len(names))))
                if k <= len(finish):
                    result.ready_curve.append((k, finish[k - 1]))
            for key, label, _actor in MILESTONES:
                offsets = [trace.first[n][key] - created[n] for n in names if key in trace.first[n] and n in created]
                if offsets:
                    result.milestones.append((key, label, len(offsets), percentile(offsets, 0.5),
                                              percentile(offsets, 0.95), max(offsets), min(offsets)))
            jobs = [trace.first[n].get("job") for n in names]
            if all(jobs):
                result.children_applied_s = max(t for t in jobs if t is not None) - t_start
            scaled = [trace.first[n].get("deploy_scaled") for n in names]
            if all(scaled):
                result.deployments_applied_s = max(t for t in scaled if t is not None) - t_start
            for n in names:
                marks: dict[str | None, float] = {None: created.get(n, 0.0)}
                marks.update(trace.first[n])
                if n not in created or "ready" not in marks or not all(
                        a in marks and b in marks for a, b in OPERATOR_SPANS):
                    continue
                own = sum(marks[b] - marks[a] for a, b in OPERATOR_SPANS)
                result.operator_share.append(own)
                result.others_share.append(marks["ready"] - created[n] - own)
            for n in names:
                for _, reason in trace.reasons.get(n, []):
                    result.reasons_seen[reason] += 1
        # Re-read the objects that did not show Ready on the watch: the final word is the API server's.
        missing = [n for n in names if n not in ready_at]
        for n in missing:
            obj = api.get(f"{databases}/{n}")
            ready = condition(obj, "Ready")
            result.stuck.append((n, (obj.get("status") or {}).get("phase", ""), ready))

        result.rss_baseline_mb = rss_baseline_kb / 1024
        result.rss_peak_mb = sampler.peak_kb() / 1024
        result.rss_end_mb = (proc_status_kb(operator.pid, "VmRSS") or 0) / 1024
        result.metrics_bench_own = own_mid - own_before  # the /metrics GET before + the creates (+ re-lists)
        diff = {k: metrics_after.get(k, 0.0) - metrics_before.get(k, 0.0) for k in metrics_after}
        result.metrics_total = sum(diff.values())
        by_call: dict[tuple[str, str], float] = collections.defaultdict(float)
        for (verb, res, sub), value in diff.items():
            by_call[(verb, resource_label(res, sub))] += value
        result.metrics_top = sorted(((v, r, c) for (v, r), c in by_call.items() if c > 0), key=lambda x: -x[2])[:12]
        result.cpu = sorted(((name, cpu_after[name] - cpu_before[name]) for name in pids), key=lambda x: -x[1])
        bench_cpu = (bench_cpu_after.ru_utime + bench_cpu_after.ru_stime
                     - bench_cpu_before.ru_utime - bench_cpu_before.ru_stime)
        result.cpu.append(("benchmark (this script)", bench_cpu))
        ours = sum(sec for _, sec in result.cpu)
        result.cpu.append(("everything else on the machine", max(0.0, busy_after - busy_before - ours)))
        result.machine_busy = (busy_after - busy_before) / max(total_after - total_before, 1e-9)

        # -- settle: what the operator does once everything is Ready -----------------------------------------
        if args.settle > 0 and not result.stuck:
            log(f"all Ready; watching the idle operator for {args.settle:.0f}s")
            time.sleep(args.settle)
        result.settle_s = args.settle if not result.stuck else 0.0
        result.rss_end_mb = (proc_status_kb(operator.pid, "VmRSS") or 0) / 1024  # settled
        result.rss_peak_mb = max(result.rss_peak_mb, sampler.peak_kb() / 1024)
        result.hwm_mb = (proc_status_kb(operator.pid, "VmHWM") or 0) / 1024
        result.load_end = operator_load(operator.pid, metrics_port)
        result.threads_peak = threads.peak

        # -- drift: databases dropped behind the operator's back -----------------------------------------------
        if args.drift and not result.stuck:
            result.drift_timeout = DRIFT_TARGET_S * 3
            result.drift = drift(stack, trace, names[:args.drift], result.drift_timeout)
        if args.audit:
            time.sleep(1.5)  # the audit backend writes in batches every 0.5 s
            result.audit = read_audit(cluster.audit_log, wall_start, wall_end)
            if result.settle_s:
                idle = read_audit(cluster.audit_log, wall_end + 0.001, wall_end + result.settle_s)
                result.settle_operator_requests = idle.by_client["operator"]
        result.timeline = timeline(result, t_start, t_end, sorted(ready_at.values()), cpu_sampler, sampler,
                                   int(result.machine["cpus"]))
        counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for event in api.get(f"/api/v1/namespaces/{ns}/events").get("items") or []:
            component = event.get("reportingComponent") or (event.get("source") or {}).get("component") or "?"
            kind = (event.get("involvedObject") or {}).get("kind", "?")
            counts[(component, kind, event.get("reason", "?"))] += int(event.get("count") or 1)
        result.events = [(c, k, r, n) for (c, k, r), n in counts.most_common()]
        kwok_log = (workdir / "kwok.log").read_text(errors="replace")
        result.kwok_watch_errors = kwok_log.count("required storage feature RequestWatchProgress is disabled")
        result.operator_log_problems = log_problems(stack.operator_log)
        return result


def drift(stack: Stack, trace: Trace, names: list[str], timeout: float) -> list[tuple[str, float | None]]:
    """DROP DATABASE of `names` directly in PostgreSQL, then the seconds until each OdooDatabase shows
    Ready reason DatabaseMissing (None: not within `timeout`)."""
    postgres = stack.cluster.postgres
    assert postgres is not None
    log(f"drift: dropping the databases of {', '.join(names)} behind the operator's back")
    dropped: dict[str, float] = {}
    with psycopg.connect(postgres.dsn, autocommit=True, application_name="odoo-bench") as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                sql.Identifier(trace.database_name.get(name, name))))
            dropped[name] = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(n in trace.missing for n in names):
        time.sleep(0.2)
    with trace.lock:
        found = [(n, trace.missing[n] - dropped[n] if n in trace.missing else None) for n in names]
    log("drift: " + ", ".join(f"{n} {t:.1f}s" if t is not None else f"{n} not seen" for n, t in found))
    return found


TIMELINE_COMPONENTS = ("kube-apiserver", "operator", "postgresql", "etcd", "kube-controller-manager")


def timeline(result: Result, t_start: float, t_end: float, ready_times: list[float], cpu: CpuSampler,
             rss: RssSampler, cpus: int) -> list[list[str]]:
    """Rows per time slice of the window: Ready count, CPU use per component, operator requests and RSS."""
    window = t_end - t_start
    step = max(5.0, 5.0 * round(window / 12 / 5))
    rows: list[list[str]] = []
    samples = cpu.samples

    def sample_at(t: float) -> tuple[float, dict[str, float], float]:
        before = [s for s in samples if s[0] <= t]
        return before[-1] if before else samples[0]

    per_second = result.audit.operator_per_second if result.audit else collections.Counter()
    t = 0.0
    while t < window - 1e-6:
        end = min(t + step, window)
        if window - end < step / 3:
            end = window  # no sliver of a row at the end
        t0, cpu0, busy0 = sample_at(t_start + t)
        t1, cpu1, busy1 = sample_at(t_start + end)
        span = max(t1 - t0, 1e-9)
        ready = sum(1 for r in ready_times if r <= t_start + end)
        requests = sum(n for second, n in per_second.items() if t <= second < end)
        row = [f"{t:.0f}–{end:.0f} s", str(ready), f"{(busy1 - busy0) / span / cpus * 100:.0f}%"]
        row += [f"{(cpu1[c] - cpu0[c]) / span * 100:.0f}%" if c in cpu1 else "—" for c in TIMELINE_COMPONENTS]
        row += [f"{requests / max(end - t, 1e-9):.0f}" if result.audit else "—", f"{rss.at(t_start + end) / 1024:.0f}"]
        rows.append(row)
        t = end
    return rows


def report(result: Result, args: argparse.Namespace) -> str:
    m = result.machine
    n = result.count
    lat = result.latencies
    ok_ready = not result.stuck and result.total_s is not None
    total = result.total_s
    verdict_time = "PASS" if total is not None and total < TARGET_SECONDS else "FAIL"
    verdict_rss = "PASS" if max(result.rss_peak_mb, result.hwm_mb) < TARGET_RSS_MB else "FAIL"
    lines = [
        f"## {args.section}: {n} OdooDatabases created at once",
        "",
        run_line(result.started_at, args.command)
        + (f" Experiment: kube-apiserver started with the extra flags `{' '.join(args.apiserver_arg)}`."
           if args.apiserver_arg else ""),
        f"{machine_line(m)}. Control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and "
        "kwok (fake node) from `.cache/k8s/current`, all on this machine with PostgreSQL and the operator.",
        "Operator settings: " + (", ".join(f"`{k}={v}`" for k, v in sorted(result.operator_env.items()))
                                 or "defaults (no `ODOO_OPERATOR_*` set)") + ".",
        "",
        *table(["target", "measured", "result"], [
            [f"{n} Ready in < {TARGET_SECONDS:.0f} s", fmt_s(total) if total is not None
             else f"not all Ready after {result.timeout:.0f} s", verdict_time],
            [f"operator peak RSS < {TARGET_RSS_MB:.0f} MB", f"{max(result.rss_peak_mb, result.hwm_mb):.0f} MB",
             verdict_rss],
            ["no object stuck", f"{len(result.stuck)} not Ready", "PASS" if ok_ready else "FAIL"],
            *issue15_targets(result),
        ]),
        "",
        "### Timings",
        "",
        *table(["phase", "time"], [
            ["local cluster start (+ CRDs)", fmt_s(result.cluster_start_s)],
            ["operator start until PostgresServer `local` reachable", fmt_s(result.operator_reachable_s)],
            [f"{n} creates ({args.parallel} client threads; per call p50 {result.create_call_p50 * 1000:.0f} ms, "
             f"max {result.create_call_max * 1000:.0f} ms)", fmt_s(result.create_wall_s)],
            ["first create sent → all Ready", fmt_s(total) if total is not None else "—"],
            *[[f"{k}/{n} Ready", fmt_s(t)] for k, t in result.ready_curve],
        ]),
        "",
        f"Per object, create returned → Ready first observed (n={len(lat)}): "
        f"p50 **{fmt_s(percentile(lat, 0.5))}**, p95 **{fmt_s(percentile(lat, 0.95))}**, "
        f"max {fmt_s(max(lat) if lat else float('nan'))}, min {fmt_s(min(lat) if lat else float('nan'))}.",
        "",
        "### Where the time goes",
        "",
        "First time each step was observed by the benchmark's watches, as an offset from the object's create "
        "(p50 / p95 / max over the objects), sorted by p50; `Δ p50` is the difference from the previous row's p50.",
        "",
    ]
    rows, previous = [], 0.0
    for key, label, count, p50, p95, worst, _best in sorted(result.milestones, key=lambda row: row[3]):
        rows.append([label, ACTOR[key], str(count), fmt_s(p50), fmt_s(p95), fmt_s(worst),
                     f"{p50 - previous:+.1f} s"])
        previous = p50
    lines += table(["step", "by", "n", "p50", "p95", "max", "Δ p50"], rows)
    lines += who_does_what(result)
    if result.timeline:
        lines += ["", "Timeline (CPU columns in % of one CPU; the machine column in % of all CPUs):", ""]
        lines += table(["time", "Ready", "machine", *TIMELINE_COMPONENTS, "operator req/s", "operator RSS MB"],
                       result.timeline)
    lines += ["", "### Operator memory", ""]
    lines += table(["", "RSS"], [
        ["idle, before the creates", f"{result.rss_baseline_mb:.0f} MB"],
        ["peak (VmRSS sampled every 100 ms)", f"{result.rss_peak_mb:.0f} MB"],
        ["peak (kernel VmHWM)", f"{result.hwm_mb:.0f} MB"],
        [f"after all Ready and {result.settle_s:.0f} s idle", f"{result.rss_end_mb:.0f} MB"],
        ["per database beyond the idle baseline", f"{per_object_kb(result):.0f} KB"],
    ])
    lines += ["", "Threads and asyncio tasks of the operator (threads from `/proc/<pid>/status`, tasks from its "
              "metrics endpoint `odoo_operator_asyncio_tasks`):", ""]
    lines += table(["", "threads", "asyncio tasks"], [
        ["idle, before the creates", f"{result.load_idle.get('threads', 0):.0f}",
         f"{result.load_idle.get('asyncio_tasks', 0):.0f}"],
        ["peak during the run (sampled every second)", str(result.threads_peak), "—"],
        ["after all Ready", f"{result.load_end.get('threads', 0):.0f}",
         f"{result.load_end.get('asyncio_tasks', 0):.0f}"],
    ])
    lines += scaling_lines(result)
    lines += drift_lines(result)
    lines += ["", "### API requests", ""]
    metrics_others = result.metrics_total - result.metrics_bench_own
    lines.append(
        f"`apiserver_request_total`, difference between just before the first create and all Ready "
        f"({fmt_s(result.window_s)}): **{result.metrics_total:.0f}** requests from all clients; minus the "
        f"benchmark's own {result.metrics_bench_own} ({n} creates + 1 scrape), that is "
        f"**{metrics_others / n:.1f} per object** for operator + controller-manager + scheduler + kwok together. "
        "This metric has no client label, and long-running WATCH requests are only counted when they end.")
    lines += ["", *table(["verb", "resource", "requests", "per object"],
                         [[v, r, f"{c:.0f}", f"{c / n:.2f}"] for v, r, c in result.metrics_top])]
    audit = result.audit
    if audit is not None:
        op = audit.by_client["operator"]
        lines += ["",
                  f"Per client, from the API server's audit log (every request received in the same window, "
                  f"by User-Agent): the operator made **{op}** requests, **{op / n:.1f} per object**.", ""]
        lines += table(["client", "requests", "per object"], [
            [c, str(k), f"{k / n:.1f}"] for c, k in audit.by_client.most_common()])
        lines += ["", "Operator requests by call:", ""]
        lines += table(["verb", "resource", "requests", "per object"], [
            [v, r, str(k), f"{k / n:.2f}"] for (v, r), k in audit.operator_by_call.most_common()])
        details = [(c, d, k) for (c, d), k in audit.by_detail.most_common()
                   if c in ("operator", "kube-controller-manager")]
        lines += ["", "By component: " + "; ".join(f"{c} {d}: {k}" for c, d, k in details) + "."]
        if audit.operator_errors:
            lines += ["", "Operator requests answered with an error: " + ", ".join(
                f"{v} {r} → {code}: {k}" for (v, r, code), k in audit.operator_errors.most_common(8)) + "."]
        if audit.operator_per_second:
            peak_second, peak = max(audit.operator_per_second.items(), key=lambda kv: kv[1])
            lines += ["", f"Operator request rate: peak {peak}/s (second {peak_second} of the window), mean "
                      f"{op / max(result.window_s, 1e-9):.0f}/s."]
        if result.settle_s:
            lines += ["", f"Once all were Ready, the idle operator made {result.settle_operator_requests} requests "
                      f"in the next {result.settle_s:.0f} s."]
    if result.events:
        total_events = sum(n for *_, n in result.events)
        lines += ["", f"Events in namespace `bench` at the end: {total_events} ({total_events / n:.1f} per object), "
                  "by reporting component, object kind and reason (top 12):", ""]
        lines += table(["component", "kind", "reason", "count"],
                       [[c, k, r, str(cnt)] for c, k, r, cnt in result.events[:12]])
    lines += ["", "### CPU time during the window", ""]
    capacity = result.window_s * int(m["cpus"])
    lines.append(f"Machine busy: {result.machine_busy * 100:.0f}% of {m['cpus']} CPUs over {fmt_s(result.window_s)} "
                 f"(load average before the creates: {result.loadavg_before}).")
    lines += [""] + table(["process", "CPU seconds", "share of machine capacity"], [
        [name, f"{sec:.1f}", f"{sec / max(capacity, 1e-9) * 100:.0f}%"] for name, sec in result.cpu])
    lines += ["", "PostgreSQL includes its backends; the operator is one process (all its threads)."]
    if result.reasons_seen:
        lines += ["", "Ready condition reasons observed (objects that went through each): " + ", ".join(
            f"{r} {k}" for r, k in result.reasons_seen.most_common()) + "."]
    if result.kwok_watch_errors:
        lines += ["", f"**Harness warning:** kwok's watches failed {result.kwok_watch_errors} times with \"a watch "
                  "stream was requested by the client but the required storage feature RequestWatchProgress is "
                  "disabled\" (kwok.log): kwok watches from resourceVersion=0, which this kube-apiserver turns "
                  "into a watch-list request that etcd 3.5.1 cannot serve, so kwok only sees Pods and PVCs at its "
                  "re-lists (exponential back-off) and the steps marked (kwok) above wait for them."]
    lines += log_problems_lines(result.operator_log_problems)
    if result.stuck:
        lines += ["", f"### Not Ready after {result.timeout:.0f} s ({len(result.stuck)})", ""]
        lines += table(["object", "phase", "Ready", "reason", "message"], [
            [name, phase or "—", ready.get("status", "—"), ready.get("reason", "—"),
             (ready.get("message") or "—").replace("|", "\\|")[:160]] for name, phase, ready in result.stuck[:30]])
    lines += ["", "### How it is measured", "",
              "- One OdooDatabase per object (`spec.version: \"17.0\"`, everything else default) in namespace "
              "`bench`, POSTed by a thread pool; the per-object clock starts when its POST returned "
              "(client-side monotonic time, since `creationTimestamp` has 1 s precision).",
              "- Ready = the first watch event carrying `Ready=True`. Watches (LIST+WATCH, started before the "
              "creates) also follow the PVCs, Jobs, Pods and Deployments labelled with the object's name.",
              "- kwok plays the kubelet: Pods become Ready and Job Pods succeed without running Odoo, so this "
              "measures the control loop (operator, PostgreSQL, Kubernetes controllers), not Odoo's install.",
              "- RSS: `/proc/<operator pid>/status`; CPU: `/proc/<pid>/stat`, children included.",
              "- Requests: see above; the audit log is written by the API server in batches (Metadata level).",
              "- PostgreSQL floor: before the creates, on the same server, the same number of role + database "
              "pairs made one after the other on one admin session with the operator's own functions "
              "(`odoo_operator.pg`: CREATE ROLE + its comment, CREATE DATABASE … OWNER … TEMPLATE template0 with "
              "its marker, REVOKE ALL … FROM PUBLIC, Odoo's extensions as the role); dropped again, untimed.",
              "- Drift: once all are Ready (and the idle window is over), `DROP DATABASE … WITH (FORCE)` of the "
              "first objects' databases on an admin session; the time is until the object's watch shows Ready "
              "reason DatabaseMissing (the PostgresServer's check lists the databases every 15 s).",
              "- Scaling runs (`--scale`): each count in a fresh cluster and operator, without the Pod/PVC watches, "
              "the floor and the drift; per database = (RSS after all Ready and the idle window − RSS before the "
              "creates) / count."]
    return "\n".join(lines) + "\n"


def per_object_kb(result: Result) -> float:
    return (result.rss_end_mb - result.rss_baseline_mb) * 1024 / max(result.count, 1)


def operator_requests(result: Result) -> float | None:
    return result.audit.by_client["operator"] / result.count if result.audit else None


def issue15_targets(result: Result) -> list[list[str]]:
    """The target rows of issue 15 (requests, the floor, memory, drift)."""
    rows = []
    requests = operator_requests(result)
    if requests is not None:
        rows.append(["operator requests per object ≤ 15 (audit log)", f"{requests:.1f}",
                     "PASS" if requests <= 15 else "FAIL"])
    if result.floor_s and result.children_applied_s is not None:
        ratio = result.children_applied_s / result.floor_s
        rows.append([f"every database's children before init applied < {FLOOR_TARGET:g}× the PostgreSQL floor",
                     f"{fmt_s(result.children_applied_s)} vs {fmt_s(result.floor_s)}: {ratio:.2f}×",
                     "PASS" if ratio < FLOOR_TARGET else "FAIL"])
    runs = [result, *result.scale]
    biggest = max(runs, key=lambda r: r.count)
    rows.append([f"operator memory per database beyond idle < {MEMORY_TARGET_KB:.0f} KB (at {biggest.count})",
                 f"{per_object_kb(biggest):.0f} KB", "PASS" if per_object_kb(biggest) < MEMORY_TARGET_KB else "FAIL"])
    if result.drift:
        seen = [t for _, t in result.drift if t is not None]
        worst = max(seen) if len(seen) == len(result.drift) else None
        rows.append([f"a dropped database reported (DatabaseMissing) within {DRIFT_TARGET_S:.0f} s "
                     f"({len(result.drift)} dropped)", fmt_s(worst) if worst is not None else
                     f"{len(result.drift) - len(seen)} not seen in {result.drift_timeout:.0f} s",
                     "PASS" if worst is not None and worst < DRIFT_TARGET_S else "FAIL"])
    return rows


def who_does_what(result: Result) -> list[str]:
    lines = ["", "Operator vs. the rest: milestones marked *operator* are the operator's doing, the others wait for "
             "kwok (it plays the kubelet and the volume provisioner; the PV controller then binds the claims) or "
             "the Kubernetes controllers."]
    if result.children_applied_s is not None:
        lines += ["", f"- operator: every database's children before init applied (role, database, Secrets, PVCs, "
                  f"Service, Ingress, host claim, init Job) {fmt_s(result.children_applied_s)} after the "
                  "first create" + (f"; the PostgreSQL floor for as many role + database pairs: "
                                    f"{fmt_s(result.floor_s)} ({result.children_applied_s / result.floor_s:.2f}×)"
                                    if result.floor_s else "")]
    if result.deployments_applied_s is not None:
        lines.append(f"- operator: every Deployment applied (each once its init Job completed) "
                     f"{fmt_s(result.deployments_applied_s)} after the first create")
    if result.operator_share:
        own, others = result.operator_share, result.others_share
        lines.append(f"- per object, create → Ready: the operator's own stretches (create → init Job created, Job "
                     f"Complete → Deployment applied, Deployment available → Ready) p50 {fmt_s(percentile(own, 0.5))}, "
                     f"p95 {fmt_s(percentile(own, 0.95))}; waiting for kwok and the controllers p50 "
                     f"{fmt_s(percentile(others, 0.5))}, p95 {fmt_s(percentile(others, 0.95))} (n={len(own)})")
    return lines


def scaling_lines(result: Result) -> list[str]:
    runs = sorted([result, *result.scale], key=lambda r: r.count)
    if len(runs) < 2 and not result.scale_errors:
        return []
    lines = ["", "### Scaling", "", "The same creation at other counts, each in a fresh cluster (`--scale`). The "
             "idle baseline is each run's own operator before its creates.", ""]
    rows = []
    for r in runs:
        requests = operator_requests(r)
        rows.append([str(r.count), fmt_s(r.total_s) if r.total_s is not None else f"{len(r.stuck)} not Ready",
                     f"{requests:.1f}" if requests is not None else "—", f"{r.rss_baseline_mb:.0f} MB",
                     f"{max(r.rss_peak_mb, r.hwm_mb):.0f} MB", f"{r.rss_end_mb:.0f} MB", f"{per_object_kb(r):.0f} KB",
                     f"{r.load_idle.get('threads', 0):.0f} / {r.threads_peak} / {r.load_end.get('threads', 0):.0f}",
                     f"{r.load_idle.get('asyncio_tasks', 0):.0f} / {r.load_end.get('asyncio_tasks', 0):.0f}",
                     f"{r.load_end.get('asyncio_tasks', 0) / max(r.count, 1):.1f}"])
    lines += table(["OdooDatabases", "all Ready", "operator requests per object", "RSS idle", "RSS peak",
                    "RSS after", "per database beyond idle", "threads idle / peak / after",
                    "asyncio tasks idle / after", "tasks per database"], rows)
    if len(runs) >= 2:
        first, last = runs[0], runs[-1]
        slope = (last.rss_end_mb - first.rss_end_mb) * 1024 / max(last.count - first.count, 1)
        lines += ["", f"Marginal memory between {first.count} and {last.count} databases (RSS after, difference / "
                  f"difference of counts): {slope:.0f} KB per database."]
    lines += [f"- scaling run {e} failed" for e in result.scale_errors]
    return lines


def drift_lines(result: Result) -> list[str]:
    if not result.drift:
        return []
    lines = ["", "### Drift: databases dropped behind the operator's back", "",
             f"{len(result.drift)} databases dropped in PostgreSQL (`DROP DATABASE … WITH (FORCE)`) once all were "
             "Ready; "
             "time from each drop until its OdooDatabase showed Ready reason `DatabaseMissing` (Stalled). The "
             "PostgresServer check runs every 15 s, so up to 15 s of it is waiting for the next check; the "
             f"target's floor is that period.", ""]
    lines += table(["OdooDatabase", "dropped → DatabaseMissing", "ratio to the 15 s check period"], [
        [name, fmt_s(t) if t is not None else f"not seen in {result.drift_timeout:.0f} s",
         f"{t / 15:.2f}" if t is not None else "—"] for name, t in result.drift])
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "bench_create")
    parser.add_argument("--count", type=int, default=200, help="OdooDatabases to create (default 200)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds from the first create until all "
                        "must be Ready (default 300)")
    parser.add_argument("--parallel", type=int, default=16, help="client threads creating the objects (default 16)")
    parser.add_argument("--settle", type=float, default=10, help="seconds to keep counting the operator's requests "
                        "after all are Ready (default 10)")
    parser.add_argument("--no-audit", dest="audit", action="store_false",
                        help="do not enable the API server's audit log (no per-client request counts)")
    parser.add_argument("--no-detail", dest="detail", action="store_false",
                        help="do not watch Pods and PVCs (fewer milestones, less load from the benchmark)")
    parser.add_argument("--operator-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the operator, e.g. ODOO_OPERATOR_MAX_CONCURRENT_RECONCILES=32")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="do not measure the PostgreSQL floor (COUNT role + database pairs made directly)")
    parser.add_argument("--drift", type=int, default=5, metavar="N",
                        help="once all are Ready, drop N databases in PostgreSQL and time until each shows "
                        "DatabaseMissing (default 5; 0: skip)")
    parser.add_argument("--scale", default="", metavar="N,N",
                        help="then, each in a fresh cluster, create these counts too (no Pods/PVCs watched, no "
                        "floor, no drift) for the scaling table, e.g. --scale 1000,2000")
    parser.add_argument("--apiserver-arg", action="append", default=[], metavar="FLAG",
                        help="extra kube-apiserver flag, for experiments (e.g. --apiserver-arg=--feature-gates=...)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        args.scale_counts = [int(n) for n in args.scale.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--scale {args.scale!r}: expected counts separated by commas")
    for item in args.operator_env:
        if "=" not in item:
            parser.error(f"--operator-env {item!r}: expected KEY=VALUE")
    args.command = command_line(
        "bench_create.py", parser, args, always=["count"],
        shown=["count", "section", "timeout", "parallel", "audit", "detail", "floor", "drift", "scale", "operator_env",
               "apiserver_arg"])

    def body(workdir: Path) -> tuple[str, list[str]]:
        result = run(args, workdir)
        for count in args.scale_counts:
            if args.output:  # what is measured so far, in case a longer run that follows does not end
                write_section(REPO_ROOT / args.output, args.section, report(result, args))
            scaled = copy.copy(args)
            scaled.count, scaled.detail, scaled.floor, scaled.drift = count, False, False, 0
            scaled.timeout = max(args.timeout, 0.6 * count)
            log(f"scaling run: {count} OdooDatabases")
            try:
                result.scale.append(run(scaled, workdir / f"scale-{count}"))
            except Exception as exc:  # reported; the main run's figures still count
                result.scale_errors.append(f"{count}: {exc!r}")
        problems = [f"{len(result.stuck)} OdooDatabase(s) not Ready after {args.timeout:.0f}s:"] if result.stuck else []
        problems += [f"  {BENCH_NAMESPACE}/{name}: phase={phase or '-'} Ready={ready.get('status', '-')} "
                     f"reason={ready.get('reason', '-')} message={ready.get('message', '-')}"
                     for name, phase, ready in result.stuck]
        return report(result, args), problems

    return run_and_publish(args, "odoo-bench-", body)


if __name__ == "__main__":
    sys.exit(main())
