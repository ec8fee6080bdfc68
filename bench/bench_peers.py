#!/usr/bin/env python3
"""Benchmark (issue 15): peers side by side in one run — this operator against movetokube's
ext-postgres-operator on the same local control plane and PostgreSQL.

The peer is built by bench/peers/setup-ext-postgres-operator.sh from its Go module (cached in
.cache/peers/). One Stack (control plane + PostgreSQL + the default PostgresServer) serves both, one
after the other, never at once, in the order of --order:

- ext-postgres-operator (namespace `peer`, `WATCH_NAMESPACE=peer`): N pairs of a `Postgres` (a
  database, its owner/reader/writer group roles) and a `PostgresUser` (a login role in the owner
  group and its credentials Secret), each pair POSTed together;
- odoo-db-operator (namespace `bench`, started as bench_create starts it): N OdooDatabases.

Each is timed from its first create until every object is provisioned — its database, role and
credentials Secret exist — twice: as the object's status says (PostgresUser `status.succeeded`;
OdooDatabase `DatabaseReady=True`) and as observed directly (the Secret on a watch, the database and
the login role in pg_catalog, polled every 0.25 s). For this operator also until all are Ready (kwok
plays the kubelet). Measured per operator: peak RSS (VmRSS sampled every 100 ms, and VmHWM), its API
requests (the audit log by User-Agent), CPU seconds. Between the two: the operator stopped, its
namespace deleted (finalizers removed first), its databases and roles dropped.

The section `bench_peers` of BENCHMARKS.md gives the ratios ours / peer. Exit status 1 when an
object was not provisioned in time or the peer could not be built or run (the section says why).

    .venv/bin/python bench/bench_peers.py --count 200
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from harness import (
    BENCH_NAMESPACE,
    REPO_ROOT,
    AuditedCluster,
    RssSampler,
    Sampler,
    Stack,
    collection,
    condition,
    cpu_snapshot,
    free_port,
    loadavg,
    log,
    log_problems,
    machine_cpu,
    odoo_database,
    proc_status,
    read_audit,
    stop_process,
    wait_for,
)
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
)

from odoo_operator.api.model import role_name

PEER, OURS = "ext-postgres-operator", "odoo-db-operator"
PEER_NAMESPACE = "peer"
PEER_GROUP = "db.movetokube.com"
SETUP_SCRIPT = REPO_ROOT / "bench" / "peers" / "setup-ext-postgres-operator.sh"

# Per-object milestones, as offsets from the object's create (for the peer: its PostgresUser's).
MILESTONES: dict[str, list[tuple[str, str]]] = {
    PEER: [("db_status", "Postgres status.succeeded (database + group roles)"),
           ("database", "database in pg_database"),
           ("role", "login role in pg_roles"),
           ("secret", "credentials Secret on the watch"),
           ("status", "PostgresUser status.succeeded")],
    OURS: [("secret", "`<name>-db` Secret on the watch"),
           ("role", "login role in pg_roles"),
           ("database", "database in pg_database"),
           ("status", "status DatabaseReady=True"),
           ("ready", "status Ready=True")],
}
OBSERVED = ("database", "role", "secret")  # the provisioned state, seen directly


# ---- per-object tracking ---------------------------------------------------------------------------------

class Tracker:
    """First time (monotonic) each milestone was observed, per object name; `done` is set once every object
    reached all of `final`."""

    def __init__(self, names: list[str], final: tuple[str, ...]) -> None:
        self.names, self.final = names, final
        self.lock = threading.Lock()
        self.first: dict[str, dict[str, float]] = {name: {} for name in names}
        self.complete: set[str] = set()
        self.done = threading.Event()

    def mark(self, name: str, milestone: str, t: float) -> None:
        with self.lock:
            marks = self.first.get(name)
            if marks is None or milestone in marks:
                return
            marks[milestone] = t
            if name not in self.complete and all(key in marks for key in self.final):
                self.complete.add(name)
                if len(self.complete) == len(self.names):
                    self.done.set()

    def count(self, milestone: str) -> int:
        with self.lock:
            return sum(1 for marks in self.first.values() if milestone in marks)


class CatalogPoller(Sampler):
    """Every 0.25 s: which of the watched databases and login roles exist in PostgreSQL (one connection)."""

    def __init__(self, dsn: str, tracker: Tracker, databases: dict[str, str],
                 role_of: Callable[[str], str | None]) -> None:
        super().__init__("pg catalog", 0.25)
        self.dsn, self.tracker, self.databases, self.role_of = dsn, tracker, databases, role_of
        self.conn: Any = None

    def sample(self) -> None:
        import psycopg

        try:
            if self.conn is None:
                self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            datnames = [row[0] for row in self.conn.execute("SELECT datname FROM pg_database").fetchall()]
            rolnames = [row[0] for row in self.conn.execute("SELECT rolname FROM pg_roles WHERE rolcanlogin")]
        except psycopg.Error:
            self.conn = None
            return
        t = time.monotonic()
        for datname in datnames:
            if datname in self.databases:
                self.tracker.mark(self.databases[datname], "database", t)
        for rolname in rolnames:
            owner = self.role_of(rolname)
            if owner is not None:
                self.tracker.mark(owner, "role", t)

    def stop(self) -> None:
        super().stop()
        self.join(5)
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()


# ---- the peer ----------------------------------------------------------------------------------------------

@dataclass
class PeerBuild:
    folder: Path | None = None
    version: str = ""
    error: str = ""
    build_s: float = 0.0

    @property
    def binary(self) -> Path:
        assert self.folder is not None
        return self.folder / "bin" / PEER

    def crds(self) -> list[dict[str, Any]]:
        assert self.folder is not None
        return [yaml.safe_load(path.read_text()) for path in sorted((self.folder / "crds").glob("*.yaml"))]

    def plural(self, kind: str) -> str:
        for crd in self.crds():
            if crd["spec"]["names"]["kind"] == kind:
                return str(crd["spec"]["names"]["plural"])
        raise KeyError(f"no CRD of kind {kind} in {self.folder}")


def build_peer(peer_dir: Path | None) -> PeerBuild:
    """The peer's folder (bin/, crds/, VERSION): --peer-dir as given, else the set-up script's (cached)."""
    started = time.monotonic()
    if peer_dir is None:
        log(f"setting up {PEER} ({SETUP_SCRIPT.relative_to(REPO_ROOT)})")
        done = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][-600:]
            return PeerBuild(error=f"its set-up failed: {reason}")
        peer_dir = Path(done.stdout.strip().splitlines()[-1])
    version_file = peer_dir / "VERSION"
    build = PeerBuild(peer_dir, version_file.read_text().strip() if version_file.exists() else "unknown",
                      build_s=time.monotonic() - started)
    if not os.access(build.binary, os.X_OK):
        return PeerBuild(error=f"its set-up left no executable {build.binary}")
    return build


def start_peer(stack: Stack, build: PeerBuild, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The peer against the stack's API server and PostgreSQL, watching namespace `peer` only; returns it
    and its health-probe port (its /healthz pings PostgreSQL)."""
    pg = stack.cluster.postgres
    assert pg is not None
    probe_port = free_port()
    env = {**os.environ, "KUBECONFIG": str(stack.cluster.kubeconfig),
           "POSTGRES_HOST": f"127.0.0.1:{pg.port}", "POSTGRES_USER": pg.user, "POSTGRES_PASS": pg.password,
           "POSTGRES_URI_ARGS": "sslmode=disable", "POSTGRES_DEFAULT_DATABASE": "postgres",
           "POSTGRES_CLOUD_PROVIDER": "", "WATCH_NAMESPACE": PEER_NAMESPACE}

    def preexec() -> None:
        os.setsid()
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive the benchmark

    log_file = open(log_path, "ab")  # owned by the child
    proc = subprocess.Popen(
        [str(build.binary), "--metrics-bind-address=0", f"--health-probe-bind-address=127.0.0.1:{probe_port}"],
        stdout=log_file, stderr=log_file, env=env, cwd=stack.workdir, preexec_fn=preexec)
    return proc, probe_port


