"""The operator, run as the chart's ServiceAccount (a token of it, bound to the chart's ClusterRole and
lease Role), does its whole job: a database is created, a deleted `<name>-db` Secret comes back, a
PostgresServer's allow-list is read, the database is dropped on deletion, and the API server refuses
nothing it asks. Proves the least-privilege ClusterRole (no list/watch on Secrets) is enough, on the
real control plane."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import OperatorProcess, get_json, odoo_database, wait_until
from odoo_operator.devtools.dev import SYSTEM_NAMESPACE
from odoo_operator.devtools.localcluster import LocalCluster
from test_chart import as_list, one, render
from test_lifecycle import databases, secret_data, wait_ready, wait_reason

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def rbac_operator(cluster: LocalCluster, default_server: str, without_session_operator: None,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    objs = [o for o in render(release=release, namespace=SYSTEM_NAMESPACE, sets=("leaderElection.enabled=true",))
            if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
            and o["metadata"]["name"].startswith(release)]
    cluster.kubectl("apply", "--server-side", "-f", "-", input=as_list(objs))
    sa = one(objs, "ServiceAccount")["metadata"]["name"]
    token = cluster.kubectl("create", "token", sa, "-n", SYSTEM_NAMESPACE, "--duration=2h").stdout.strip()
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]  # same context, the ServiceAccount's token
    kubeconfig = tmp_path_factory.mktemp("rbac") / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    kubeconfig.chmod(0o600)
    proc = OperatorProcess(cluster, kubeconfig.parent, name="operator-as-sa",
                           env={"KUBECONFIG": str(kubeconfig), "ODOO_OPERATOR_LEADER_ELECTION": "true",
                                "ODOO_OPERATOR_LEASE_NAMESPACE": SYSTEM_NAMESPACE,
                                "ODOO_OPERATOR_LEASE_NAME": release,
                                # Its template Jobs in the release namespace, as the chart sets it.
                                "ODOO_OPERATOR_TEMPLATES": "true",
                                "ODOO_OPERATOR_TEMPLATE_NAMESPACE": SYSTEM_NAMESPACE})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        for obj in reversed(objs):
            meta = obj["metadata"]
            args = ["-n", meta["namespace"]] if meta.get("namespace") else []
            cluster.kubectl("delete", obj["kind"].lower(), meta["name"], *args, "--ignore-not-found", check=False)


def test_the_operator_needs_no_more_than_the_chart_grants(cluster: LocalCluster, rbac_operator: OperatorProcess,
                                                          namespace: str, pg_dsn: str) -> None:
    name = f"sa{uuid.uuid4().hex[:6]}"
    cluster.kubectl("apply", "-f", "-", input=odoo_database(name, namespace))
    wait_ready(cluster, name, namespace, timeout=150)
    assert name in databases(pg_dsn)

    # The first database asked for its version's template: Secret and Job in the release namespace.
    # kwok "completes" the Job without any Odoo, so the template is found without Odoo's modules and reported
    # Failed — and its Secret is deleted (the chart grants that there only); the Job stays for
    # inspection until the retry.
    def template_failed() -> dict[str, Any] | None:
        found = (get_json(cluster, "pgs", "local").get("status") or {}).get("templates") or []
        return next((t for t in found if t.get("state") == "Failed"), None)

    failed = wait_until(template_failed, 90, "the template reported Failed")
    assert "is not installed in" in failed["message"], failed
    leftovers = get_json(cluster, "secrets,configmaps", "-n", SYSTEM_NAMESPACE,
                         "-l", "app.kubernetes.io/component=template")
    assert not leftovers.get("items"), leftovers

    # Secrets are not watched: a deleted <name>-db is found missing at the next reconcile (any change wakes it).
    old = secret_data(cluster, f"{name}-db", namespace)["password"]
    cluster.kubectl("delete", "secret", f"{name}-db", "-n", namespace)
    cluster.kubectl("patch", "odb", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"tags":["x"]}}')
    wait_until(lambda: secret_data(cluster, f"{name}-db", namespace), 60, f"Secret {name}-db to come back")
    assert secret_data(cluster, f"{name}-db", namespace)["password"] != old
    wait_ready(cluster, name, namespace, timeout=60)

    # A PostgresServer's allow-list with a selector: the operator reads the namespace's labels.
    server = f"sa-{uuid.uuid4().hex[:6]}"
    local = get_json(cluster, "pgs", "local")["spec"]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "PostgresServer", "metadata": {"name": server},
        "spec": {**local, "default": False, "allowedNamespaces": {"selector": {"matchLabels": {"tier": "x"}}}}}))
    try:
        other = f"{name}b"
        cluster.kubectl("apply", "-f", "-", input=odoo_database(other, namespace, server=server))
        wait_reason(cluster, other, namespace, "ServerNotAllowed")
        cluster.kubectl("delete", "odb", other, "-n", namespace, "--timeout=60s")
    finally:
        cluster.kubectl("delete", "pgs", server, "--ignore-not-found", check=False)

    cluster.kubectl("delete", "odb", name, "-n", namespace, "--timeout=90s")
    wait_until(lambda: name not in databases(pg_dsn), 30, f"database {name} to be dropped")
    # KubeError "403 Forbidden"; kopf's "Not enough permissions to watch/list/patch ...". An Event refused in
    # a namespace being deleted (another test's, reason NamespaceTerminating) is a 403 too, not an RBAC gap.
    log = "\n".join(line for line in rbac_operator.log().splitlines()
                     if "NamespaceTerminating" not in line and "because it is being terminated" not in line)
    assert "Forbidden" not in log and " 403" not in log and "permission" not in log.lower(), log[-4000:]
    assert rbac_operator.running()
