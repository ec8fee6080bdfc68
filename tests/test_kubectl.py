"""`kubectl odoo …` (the plugin) end to end: run as a user runs it (a subprocess with a kubeconfig) against
the real API server.

Most tests put OdooDatabases in known states by writing their status themselves (`kubectl patch
--subresource=status`), as the operator would. The operator may run in the same test session (it is a
session fixture), so these objects name a PostgresServer that does not exist: the operator then only
publishes `ServerNotFound` once, and never rewrites a status we wrote after that (it wakes only on spec or
tag changes and compares with its own last write). The tests ask for the `operator` fixture so that this
is the same whichever tests run first. One test (`duplicate --wait`) runs the real flow.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import condition, get_json, wait_until
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster
from test_duplicate import source  # noqa: F401 - a Ready database with an Odoo-like schema (fixture)
from test_lifecycle import wait_ready

pytestmark = pytest.mark.e2e

PLUGIN = Path(sys.executable).parent / "kubectl-odoo"
RBAC_ROLES = REPO_ROOT / "manifests" / "rbac-user-roles.yaml"
ADMISSION_POLICY = REPO_ROOT / "manifests" / "admission-policy.yaml"
ABSENT_SERVER = "absent-server"
NOW = "2030-01-01T00:00:00Z"


# ---- helpers -------------------------------------------------------------------------------------
def kodoo(cluster: LocalCluster, *args: str, input: str | None = None, kubeconfig: Path | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(PLUGIN), f"--kubeconfig={kubeconfig or cluster.kubeconfig}", *args],
                            input=input, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 1 and a one-line message on stderr (after any prompt)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    for needle in needles:
        assert needle in last, last
    return last


def fabricate(cluster: LocalCluster, namespace: str, name: str, status: dict[str, Any] | None = None,
              tags: tuple[str, ...] = (), **spec: Any) -> dict[str, Any]:
    """An OdooDatabase with the given status (as the operator would write it), tags mirrored to labels.

    deletionPolicy Retain unless said otherwise: the operator then lets go of it at once when it is deleted
    (with Delete it would look for the absent server first, and wait for it)."""
    spec = {"deletionPolicy": "Retain", **spec}
    body = {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "OdooDatabase",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {f"tag.odoo.dbmanager.io/{t}": "true" for t in tags}},
            "spec": {"version": "17.0", "server": ABSENT_SERVER, **({"tags": list(tags)} if tags else {}), **spec}}
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(body))

    def published() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", name, "-n", namespace)
        observed = (obj.get("status") or {}).get("observedGeneration")
        return obj if observed == obj["metadata"]["generation"] else None

    obj = wait_until(published, 60, f"the operator to process {namespace}/{name}")
    if status is not None:
        full = {"observedGeneration": obj["metadata"]["generation"], "server": ABSENT_SERVER, **status}
        cluster.kubectl("patch", "odb", name, "-n", namespace, "--subresource=status", "--type=merge",
                        "-p", json.dumps({"status": full}))
        obj = get_json(cluster, "odb", name, "-n", namespace)
    return obj


def ready_status(name: str, **extra: Any) -> dict[str, Any]:
    return {"phase": "Ready", "databaseName": name, "url": f"http://{name}.odoo.localhost", "version": "17.0",
            "sizeBytes": 3 * 1024 * 1024, "lastBackup": "2024-01-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": f"{name} is serving",
                            "lastTransitionTime": "2024-01-01T00:00:00Z"},
                           {"type": "Reconciling", "status": "False", "reason": "Ready",
                            "lastTransitionTime": "2024-01-01T00:00:00Z"},
                           {"type": "Stalled", "status": "False", "reason": "Ready",
                            "lastTransitionTime": "2024-01-01T00:00:00Z"}], **extra}


def table_names(stdout: str, column: int = 0) -> list[str]:
    return [line.split()[column] for line in stdout.splitlines()[1:] if line.strip()]


def new_namespace(cluster: LocalCluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    return name


def drop_namespace(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("delete", "odb", "--all", "-n", namespace, "--timeout=60s", check=False, timeout=90)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def create_or_keep(cluster: LocalCluster, manifest: Path) -> list[tuple[str, str]]:
    """Apply a manifest; return what did not exist before (to delete afterwards)."""
    created = []
    for doc in yaml.safe_load_all(manifest.read_text()):
        if doc and cluster.kubectl("get", doc["kind"].lower(), doc["metadata"]["name"], check=False).returncode:
            created.append((doc["kind"].lower(), doc["metadata"]["name"]))
    cluster.kubectl("apply", "-f", str(manifest))
    return created


def can_i(cluster: LocalCluster, user: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    scope = ["-n", namespace] if namespace else []
    result = cluster.kubectl("auth", "can-i", verb, resource, *scope, f"--as={user}", check=False)
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def viewer_role(cluster: LocalCluster) -> Iterator[str]:
    created = create_or_keep(cluster, RBAC_ROLES)
    yield "odoo-database-viewer"
    for kind, name in created:
        cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)


# ---- list ----------------------------------------------------------------------------------------
def test_list_filters_by_tags_server_side_all_of_them(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    fabricate(cluster, namespace, "alpha", ready_status("alpha", expiresAt=NOW), tags=("prod", "eu"))
    fabricate(cluster, namespace, "beta", ready_status("beta"), tags=("prod",))
    fabricate(cluster, namespace, "gamma", tags=("eu",))
    fabricate(cluster, namespace, "delta")

    everything = ok(kodoo(cluster, "list", "-n", namespace))
    assert table_names(everything) == ["alpha", "beta", "delta", "gamma"]
    header = everything.splitlines()[0].split()
    assert header[:6] == ["NAME", "READY", "PHASE", "VERSION", "SIZE", "TAGS"] and "URL" in header
    alpha = next(line for line in everything.splitlines() if line.startswith("alpha "))
    assert "True" in alpha and "Ready" in alpha and "3.0 MiB" in alpha and "prod,eu" in alpha
    assert "http://alpha.odoo.localhost" in alpha and " in " in alpha and " ago" in alpha  # expires, last backup

    assert table_names(ok(kodoo(cluster, "list", "-n", namespace, "--tag", "prod"))) == ["alpha", "beta"]
    assert table_names(ok(kodoo(cluster, "list", "-n", namespace, "--tag", "eu"))) == ["alpha", "gamma"]
    assert table_names(ok(kodoo(cluster, "list", "-n", namespace, "--tag", "prod", "--tag", "eu"))) == ["alpha"]
    none = kodoo(cluster, "list", "-n", namespace, "--tag", "nope")
    assert none.returncode == 0 and none.stdout == "" and "No OdooDatabases tagged nope" in none.stderr
    failed(kodoo(cluster, "list", "-n", namespace, "--tag", "Not A Tag"), "invalid tag")

    listing = json.loads(ok(kodoo(cluster, "list", "-n", namespace, "--tag", "prod", "-o", "json")))
    assert listing["kind"] == "List" and [i["metadata"]["name"] for i in listing["items"]] == ["alpha", "beta"]
    assert all("managedFields" not in i["metadata"] for i in listing["items"])
    as_yaml = yaml.safe_load(ok(kodoo(cluster, "list", "-n", namespace, "-o", "yaml")))
    assert len(as_yaml["items"]) == 4
    wide = ok(kodoo(cluster, "list", "-n", namespace, "-o", "wide"))
    assert {"DATABASE", "SERVER", "REASON", "MESSAGE"} <= set(wide.splitlines()[0].split())
    assert ABSENT_SERVER in wide and "alpha is serving" in wide


def test_list_all_namespaces_as_a_tenant_who_reads_only_some(cluster: LocalCluster, operator: Any, namespace: str,
                                                             viewer_role: str, tmp_path: Path) -> None:
    """-A for a user bound to odoo-database-viewer in two namespaces out of three."""
    ns_a, ns_b, ns_c = namespace, new_namespace(cluster, "kob"), new_namespace(cluster, "koc")
    user = f"tenant-{uuid.uuid4().hex[:6]}"
    lister = f"ns-lister-{user}"
    try:
        for ns, name in ((ns_a, "in-a"), (ns_b, "in-b"), (ns_c, "in-c")):
            fabricate(cluster, ns, name, tags=("shared",))
        for ns in (ns_a, ns_b):
            cluster.kubectl("create", "rolebinding", f"{user}-viewer", f"--clusterrole={viewer_role}",
                            f"--user={user}", "-n", ns)
        wait_until(lambda: can_i(cluster, user, "list", "odoodatabases.odoo.dbmanager.io", ns_b), 20, "the binding")
        assert not can_i(cluster, user, "list", "odoodatabases.odoo.dbmanager.io", ns_c)

        # The cluster admin: one cluster-wide list, no notes.
        admin = kodoo(cluster, "list", "-A", "--tag", "shared")
        assert {"in-a", "in-b", "in-c"} <= set(table_names(ok(admin), 1)) and admin.stderr == ""
        assert admin.stdout.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]

        # A tenant who may not list namespaces: the kubeconfig's contexts (same cluster and user) and
        # --namespaces say where to look; the forbidden ones are named.
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
        config["contexts"] += [{"name": f"tenant-{ns}", "context": {**current["context"], "namespace": ns}}
                               for ns in (ns_a, ns_b)]
        kubeconfig = tmp_path / "tenant-kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        tenant = kodoo(cluster, f"--as={user}", "list", "-A", "--namespaces", ns_c, kubeconfig=kubeconfig)
        assert sorted(table_names(ok(tenant), 1)) == ["in-a", "in-b"]
        assert "not allowed to list namespaces" in tenant.stderr
        skipped = next(line for line in tenant.stderr.splitlines() if "skipped (forbidden)" in line)
        assert ns_c in skipped and ns_a not in skipped and ns_b not in skipped
        # Without the contexts nor --namespaces, only the context's namespace is tried.
        alone = kodoo(cluster, f"--as={user}", "list", "-A")
        assert table_names(ok(alone), 1) == [] and "looked only in default" in alone.stderr

        # A tenant who may list namespaces: every namespace is tried.
        cluster.kubectl("create", "clusterrole", lister, "--verb=list", "--resource=namespaces")
        cluster.kubectl("create", "clusterrolebinding", lister, f"--clusterrole={lister}", f"--user={user}")
        wait_until(lambda: can_i(cluster, user, "list", "namespaces"), 20, "the namespace lister binding")
        tenant = kodoo(cluster, f"--as={user}", "list", "-A", "-o", "json")
        names = sorted(i["metadata"]["name"] for i in json.loads(ok(tenant))["items"])
        assert names == ["in-a", "in-b"]
        skipped = next(line for line in tenant.stderr.splitlines() if "skipped (forbidden)" in line)
        assert ns_c in skipped and "kube-system" in skipped and "not allowed to list namespaces" not in tenant.stderr
        # Reading one namespace the tenant may not read is a one-line error.
        failed(kodoo(cluster, f"--as={user}", "list", "-n", ns_c), "forbidden")
    finally:
        cluster.kubectl("delete", "clusterrolebinding", lister, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "clusterrole", lister, "--ignore-not-found", check=False)
        for ns in (ns_b, ns_c):
            drop_namespace(cluster, ns)


# ---- status --------------------------------------------------------------------------------------
def test_status_summarises_conditions_domains_backups_and_events(cluster: LocalCluster, operator: Any,
                                                                  namespace: str) -> None:
    status = ready_status("shop", expiresAt=NOW, conditions=[
        {"type": "Ready", "status": "False", "reason": "Progressing", "message": "waiting for the app rollout",
         "lastTransitionTime": "2024-01-01T00:00:00Z"},
        {"type": "Reconciling", "status": "True", "reason": "Progressing", "message": "rolling out",
         "lastTransitionTime": "2024-01-01T00:00:00Z"}], phase="Provisioning")
    obj = fabricate(cluster, namespace, "shop", status, tags=("prod",), databaseName="shop_pg",
                    subscription={"code": "SUB-42"}, deletionPolicy="Retain")
    for name, db, domain in (("shop-www", "shop", "www.shop-example.com"), ("other", "else", "other-example.com")):
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainMapping",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"domain": domain, "databaseRef": {"name": db}}}))
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"shop.{uuid.uuid4().hex[:8]}", "namespace": namespace},
        "involvedObject": {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "OdooDatabase", "name": "shop",
                           "namespace": namespace, "uid": obj["metadata"]["uid"]},
        "type": "Warning", "reason": "SomethingHappened", "message": "the planted event message",
        "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:00Z", "count": 1,
        "source": {"component": "test"}}))

    out = ok(kodoo(cluster, "status", "shop", "-n", namespace))
    fields = dict(line.split(":", 1) for line in out.split("\n\n")[0].splitlines())
    assert fields["Phase"].strip() == "Provisioning"
    assert fields["Ready"].strip() == "False Progressing: waiting for the app rollout"
    assert fields["URL"].strip() == "http://shop.odoo.localhost"
    assert fields["Database"].strip() == "shop" and fields["Server"].strip() == ABSENT_SERVER
    assert fields["Size"].strip() == "3.0 MiB" and fields["Version"].strip() == "17.0"
    assert fields["Expires"].strip().startswith(NOW) and "2024-01-01T00:00:00Z" in fields["Last backup"]
    assert "SUB-42" in fields["Subscription"] and fields["Deletion"].strip().startswith("Retain")
    conditions = out.split("Conditions:\n", 1)[1].split("\n\n")[0]
    assert "Reconciling" in conditions and "rolling out" in conditions
    domains = out.split("Domains:\n", 1)[1].split("\n\n")[0]
    assert "www.shop-example.com" in domains and "other-example.com" not in domains
    events = out.split("Events:\n", 1)[1]
    assert "SomethingHappened" in events and "the planted event message" in events

    as_json = json.loads(ok(kodoo(cluster, "status", "shop", "-n", namespace, "-o", "json")))
    assert as_json["spec"]["databaseName"] == "shop_pg"
    failed(kodoo(cluster, "status", "nope", "-n", namespace), "not found", "nope")


# ---- duplicate, rename, backup -------------------------------------------------------------------
def test_duplicate_creates_a_copy_of_the_right_shape(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    fabricate(cluster, namespace, "src", ready_status("src", version="18.0"), version="18.0", image="custom:1")
    out = ok(kodoo(cluster, "duplicate", "src", "src-test", "--for-testing", "--expires-after", "3d", "-n", namespace))
    assert "src-test created" in out and "neutralized" in out and "3d" in out
    spec = get_json(cluster, "odb", "src-test", "-n", namespace)["spec"]
    assert spec.pop("deletionPolicy") == "Delete"  # the CRD's default, not the source's (Retain)
    assert spec == {"version": "18.0", "server": ABSENT_SERVER, "image": "custom:1", "expiresAfter": "3d",
                    "duplicateFrom": {"name": "src", "forTesting": True}}
    out = ok(kodoo(cluster, "duplicate", "src", "src-copy", "-n", namespace))
    assert "15d" in out  # the operator's default for duplicates, so nothing is written
    copy = get_json(cluster, "odb", "src-copy", "-n", namespace)["spec"]
    assert copy["duplicateFrom"] == {"name": "src", "forTesting": False} and "expiresAfter" not in copy
    failed(kodoo(cluster, "duplicate", "src", "src-copy", "-n", namespace), "already exists")
    failed(kodoo(cluster, "duplicate", "missing", "x-copy", "-n", namespace), "not found")
    failed(kodoo(cluster, "duplicate", "src", "y-copy", "--expires-after", "soon", "-n", namespace), "duration")
    for copy_name in ("src-test", "src-copy"):  # on the absent server: let the operator release them at once
        cluster.kubectl("patch", "odb", copy_name, "-n", namespace, "--type=merge",
                        "-p", '{"spec":{"deletionPolicy":"Retain"}}')


@pytest.mark.usefixtures("source")
def test_duplicate_wait_for_the_real_copy(cluster: LocalCluster, namespace: str) -> None:
    out = ok(kodoo(cluster, "duplicate", "prod", "prod-qa", "--for-testing", "--wait", "--timeout", "120s",
                   "-n", namespace, timeout=180))
    assert "prod-qa is Ready: http://prod-qa.odoo.localhost" in out
    obj = wait_ready(cluster, "prod-qa", namespace, timeout=5)
    assert obj["status"]["neutralized"] is True and obj["status"]["expiresAt"]
    status = ok(kodoo(cluster, "status", "prod-qa", "-n", namespace))
    assert "duplicate of prod (neutralized for testing)" in status and "Expires:" in status


def test_rename_patches_spec_database_name(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    before = fabricate(cluster, namespace, "old", ready_status("old"))
    out = ok(kodoo(cluster, "rename", "old", "old2", "-n", namespace))
    assert "spec.databaseName old -> old2" in out
    after = get_json(cluster, "odb", "old", "-n", namespace)
    assert after["spec"]["databaseName"] == "old2"
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert "nothing to do" in ok(kodoo(cluster, "rename", "old", "old2", "-n", namespace))
    failed(kodoo(cluster, "rename", "old", "x", "-n", namespace), "not a valid Odoo database name")
    failed(kodoo(cluster, "rename", "old", "postgres", "-n", namespace), "reserved")
    failed(kodoo(cluster, "rename", "ghost", "ghost2", "-n", namespace), "not found")


def test_backup_creates_a_one_shot_database_backup(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    fabricate(cluster, namespace, "shop")
    out = ok(kodoo(cluster, "backup", "shop", "-n", namespace))
    backups = [b for b in get_json(cluster, "odbb", "-n", namespace)["items"]
               if b["metadata"]["name"].startswith("shop-manual-")]
    assert len(backups) == 1
    backup = backups[0]
    assert "schedule" not in backup["spec"] and "storage" not in backup["spec"]
    assert backup["spec"]["databaseRef"] == {"name": "shop"} and backup["spec"]["format"] == "zip"
    assert backup["metadata"]["labels"]["odoo.dbmanager.io/database"] == "shop"
    assert f"kubectl odoo download shop -n {namespace} --backup {backup['metadata']['name']}" in out

    # Storage: the database's own backup storage, or the one asked for.
    fabricate(cluster, namespace, "vault", backup={"storage": {"pvc": {"claimName": "vault-backups"}}})
    ok(kodoo(cluster, "backup", "vault", "--name", "vault-now", "-n", namespace))
    assert get_json(cluster, "odbb", "vault-now", "-n", namespace)["spec"]["storage"] == {
        "pvc": {"claimName": "vault-backups"}}
    ok(kodoo(cluster, "backup", "vault", "--name", "vault-s3", "--format", "dump", "--s3-bucket", "bk",
             "--s3-endpoint", "http://minio:9000", "--s3-credentials-secret", "s3-creds", "-n", namespace))
    spec = get_json(cluster, "odbb", "vault-s3", "-n", namespace)["spec"]
    assert spec["format"] == "dump" and spec["storage"] == {"s3": {"bucket": "bk", "endpoint": "http://minio:9000",
                                                                   "credentialsSecret": {"name": "s3-creds"}}}
    failed(kodoo(cluster, "backup", "vault", "--name", "vault-now", "-n", namespace), "already exists")
    failed(kodoo(cluster, "backup", "nothing", "-n", namespace), "not found")


# ---- restore -------------------------------------------------------------------------------------
def test_restore_from_a_databases_backup_creates_the_right_shape(cluster: LocalCluster, operator: Any,
                                                                 namespace: str) -> None:
    fabricate(cluster, namespace, "shop", status=ready_status("shop"), image="registry.example/odoo:17.0-custom")
    out = ok(kodoo(cluster, "restore", "shop-dr", "--from-database", "shop", "--artifact", "20240101T020000Z",
                   "--identity", "keep", "-n", namespace))
    spec = get_json(cluster, "odb", "shop-dr", "-n", namespace)["spec"]
    assert spec["restoreFrom"] == {"backup": "shop-daily", "artifact": "20240101T020000Z", "identity": "keep",
                                   "neutralize": False}
    assert (spec["version"], spec["server"], spec["image"]) == ("17.0", ABSENT_SERVER,
                                                                 "registry.example/odoo:17.0-custom")
    assert "keeping its identity (moved)" in out
    failed(kodoo(cluster, "restore", "shop-dr", "--from-database", "shop", "-n", namespace), "already exists")
    failed(kodoo(cluster, "restore", "other", "-n", namespace), "give --file PATH")
    failed(kodoo(cluster, "restore", "other", "--file", "/no/such.zip", "-n", namespace), "no such file")
    failed(kodoo(cluster, "restore", "other", "--file", __file__, "--backup", "b", "-n", namespace),
           "with --file, the file is restored")
    not_odoo = Path(__file__).parent / "fixtures" / "odoo_schema.sql"
    failed(kodoo(cluster, "restore", "other", "--file", str(not_odoo), "-n", namespace), "give --version")


def test_restore_upload_to_a_pvc_goes_through_a_pod_and_kubectl_exec(tmp_path: Path) -> None:
    """kwok's Pods cannot exec: the Pod and the command are checked here, and what the command runs inside
    the Pod (`python -m odoo_operator.backupjob receive`) is run locally with the volume at a folder."""
    from odoo_operator.kubectl import upload
    from odoo_operator.kubectl.support import PluginError

    pod = upload.uploader_pod("sales", "odoo-backups", "odoo-db-operator:0.1.0")
    spec = pod["spec"]
    assert pod["metadata"]["name"].startswith("odoo-upload-") and pod["metadata"]["namespace"] == "sales"
    assert spec["automountServiceAccountToken"] is False and spec["securityContext"]["runAsNonRoot"] is True
    assert spec["volumes"] == [{"name": "backups", "persistentVolumeClaim": {"claimName": "odoo-backups"}}]
    container = spec["containers"][0]
    assert container["volumeMounts"] == [{"name": "backups", "mountPath": "/backups"}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    data = b"PK\x05\x06" + b"\x00" * 18  # an (empty) ZIP: what a restore accepts, by content
    local = tmp_path / "shop.zip"
    local.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    argv = upload.receive_command(["kubectl", "--context=prod"], "sales", "odoo-upload-1", "_uploads/s.zip", sha)
    assert argv[:9] == ["kubectl", "--context=prod", "exec", "-i", "-n", "sales", "odoo-upload-1", "-c", "receiver"]
    inner = argv[argv.index("--") + 1:]
    assert inner == ["python", "-m", "odoo_operator.backupjob", "receive", "--storage", "file:///backups", "--file",
                     "_uploads/s.zip", "--sha256", sha]
    volume = tmp_path / "volume"
    here = [sys.executable if part == "python" else part.replace("file:///backups", volume.as_uri()) for part in inner]
    answer = upload.run_receiver(here, local)
    assert answer["sha256"] == sha and (volume / "_uploads" / "s.zip").read_bytes() == data
    with pytest.raises(PluginError, match="the upload failed: .*exists already"):
        upload.run_receiver(here, local)
    wrong = [*here[:-1], "0" * 64]
    wrong[wrong.index("_uploads/s.zip")] = "_uploads/t.zip"
    with pytest.raises(PluginError, match="the upload failed: .*not the 0{64} sent"):
        upload.run_receiver(wrong, local)
    assert sorted(p.name for p in (volume / "_uploads").iterdir()) == ["s.zip"]


# ---- delete --------------------------------------------------------------------------------------
def test_delete_asks_for_the_typed_name(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    fabricate(cluster, namespace, "doomed", ready_status("doomed"), deletionPolicy="Retain")
    wrong = kodoo(cluster, "delete", "doomed", "-n", namespace, input="doome\n")
    failed(wrong, "'doome' does not match 'doomed'", "nothing was deleted")
    assert "Type the name of the database" in wrong.stderr and "deletionPolicy Retain" in wrong.stderr
    assert get_json(cluster, "odb", "doomed", "-n", namespace)
    failed(kodoo(cluster, "delete", "doomed", "-n", namespace, input=""), "no confirmation")
    failed(kodoo(cluster, "delete", "doomed", "-n", namespace, "--confirm", "other"), "does not match")
    assert "deletionTimestamp" not in get_json(cluster, "odb", "doomed", "-n", namespace)["metadata"]

    out = ok(kodoo(cluster, "delete", "doomed", "-n", namespace, "--wait", "--timeout", "60s", input="doomed\n"))
    assert "deleted" in out and not get_json(cluster, "odb", "doomed", "-n", namespace)

    fabricate(cluster, namespace, "scripted")
    ok(kodoo(cluster, "delete", "scripted", "-n", namespace, "--confirm", "scripted"))
    wait_until(lambda: not get_json(cluster, "odb", "scripted", "-n", namespace), 60, "scripted to go")
    failed(kodoo(cluster, "delete", "scripted", "-n", namespace, "--confirm", "scripted"), "not found")


def test_delete_surfaces_rbac_and_the_subscription_policy(cluster: LocalCluster, operator: Any, namespace: str,
                                                          viewer_role: str) -> None:
    created = create_or_keep(cluster, ADMISSION_POLICY)
    try:
        fabricate(cluster, namespace, "linked", subscription={"code": "SUB-7"})

        def enforced() -> bool:
            result = cluster.kubectl("delete", "odb", "linked", "-n", namespace, "--dry-run=server", check=False)
            return result.returncode != 0 and "SUB-7" in result.stderr

        wait_until(enforced, 20, "the admission policy to be enforced")
        refused = kodoo(cluster, "delete", "linked", "-n", namespace, input="linked\n")
        line = failed(refused, f"refused: OdooDatabase {namespace}/linked is linked to subscription SUB-7",
                      "Remove spec.subscription first")
        assert "ValidatingAdmissionPolicy" not in line and "Type the name" not in refused.stderr  # asked first
        assert get_json(cluster, "odb", "linked", "-n", namespace)

        user = f"viewer-{uuid.uuid4().hex[:6]}"
        cluster.kubectl("create", "rolebinding", f"{user}-viewer", f"--clusterrole={viewer_role}",
                        f"--user={user}", "-n", namespace)
        fabricate(cluster, namespace, "kept")
        wait_until(lambda: can_i(cluster, user, "get", "odoodatabases.odoo.dbmanager.io", namespace), 20, "binding")
        failed(kodoo(cluster, f"--as={user}", "delete", "kept", "-n", namespace, "--confirm", "kept"),
               "forbidden", user)
        assert get_json(cluster, "odb", "kept", "-n", namespace)
    finally:
        cluster.kubectl("patch", "odb", "linked", "-n", namespace, "--type=json",
                        "-p", '[{"op":"remove","path":"/spec/subscription"}]', check=False)
        for kind, name in created:
            cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)


# ---- support -------------------------------------------------------------------------------------
def plant_secrets(cluster: LocalCluster, namespace: str, name: str, secret: str, uid: str) -> None:
    labels = {"odoo.dbmanager.io/database": name, "app.kubernetes.io/component": "app"}
    cluster.kubectl("create", "secret", "generic", f"{name}-db", "-n", namespace, f"--from-literal=password={secret}")
    env = [{"name": "DB_PASSWORD", "value": secret}, {"name": "ODOO_ARGS", "value": f"--db_password={secret} -i base"},
           {"name": "PGHOST", "value": "db.example"},
           {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{name}-db", "key": "password"}}}]
    container = {"name": "odoo", "image": "odoo:17.0", "env": env}
    # odoo.conf in the pod template (as the operator writes it), with a secret a user put in spec.app.config.
    conf = {"odoo.dbmanager.io/odoo.conf": f"[options]\nlimit_time_real = 1200\nsmtp_password = {secret}\n"}
    # `kubectl apply` keeps the whole object (secret included) in the last-applied-configuration annotation.
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": {"example.com/api-token": secret, "example.com/owner": "team-shop"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels, "annotations": conf},
                              "spec": {"containers": [container]}}}}))
    pod = yaml.safe_dump({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": f"{name}-pod", "namespace": namespace, "labels": labels,
                                       "annotations": conf},
                          "spec": {"containers": [container], "automountServiceAccountToken": False}})
    wait_until(lambda: cluster.kubectl("apply", "-f", "-", input=pod, check=False).returncode == 0, 30,
               "the Pod to be admitted (the namespace's ServiceAccount)")
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({  # where operators before 2026-12 kept odoo.conf
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-odoo-conf", "namespace": namespace,
                                                               "labels": labels},
        "data": {"odoo.conf": f"[options]\nlimit_time_real = 1200\nsmtp_password = {secret}\n"}}))
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.{uuid.uuid4().hex[:8]}",
                                                          "namespace": namespace},
        "involvedObject": {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "OdooDatabase", "name": name,
                           "namespace": namespace, "uid": uid},
        "type": "Warning", "reason": "ConnectFailed",
        "message": f"cannot connect to postgresql://odoo:{secret}@db.example:5432/{name}",
        "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:00Z", "count": 2,
        "source": {"component": "test"}}))


def bundle_files(path: Path) -> dict[str, str]:
    with tarfile.open(path, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        top = {m.name.split("/", 1)[0] for m in members}
        assert len(top) == 1, top
        return {m.name.split("/", 1)[1]: (archive.extractfile(m) or io.BytesIO()).read().decode() for m in members}


def test_support_bundle_has_the_details_and_never_a_secret(cluster: LocalCluster, operator: Any, namespace: str,
                                                           tmp_path: Path) -> None:
    secret = f"PLANTED-{uuid.uuid4().hex}"
    obj = fabricate(cluster, namespace, "sup", ready_status("sup"), tags=("prod",))
    plant_secrets(cluster, namespace, "sup", secret, obj["metadata"]["uid"])
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DomainMapping",
        "metadata": {"name": "sup-www", "namespace": namespace},
        "spec": {"domain": "www.sup-example.com", "databaseRef": {"name": "sup"}}}))
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "DatabaseBackup",
        "metadata": {"name": "sup-weekly", "namespace": namespace},
        "spec": {"databaseRef": {"name": "sup"}, "schedule": "@weekly"}}))

    output = tmp_path / "bundle.tar.gz"
    out = ok(kodoo(cluster, "support", "sup", "-n", namespace, "-o", str(output)))
    assert str(output) in out and "summary.md" in out
    files = bundle_files(output)
    for name, text in files.items():
        assert secret not in text, f"the planted secret leaked into {name}"
    assert "kind: Secret" not in "".join(files.values())
    assert {"summary.md", "odoodatabase.yaml", "events.yaml", "databasebackups.yaml", "domainmappings.yaml",
            "versions.yaml", "objects/deployments.yaml", "objects/pods.yaml", "objects/configmaps.yaml"} <= set(files)

    summary = files["summary.md"]
    assert summary.startswith("# Support request: Odoo database sup")
    for expected in ("| Phase | Ready |", "http://sup.odoo.localhost", "3.0 MiB", ABSENT_SERVER, "sup is serving",
                     "www.sup-example.com", "sup-weekly", "ConnectFailed", "kubernetes server", "prod"):
        assert expected in summary, expected
    assert "postgresql://odoo:<redacted>@db.example" in summary
    db = yaml.safe_load(files["odoodatabase.yaml"])
    assert db["metadata"]["name"] == "sup" and db["status"]["url"] == "http://sup.odoo.localhost"
    assert condition(db, "Ready")["status"] == "True" and "managedFields" not in db["metadata"]
    deployment = yaml.safe_load(files["objects/deployments.yaml"])["items"][0]
    annotations = deployment["metadata"]["annotations"]
    assert annotations["example.com/api-token"] == "<redacted>" and annotations["example.com/owner"] == "team-shop"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DB_PASSWORD"]["value"] == "<redacted>" and env["PGHOST"]["value"] == "db.example"
    assert env["ODOO_ARGS"]["value"] == "--db_password=<redacted> -i base"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "sup-db", "key": "password"}
    assert "limit_time_real = 1200" in files["objects/configmaps.yaml"]
    conf = deployment["spec"]["template"]["metadata"]["annotations"]["odoo.dbmanager.io/odoo.conf"]
    assert "limit_time_real = 1200" in conf and "smtp_password = <redacted>" in conf
    assert "limit_time_real = 1200" in files["objects/pods.yaml"]
    assert [d["spec"]["domain"] for d in yaml.safe_load(files["domainmappings.yaml"])["items"]] == [
        "www.sup-example.com"]
    versions = yaml.safe_load(files["versions.yaml"])
    # (the harness builds kube-apiserver from its Go module: no release stamp, "v0.0.0-master+…")
    assert versions["kubernetes server"].startswith("v") and versions["kubectl client"].startswith("v1.")

    # A directory instead of a tar.gz.
    folder = tmp_path / "bundle-dir"
    ok(kodoo(cluster, "support", "sup", "-n", namespace, "-o", str(folder)))
    assert (folder / "summary.md").read_text().startswith("# Support request")
    assert not any(secret in p.read_text() for p in folder.rglob("*") if p.is_file())
    failed(kodoo(cluster, "support", "nope", "-n", namespace, "-o", str(tmp_path / "x.tar.gz")), "not found")
    assert not (tmp_path / "x.tar.gz").exists()


def test_help_and_usage_errors(cluster: LocalCluster) -> None:
    for command in ("list", "status", "duplicate", "rename", "backup", "download", "delete", "support"):
        result = subprocess.run([str(PLUGIN), command, "--help"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and "--kubeconfig" in result.stdout and "--namespace" in result.stdout
    missing = cluster.workdir / "no-such-kubeconfig"
    result = subprocess.run([str(PLUGIN), f"--kubeconfig={missing}", "list"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 1 and result.stderr.startswith("error: cannot load the kubeconfig")
    assert "Traceback" not in result.stderr