def healthy(proc: subprocess.Popen[bytes], port: int) -> bool:
    if proc.poll() is not None:
        raise SystemExit(f"{PEER} exited with {proc.returncode}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        return bool(response.status == 200)


# ---- one contender's run -------------------------------------------------------------------------------------

@dataclass
class Phase:
    who: str
    count: int
    loadavg_before: str = ""
    start_s: float = 0.0  # process start until it can work (peer: /healthz; ours: PostgresServer reachable)
    create_wall_s: float = 0.0
    status_s: float | None = None  # first create → every object's status says provisioned
    observed_s: float | None = None  # first create → database, role and Secret of every object seen
    ready_s: float | None = None  # ours: first create → all Ready
    window_s: float = 0.0
    milestones: list[tuple[str, int, float, float, float]] = field(default_factory=list)
    status_latency: tuple[float, float] = (float("nan"), float("nan"))
    curve: list[tuple[int, float]] = field(default_factory=list)
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    hwm_mb: float = 0.0
    requests: int | None = None
    requests_by_call: list[tuple[str, str, int]] = field(default_factory=list)
    request_errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0
    stuck: list[str] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)
    clean_s: float = 0.0
    clean_note: str = ""


def race(stack: Stack, who: str, args: argparse.Namespace, build: PeerBuild, last: bool) -> Phase:
    """Start `who`, create args.count objects, wait until all are provisioned (and, ours, Ready), measure;
    then stop it and, unless it is the `last` to run, clean its namespace, databases and roles."""
    api, cluster = stack.api, stack.cluster
    assert isinstance(cluster, AuditedCluster) and cluster.postgres is not None
    phase = Phase(who, args.count, loadavg_before=loadavg())
    ours = who == OURS
    namespace = BENCH_NAMESPACE if ours else PEER_NAMESPACE
    prefix = "ours" if ours else "peer"
    names = [f"{prefix}-{i:04d}" for i in range(args.count)]
    final = ("status", *OBSERVED, "ready") if ours else ("status", *OBSERVED)
    tracker = Tracker(names, final)

    # -- who plays, what it is asked, what is watched ------------------------------------------------------
    started = time.monotonic()
    if ours:
        proc = stack.start_operator()
        sampler = stack.rss
        assert sampler is not None
        secret_of = {f"{name}-db": name for name in names}
        databases = {name: name for name in names}
        roles = {role_name(namespace, name): name for name in names}

        def role_of(rolname: str) -> str | None:
            return roles.get(rolname)

        def on_object(_type: str, obj: dict[str, Any], t: float) -> None:
            name = obj["metadata"]["name"]
            if condition(obj, "DatabaseReady").get("status") == "True":
                tracker.mark(name, "status", t)
            if condition(obj, "Ready").get("status") == "True":
                tracker.mark(name, "ready", t)

        stack.watch(collection("odoodatabases", namespace), on_object)
        base = collection("odoodatabases", namespace)
        requests: list[tuple[str, dict[str, Any]]] = [(base, odoo_database(name, namespace)) for name in names]
        per_object = 1
        client = "operator"
    else:
        api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": namespace}})
        proc, probe_port = start_peer(stack, build, stack.workdir / "peer.log")
        stack.operator = proc  # so that the stack stops it, whatever happens
        sampler = stack.sampler(RssSampler(proc.pid))
        wait_for(lambda: healthy(proc, probe_port), 120, f"{PEER}'s /healthz")
        secret_of = {f"{prefix}-{name}": name for name in names}
        databases = {name.replace("-", "_"): name for name in names}

        def role_of(rolname: str) -> str | None:
            base_name = rolname.rsplit("-", 1)[0]  # the login role is `<spec.role>-<6 random letters>`
            return databases.get(base_name) if "-" in rolname and not rolname.endswith("-group") else None

        postgres_path = f"/apis/{PEER_GROUP}/v1alpha1/namespaces/{namespace}/{build.plural('Postgres')}"
        users_path = f"/apis/{PEER_GROUP}/v1alpha1/namespaces/{namespace}/{build.plural('PostgresUser')}"

        def on_postgres(_type: str, obj: dict[str, Any], t: float) -> None:
            if (obj.get("status") or {}).get("succeeded") is True:
                tracker.mark(obj["metadata"]["name"], "db_status", t)

        def on_user(_type: str, obj: dict[str, Any], t: float) -> None:
            if (obj.get("status") or {}).get("succeeded") is True:
                tracker.mark(obj["metadata"]["name"], "status", t)

        stack.watch(postgres_path, on_postgres)
        stack.watch(users_path, on_user)
        requests = []
        for name in names:
            database = name.replace("-", "_")
            requests.append((postgres_path, {
                "apiVersion": f"{PEER_GROUP}/v1alpha1", "kind": "Postgres",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"database": database, "dropOnDelete": True}}))
            requests.append((users_path, {
                "apiVersion": f"{PEER_GROUP}/v1alpha1", "kind": "PostgresUser",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"role": database, "database": name, "secretName": prefix, "privileges": "OWNER"}}))
        per_object = 2
        client = PEER
    phase.start_s = time.monotonic() - started
    log(f"{who} up after {phase.start_s:.1f}s")

    def on_secret(_type: str, obj: dict[str, Any], t: float) -> None:
        owner = secret_of.get(obj["metadata"]["name"])
        if owner is not None:
            tracker.mark(owner, "secret", t)

    stack.watch(f"/api/v1/namespaces/{namespace}/secrets", on_secret)
    poller = stack.sampler(CatalogPoller(cluster.postgres.dsn, tracker, databases, role_of))
    stack.synced()

    # -- the window --------------------------------------------------------------------------------------
    pids = {**stack.process_pids(), "operator": proc.pid}
    cpu_before = cpu_snapshot(pids)
    busy_before, total_before = machine_cpu()
    phase.rss_idle_mb = (proc_status(proc.pid, "VmRSS").get("VmRSS") or 0) / 1024
    wall_start, t_start = time.time(), time.monotonic()
    created: dict[str, float] = {}
    failures: list[str] = []

    def create(batch: list[tuple[str, dict[str, Any]]]) -> None:
        for path, body in batch:
            status, answer = api.request("POST", path, body)
            if status != 201:
                failures.append(f"{body['kind']} {body['metadata']['name']}: {status} {str(answer)[:200]}")
                return
        created[batch[-1][1]["metadata"]["name"]] = time.monotonic()

    batches = [requests[i:i + per_object] for i in range(0, len(requests), per_object)]
    log(f"{who}: creating {args.count} objects{' (Postgres + PostgresUser each)' if not ours else ''} "
        f"with {args.parallel} threads")
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(create, batches))
    phase.create_wall_s = time.monotonic() - t_start
    if failures:
        raise SystemExit(f"{who}: creates failed:\n  " + "\n  ".join(failures[:20]))
    deadline = t_start + args.timeout
    next_report = time.monotonic() + 5
    while not tracker.done.is_set() and time.monotonic() < deadline:
        tracker.done.wait(min(0.5, max(0.0, deadline - time.monotonic())))
        stack.check_watchers()
        if proc.poll() is not None:
            log(f"{who} exited with {proc.returncode}")
            break
        if time.monotonic() >= next_report:
            next_report += 5
            log(f"{who}: t={time.monotonic() - t_start:5.1f}s "
                + " ".join(f"{key}={tracker.count(key)}" for key, _ in MILESTONES[who])
                + f" rss={(proc_status(proc.pid, 'VmRSS').get('VmRSS') or 0) / 1024:.0f}MB")
    t_end, wall_end = time.monotonic(), time.time()
    phase.window_s = t_end - t_start
    busy_after, total_after = machine_cpu()
    cpu_after = cpu_snapshot(pids)
    phase.machine_busy = (busy_after - busy_before) / max(total_after - total_before, 1e-9)
    phase.cpu = {name: cpu_after[name] - cpu_before[name] for name in pids}
    status = proc_status(proc.pid, "VmRSS", "VmHWM")
    phase.hwm_mb = status.get("VmHWM", 0) / 1024
    phase.rss_peak_mb = max(sampler.peak_kb(), status.get("VmRSS", 0)) / 1024
    poller.stop()

    # -- results ---------------------------------------------------------------------------------------------
    with tracker.lock:
        first = {name: dict(marks) for name, marks in tracker.first.items()}

    def all_by(keys: tuple[str, ...]) -> float | None:
        if any(not all(key in first[name] for key in keys) for name in names):
            return None
        return max(max(first[name][key] for key in keys) for name in names) - t_start

    phase.status_s, phase.observed_s = all_by(("status",)), all_by(OBSERVED)
    phase.ready_s = all_by(("ready",)) if ours else None
    for key, _label in MILESTONES[who]:
        offsets = [first[n][key] - created[n] for n in names if key in first[n] and n in created]
        if offsets:
            phase.milestones.append((key, len(offsets), percentile(offsets, 0.5), percentile(offsets, 0.95),
                                     max(offsets)))
    latencies = [first[n]["status"] - created[n] for n in names if "status" in first[n] and n in created]
    phase.status_latency = (percentile(latencies, 0.5), percentile(latencies, 0.95))
    finish = sorted(first[n]["status"] - t_start for n in names if "status" in first[n])
    for fraction in (0.25, 0.5, 0.75, 1.0):
        k = max(1, int(round(fraction * len(names))))
        if k <= len(finish):
            phase.curve.append((k, finish[k - 1]))
    phase.stuck = [f"{n}: {', '.join(k for k in final if k not in first[n])} missing"
                   for n in names if not all(k in first[n] for k in final)]
    time.sleep(1.5)  # the audit backend writes in batches every 0.5 s
    audit = read_audit(cluster.audit_log, wall_start, wall_end)
    calls, phase.request_errors = audit.calls.get(client, collections.Counter()), audit.errors[client]
    if calls:
        phase.requests = sum(calls.values())
        phase.requests_by_call = [(verb, res, n) for (verb, res), n in calls.most_common(10)]
    phase.log_problems = log_problems(stack.operator_log if ours else stack.workdir / "peer.log")

    # -- clean up for the next contender ------------------------------------------------------------------------
    stop_process(proc)
    stack.operator = None
    sampler.stop()
    for watcher in list(stack.watchers):
        watcher.stop()
    if last:
        return phase
    clean_started = time.monotonic()
    plurals = [collection("odoodatabases", namespace), collection("databasebackups", namespace)] if ours \
        else [postgres_path, users_path]
    phase.clean_note = clean(stack, namespace, plurals, list(databases),
                             ["odoo\\_%"] if ours else [f"{prefix}\\_%"])
    phase.clean_s = time.monotonic() - clean_started
    log(f"{who}: cleaned in {phase.clean_s:.0f}s {phase.clean_note}")
    return phase


