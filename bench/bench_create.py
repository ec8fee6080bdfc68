#!/usr/bin/env python3
"""Benchmark (issue 2): create N OdooDatabases at once and time them until all are Ready.

Starts the local control plane + PostgreSQL (odoo_operator.devtools.localcluster), the default PostgresServer
and the operator as a process (`python -m odoo_operator`, default settings), waits until the server
is reachable, then creates N OdooDatabases in namespace `bench` as fast as possible and watches
them (and their Jobs, Pods, Deployments and PVCs) until every one is Ready.

It reports: total time until all are Ready, per-object latency (time Ready was first observed minus
the time its create returned; p50/p95/max), where the time goes (per-object milestones observed by
watches), the operator's peak RSS (VmRSS sampled every 100 ms, and VmHWM), API requests per object
(apiserver_request_total difference, and per client from the API server's audit log), and CPU time
per component. The summary goes to stdout and into the `bench_create` section of BENCHMARKS.md.

Exit status: 0 when every object was Ready before --timeout, 1 otherwise (the stuck objects are
listed with their Ready condition). Targets (60 s, 150 MB) are reported, never asserted.

    .venv/bin/python bench/bench_create.py --count 200
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
with contextlib.suppress(ValueError):
    sys.path.remove(str(REPO_ROOT / "operator"))
sys.path.insert(0, str(REPO_ROOT / "operator"))

from odoo_operator.devtools.dev import apply_default_server  # noqa: E402
from odoo_operator.devtools.localcluster import PG_BIN_DIR, LocalCluster, free_port  # noqa: E402

GROUP, VERSION = "odoo.dbmanager.io", "v1alpha1"
SYSTEM_NAMESPACE = "odoo-system"
BENCH_NAMESPACE = "bench"
SERVER_NAME = "local"
USER_AGENT = "odoo-bench/1"
TARGET_SECONDS = 60.0
TARGET_RSS_MB = 150.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
"""

# Per-object milestones, in the order the pipeline normally reaches them. Offsets are measured from
# the moment the object's create request returned, on the benchmark's monotonic clock.
MILESTONES: list[tuple[str, str]] = [
    ("status", "operator wrote a first status"),
    ("pvc", "filestore PVC created"),
    ("pvc_bound", "PVC Bound (kwok)"),
    ("job", "init Job created"),
    ("init_pod", "init Pod created (job controller)"),
    ("init_pod_scheduled", "init Pod scheduled"),
    ("init_pod_done", "init Pod Succeeded (kwok)"),
    ("job_complete", "init Job Complete (job controller)"),
    ("initialized", "OdooDatabase Initialized=True (operator)"),
    ("deploy_scaled", "Deployment scaled to >=1 replica"),
    ("app_pod", "app Pod created (replicaset controller)"),
    ("app_pod_scheduled", "app Pod scheduled"),
    ("app_pod_ready", "app Pod Ready (kwok)"),
    ("deploy_available", "Deployment available (deployment controller)"),
    ("ready", "OdooDatabase Ready=True (operator)"),
]


# ---- a small, exact Kubernetes REST client ----------------------------------------------------------

class Api:
    """HTTPS + bearer token, one keep-alive connection per thread; counts its own requests."""

    def __init__(self, server: str, token: str, cafile: Path) -> None:
        parts = urlsplit(server)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.token = token
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.local = threading.local()
        self.lock = threading.Lock()
        self.requests = 0  # every request sent (watches included)

    def connection(self, timeout: float | None = 60) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout)

    def headers(self, content_type: str = "application/json") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                "Content-Type": content_type, "User-Agent": USER_AGENT}

    def count(self) -> None:
        with self.lock:
            self.requests += 1

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = self.connection()
            try:
                self.count()
                conn.request(method, path, body=payload, headers=self.headers(content_type))
                response = conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
                continue
            ctype = response.getheader("Content-Type") or ""
            return response.status, (json.loads(data) if data and "json" in ctype else data.decode(errors="replace"))
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        status, data = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data}")
        return data


