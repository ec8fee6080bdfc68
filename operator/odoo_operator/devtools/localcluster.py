"""A throwaway Kubernetes control plane and PostgreSQL server on loopback.

This is the envtest pattern plus kwok: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler run as local processes, kwok stands in for kubelets (fake Nodes, Pods that become
Ready, Job Pods that succeed), and a PostgreSQL server runs as an unprivileged user. `make dev` and
the end-to-end tests both use it. Every child process is tied to this process's life (PDEATHSIG),
so nothing is left running when it stops, even if it is killed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BIN_DIR = REPO_ROOT / ".cache" / "k8s" / "current"
KWOK_DIR = REPO_ROOT / "hack" / "kwok"
PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
PR_SET_PDEATHSIG = 1

RUNNER_NODE = "odoo-runner-0"
RUNNER_NAMESPACE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": "odoo.dbmanager.io/runner=local",
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": "odoo.dbmanager.io/runner", "operator": "Equal", "value": "local", "effect": "NoSchedule"}]),
}

FAKE_NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "kwok-node-0",
        "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
        "labels": {
            "kubernetes.io/hostname": "kwok-node-0",
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
        },
    },
    "spec": {},
    "status": {
        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "2000"},
        "capacity": {"cpu": "64", "memory": "256Gi", "pods": "2000"},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent(uid: int | None = None, gid: int | None = None,
                     death_signal: int = signal.SIGKILL) -> Callable[[], None]:
    def preexec() -> None:
        os.setsid()
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        # SIGKILL, not SIGTERM: a kube-apiserver whose etcd is gone never finishes a graceful shutdown.
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, death_signal)

    return preexec


PG_DIR_PREFIX = "odoo-pg-"
# A running server touches its socket's lock file every 58 minutes (so that /tmp cleaners spare it).
STALE_PG_DIR_SECONDS = 3 * 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_pg_dirs(parent: Path | None = None, older_than: float = STALE_PG_DIR_SECONDS) -> list[Path]:
    """Remove the data folders (`<tmp>/odoo-pg-*`) of servers whose owner was killed before it could remove
    them (SIGKILL: `make dev` killed, a test run stopped): no live postmaster in it, and neither the folder,
    its log nor its socket's lock file touched for `older_than` seconds (a folder being set up has no
    postmaster yet; a server in another PID namespace looks dead but touches its lock file). Returns those
    removed."""
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(PG_DIR_PREFIX + "*"):
        try:
            if not folder.is_dir() or folder.is_symlink():
                continue
            touched = [folder, *folder.glob("postgres.log"), *folder.glob(".s.PGSQL.*.lock")]
            if time.time() - max(path.stat().st_mtime for path in touched) < older_than:
                continue
            pidfile = folder / "data" / "postmaster.pid"
            if pidfile.exists():
                first = pidfile.read_text().split("\n", 1)[0].strip()
                if not first.isdigit() or _alive(int(first)):
                    continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@dataclass
class Postgres:
    """A PostgreSQL server in `workdir`, run as the `postgres` user when we are root."""

    workdir: Path
    port: int = field(default_factory=free_port)
    user: str = "postgres"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    process: subprocess.Popen[bytes] | None = None
    owns_dir: bool = False
    # The pod network's gateway too when the node runner is on; pg_hba lets those CIDRs in.
    listen_addresses: str = "127.0.0.1"
    client_cidrs: list[str] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} password={self.password} dbname=postgres"

    def _ids(self) -> tuple[int | None, int | None]:
        if os.geteuid() != 0:
            return None, None
        entry = pwd.getpwnam("postgres")
        return entry.pw_uid, entry.pw_gid

    def init(self) -> None:
        uid, gid = self._ids()
        if uid is not None and gid is not None:
            # As root the server runs as `postgres`, which may not traverse the caller's folders
            # (a 0700 home or pytest's tmp): keep its files in a folder of its own, linked from workdir.
            # Its owner removes it (remove()); one killed first leaves it behind, removed by a later init.
            sweep_stale_pg_dirs()
            link = self.workdir
            self.workdir = Path(tempfile.mkdtemp(prefix=PG_DIR_PREFIX))
            self.owns_dir = True
            link.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                link.symlink_to(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if uid is not None and gid is not None:
            os.chown(self.workdir, uid, gid)
            os.chown(pwfile, uid, gid)
        subprocess.run(
            [str(PG_BIN_DIR / "initdb"), "-D", str(self.datadir), "-U", self.user, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent(uid, gid), cwd=self.workdir,
        )
        pwfile.unlink()
        with open(self.datadir / "pg_hba.conf", "a") as hba:
            hba.writelines(f"host all all {cidr} scram-sha-256\n" for cidr in self.client_cidrs)

    def start(self) -> None:
        uid, gid = self._ids()
        log = open(self.workdir / "postgres.log", "ab")
        self.process = subprocess.Popen(
            [str(PG_BIN_DIR / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
             "-c", f"listen_addresses={self.listen_addresses}", "-c", f"unix_socket_directories={self.workdir}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=400", "-c", "shared_buffers=128MB"],
            stdout=log, stderr=log, preexec_fn=_die_with_parent(uid, gid), cwd=self.workdir,
        )
        wait_for(lambda: _tcp_open(self.port) and self._ready(), 30, "PostgreSQL to accept connections")

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(PG_BIN_DIR / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        """Fast shutdown (sessions are cut, as in a failover), optionally stay down, start again on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def remove(self) -> None:
        self.stop()
        if self.owns_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class LocalCluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok + PostgreSQL."""

    workdir: Path
    bin_dir: Path = DEFAULT_BIN_DIR
    with_postgres: bool = True
    # An existing cluster (kind, a real one): only PostgreSQL is started, the rest is used as is.
    external_kubeconfig: Path | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    postgres: Postgres | None = None
    # A second Node, odoo-runner-0, whose Pods run for real (noderunner.py): the Pods of namespaces
    # made by real_namespace(). Other Pods stay on kwok.
    with_runner: bool = False
    odoo_homes: dict[str, Path] | None = None  # image series -> Odoo folder (default 16.0: .cache/odoo/current)
    pod_bridge: str = ""
    pod_cidr: str = ""

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.api_port = free_port()
        self.token = secrets.token_hex(16)
        self._runner_images: Path | None = None

    # ---- paths --------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.external_kubeconfig or self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def binary(self, name: str) -> str:
        assets = os.environ.get("KUBEBUILDER_ASSETS")
        for directory in ([Path(assets)] if assets else []) + [self.bin_dir]:
            candidate = directory / name
            if candidate.exists():
                return str(candidate)
        raise FileNotFoundError(f"{name} not found in {self.bin_dir}; run `make setup` first")

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> LocalCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.with_runner = self.with_runner and not self.external_kubeconfig
        if self.with_runner:
            from odoo_operator.devtools.noderunner_exec import claim_bridge

            self.pod_bridge, self.pod_cidr = claim_bridge()  # before PostgreSQL listens on its address
        if self.with_postgres:
            self.postgres = Postgres(self.workdir / "postgres")
            if self.with_runner:
                self.postgres.listen_addresses = f"127.0.0.1,{self.pod_gateway_ip}"
                self.postgres.client_cidrs = [self.pod_cidr]
            self.postgres.init()
            self.postgres.start()
        if self.external_kubeconfig:
            return self
        self._make_certificates()
        self._start_etcd()
        self._start_apiserver()
        self._write_kubeconfigs()
        self._start("kube-controller-manager", [
            self.binary("kube-controller-manager"), f"--kubeconfig={self.kubeconfig}",
            "--controllers=*", "--use-service-account-credentials=false",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={self.pki / 'ca.crt'}",
            f"--cluster-signing-key-file={self.pki / 'ca.key'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
            "--concurrent-gc-syncs=20", "--kube-api-qps=200", "--kube-api-burst=400",
            # kwok's node never misses a heartbeat for real; a starved 2-core machine must not
            # make the node lifecycle controller mark it NotReady (pods would never be Ready again).
            "--node-monitor-grace-period=1h",
        ])
        # Short back-off: kwok binds PVCs a moment before the scheduler's cache sees the volume.
        (self.workdir / "scheduler.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig), "qps": 200, "burst": 400},
            "leaderElection": {"leaderElect": False},
            "podInitialBackoffSeconds": 1, "podMaxBackoffSeconds": 1,
        }))
        self._start("kube-scheduler", [
            self.binary("kube-scheduler"), f"--config={self.workdir / 'scheduler.yaml'}",
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", "--secure-port=0",
        ])
        self._start_kwok()
        if self.with_runner:
            self._start_runner()
        return self

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            proc = self.processes.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20 if name == "noderunner" else 5)  # it kills its pods and removes their networks
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.postgres:
            self.postgres.remove()
        if self.pod_bridge:
            from odoo_operator.devtools.noderunner_exec import remove_leftovers

            remove_leftovers(self.pod_bridge)  # in case the runner could not
        if self._runner_images:
            shutil.rmtree(self._runner_images, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- helpers -------------------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    def _start(self, name: str, argv: list[str], death_signal: int = signal.SIGKILL) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=log, preexec_fn=_die_with_parent(death_signal=death_signal),
                                cwd=self.workdir)
        self.processes[name] = proc
        return proc

    def _make_certificates(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, cwd=self.pki,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                "-days", "30", "-subj", "/CN=odoo-local-ca")
        (self.pki / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
                "-subj", "/CN=kube-apiserver")
        openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "apiserver.crt", "-days", "30", "-extfile", "san.cnf")
        openssl("genrsa", "-out", "sa.key", "2048")
        openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        (self.pki / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self._start("etcd", [
            self.binary("etcd"), "--data-dir", str(self.workdir / "etcd"), "--listen-client-urls", client,
            "--advertise-client-urls", client, "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer, "--name", "default",
            "--initial-cluster", f"default={peer}", "--unsafe-no-fsync", "--log-level", "warn",
        ])
        wait_for(lambda: _tcp_open(self.etcd_port), 30, "etcd")

    def _start_apiserver(self) -> None:
        self._start("kube-apiserver", [
            self.binary("kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.api_port}",
            f"--tls-cert-file={self.pki / 'apiserver.crt'}", f"--tls-private-key-file={self.pki / 'apiserver.key'}",
            f"--client-ca-file={self.pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki / 'sa.pub'}",
            f"--service-account-signing-key-file={self.pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24", "--authorization-mode=RBAC",
            f"--token-auth-file={self.pki / 'tokens.csv'}", "--allow-privileged=true",
            "--endpoint-reconciler-type=none", "--max-requests-inflight=1000",
            # Added to the default plugins: a namespace's annotations pick the node runner (real_namespace).
            "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction",
            "--max-mutating-requests-inflight=500", "--enable-priority-and-fairness=false",
        ])
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))

        def ready() -> bool:
            request = urllib.request.Request(f"{self.server}/readyz",
                                             headers={"Authorization": f"Bearer {self.token}"})
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                return bool(response.status == 200)

        wait_for(ready, 90, "kube-apiserver /readyz")

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver (SIGTERM, then SIGKILL) and start it again with the same port, certificates and
        etcd: clients see their connections and watches cut, then the same server back."""
        proc = self.processes.pop("kube-apiserver")
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        wait_for(lambda: not _tcp_open(self.api_port), 15, "kube-apiserver to release its port")
        time.sleep(down_seconds)
        self._start_apiserver()

    def _write_kubeconfigs(self) -> None:
        ca = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "odoo-local",
            "clusters": [{"name": "odoo-local",
                          "cluster": {"server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "odoo-local", "context": {"cluster": "odoo-local", "user": "admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _start_kwok(self) -> None:
        self._start("kwok", [
            self.binary("kwok"), f"--kubeconfig={self.kubeconfig}", "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.0.0.1/24", "--node-ip=10.0.0.1", "--node-lease-duration-seconds=40",
            f"--config={KWOK_DIR / 'stages.yaml'}",
        ])
        self.kubectl("apply", "-f", "-", input=json.dumps(FAKE_NODE))
        self.kubectl("apply", "-f", str(KWOK_DIR / "storage-class.yaml"))
        wait_for(self._node_ready, 60, "the kwok node to become Ready")

    def _node_ready(self) -> bool:
        out = self.kubectl("get", "node", "kwok-node-0", "-o",
                           "jsonpath={.status.conditions[?(@.type=='Ready')].status}").stdout
        return out.strip() == "True"

    # ---- the node runner: Pods that run for real -----------------------------------------------
    @property
    def pod_gateway_ip(self) -> str:
        """Where Pods of the runner reach this machine (PostgreSQL listens there too): the pod
        network's gateway; 127.0.0.1 without the runner."""
        if not self.pod_cidr:
            return "127.0.0.1"
        from odoo_operator.devtools.noderunner_exec import gateway_of

        return gateway_of(self.pod_cidr)

    @property
    def runner_root(self) -> Path:
        return self.workdir / "runner"

    def _start_runner(self) -> None:
        homes = self.odoo_homes or {"16.0": REPO_ROOT / ".cache" / "odoo" / "current"}
        # The image's commands run as the container's user by their host path: not under workdir (0700).
        images = self._runner_images = Path(tempfile.mkdtemp(prefix="odoo-runner-images-"))
        self._start("noderunner", [
            sys.executable, "-m", "odoo_operator.devtools.noderunner", f"--kubeconfig={self.kubeconfig}",
            f"--node={RUNNER_NODE}", f"--root={self.runner_root}", f"--images-dir={images}",
            f"--bridge={self.pod_bridge}", f"--cidr={self.pod_cidr}",
            *(f"--odoo-home={series}={home}" for series, home in homes.items()),
        ], death_signal=signal.SIGTERM)  # it removes its network namespaces and kills its containers
        wait_for(self._runner_ready, 60, f"the node runner's node {RUNNER_NODE} to become Ready")

    def _runner_ready(self) -> bool:
        node = json.loads(self.kubectl("get", "node", RUNNER_NODE, "-o", "json").stdout)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions") or [])
        not_ready_taint = any(t["key"].startswith("node.kubernetes.io/") for t in node["spec"].get("taints") or [])
        return ready and not not_ready_taint

    def real_namespace(self, name: str) -> None:
        """Creates (or marks) a namespace whose Pods run on the node runner, by the admission
        plugins PodNodeSelector and PodTolerationRestriction."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=local-cluster", "-f", "-",
                     input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                         "name": name, "annotations": RUNNER_NAMESPACE_ANNOTATIONS}}))

    def pod_log(self, namespace: str, pod: str, container: str, previous: bool = False) -> Path:
        """The log file of a container of a Pod the runner ran (the newest Pod of that name)."""
        name = f"{container}.previous.log" if previous else f"{container}.log"
        found = sorted((self.runner_root / "pods").glob(f"{namespace}_{pod}_*/{name}"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"no log of {namespace}/{pod}/{container} under {self.runner_root}")
        return found[-1]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={self.kubeconfig}", *args], input=input, text=True,
            capture_output=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    def install_crds(self, crd_dir: Path = REPO_ROOT / "crds") -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_dir))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


def kubectl_binary() -> str:
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.exists():
        return str(venv_kubectl)
    found = shutil.which("kubectl")
    if not found:
        raise FileNotFoundError("kubectl not found; run `make setup`")
    return found


@contextlib.contextmanager
def local_cluster(workdir: Path | None = None, with_runner: bool = False) -> Iterator[LocalCluster]:
    owned = workdir is None
    path = Path(tempfile.mkdtemp(prefix="odoo-local-")) if workdir is None else workdir
    cluster = LocalCluster(path, with_runner=with_runner)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if owned:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None, help="keep state here (default: a temp dir)")
    parser.add_argument("--with-runner", action="store_true",
                        help="run the Pods of real_namespace() namespaces for real (noderunner.py)")
    args = parser.parse_args()
    with local_cluster(args.workdir, args.with_runner) as cluster:
        print(f"kubeconfig: {cluster.kubeconfig}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