def clean(stack: Stack, namespace: str, plurals: list[str], databases: list[str], role_patterns: list[str]) -> str:
    """The operator is stopped: remove its objects' finalizers, delete the namespace (wait for it), drop its
    databases and the roles whose names match `role_patterns` (LIKE). Returns a note when not all went."""
    import psycopg
    from psycopg import sql

    api = stack.api
    for plural in plurals:
        for item in (api.get(plural).get("items") or []):
            if item["metadata"].get("finalizers"):
                api.request("PATCH", f"{plural}/{item['metadata']['name']}", {"metadata": {"finalizers": None}},
                            content_type="application/merge-patch+json")
    api.request("DELETE", f"/api/v1/namespaces/{namespace}")
    note = ""
    try:
        wait_for(lambda: api.request("GET", f"/api/v1/namespaces/{namespace}")[0] == 404, 180,
                 f"namespace {namespace} to be deleted", interval=1)
    except TimeoutError:
        note = f"(namespace {namespace} still terminating after 180 s)"
    assert stack.cluster.postgres is not None
    with psycopg.connect(stack.cluster.postgres.dsn, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for database in databases:
            if database in existing:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
        for pattern in role_patterns:
            for (rolname,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (pattern,)).fetchall():
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(rolname)))
    return note


# ---- the run and its report ---------------------------------------------------------------------------------