class Watcher(threading.Thread):
    """LIST then WATCH one collection, re-listing on 410; calls on_event(type, obj, t_monotonic)."""

    def __init__(self, api: Api, path: str, on_event: Callable[[str, dict[str, Any], float], None]) -> None:
        super().__init__(name=f"watch {path}", daemon=True)
        self.api, self.path, self.on_event = api, path, on_event
        self.synced = threading.Event()
        self.stopping = False
        self.conn: http.client.HTTPSConnection | None = None
        self.error: BaseException | None = None
        self.events = 0

    def run(self) -> None:
        try:
            while not self.stopping:
                listing = self.api.get(self.path)
                now = time.monotonic()
                for item in listing.get("items") or []:
                    self.on_event("ADDED", item, now)
                self.synced.set()
                if not self._watch(listing["metadata"]["resourceVersion"]):
                    return
        except BaseException as exc:  # reported by the main thread
            if not self.stopping:
                self.error = exc
            self.synced.set()

    def _watch(self, rv: str) -> bool:
        """Watch from rv; False when stopped, True when a re-list is needed."""
        while not self.stopping:
            query = urlencode({"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                               "timeoutSeconds": "3600"})
            self.conn = conn = self.api.connection(timeout=None)
            self.api.count()
            conn.request("GET", f"{self.path}?{query}", headers=self.api.headers())
            response = conn.getresponse()
            if response.status == 410:
                conn.close()
                return True
            if response.status != 200:
                raise RuntimeError(f"watch {self.path}: {response.status} {response.read()[:300]!r}")
            while not self.stopping:
                line = response.readline()
                if not line:
                    break  # server closed the watch: resume from rv
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        conn.close()
                        return True
                    raise RuntimeError(f"watch {self.path}: {obj}")
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self.events += 1
                    self.on_event(event["type"], obj, time.monotonic())
            conn.close()
        return False

    def stop(self) -> None:
        self.stopping = True
        conn = self.conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)


# ---- what the watches observe -------------------------------------------------------------------------

def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


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


# ---- process measurements ---------------------------------------------------------------------------------

def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(name="rss", daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            kb = proc_status_kb(self.pid, "VmRSS")
            if kb is not None:
                self.samples.append((time.monotonic(), kb))
            self.stopping.wait(self.interval)

    def peak_kb(self, since: float = 0.0) -> int:
        return max((kb for t, kb in self.samples if t >= since), default=0)

    def at(self, t: float) -> int:
        before = [kb for ts, kb in self.samples if ts <= t]
        return before[-1] if before else 0


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from #3 (state) on


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds per named process: its utime+stime, its reaped children's, and its live direct
    children's (PostgreSQL's backends), from one pass over /proc."""
    by_pid = {pid: name for name, pid in pids.items()}
    ticks = dict.fromkeys(pids, 0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        if fields is None:
            continue
        if pid in by_pid:
            ticks[by_pid[pid]] += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) in by_pid:  # ppid
            ticks[by_pid[int(fields[1])]] += sum(int(x) for x in fields[11:13])
    return {name: value / CLK_TCK for name, value in ticks.items()}


class CpuSampler(threading.Thread):
    """Every second: CPU seconds per component and the machine's busy seconds."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        super().__init__(name="cpu", daemon=True)
        self.pids, self.interval = pids, interval
        self.samples: list[tuple[float, dict[str, float], float]] = []
        self.stopping = threading.Event()

    def sample(self) -> None:
        self.samples.append((time.monotonic(), cpu_snapshot(self.pids), machine_cpu()[0]))

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()


def machine_cpu() -> tuple[float, float]:
    """(busy, total) seconds since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


# ---- API server metrics and audit log -----------------------------------------------------------------

METRIC_RE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def request_totals(api: Api) -> dict[tuple[str, str, str], float]:
    """apiserver_request_total summed per (verb, resource, subresource)."""
    status, text = api.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"GET /metrics: {status}")
    totals: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    for line in str(text).splitlines():
        match = METRIC_RE.match(line)
        if match:
            labels = dict(LABEL_RE.findall(match["labels"]))
            key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
            totals[key] += float(match["value"])
    return totals


def resource_label(resource_: str, subresource: str) -> str:
    if not resource_:
        return "(non-resource URL)"
    return f"{resource_}/{subresource}" if subresource else resource_


def client_of(user_agent: str) -> tuple[str, str]:
    """(client, detail) from a User-Agent."""
    if user_agent.startswith("kopf/"):
        return "operator", "kopf (watches, events, finalizers)"
    if user_agent.startswith("OpenAPI-Generator/"):
        return "operator", "kubernetes client (reconcile)"
    if user_agent.startswith(USER_AGENT):
        return "benchmark", "benchmark"
    head = user_agent.split("/", 1)[0] or "(none)"
    detail = user_agent.rsplit("/", 1)[-1] if head == "kube-controller-manager" else head
    return head, detail


def parse_rfc3339(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class AuditSummary:
    by_client: collections.Counter[str] = field(default_factory=collections.Counter)
    by_detail: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    operator_by_call: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    operator_per_second: collections.Counter[int] = field(default_factory=collections.Counter)
    operator_errors: collections.Counter[tuple[str, str, int]] = field(default_factory=collections.Counter)


def read_audit(path: Path, start: float, end: float) -> AuditSummary:
    """Requests whose requestReceivedTimestamp lies in [start, end] (wall clock), one per auditID."""
    summary = AuditSummary()
    seen: set[str] = set()
    if not path.exists():
        return summary
    with path.open() as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            audit_id = event.get("auditID", "")
            if audit_id in seen:
                continue
            received = parse_rfc3339(event["requestReceivedTimestamp"])
            if not start <= received <= end:
                continue
            seen.add(audit_id)
            client, detail = client_of(event.get("userAgent", ""))
            summary.by_client[client] += 1
            summary.by_detail[(client, detail)] += 1
            if client == "operator":
                ref = event.get("objectRef") or {}
                call = (event.get("verb", ""), resource_label(ref.get("resource", ""), ref.get("subresource", "")))
                summary.operator_by_call[call] += 1
                summary.operator_per_second[int(received - start)] += 1
                code = int((event.get("responseStatus") or {}).get("code") or 0)
                if code >= 400:
                    summary.operator_errors[(*call, code)] += 1
    return summary


class AuditedCluster(LocalCluster):
    """LocalCluster whose API server also writes a Metadata-level audit log (batched, asynchronous)."""

    audit: bool = True
    apiserver_args: tuple[str, ...] = ()

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _start(self, name: str, argv: list[str], death_signal: int = signal.SIGKILL) -> subprocess.Popen[bytes]:
        if name == "kube-apiserver":
            argv = [*argv, *self.apiserver_args]
        if name == "kube-apiserver" and self.audit:
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(AUDIT_POLICY)
            argv = [*argv, f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                    "--audit-log-mode=batch", "--audit-log-batch-max-size=500",
                    "--audit-log-batch-max-wait=500ms", "--audit-log-maxsize=0", "--audit-log-maxbackup=0"]
        return super()._start(name, argv, death_signal)


# ---- setup steps ---------------------------------------------------------------------------------------------

def create_default_server(cluster: LocalCluster) -> None:
    """The harness's PostgreSQL as the default PostgresServer (the same set-up as `make dev` and the tests)."""
    apply_default_server(cluster)


def start_operator(cluster: LocalCluster, log_path: Path, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PYTHONUNBUFFERED": "1", **extra_env}

    def preexec() -> None:
        os.setsid()
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive the benchmark

    log = open(log_path, "ab")  # owned by the child
    return subprocess.Popen(
        # A real free port: kopf reads port 0 in the URL as the scheme's default (80).
        [sys.executable, "-m", "odoo_operator", f"--liveness=http://127.0.0.1:{free_port()}/healthz"],
        stdout=log, stderr=log, env=env, cwd=REPO_ROOT, preexec_fn=preexec,
    )


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def odoo_database(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OdooDatabase",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"version": "17.0"}}


# ---- statistics and formatting ----------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def fmt_s(value: float) -> str:
    return "—" if value != value else f"{value:.1f} s"  # NaN check


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def machine_info() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = proc_meminfo_kb("MemTotal")
    pg_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        pg_version = subprocess.run([str(PG_BIN_DIR / "postgres"), "--version"], capture_output=True,
                                    text=True, timeout=10).stdout.strip()
    kopf_version = ""
    with contextlib.suppress(Exception):
        from importlib.metadata import version
        kopf_version = version("kopf")
    return {
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu_model": model or platform.processor() or "unknown",
        "memory": f"{mem_kb / 1024 / 1024:.0f} GiB" if mem_kb else "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": pg_version,
        "kopf": kopf_version,
    }


def proc_meminfo_kb(key: str) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def publish_summary(summary: str, output: str | None, section: str) -> None:
    """Print a benchmark's Markdown summary and, with --output, write it as that file's section."""
    print()
    print(summary)
    if output:
        path = Path(output)
        path = path if path.is_absolute() else REPO_ROOT / path
        write_section(path, section, summary)
        log(f"wrote the {section} section of {path}")


def write_section(path: Path, name: str, section: str) -> None:
    """Replace the text between <!-- name:start --> and <!-- name:end --> (append the block if absent)."""
    start_marker, end_marker = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start_marker}\n{section.rstrip()}\n{end_marker}\n"
    if path.exists():
        text = path.read_text()
        start, end = text.find(start_marker), text.find(end_marker)
        if start != -1 and end > start:
            text = text[:start] + block + text[end + len(end_marker):].lstrip("\n")
        else:
            text = text.rstrip("\n") + "\n\n" + block
    else:
        text = ("# Benchmarks\n\n"
                "Measured figures, not assertions: the test suite never times anything. `make bench` runs the\n"
                "scripts in `bench/` and each one regenerates its own section below (the text between its\n"
                "`<!-- name:start -->` and `<!-- name:end -->` markers); edit only outside the markers.\n\n" + block)
    path.write_text(text)


# ---- the benchmark ---------------------------------------------------------------------------------------------------

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


def run(args: argparse.Namespace, workdir: Path) -> Result:
    names = [f"bench-{i:04d}" for i in range(args.count)]
    operator_env = dict(item.split("=", 1) for item in args.operator_env)
    inherited = {k: v for k, v in os.environ.items() if k.startswith("ODOO_OPERATOR_")}
    operator_env = {**inherited, **operator_env}
    result = Result(count=args.count, started_at=datetime.datetime.now().astimezone(), machine=machine_info(),
                    operator_env=operator_env, timeout=args.timeout)
    cluster = AuditedCluster(workdir)
    cluster.audit = args.audit
    cluster.apiserver_args = tuple(args.apiserver_arg)
    operator: subprocess.Popen[bytes] | None = None
    watchers: list[Watcher] = []
    sampler: RssSampler | None = None
    try:
        # -- control plane, CRDs, default server, operator ------------------------------------------------
        t0 = time.monotonic()
        log(f"starting the local cluster in {workdir}")
        cluster.start()
        cluster.install_crds()
        result.cluster_start_s = time.monotonic() - t0
        log(f"cluster up in {result.cluster_start_s:.1f}s")
        cluster.kubectl("create", "namespace", SYSTEM_NAMESPACE)
        cluster.kubectl("create", "namespace", BENCH_NAMESPACE)
        create_default_server(cluster)
        api = Api(cluster.server, cluster.token, cluster.pki / "ca.crt")

        operator = start_operator(cluster, workdir / "operator.log", operator_env)
        sampler = RssSampler(operator.pid)
        sampler.start()

        def reachable() -> bool:
            if operator is not None and operator.poll() is not None:
                raise SystemExit(f"the operator exited with {operator.returncode}; see {workdir / 'operator.log'}")
            server = api.get(f"/apis/{GROUP}/{VERSION}/postgresservers/{SERVER_NAME}")
            return (server.get("status") or {}).get("reachable") is True

        result.operator_reachable_s = wait_for(reachable, 120, "PostgresServer local to be reachable")
        log(f"operator up, PostgresServer {SERVER_NAME} reachable after {result.operator_reachable_s:.1f}s")

        # -- watches --------------------------------------------------------------------------------------
        trace = Trace(names)
        ns = BENCH_NAMESPACE
        paths = [
            (f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/odoodatabases", trace.on_database),
            (f"/apis/batch/v1/namespaces/{ns}/jobs", trace.on_child("job")),
            (f"/apis/apps/v1/namespaces/{ns}/deployments", trace.on_child("deployment")),
        ]
        if args.detail:
            paths += [
                (f"/api/v1/namespaces/{ns}/pods", trace.on_child("pod")),
                (f"/api/v1/namespaces/{ns}/persistentvolumeclaims", trace.on_child("pvc")),
            ]
        for path, handler in paths:
            watcher = Watcher(api, path, handler)
            watcher.start()
            watchers.append(watcher)
        for watcher in watchers:
            watcher.synced.wait(30)
        time.sleep(0.5)  # let the watch requests reach the server

        # -- measurement window ---------------------------------------------------------------------------
        pids = {"operator": operator.pid, **{name: proc.pid for name, proc in cluster.processes.items()}}
        if cluster.postgres and cluster.postgres.process:
            pids["postgresql"] = cluster.postgres.process.pid
        cpu_sampler = CpuSampler(pids)
        cpu_sampler.sample()
        cpu_before = cpu_sampler.samples[0][1]
        bench_cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        busy_before, total_before = machine_cpu()
        result.loadavg_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        rss_baseline_kb = proc_status_kb(operator.pid, "VmRSS") or 0

        own_before = api.requests
        metrics_before = request_totals(api)
        wall_start = time.time()
        t_start = time.monotonic()
        cpu_sampler.start()

        created: dict[str, float] = {}
        durations: list[float] = []
        failures: list[str] = []
        collection = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/odoodatabases"

        def create(name: str) -> None:
            began = time.monotonic()
            status, body = api.request("POST", collection, odoo_database(name, ns))
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
            for watcher in watchers:
                if watcher.error is not None:
                    raise RuntimeError(f"{watcher.name} failed: {watcher.error!r}")
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
        cpu_sampler.stopping.set()
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
            for key, label in MILESTONES:
                offsets = [trace.first[n][key] - created[n] for n in names if key in trace.first[n] and n in created]
                if offsets:
                    result.milestones.append((key, label, len(offsets), percentile(offsets, 0.5),
                                              percentile(offsets, 0.95), max(offsets), min(offsets)))
            for n in names:
                for _, reason in trace.reasons.get(n, []):
                    result.reasons_seen[reason] += 1
        # Re-read the objects that did not show Ready on the watch: the final word is the API server's.
        missing = [n for n in names if n not in ready_at]
        for n in missing:
            obj = api.get(f"{collection}/{n}")
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
        result.rss_peak_mb = max(result.rss_peak_mb, sampler.peak_kb() / 1024)
        result.hwm_mb = (proc_status_kb(operator.pid, "VmHWM") or 0) / 1024
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
        text = (workdir / "operator.log").read_text(errors="replace")
        result.operator_log_problems = [line for line in text.splitlines()
                                        if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", line)][:20]
        return result
    finally:
        for watcher in watchers:
            watcher.stop()
        if sampler is not None:
            sampler.stopping.set()
        stop_process(operator)
        cluster.stop()


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


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


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
        f"Run {result.started_at:%Y-%m-%d %H:%M %Z} with `{command_line(args)}`."
        + (f" Experiment: kube-apiserver started with the extra flags `{' '.join(args.apiserver_arg)}`."
           if args.apiserver_arg else ""),
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory']} RAM, Linux {m['kernel']}; "
        f"Python {m['python']}, kopf {m['kopf']}, {m['postgres']}. Control plane: etcd, kube-apiserver, "
        "kube-controller-manager, kube-scheduler and kwok (fake node) from `.cache/k8s/current`, all on "
        "this machine with PostgreSQL and the operator.",
        "Operator settings: " + (", ".join(f"`{k}={v}`" for k, v in sorted(result.operator_env.items()))
                                 or "defaults (no `ODOO_OPERATOR_*` set)") + ".",
        "",
        *table(["target", "measured", "result"], [
            [f"{n} Ready in < {TARGET_SECONDS:.0f} s", fmt_s(total) if total is not None
             else f"not all Ready after {result.timeout:.0f} s", verdict_time],
            [f"operator peak RSS < {TARGET_RSS_MB:.0f} MB", f"{max(result.rss_peak_mb, result.hwm_mb):.0f} MB",
             verdict_rss],
            ["no object stuck", f"{len(result.stuck)} not Ready", "PASS" if ok_ready else "FAIL"],
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
    for _key, label, count, p50, p95, worst, _best in sorted(result.milestones, key=lambda row: row[3]):
        rows.append([label, str(count), fmt_s(p50), fmt_s(p95), fmt_s(worst), f"{p50 - previous:+.1f} s"])
        previous = p50
    lines += table(["step", "n", "p50", "p95", "max", "Δ p50"], rows)
    if result.timeline:
        lines += ["", "Timeline (CPU columns in % of one CPU; the machine column in % of all CPUs):", ""]
        lines += table(["time", "Ready", "machine", *TIMELINE_COMPONENTS, "operator req/s", "operator RSS MB"],
                       result.timeline)
    lines += ["", "### Operator memory", ""]
    lines += table(["", "RSS"], [
        ["idle, before the creates", f"{result.rss_baseline_mb:.0f} MB"],
        ["peak (VmRSS sampled every 100 ms)", f"{result.rss_peak_mb:.0f} MB"],
        ["peak (kernel VmHWM)", f"{result.hwm_mb:.0f} MB"],
        ["after all Ready", f"{result.rss_end_mb:.0f} MB"],
    ])
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
            [v, r, str(k), f"{k / n:.2f}"] for (v, r), k in audit.operator_by_call.most_common(15)])
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
    if result.operator_log_problems:
        lines += ["", f"Operator log: {len(result.operator_log_problems)}+ ERROR/Traceback lines, first:", "", "```"]
        lines += [line[:200] for line in result.operator_log_problems[:5]] + ["```"]
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
              "- Requests: see above; the audit log is written by the API server in batches (Metadata level)."]
    return "\n".join(lines) + "\n"


def command_line(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python bench/bench_create.py", f"--count {args.count}"]
    if args.section != "bench_create":
        parts.append(f"--section {args.section}")
    if args.timeout != 300:
        parts.append(f"--timeout {args.timeout:g}")
    if args.parallel != 16:
        parts.append(f"--parallel {args.parallel}")
    if not args.audit:
        parts.append("--no-audit")
    if not args.detail:
        parts.append("--no-detail")
    parts += [f"--operator-env {e}" for e in args.operator_env]
    parts += [f"--apiserver-arg={a}" for a in args.apiserver_arg]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="OdooDatabases to create (default 200)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds from the first create until all "
                        "must be Ready (default 300)")
    parser.add_argument("--output", default="BENCHMARKS.md", help="Markdown file whose bench_create section is "
                        "replaced (relative to the repository root; '' to write nothing; default BENCHMARKS.md)")
    parser.add_argument("--section", default="bench_create", help="name of the section markers in --output "
                        "(default bench_create; use another name to keep an experiment's figures apart)")
    parser.add_argument("--parallel", type=int, default=16, help="client threads creating the objects (default 16)")
    parser.add_argument("--settle", type=float, default=10, help="seconds to keep counting the operator's requests "
                        "after all are Ready (default 10)")
    parser.add_argument("--no-audit", dest="audit", action="store_false",
                        help="do not enable the API server's audit log (no per-client request counts)")
    parser.add_argument("--no-detail", dest="detail", action="store_false",
                        help="do not watch Pods and PVCs (fewer milestones, less load from the benchmark)")
    parser.add_argument("--operator-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the operator, e.g. ODOO_OPERATOR_MAX_CONCURRENT_RECONCILES=32")
    parser.add_argument("--apiserver-arg", action="append", default=[], metavar="FLAG",
                        help="extra kube-apiserver flag, for experiments (e.g. --apiserver-arg=--feature-gates=...)")
    parser.add_argument("--workdir", type=Path, help="cluster state and logs here (default: a temp dir, removed "
                        "after a successful run, kept after a failure)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) after success")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    for item in args.operator_env:
        if "=" not in item:
            parser.error(f"--operator-env {item!r}: expected KEY=VALUE")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="odoo-bench-"))
    keep = args.keep or args.workdir is not None
    try:
        result = run(args, workdir)
    except BaseException:
        log(f"failed; logs kept in {workdir}")
        raise
    publish_summary(report(result, args), args.output, args.section)
    if result.stuck:
        print(f"{len(result.stuck)} OdooDatabase(s) not Ready after {args.timeout:.0f}s:", file=sys.stderr)
        for name, phase, ready in result.stuck:
            print(f"  {BENCH_NAMESPACE}/{name}: phase={phase or '-'} Ready={ready.get('status', '-')} "
                  f"reason={ready.get('reason', '-')} message={ready.get('message', '-')}", file=sys.stderr)
        log(f"logs kept in {workdir}")
        return 1
    if keep:
        log(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
