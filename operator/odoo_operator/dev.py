"""`make dev`: a local control plane + PostgreSQL, the CRDs, a default PostgresServer, and the
operator in the foreground. Ctrl-C stops everything and leaves nothing running."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .localcluster import REPO_ROOT, LocalCluster

DEV_DIR = Path(os.environ.get("ODOO_DEV_DIR") or REPO_ROOT / ".cache" / "dev")
SYSTEM_NAMESPACE = "odoo-system"


def apply_default_server(cluster: LocalCluster) -> None:
    """The cluster's PostgreSQL as the default PostgresServer `local`, admin Secret in odoo-system."""
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
        "metadata": {"name": "local"},
        "spec": {"host": "127.0.0.1", "port": pg.port, "default": True, "sslMode": "disable",
                 "adminSecretRef": {"namespace": SYSTEM_NAMESPACE, "name": "postgres-admin"}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": [secret, server]}))


def main() -> None:
    shutil.rmtree(DEV_DIR, ignore_errors=True)
    cluster = LocalCluster(DEV_DIR)
    operator: subprocess.Popen[bytes] | None = None
    try:
        print("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, PostgreSQL …",
              flush=True)
        cluster.start()
        cluster.install_crds()
        # The admission policy (protected delete) and the admin/editor/viewer roles.
        cluster.kubectl("apply", "-f", str(REPO_ROOT / "manifests"))
        apply_default_server(cluster)
        kubectl = Path(sys.executable).parent / "kubectl"
        print(f"""
Local control plane ready. In another terminal:

  export KUBECONFIG={cluster.kubeconfig}
  {kubectl} apply -f examples/odoodatabase.yaml
  {kubectl} get odb,pgs -A

Logs of the control plane: {DEV_DIR}/*.log. Ctrl-C stops everything.
""", flush=True)
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        operator = subprocess.Popen([sys.executable, "-m", "odoo_operator"], env=env)
        operator.wait()
    except KeyboardInterrupt:
        pass
    finally:
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