@dataclass
class Result:
    count: int
    started_at: datetime.datetime
    machine: dict[str, str]
    build: PeerBuild = field(default_factory=PeerBuild)
    phases: dict[str, Phase] = field(default_factory=dict)
    cluster_start_s: float = 0.0


def run(args: argparse.Namespace, workdir: Path) -> Result:
    result = Result(args.count, now(), machine_info())
    result.build = build_peer(args.peer_dir)
    if result.build.error:
        log(f"{PEER} not available: {result.build.error}")
    cluster = AuditedCluster(workdir)
    with Stack(workdir, cluster) as stack:
        stack.start_cluster()
        result.cluster_start_s = stack.cluster_start_s
        if not result.build.error:
            for crd in result.build.crds():
                stack.api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
            for kind in ("Postgres", "PostgresUser"):  # a new kind's storage answers 429 for a moment
                path = f"/apis/{PEER_GROUP}/v1alpha1/{result.build.plural(kind)}"
                wait_for(lambda path=path: stack.api.request("GET", path)[0] == 200, 60, f"{path} to be served")
        contenders = [PEER, OURS] if args.order == "peer-first" else [OURS, PEER]
        if result.build.error:
            contenders.remove(PEER)
        for who in contenders:
            try:
                result.phases[who] = race(stack, who, args, result.build, last=who == contenders[-1])
            except (SystemExit, TimeoutError, RuntimeError) as exc:
                if who == OURS:
                    raise
                # The peer would not start or work here: this operator is still measured.
                stop_process(stack.operator)
                stack.operator = None
                result.build.error = f"it ran but failed: {exc} (its log: peer.log in the work directory)"
                log(f"{PEER} failed: {exc}")
    return result


def ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None or peer <= 0:
        return "—"
    return f"**{ours / peer:.2f}×**"


def report(result: Result, args: argparse.Namespace) -> str:
    m, n = result.machine, result.count
    peer, ours = result.phases.get(PEER), result.phases.get(OURS)
    build = result.build
    lines = [
        f"## {args.section}: {n} databases with a role and a credentials Secret, ext-postgres-operator and this "
        "operator on one control plane",
        "",
        run_line(result.started_at, args.command),
        f"{machine_line(m)}. One control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, "
        "kwok) and one PostgreSQL, all on this machine, started once"
        + ("; the two operators ran one after the other, "
           f"{'the peer' if args.order == 'peer-first' else 'this operator'} first (the first one's namespace, "
           "databases and roles removed before the second started)" if peer and ours else "")
        + ". Other engineers' benchmarks may share the machine: load averages below.",
        "",
    ]
    if build.error:
        lines += [f"**{PEER} was not measured**, so there is no ratio: {build.error}", ""]
    else:
        lines += [f"Peer: {PEER} `{build.version}` (Go module github.com/movetokube/postgres-operator, built by "
                  "`bench/peers/setup-ext-postgres-operator.sh`), default settings but `WATCH_NAMESPACE=peer`, "
                  "`--metrics-bind-address=0`; this operator: default settings (no `ODOO_OPERATOR_*`).", ""]

    def cell(phase: Phase | None, value: Callable[[Phase], str]) -> str:
        return value(phase) if phase is not None else "—"

    def seconds(value: float | None) -> str:
        return fmt_s(value) if value is not None else "not all"

    def get(phase: Phase | None, attr: str) -> float | None:
        return getattr(phase, attr) if phase is not None else None

    rows = [
        [f"{n} creates sent (16 threads; the peer: 2 objects each)", cell(peer, lambda p: fmt_s(p.create_wall_s)),
         cell(ours, lambda p: fmt_s(p.create_wall_s)), "—"],
        ["first create → all provisioned, **as the status says** (PostgresUser `succeeded` / `DatabaseReady`)",
         cell(peer, lambda p: seconds(p.status_s)), cell(ours, lambda p: seconds(p.status_s)),
         ratio(get(ours, "status_s"), get(peer, "status_s"))],
        ["first create → database, login role and Secret of all **observed** (pg_catalog, watch)",
         cell(peer, lambda p: seconds(p.observed_s)), cell(ours, lambda p: seconds(p.observed_s)),
         ratio(get(ours, "observed_s"), get(peer, "observed_s"))],
        ["per object, create → status says provisioned: p50 / p95",
         cell(peer, lambda p: f"{fmt_s(p.status_latency[0])} / {fmt_s(p.status_latency[1])}"),
         cell(ours, lambda p: f"{fmt_s(p.status_latency[0])} / {fmt_s(p.status_latency[1])}"),
         ratio(ours.status_latency[0] if ours else None, peer.status_latency[0] if peer else None) + " (p50)"],
        ["first create → all Ready (Odoo's init Job and app Deployment too, on kwok)", "no such step",
         cell(ours, lambda p: seconds(p.ready_s)), "—"],
        ["operator peak RSS (VmRSS every 100 ms / VmHWM)",
         cell(peer, lambda p: f"{p.rss_peak_mb:.0f} / {p.hwm_mb:.0f} MB"),
         cell(ours, lambda p: f"{p.rss_peak_mb:.0f} / {p.hwm_mb:.0f} MB"),
         ratio(max(ours.rss_peak_mb, ours.hwm_mb) if ours else None,
               max(peer.rss_peak_mb, peer.hwm_mb) if peer else None)],
        ["operator RSS when idle, before the creates", cell(peer, lambda p: f"{p.rss_idle_mb:.0f} MB"),
         cell(ours, lambda p: f"{p.rss_idle_mb:.0f} MB"),
         ratio(get(ours, "rss_idle_mb"), get(peer, "rss_idle_mb"))],
        ["operator API requests in the window (audit log), per database",
         cell(peer, lambda p: f"{p.requests} ({p.requests / n:.1f})" if p.requests else "—"),
         cell(ours, lambda p: f"{p.requests} ({p.requests / n:.1f})" if p.requests else "—"),
         ratio(float(ours.requests) if ours and ours.requests else None,
               float(peer.requests) if peer and peer.requests else None)],
        ["operator CPU seconds in the window", cell(peer, lambda p: f"{p.cpu.get('operator', 0):.1f}"),
         cell(ours, lambda p: f"{p.cpu.get('operator', 0):.1f}"),
         ratio(ours.cpu.get("operator") if ours else None, peer.cpu.get("operator") if peer else None)],
        ["PostgreSQL / kube-apiserver CPU seconds in the window",
         cell(peer, lambda p: f"{p.cpu.get('postgresql', 0):.1f} / {p.cpu.get('kube-apiserver', 0):.1f}"),
         cell(ours, lambda p: f"{p.cpu.get('postgresql', 0):.1f} / {p.cpu.get('kube-apiserver', 0):.1f}"), "—"],
        ["machine busy in the window (load average before)",
         cell(peer, lambda p: f"{p.machine_busy * 100:.0f}% ({p.loadavg_before})"),
         cell(ours, lambda p: f"{p.machine_busy * 100:.0f}% ({p.loadavg_before})"), "—"],
        ["start until able to work (peer: /healthz; ours: PostgresServer reachable)",
         cell(peer, lambda p: fmt_s(p.start_s)), cell(ours, lambda p: fmt_s(p.start_s)), "—"],
    ]
    lines += table(["", PEER, OURS, "ours / peer"], rows)
    for who, phase in ((PEER, peer), (OURS, ours)):
        if phase is None:
            continue
        labels = dict(MILESTONES[who])
        lines += ["", f"### {who}: where the time goes", "",
                  "First time each step was observed, as an offset from the object's create "
                  "(for the peer: its PostgresUser's), over the objects:", ""]
        lines += table(["step", "n", "p50", "p95", "max"], [
            [labels[key], str(count), fmt_s(p50), fmt_s(p95), fmt_s(worst)]
            for key, count, p50, p95, worst in sorted(phase.milestones, key=lambda row: row[2])])
        lines += ["", "Status says provisioned: " + ", ".join(f"{k}/{n} after {fmt_s(t)}" for k, t in phase.curve)
                  + "."]
        if phase.requests_by_call:
            lines += ["", f"Its requests by call ({phase.request_errors} answered with an error): " + ", ".join(
                f"{verb} {res} {count}" for verb, res, count in phase.requests_by_call) + "."]
        if phase.clean_note:
            lines += ["", f"Clean-up: {phase.clean_note}."]
        lines += log_problems_lines(phase.log_problems, f"{who} log")
        if phase.stuck:
            lines += ["", f"Not done after {args.timeout:.0f} s ({len(phase.stuck)}): "
                      + "; ".join(phase.stuck[:10]) + "."]
    lines += ["", "### How it is measured", "",
              "- Same N, same API server, same PostgreSQL, one operator at a time; objects POSTed by 16 client "
              "threads, the peer's `Postgres` then its `PostgresUser` back to back (one manifest's worth), the "
              "per-object clock starting when the last of them returned.",
              "- What each does per database: the peer creates the database, three group roles (owner, reader, "
              "writer), a login role granted the owner group, and a Secret with its URLs; this operator writes "
              "the `<name>-db` Secret first (the password's source of truth), then the login role and the "
              "database (owned by that role, CONNECT revoked from PUBLIC), then — in the same pass, before the "
              "status says `DatabaseReady` — the filestore and sessions PVCs, Service, Ingress and "
              "Odoo's init Job. Ready is reached after the init Job (kwok: succeeds at once) and the app "
              "Deployment; the peer has no such step.",
              "- Observed: the Secret on a LIST+WATCH of the namespace's Secrets, the database and the login role "
              "in `pg_database` / `pg_roles`, polled every 0.25 s on one connection (for both operators).",
              "- RSS: `/proc/<pid>/status` of the operator process (Go for the peer, CPython for ours); requests: "
              "the API server's audit log by User-Agent (the peer: `ext-postgres-operator/…`; ours: kopf and the "
              "kubernetes client); CPU: `/proc/<pid>/stat`, PostgreSQL with its backends."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "bench_peers")
    parser.add_argument("--count", type=int, default=200, help="databases per operator (default 200)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds from the first create until all must "
                        "be provisioned (ours: Ready) (default 300)")
    parser.add_argument("--parallel", type=int, default=16, help="client threads creating the objects (default 16)")
    parser.add_argument("--order", choices=["peer-first", "ours-first"], default="peer-first",
                        help="who runs first (default peer-first)")
    parser.add_argument("--peer-dir", type=Path, help=f"a built peer (bin/{PEER}, crds/, VERSION) instead of "
                        "running bench/peers/setup-ext-postgres-operator.sh")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    args.command = command_line("bench_peers.py", parser, args, always=["count"],
                                shown=["count", "section", "timeout", "parallel", "order"])

    def body(workdir: Path) -> tuple[str, list[str]]:
        result = run(args, workdir)
        problems = [f"{PEER} not measured: {result.build.error}"] if result.build.error else []
        for who, phase in result.phases.items():
            problems += [f"{who}: {line}" for line in phase.stuck[:20]]
        return report(result, args), problems

    return run_and_publish(args, "odoo-bench-peers-", body)


if __name__ == "__main__":
    sys.exit(main())
