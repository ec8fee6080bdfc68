"""Shared fixtures: one real control plane + PostgreSQL per test session, the operator as a process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from odoo_operator.devtools.dev import apply_default_server
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster, Postgres, free_port

SYSTEM_NAMESPACE = "odoo-system"
MOTO_VERSION = "5.2.5"


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    workdir = Path(tempfile.mkdtemp(prefix="odoo-test-"))
    external = os.environ.get("ODOO_TEST_KUBECONFIG")  # `make e2e-kind`
    # The node runner runs the Pods of "real" namespaces (cluster.real_namespace) for real: Odoo's init,
    # app and Jobs in tests/test_odoo_real.py; every other namespace stays on kwok.
    local = LocalCluster(workdir, external_kubeconfig=Path(external) if external else None, with_runner=True)
    try:
        local.start()
        local.install_crds()
        local.kubectl("create", "namespace", SYSTEM_NAMESPACE)
        yield local
    finally:
        local.stop()
        # Its logs (API server, etcd, operator, Pods) are kept when a test failed or ODOO_TEST_KEEP is set;
        # otherwise ~200 MB per run would pile up in /tmp.
        if request.session.testsfailed or os.environ.get("ODOO_TEST_KEEP"):
            print(f"\nlocal cluster's files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_dsn(cluster: LocalCluster) -> str:
    assert cluster.postgres is not None
    return cluster.postgres.dsn


def pg_query(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def pg_exec(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def apply_yaml(cluster: LocalCluster, text: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-f", "-", input=text, check=check)


def get_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def wait_until(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition",
               interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


@pytest.fixture(scope="session")
def default_server(cluster: LocalCluster) -> str:
    """The harness's PostgreSQL as the default PostgresServer (the same set-up `make dev` makes)."""
    apply_default_server(cluster)
    return "local"


@pytest.fixture(scope="session")
def pods_server(cluster: LocalCluster, default_server: str) -> str:
    """The same PostgreSQL as a PostgresServer `pods` at the address Pods of the node runner reach it by
    (the pod network's gateway), as a server in a cluster is reached by its pods."""
    apply_default_server(cluster, name="pods", host=cluster.pod_gateway_ip, default=False)
    return "pods"


@pytest.fixture(scope="session")
def ingress_proxy(cluster: LocalCluster) -> Iterator[Any]:
    """The local Ingress proxy (what an ingress controller does): routes by the cluster's Ingresses."""
    from odoo_operator.devtools.ingressproxy import IngressProxy

    proxy = IngressProxy(cluster.kubeconfig).start()
    yield proxy
    proxy.stop()


GATEWAY_CRDS = REPO_ROOT / ".cache" / "gateway-api" / "current"


def install_gateway_api(cluster: LocalCluster) -> None:
    """The Gateway API CRDs (standard channel, from their Go module by `make setup`), established."""
    crds = sorted(GATEWAY_CRDS.glob("*.yaml"))
    if not crds:
        pytest.fail(f"no Gateway API CRDs in {GATEWAY_CRDS}: run `make setup`")
    for crd in crds:
        cluster.kubectl("apply", "--server-side", "-f", str(crd))
    cluster.kubectl("wait", "--for=condition=Established", "crd/httproutes.gateway.networking.k8s.io",
                    "--timeout=60s")


