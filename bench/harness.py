"""The benchmarks' harness: what every bench_*.py starts and measures the same way.

Here: the local control plane + PostgreSQL + the default PostgresServer + the operator as a process
(`Stack`), a small exact Kubernetes REST client that counts its requests (`Api`) with LIST+WATCH
threads (`Watcher`), measurements from /proc (RSS, CPU per process and of the machine, process trees)
and from the API server (`apiserver_request_total`, its audit log by User-Agent), waiting/timing
helpers, and where the real Odoo of `make setup` is (`ODOO_HOME`). Not here: the Markdown report and
BENCHMARKS.md (report.py), PostgreSQL helpers, the operator's copies seen from the server and the
Odoo-like data set (pgtools.py), and any scenario (each bench_*.py).

Importing this module puts this checkout's `operator/` first on sys.path (an editable install may
point at another checkout), so the benches import `harness` before anything of `odoo_operator`.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
with contextlib.suppress(ValueError):
    sys.path.remove(str(REPO_ROOT / "operator"))
sys.path.insert(0, str(REPO_ROOT / "operator"))

from odoo_operator.devtools.dev import apply_default_server  # noqa: E402
from odoo_operator.devtools.localcluster import PG_BIN_DIR as PG_BIN_DIR  # noqa: E402  (re-exported)
from odoo_operator.devtools.localcluster import LocalCluster, free_port  # noqa: E402
from odoo_operator.devtools.localcluster import Postgres as Postgres  # noqa: E402  (re-exported)

GROUP, VERSION = "odoo.dbmanager.io", "v1alpha1"
SYSTEM_NAMESPACE = "odoo-system"
BENCH_NAMESPACE = "bench"
SERVER_NAME = "local"
USER_AGENT = "odoo-bench/1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024
ODOO_HOME = REPO_ROOT / ".cache" / "odoo" / "current"  # the real Odoo (`make setup`) the Odoo benches run


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
    """Seconds until `predicate()` held (its exceptions count as not yet); TimeoutError after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def parse_rfc3339(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


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


def collection(plural: str, namespace: str | None = None) -> str:
    """The path of one of our kinds' collections, e.g. collection("odoodatabases", "bench")."""
    scope = f"namespaces/{namespace}/" if namespace else ""
    return f"/apis/{GROUP}/{VERSION}/{scope}{plural}"


def odoo_database(name: str, namespace: str = BENCH_NAMESPACE, **spec: Any) -> dict[str, Any]:
    """An OdooDatabase, `spec.version: "17.0"` unless `spec` says otherwise."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OdooDatabase",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"version": "17.0", **spec}}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


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


# ---- /proc: memory and CPU of processes and of the machine ------------------------------------------------

def proc_status(pid: int, *keys: str) -> dict[str, int]:
    """The kB values of `keys` (VmRSS, VmHWM…) in /proc/<pid>/status, from one read; {} if it is gone
    (a zombie has no VmRSS line)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        key = line.split(":", 1)[0]
        if key in keys:
            with contextlib.suppress(ValueError, IndexError):
                found[key] = int(line.split()[1])
    return found


def proc_status_kb(pid: int, key: str) -> int | None:
    return proc_status(pid, key).get(key)


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field #3 (state) on: [1] is the ppid, [11:15] utime stime cutime cstime."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def proc_cpu(pid: int | None) -> tuple[float, float] | None:
    """(user, system) CPU seconds of one process itself (not its children)."""
    fields = stat_fields(pid) if pid is not None else None
    if fields is None:
        return None
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds per named process: its utime+stime, its reaped children's, and its live direct
    children's (PostgreSQL's backends), from one pass over /proc."""
    by_pid = {pid: name for name, pid in pids.items()}
    ticks = dict.fromkeys(pids, 0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = stat_fields(pid)
        if fields is None:
            continue
        if pid in by_pid:
            ticks[by_pid[pid]] += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) in by_pid:  # ppid
            ticks[by_pid[int(fields[1])]] += sum(int(x) for x in fields[11:13])
    return {name: value / CLK_TCK for name, value in ticks.items()}


def machine_cpu() -> tuple[float, float]:
    """(busy, total) seconds since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


