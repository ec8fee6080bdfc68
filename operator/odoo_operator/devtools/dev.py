"""`make dev`: a local control plane + PostgreSQL, the CRDs, a default PostgresServer, the node runner
(Odoo's Pods of the `default` namespace run for real), the local Ingress proxy, and the operator in the
foreground. Ctrl-C stops everything and leaves nothing running."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from odoo_operator.devtools.ingressproxy import IngressProxy
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster

DEV_DIR = Path(os.environ.get("ODOO_DEV_DIR") or REPO_ROOT / ".cache" / "dev")
SYSTEM_NAMESPACE = "odoo-system"
PROXY_PORT = int(os.environ.get("ODOO_DEV_PROXY_PORT") or 8080)
ODOO_HOME = REPO_ROOT / ".cache" / "odoo" / "current"


def apply_default_server(cluster: LocalCluster, name: str = "local", host: str = "127.0.0.1",
                         default: bool = True) -> None:
    """The cluster's PostgreSQL as a PostgresServer (`local`, the default, unless told otherwise), its
    admin Secret in odoo-system. Pods of the node runner reach it at `cluster.pod_gateway_ip`."""
    assert cluster.postgres is not None
    pg = cluster.postgres
    cluster.kubectl("create", "namespace", SYSTEM_NAMESPACE, check=False)
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "postgres-admin", "namespace": SYSTEM_NAMESPACE},
        "data": {"username": base64.b64encode(pg.user.encode()).decode(),
                 "password": base64.b64encode(pg.password.encode()).decode()},
    }
    server = {
        "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "PostgresServer",
        "metadata": {"name": name},
        "spec": {"host": host, "port": pg.port, "default": default, "sslMode": "disable",
                 "adminSecretRef": {"namespace": SYSTEM_NAMESPACE, "name": "postgres-admin"}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": [secret, server]}))


def main() -> None:
    # Ctrl-C stops everything, also when started from a shell that ignores SIGINT for its children (a
    # background job `… &` of a non-interactive shell, nohup): Python then leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    shutil.rmtree(DEV_DIR, ignore_errors=True)
    if not (ODOO_HOME / "src" / "odoo-bin").exists():
        sys.exit(f"no Odoo in {ODOO_HOME}: run `make setup` first")
    cluster = LocalCluster(DEV_DIR, with_runner=True)
    operator: subprocess.Popen[bytes] | None = None
    proxy: IngressProxy | None = None
    try:
        print("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, the node runner, "
              "PostgreSQL …", flush=True)
        cluster.start()
        cluster.install_crds()
        # The admission policy (protected delete) and the admin/editor/viewer roles.
        cluster.kubectl("apply", "-f", str(REPO_ROOT / "manifests"))
        # Pods reach PostgreSQL through the pod network's gateway, as they would a server in a cluster.
        apply_default_server(cluster, host=cluster.pod_gateway_ip)
        # The tour's namespace: its Pods (Odoo's init Job, app, neutralize Job, backups) run for real.
        cluster.real_namespace("default")
        # The operator's own namespace: the Jobs that build template databases run there, for real too.
        cluster.real_namespace(SYSTEM_NAMESPACE)
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("odoo_operator.devtools.ingressproxy").setLevel(logging.INFO)  # one line per request
        proxy = IngressProxy(cluster.kubeconfig, port=PROXY_PORT).start()
        kubectl = Path(sys.executable).parent / "kubectl"
        print(f"""
Local control plane ready; Odoo's Pods in namespace `default` run for real (node odoo-runner-0),
Ingress rules are served on http://127.0.0.1:{proxy.port}. In another terminal:

  export KUBECONFIG={cluster.kubeconfig}
  {kubectl} apply -f examples/odoodatabase.yaml
  {kubectl} get odb shop -w                       # Ready after the real `odoo -i base` (a minute or two)
  {kubectl} get secret shop-admin -o jsonpath='{{.data.password}}' | base64 -d; echo
  open http://shop.odoo.localhost:{proxy.port}/web/login    # log in as admin with that password

Logs: {DEV_DIR}/*.log (control plane), {cluster.runner_root}/pods/*/*.log (containers). Ctrl-C stops everything.
""", flush=True)
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        operator = subprocess.Popen([sys.executable, "-m", "odoo_operator"], env=env)
        operator.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proxy is not None:
            proxy.stop()
        if operator and operator.poll() is None:
            operator.terminate()
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
        cluster.stop()
        print("stopped; nothing left running", flush=True)


if __name__ == "__main__":
    main()