class OperatorProcess:
    """The operator as a real process (`python -m odoo_operator`), so tests can kill and restart it.
    Its Prometheus metrics are on a port of its own (`metrics_url`, `scrape()`); `env` adds or overrides
    settings, `args` are passed to kopf (e.g. `--namespace=…`), `name` names its log file."""

    def __init__(self, cluster: LocalCluster, workdir: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None, name: str = "operator") -> None:
        self.cluster = cluster
        self.log_path = workdir / f"{name}.log"
        self.metrics_port = free_port()
        self.env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "ODOO_OPERATOR_RETRY_MAX_SECONDS": "3",
                    "ODOO_OPERATOR_SIZE_REFRESH_SECONDS": "2", "PYTHONUNBUFFERED": "1",
                    # Template databases (on by default) are tested by test_templates_e2e.py with an operator
                    # of its own: elsewhere a database is created the one way the test expects.
                    "ODOO_OPERATOR_TEMPLATES": "false",
                    "ODOO_OPERATOR_METRICS_PORT": str(self.metrics_port), "ODOO_OPERATOR_METRICS_ADDRESS": "127.0.0.1",
                    **(env or {})}
        self.args = list(args or [])
        self.process: subprocess.Popen[bytes] | None = None
        self.liveness_port = 0

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.liveness_port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "odoo_operator", f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
             *self.args],
            stdout=log, stderr=log, env=self.env, cwd=REPO_ROOT,
        )
        log.close()  # the child has its own copy

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['ODOO_OPERATOR_METRICS_PORT']}/metrics"

    def scrape(self, timeout: float = 5) -> dict[str, list[tuple[dict[str, str], float]]]:
        """The /metrics page parsed: sample name -> [(labels, value)]; {} while nothing answers."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(self.metrics_url, timeout=timeout) as response:
                text = response.read().decode()
        except OSError:
            return {}
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples

    def metric(self, sample: str, /, **labels: str) -> float | None:
        """The sum of a sample's values over the series whose labels include `labels`; None if there is none."""
        found = [value for got, value in self.scrape().get(sample, []) if labels.items() <= got.items()]
        return sum(found) if found else None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


_SESSION_OPERATORS: list[OperatorProcess] = []


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, default_server: str) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster, cluster.workdir)
    proc.start()
    _SESSION_OPERATORS.append(proc)
    yield proc
    _SESSION_OPERATORS.remove(proc)
    proc.stop()
    if os.environ.get("ODOO_TEST_SHOW_OPERATOR_LOG"):
        print(proc.log()[-20000:])


@pytest.fixture(scope="module")
def without_session_operator(cluster: LocalCluster) -> Iterator[None]:
    """For tests that run operators of their own (leader election): the session operator, if it was
    started by an earlier module, is stopped for this module and started again afterwards, so that it
    reconciles nothing meanwhile (it watches all namespaces)."""
    paused = [proc for proc in _SESSION_OPERATORS if proc.running()]
    for proc in paused:
        proc.stop()
    yield
    for proc in paused:
        proc.start()


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    # PostgreSQL database names are server-wide: free them for the next test.
    cluster.kubectl("delete", "odb", "--all", "-n", name, "--timeout=90s", check=False, timeout=120)


def odoo_database(name: str, namespace: str, **spec: Any) -> str:
    body = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "OdooDatabase",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"version": "17.0", **spec}}
    return yaml.safe_dump(body)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, attach what a human would look at first: the objects, recent Events, the operator's log."""
    outcome = yield
    report = outcome.get_result()
    if report.when in ("setup", "call") and report.failed and "cluster" in item.fixturenames:
        cluster = item.funcargs.get("cluster")
        if isinstance(cluster, LocalCluster):
            odbs = cluster.kubectl("get", "odb", "-A", "-o", "wide", check=False).stdout
            recent = cluster.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp", check=False).stdout
            report.sections.append(("odoo databases", odbs))
            report.sections.append(("events", "\n".join(recent.splitlines()[-40:])))
            log = cluster.workdir / "operator.log"
            if log.exists():
                report.sections.append(("operator log", "\n".join(log.read_text(errors="replace").splitlines()[-60:])))


# --- a real S3-protocol server (moto) ---------------------------------------------------------

def moto_python() -> Path:
    """moto cannot live in the project's venv: botocore pins python-dateutil<3 while the kubernetes client
    needs >=3. It gets a venv of its own, built once per machine."""
    if override := os.environ.get("ODOO_TEST_MOTO_PYTHON"):
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "odoo-db-operator" / f"moto-{MOTO_VERSION}"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"moto[server]=={MOTO_VERSION}"],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            pytest.fail(f"cannot install moto[server]=={MOTO_VERSION}: {pip.stderr[-500:]}")
        (venv / ".installed").touch()
    return python


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([str(moto_python()), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    yield endpoint
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def second_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A second real PostgreSQL server (placement and moves between servers), for one test module."""
    postgres = Postgres(tmp_path_factory.mktemp("second-pg") / "pg")
    postgres.init()
    postgres.start()
    yield postgres
    postgres.remove()  # stop, and delete its data (a temp dir of its own when run as root)
