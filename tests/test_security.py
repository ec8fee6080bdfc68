"""What a tenant's namespace gets, seen as the platform would check it: the operator's Pods pass the
`restricted` Pod Security Standard (enforced by the API server's own PodSecurity admission), and one
tenant's credentials open nothing of another's."""

from __future__ import annotations

import base64
import json

import psycopg
import pytest

from conftest import condition, get_json, odoo_database, wait_until

pytestmark = pytest.mark.e2e


def _ready(cluster, name, namespace):
    obj = get_json(cluster, "odb", name, "-n", namespace)
    return obj if condition(obj, "Ready").get("status") == "True" else None


def _secret(cluster, name, namespace):
    obj = get_json(cluster, "secret", name, "-n", namespace)
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def test_every_pod_of_the_operator_passes_the_restricted_pod_security_standard(cluster, operator, namespace):
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest")
    cluster.kubectl("apply", "-f", "-", input=odoo_database("shop", namespace))
    wait_until(lambda: _ready(cluster, "shop", namespace), 120, "shop to be Ready (its init Job's Pod admitted)")
    cluster.kubectl("apply", "-f", "-", input=odoo_database(
        "shop-test", namespace, duplicateFrom={"name": "shop", "forTesting": True}))
    wait_until(lambda: _ready(cluster, "shop-test", namespace), 120, "the test copy (its neutralize Job's Pod)")
    cron = wait_until(lambda: get_json(cluster, "cronjob", "shop-daily", "-n", namespace), 60, "the daily CronJob")
    assert cron
    cluster.kubectl("create", "job", "--from=cronjob/shop-daily", "shop-backup-now", "-n", namespace)
    wait_until(lambda: (get_json(cluster, "job", "shop-backup-now", "-n", namespace).get("status") or {}).get(
        "active") or (get_json(cluster, "job", "shop-backup-now", "-n", namespace).get("status") or {}).get(
        "succeeded") or (get_json(cluster, "job", "shop-backup-now", "-n", namespace).get("status") or {}).get(
        "failed"), 60, "the backup Job's Pod")
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    owners = {ref["kind"] for pod in pods for ref in pod["metadata"].get("ownerReferences") or []}
    assert {"ReplicaSet", "Job"} <= owners  # app, init/neutralize/backup Jobs: all admitted
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    refused = [e["message"] for e in events if e["reason"] == "FailedCreate"]
    assert not refused, refused


def test_one_tenants_credentials_open_nothing_of_another(cluster, operator, namespace):
    """Tenant A has the password of its own role (its Secret <name>-db): B's database refuses it, and
    so does every database it does not own, the maintenance database's other tenants' objects too."""
    other = f"{namespace}-b"
    cluster.kubectl("create", "namespace", other)
    try:
        cluster.kubectl("apply", "-f", "-", input=odoo_database("alpha", namespace))
        cluster.kubectl("apply", "-f", "-", input=odoo_database("beta", other, databaseName=f"beta-{namespace}"))
        a = wait_until(lambda: _ready(cluster, "alpha", namespace), 120, "alpha to be Ready")
        b = wait_until(lambda: _ready(cluster, "beta", other), 120, "beta to be Ready")
        creds = _secret(cluster, "alpha-db", namespace)
        host, port = "127.0.0.1", cluster.postgres.port
        with psycopg.connect(host=host, port=port, user=creds["user"], password=creds["password"],
                             dbname=a["status"]["databaseName"]) as own:
            assert own.execute("SELECT current_user").fetchone() == (creds["user"],)
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(host=host, port=port, user=creds["user"], password=creds["password"],
                            dbname=b["status"]["databaseName"])
        with psycopg.connect(host=host, port=port, user=creds["user"], password=creds["password"],
                             dbname="postgres", autocommit=True) as maint:
            role = maint.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = "
                                 "current_user").fetchone()
            assert role == (False, False, False)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                maint.execute("CREATE TABLE public.planted (id int)")  # nothing to plant for the admin there
    finally:
        cluster.kubectl("delete", "odb", "--all", "-n", other, "--timeout=90s", check=False, timeout=120)
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