def loadavg(count: int = 3) -> str:
    """The first `count` load averages (1, 5, 15 minutes), as /proc/loadavg writes them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:count])


def process_table(min_pid: int = 0) -> dict[int, tuple[int, str]]:
    """pid -> (ppid, command name) of every process from `min_pid` up, from one pass over /proc."""
    table: dict[int, tuple[int, str]] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit() and int(entry.name) >= min_pid:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    raw = Path(f"/proc/{entry.name}/stat").read_text()
                    name = raw[raw.index("(") + 1:raw.rindex(")")]
                    table[int(entry.name)] = (int(raw[raw.rindex(")") + 2:].split()[1]), name)
    return table


def descendants(root: int, table: dict[int, tuple[int, str]] | None = None) -> dict[int, str]:
    """pid -> name of every descendant of `root` (not `root` itself), from `table` (default: all processes)."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, (ppid, _name) in table.items():
        children[ppid].append(pid)
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = table[pid][1]
        todo += children.get(pid, [])
    return found


class Sampler(threading.Thread):
    """A daemon thread calling `sample()` now and then every `interval` seconds until `stop()`."""

    def __init__(self, name: str, interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.stopping = threading.Event()

    def sample(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()


class RssSampler(Sampler):
    """VmRSS of one process every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__("rss", interval)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> None:
        kb = proc_status_kb(self.pid, "VmRSS")
        if kb is not None:
            self.samples.append((time.monotonic(), kb))

    def peak_kb(self, since: float = 0.0) -> int:
        return max((kb for t, kb in self.samples if t >= since), default=0)

    def at(self, t: float) -> int:
        before = [kb for ts, kb in self.samples if ts <= t]
        return before[-1] if before else 0


class CpuSampler(Sampler):
    """Every second: CPU seconds per component and the machine's busy seconds."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        super().__init__("cpu", interval)
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float], float]] = []

    def sample(self) -> None:
        self.samples.append((time.monotonic(), cpu_snapshot(self.pids), machine_cpu()[0]))


# ---- API server metrics and audit log -----------------------------------------------------------------

METRIC_RE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
"""


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


@dataclass
class AuditSummary:
    by_client: collections.Counter[str] = field(default_factory=collections.Counter)
    by_detail: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    operator_by_call: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    operator_per_second: collections.Counter[int] = field(default_factory=collections.Counter)
    operator_errors: collections.Counter[tuple[str, str, int]] = field(default_factory=collections.Counter)
    # Every client's requests by (verb, resource), and how many of them were answered with an error.
    calls: dict[str, collections.Counter[tuple[str, str]]] = field(default_factory=dict)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


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
            ref = event.get("objectRef") or {}
            call = (event.get("verb", ""), resource_label(ref.get("resource", ""), ref.get("subresource", "")))
            code = int((event.get("responseStatus") or {}).get("code") or 0)
            summary.calls.setdefault(client, collections.Counter())[call] += 1
            summary.errors[client] += code >= 400
            if client == "operator":
                summary.operator_by_call[call] += 1
                summary.operator_per_second[int(received - start)] += 1
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


# ---- the operator and the whole stack ---------------------------------------------------------------------

def start_operator(cluster: LocalCluster, log_path: Path, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`python -m odoo_operator` of this checkout against the cluster, its output appended to `log_path`; it
    dies with us. PYTHONPATH names this checkout's `operator/`: the venv's editable install may point at
    another checkout (the venv is shared), whose code would be measured instead."""
    path = os.pathsep.join([str(REPO_ROOT / "operator"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PYTHONUNBUFFERED": "1", "PYTHONPATH": path,
           **extra_env}

    def preexec() -> None:
        os.setsid()
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive the benchmark

    log_file = open(log_path, "ab")  # owned by the child
    return subprocess.Popen(
        # A real free port: kopf reads port 0 in the URL as the scheme's default (80).
        [sys.executable, "-m", "odoo_operator", f"--liveness=http://127.0.0.1:{free_port()}/healthz"],
        stdout=log_file, stderr=log_file, env=env, cwd=REPO_ROOT, preexec_fn=preexec,
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


def log_problems(path: Path, offset: int = 0, limit: int = 20) -> list[str]:
    """The first ERROR/CRITICAL/Traceback lines of a log file, from byte `offset` on."""
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    return [line for line in text.splitlines() if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", line)][:limit]


SamplerT = TypeVar("SamplerT", bound=Sampler)


class Stack:
    """The local control plane + PostgreSQL (a `LocalCluster`, or the subclass/instance given), the
    default PostgresServer `local` and the operator as a process, with the watches and samplers a
    bench starts on it. A context manager: leaving it stops the watches, the samplers, the operator
    and the cluster, whatever happened.

        with Stack(workdir) as stack:
            stack.start_cluster()          # control plane, CRDs, namespaces, PostgresServer `local`
            stack.start_operator()         # the operator, until `local` is reachable
            stack.watch(path, handler)     # ...the scenario, with stack.api
    """

    def __init__(self, workdir: Path, cluster: LocalCluster | None = None) -> None:
        self.workdir = workdir
        self.cluster = cluster if cluster is not None else LocalCluster(workdir)
        self._api: Api | None = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.rss: RssSampler | None = None  # the operator's VmRSS, from its start
        self.threads: list[Watcher | Sampler] = []
        self.cluster_start_s = 0.0
        self.operator_reachable_s = 0.0

    @property
    def api(self) -> Api:
        assert self._api is not None, "start_cluster() first"
        return self._api

    @property
    def operator_log(self) -> Path:
        return self.workdir / "operator.log"

    def start_cluster(self, namespaces: Iterable[str] = (BENCH_NAMESPACE,),
                      real_namespaces: Iterable[str] = ()) -> None:
        """Control plane + PostgreSQL, the CRDs, `namespaces` (for kwok's fake node) and `real_namespaces`
        (Pods run by the node runner), and the cluster's PostgreSQL as the default PostgresServer `local`
        (at the pod network's gateway with the node runner, else 127.0.0.1), its admin Secret in odoo-system."""
        t0 = time.monotonic()
        log(f"starting the local cluster in {self.workdir}")
        self.cluster.start()
        self.cluster.install_crds()
        self.cluster_start_s = time.monotonic() - t0
        log(f"cluster up in {self.cluster_start_s:.1f}s")
        for namespace in namespaces:
            self.cluster.kubectl("create", "namespace", namespace)
        apply_default_server(self.cluster, host=self.cluster.pod_gateway_ip)  # creates odoo-system too
        for namespace in real_namespaces:
            self.cluster.real_namespace(namespace)
        self._api = Api(self.cluster.server, self.cluster.token, self.cluster.pki / "ca.crt")

    def start_operator(self, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.Popen[bytes]:
        """The operator (its VmRSS sampled from now on, in self.rss), until it reports `local` reachable."""
        operator = self.operator = start_operator(self.cluster, self.operator_log, env or {})
        self.rss = self.sampler(RssSampler(operator.pid))

        def reachable() -> bool:
            self.check_operator()
            server = self.api.get(f"{collection('postgresservers')}/{SERVER_NAME}")
            return (server.get("status") or {}).get("reachable") is True

        self.operator_reachable_s = wait_for(reachable, timeout, f"PostgresServer {SERVER_NAME} to be reachable")
        log(f"operator up, PostgresServer {SERVER_NAME} reachable after {self.operator_reachable_s:.1f}s")
        return operator

    def check_operator(self) -> None:
        """SystemExit (not caught by wait_for) when the operator has exited."""
        if self.operator is not None and self.operator.poll() is not None:
            raise SystemExit(f"the operator exited with {self.operator.returncode}; see {self.operator_log}")

    def sampler(self, thread: SamplerT) -> SamplerT:
        """Start a sampler thread, stopped with the stack; returns it."""
        self.threads.append(thread)
        thread.start()
        return thread

    def watch(self, path: str, on_event: Callable[[str, dict[str, Any], float], None]) -> Watcher:
        """Start a LIST+WATCH of `path`, stopped with the stack."""
        watcher = Watcher(self.api, path, on_event)
        self.threads.append(watcher)
        watcher.start()
        return watcher

    @property
    def watchers(self) -> list[Watcher]:
        return [t for t in self.threads if isinstance(t, Watcher)]

    def synced(self, timeout: float = 30) -> None:
        """Wait until every watch has listed once, then a moment for the WATCH requests to reach the server."""
        for watcher in self.watchers:
            watcher.synced.wait(timeout)
        time.sleep(0.5)

    def check_watchers(self) -> None:
        for watcher in self.watchers:
            if watcher.error is not None:
                raise RuntimeError(f"{watcher.name} failed: {watcher.error!r}")

    def process_pids(self) -> dict[str, int]:
        """pid per component: the operator, the control plane's processes and PostgreSQL ("postgresql")."""
        pids = {"operator": self.operator.pid} if self.operator is not None else {}
        pids.update({name: proc.pid for name, proc in self.cluster.processes.items()})
        if self.cluster.postgres and self.cluster.postgres.process:
            pids["postgresql"] = self.cluster.postgres.process.pid
        return pids

    def stop(self) -> None:
        for thread in self.threads:
            thread.stop()
        stop_process(self.operator)
        self.cluster.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
