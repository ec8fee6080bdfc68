"""The shipped install: the Helm chart, the manifests generated from it, and the Dockerfile.

Without a cluster: `helm lint`, renderings with the default values and with every option on
(charts/odoo-db-operator/ci/all-options-values.yaml), the policy templates against manifests/, the
generated files against their sources (hack/generate-manifests.sh --check, CRD copies byte for byte),
the Dockerfile's shape (it is not built here: no Docker daemon).
End to end (real kube-apiserver): both renderings and `-k manifests/install` pass a server-side dry run,
and the operator's RBAC, applied for real, grants what the operator does and nothing of the kind it never does.

helm is built by `make setup` from hack/tools/helm into .cache/k8s/current/helm.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from odoo_operator import main as operator_main
from odoo_operator.api.model import parse_database_backup, parse_odoo_database
from odoo_operator.config import Settings
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster
from odoo_operator.kube import RESOURCES
from odoo_operator.specs.backup import build_backup_job, build_reporter_rbac

CHART = REPO_ROOT / "charts" / "odoo-db-operator"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
HELM = REPO_ROOT / ".cache" / "k8s" / "current" / "helm"
CRDS = REPO_ROOT / "crds"
INSTALL = REPO_ROOT / "manifests" / "install"
DOCKERFILE = REPO_ROOT / "Dockerfile"
KUBE_VERSION = "1.36.0"
RELEASE = "odoo-db-operator"
ARGOCD_KINDS = ("OdooDatabase", "DatabaseBackup", "DomainMapping", "PostgresServer")
# Kinds whose CRDs a cluster may lack; each must be off by default.
OPTIONAL_KINDS = {"ServiceMonitor", "PrometheusRule"}

Obj = dict[str, Any]


# ---- helpers -------------------------------------------------------------------------------------
def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"helm not found at {HELM}: run `make setup` (it builds helm from hack/tools/helm)")
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@functools.cache
def render_text(values: Path | None = None, release: str = RELEASE, namespace: str = "odoo-system",
                sets: tuple[str, ...] = ()) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    if values:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    return helm(*args).stdout


def render(values: Path | None = None, release: str = RELEASE, namespace: str = "odoo-system",
           sets: tuple[str, ...] = ()) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(render_text(values, release, namespace, sets)) if doc]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} rendered"
    return found[0]


def container(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env_of(objs: list[Obj]) -> dict[str, Any]:
    """name -> value (plain values) or valueFrom."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objs)["env"]}


def as_list(objs: list[Obj]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})


def strip_labels(obj: Obj, labels: set[str]) -> Obj:
    copy = json.loads(json.dumps(obj))
    for key in labels:
        copy["metadata"].get("labels", {}).pop(key, None)
    return copy


def grants(rules: list[Obj], group: str, resource: str, verb: str) -> bool:
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r["verbs"]
               for r in rules)


# ---- lint and renderings -------------------------------------------------------------------------
@pytest.mark.parametrize("values", [None, ALL_OPTIONS], ids=["defaults", "all-options"])
def test_helm_lint(values: Path | None) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION] + (["-f", str(values)] if values else [])
    result = helm(*args)
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == ("0.1.0", "0.1.0")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["metrics"]["serviceMonitor"]["enabled"] is False
    assert values["metrics"]["prometheusRule"]["enabled"] is False
    assert values["argocd"]["healthChecks"]["enabled"] is False


def test_default_rendering() -> None:
    objs = render()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service",
                            "Role", "RoleBinding",  # deleting template Secrets in the release namespace
                            "Deployment", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                            "ClusterRole", "ClusterRole", "ClusterRole", "NetworkPolicy",
                            # tenantPolicies: routes (4), lifetime (1), backupIdentity (5)
                            *["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * 11]), kinds
    assert not OPTIONAL_KINDS & set(kinds)

    deployment = one(objs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(objs)
    assert deployment["spec"]["replicas"] == 2
    assert c["image"] == "odoo-db-operator:0.1.0"
    assert c["args"] == ["--liveness=http://0.0.0.0:8080/healthz"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    env = env_of(objs)
    assert env["ODOO_OPERATOR_METRICS_PORT"] == "9090"
    assert env["ODOO_OPERATOR_METRICS_ADDRESS"] == "0.0.0.0"  # Prometheus scrapes the Pod IP
    assert env["ODOO_OPERATOR_LEADER_ELECTION"] == "true"
    assert env["ODOO_OPERATOR_LEASE_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["ODOO_OPERATOR_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["ODOO_OPERATOR_IMAGE"] == c["image"]  # the backup Jobs run the operator's own image
    assert "ODOO_OPERATOR_GATEWAY" not in env and "ODOO_OPERATOR_IMAGES" not in env

    assert pod["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"}}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]

    service = one(objs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    lease_role = one(objs, "Role", f"{RELEASE}-leader-election")
    assert lease_role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                    "verbs": ["get", "create", "update"]}]


def test_rendered_settings_are_what_the_operator_reads() -> None:
    """The chart's env, fed to config.Settings as the operator will see it."""
    default = Settings.from_env({k: v for k, v in env_of(render()).items() if isinstance(v, str)})
    assert default.base_domain == "odoo.localhost"
    assert default.operator_image == "odoo-db-operator:0.1.0"
    assert (default.backup_pvc, default.backup_pvc_size) == ("odoo-backups", "20Gi")
    assert default.metrics_port == 9090 and default.leader_election is True
    assert default.metrics_address == "0.0.0.0"
    assert not default.gateway and not default.allow_wildcard_domains and not default.cluster_issuer

    env = env_of(render(ALL_OPTIONS))
    full = Settings.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert full.base_domain == "odoo.example.com"
    assert full.ingress_class == "nginx"
    assert full.gateway == "gateway-system/public"
    assert full.cluster_issuer == "letsencrypt"
    assert full.allow_wildcard_domains is True
    assert dict(full.images) == {"17.0": "registry.example.com/odoo:17.0-20250101",
                                 "18.0": "registry.example.com/odoo:18.0-20250101"}
    assert full.operator_image == "registry.example.com/platform/odoo-db-operator-jobs:0.1.0"
    assert full.storage_class == "fast-ssd"
    assert (full.backup_pvc, full.backup_pvc_size) == ("tenant-backups", "50Gi")
    assert full.max_duplicates == 3  # `env` passes any other setting through
    assert full.metrics_address == "::"

    # Every ODOO_OPERATOR_* variable the chart sets is one the operator reads.
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "operator" / "odoo_operator").glob("*.py"))
    for name in env:
        assert f'"{name.removeprefix("ODOO_OPERATOR_")}"' in source or name in source, f"{name} is read by nothing"


def test_all_options_rendering() -> None:
    objs = render(ALL_OPTIONS, release="shop", namespace="platform")
    kinds = {o["kind"] for o in objs}
    assert {"PodDisruptionBudget", "ServiceMonitor", "ConfigMap", "PostgresServer"} <= kinds
    assert container(objs)["image"] == "registry.example.com/platform/odoo-db-operator:0.1.0-rc1"
    assert one(objs, "Deployment")["spec"]["replicas"] == 3

    server = one(objs, "PostgresServer")
    assert server["metadata"]["name"] == "main" and "namespace" not in server["metadata"]
    assert server["spec"] == {"host": "postgres.db.svc", "port": 5433, "sslMode": "require", "default": True,
                              "maxDatabases": 500, "adminSecretRef": {"namespace": "db", "name": "pg-admin"}}

    health = one(objs, "ConfigMap", "shop-argocd-health")
    assert set(health["data"]) == {f"resource.customizations.health.odoo.dbmanager.io_{k}" for k in ARGOCD_KINDS}
    for kind in ARGOCD_KINDS:
        lua = (CHART / "files" / "argocd" / f"{kind.lower()}.lua").read_text()
        assert health["data"][f"resource.customizations.health.odoo.dbmanager.io_{kind}"].strip() == lua.strip()

    monitor = one(objs, "ServiceMonitor")
    service = one(objs, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == one(objs, "Deployment")["spec"]["selector"]


def test_one_replica_may_run_without_leader_election() -> None:
    objs = render(sets=("leaderElection.enabled=false", "replicaCount=1"))
    assert one(objs, "Deployment")["spec"]["replicas"] == 1
    assert env_of(objs)["ODOO_OPERATOR_LEADER_ELECTION"] == "false"
    assert not [o for o in objs if o["kind"] == "Role" and "leases" in str(o["rules"])]  # no Lease, no Role on Leases


def egress_ports(policy: Obj) -> list[set[tuple[Any, str]]]:
    return [{(p["port"], p["protocol"]) for p in rule["ports"]} for rule in policy["spec"]["egress"]]


def test_network_policy_of_the_operator() -> None:
    objs = render()
    policy = one(objs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    # In: only the metrics port (by name, as the container declares it); by default from anywhere in the cluster.
    assert spec["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}],
                                "from": [{"namespaceSelector": {}, "podSelector": {}}]}]
    assert "metrics" in {p["name"] for p in container(objs)["ports"]}
    # Out: the API server, PostgreSQL, DNS, the Odoo app Pods (the users' sync); nothing else.
    assert egress_ports(policy) == [{(443, "TCP"), (6443, "TCP"), (8443, "TCP")}, {(5432, "TCP")},
                                    {(53, "UDP"), (53, "TCP")}, {(8069, "TCP")}]
    assert spec["egress"][3]["to"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
        "app.kubernetes.io/managed-by": "odoo-db-operator", "app.kubernetes.io/component": "app"}}}]
    assert [peer["ipBlock"]["cidr"] for peer in spec["egress"][0]["to"]] == ["0.0.0.0/0", "::/0"]
    assert "to" not in spec["egress"][2]  # any resolver (node-local caches too)

    objs = render(ALL_OPTIONS, release="shop", namespace="platform")
    spec = one(objs, "NetworkPolicy")["spec"]
    assert spec["ingress"][0]["from"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    assert egress_ports(one(objs, "NetworkPolicy")) == [{(6443, "TCP")}, {(5432, "TCP"), (5433, "TCP")},
                                                        {(53, "UDP"), (53, "TCP")}, {(8069, "TCP")},
                                                        {(6432, "TCP")}]
    assert spec["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert spec["egress"][2]["to"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "kube-system"}}}]

    assert not [o for o in render(sets=("networkPolicy.enabled=false",)) if o["kind"] == "NetworkPolicy"]


def test_default_server_namespace_defaults_to_the_release_namespace() -> None:
    objs = render(namespace="databases", sets=("defaultPostgresServer.enabled=true",
                                               "defaultPostgresServer.host=pg.example.com"))
    spec = one(objs, "PostgresServer")["spec"]
    assert spec["adminSecretRef"] == {"namespace": "databases", "name": "postgres-admin"}
    assert spec["default"] is True and "maxDatabases" not in spec


@pytest.mark.parametrize(("sets", "message"), [
    (("operator.gateway=public",), "operator.gateway must be namespace/name"),
    (("defaultPostgresServer.enabled=true",), "defaultPostgresServer.host is required"),
    (("leaderElection.enabled=false",), "replicaCount=2 needs leaderElection.enabled=true"),
    (("leaderElection.enabled=false", "replicaCount=3"), "replicaCount=3 needs leaderElection.enabled=true"),
])
def test_invalid_values_are_refused(sets: tuple[str, ...], message: str) -> None:
    args = ["template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION]
    for item in sets:
        args += ["--set", item]
    result = helm(*args, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


# ---- one source: policies, CRDs, generated manifests ---------------------------------------------
@pytest.mark.parametrize("manifest", ["admission-policy.yaml", "rbac-user-roles.yaml", "admission-policy-routes.yaml",
                                      "admission-policy-lifetime.yaml", "admission-policy-backup-identity.yaml",
                                      "admission-policy-plans.yaml"])
def test_policy_templates_equal_the_manifests(manifest: str) -> None:
    """manifests/ and the chart ship the same policy objects; the chart only adds its labels."""
    rendered = {(o["kind"], o["metadata"]["name"]): o for o in render()}
    chart_labels = set(one(render(), "Deployment")["metadata"]["labels"])
    documents = [d for d in yaml.safe_load_all((REPO_ROOT / "manifests" / manifest).read_text()) if d]
    assert documents
    for doc in documents:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key in rendered, f"{key} from manifests/{manifest} is not in the chart"
        assert strip_labels(rendered[key], chart_labels) == strip_labels(doc, chart_labels), key
        assert doc["metadata"].get("labels", {}).items() <= rendered[key]["metadata"]["labels"].items(), key


def test_crd_copies_are_byte_for_byte() -> None:
    sources = sorted(p.name for p in CRDS.glob("*.yaml"))
    assert sources
    for copies in (CHART / "crds", INSTALL / "crds"):
        assert sorted(p.name for p in copies.glob("*.yaml")) == sources, \
            f"{copies} differs from crds/: run hack/generate-manifests.sh"
        for name in sources:
            assert (copies / name).read_bytes() == (CRDS / name).read_bytes(), \
                f"{copies / name} differs from crds/{name}: run hack/generate-manifests.sh"


def test_generated_manifests_are_up_to_date() -> None:
    helm("version")  # a clear failure when helm is missing
    result = subprocess.run(["bash", str(REPO_ROOT / "hack" / "generate-manifests.sh"), "--check"],
                            capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                                              "HELM": str(HELM)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    kustomization = yaml.safe_load((INSTALL / "kustomization.yaml").read_text())
    assert kustomization["resources"] == (["namespace.yaml"] + [f"crds/{p.name}" for p in sorted(CRDS.glob("*.yaml"))]
                                          + ["operator.yaml"])
    # `make dev` runs `kubectl apply -f manifests` (not recursive): no kustomization there (kubectl would try to
    # apply it) and no operator Deployment (make dev runs the operator as a local process).
    top = [p for p in (REPO_ROOT / "manifests").iterdir() if p.is_file()]
    assert "kustomization.yaml" not in {p.name for p in top}
    assert not [d for p in top for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] == "Deployment"]


# ---- the operator's RBAC, statically -------------------------------------------------------------
def test_cluster_role_covers_every_kind_the_operator_touches() -> None:
    objs = render()
    rules = one(objs, "ClusterRole", RELEASE)["rules"]
    for (api_version, kind), (plural, _) in RESOURCES.items():
        if kind == "ConfigMap":
            continue  # only the kubectl plugin's support bundle reads them, as its user
        group = api_version.rpartition("/")[0]
        verbs = ["create"] if kind == "Event" else ["get"]
        for verb in verbs:
            assert grants(rules, group, plural, verb), f"{verb} {plural}.{group} ({kind}) is not granted"
    for kind, (api_version, plural) in operator_main.CHILD_KINDS.items():
        group = api_version.rpartition("/")[0]
        for verb in ("list", "watch"):
            assert grants(rules, group, plural, verb), f"kopf watches {kind}: {verb} {plural} is not granted"
    # Nothing cluster-admin-like.
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
        assert not {"escalate", "bind", "impersonate", "deletecollection", "update"} & set(rule["verbs"]), rule
        # Pods: read only (an upgrade waits for the app's Pods to go and reads the upgrade Job's termination
        # message); never created, exec'd into or their logs read.
        assert "pods" not in rule["resources"] or set(rule["verbs"]) <= {"get", "list"}, rule
        assert not {"pods/exec", "pods/log", "pods/attach"} & set(rule["resources"]), rule
        if "namespaces" in rule["resources"] or "secrets" in rule["resources"]:
            assert rule["resources"] in (["namespaces"], ["secrets"]), rule
            assert not {"list", "watch", "delete"} & set(rule["verbs"]), rule  # by name only
    assert "Secret" not in operator_main.CHILD_KINDS  # watching would need list/watch on every Secret


# ---- the Dockerfile (not built here: there is no Docker daemon) ----------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_shape() -> None:
    instructions = dockerfile_instructions()
    args = dict(re.match(r"(\w+)=(\S+)", value).groups()  # type: ignore[union-attr]
                for op, value in instructions if op == "ARG" and "=" in value)

    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)

    bases = [expand(value.split()[0]) for op, value in instructions if op == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        # A full version tag of the slim Python 3.11 image (or a digest), never a moving tag.
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    runs = " ".join(expand(value) for op, value in instructions if op == "RUN")
    assert re.search(r"postgresql-client-15\b", runs.replace('"', "")), "PostgreSQL client major not pinned to 15"
    assert "pip install" in runs and not re.search(r"pip install[^&]*(-e|--editable)\b", runs), "non-editable install"
    users = [value for op, value in instructions if op == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER must be numeric and non-root: {users[-1]}"
    env = " ".join(value for op, value in instructions if op == "ENV")
    assert "HOME=/tmp" in env and "TMPDIR=/tmp" in env
    entrypoints = [json.loads(value) for op, value in instructions if op == "ENTRYPOINT"]
    assert entrypoints[-1] == ["odoo-db-operator"]
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert re.search(r'^odoo-db-operator = "odoo_operator\.__main__:main"$', pyproject, re.M)
    # .dockerignore keeps what the image copies.
    ignore = (REPO_ROOT / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "README.md", "operator/"):
        assert f"!{needed}" in ignore, needed


def test_backup_jobs_command_runs_in_this_image() -> None:
    """The Jobs run `python -m odoo_operator.backupjob` in the operator image: `python` must be the interpreter
    the package is installed for (the venv first on PATH), with pg_dump/psql 15 next."""
    instructions = dockerfile_instructions()
    assert backup_job()["spec"]["template"]["spec"]["containers"][0]["command"] == \
        ["python", "-m", "odoo_operator.backupjob"]
    path = next(value for op, value in instructions if op == "ENV" and "PATH=" in value)
    assert re.search(r'PATH="/opt/venv/bin:/usr/lib/postgresql/\$\{PG_MAJOR\}/bin:', path), path
    assert any(op == "COPY" and "/opt/venv /opt/venv" in value for op, value in instructions)


# ---- end to end: the real API server -------------------------------------------------------------
@pytest.fixture
def chart_namespace(cluster: LocalCluster) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.mark.e2e
@pytest.mark.parametrize("values", [None, ALL_OPTIONS], ids=["defaults", "all-options"])
def test_rendering_passes_server_side_dry_run(cluster: LocalCluster, chart_namespace: str,
                                              values: Path | None) -> None:
    objs = render(values, release="dry", namespace=chart_namespace)
    # Our CRDs are installed by the session fixture; the chart's copies must be accepted as they are.
    crds = [yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))]
    result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-",
                             input=as_list(crds))
    assert result.stdout.count("serverside-applied (server dry run)") == len(crds), result.stdout
    applicable = [o for o in objs if o["kind"] not in OPTIONAL_KINDS]
    result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-",
                             input=as_list(applicable), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(applicable), result.stdout


@pytest.mark.e2e
def test_tenant_network_policy_example_is_valid(cluster: LocalCluster, chart_namespace: str) -> None:
    """manifests/network-policies/ is an example to adapt, but as shipped the API server accepts it."""
    path = REPO_ROOT / "manifests" / "network-policies" / "tenant-namespace.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert {d["kind"] for d in docs} == {"NetworkPolicy"} and len(docs) == 4
    result = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-n", chart_namespace, "-f", str(path),
                             check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("serverside-applied (server dry run)") == len(docs), result.stdout


@pytest.mark.e2e
def test_kustomize_install_passes_server_side_dry_run(cluster: LocalCluster) -> None:
    result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                             "-k", str(INSTALL), check=False)
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/odoo-db-operator serverside-applied (server dry run)" in result.stdout


def access_reviews(cluster: LocalCluster, user: str, checks: list[tuple[str, str, str, str | None]]
                   ) -> list[bool]:
    """One SubjectAccessReview per (verb, group, resource[/subresource], namespace), in one kubectl call."""
    items = []
    for verb, group, resource, namespace in checks:
        resource, _, sub = resource.partition("/")
        attributes = {"verb": verb, "group": group, "resource": resource, "subresource": sub}
        if namespace:
            attributes["namespace"] = namespace
        items.append({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "spec": {"user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
                               "resourceAttributes": attributes}})
    out = cluster.kubectl("create", "-f", "-", "-o", 'jsonpath={.status.allowed}{"\\n"}', input=as_list(items))
    answers = out.stdout.split()
    assert len(answers) == len(checks), out.stdout
    return [answer == "true" for answer in answers]


# (verb, API group, resource, in a tenant namespace? else cluster-wide) -> allowed
OPERATOR_MAY = [
    ("watch", "odoo.dbmanager.io", "odoodatabases", False),
    ("patch", "odoo.dbmanager.io", "odoodatabases", True),
    ("delete", "odoo.dbmanager.io", "odoodatabases", True),
    ("patch", "odoo.dbmanager.io", "odoodatabases/status", True),
    ("create", "odoo.dbmanager.io", "databasebackups", True),
    ("get", "odoo.dbmanager.io", "databasebackups/status", True),
    ("patch", "odoo.dbmanager.io", "databasebackups/status", True),
    ("patch", "odoo.dbmanager.io", "domainmappings/status", True),
    ("patch", "odoo.dbmanager.io", "postgresservers/status", False),
    ("create", "odoo.dbmanager.io", "domainclaims", False),
    ("delete", "odoo.dbmanager.io", "domainclaims", False),
    ("list", "apiextensions.k8s.io", "customresourcedefinitions", False),
    ("get", "", "secrets", True),  # by name: its own <name>-db/-admin, a PostgresServer's admin Secret
    ("create", "", "secrets", True),
    ("patch", "", "secrets", True),
    ("get", "", "namespaces", False),  # labels, for PostgresServer spec.allowedNamespaces.selector
    ("create", "", "persistentvolumeclaims", True),
    ("create", "", "events", True),
    ("create", "events.k8s.io", "events", True),
    ("patch", "", "serviceaccounts", True),
    ("create", "rbac.authorization.k8s.io", "roles", True),
    ("patch", "rbac.authorization.k8s.io", "rolebindings", True),
    ("patch", "apps", "deployments", True),
    ("create", "batch", "jobs", True),
    ("delete", "batch", "jobs", True),
    ("patch", "batch", "cronjobs", True),
    ("patch", "networking.k8s.io", "ingresses", True),
    ("patch", "gateway.networking.k8s.io", "httproutes", True),
]
OPERATOR_MAY_NOT = [
    ("delete", "", "namespaces", False),
    ("create", "", "namespaces", False),
    ("create", "", "pods", True),
    ("create", "", "pods/exec", True),
    ("delete", "", "secrets", True),
    ("list", "", "secrets", True),
    ("watch", "", "secrets", True),
    ("list", "", "secrets", False),
    ("watch", "", "secrets", False),
    ("list", "", "namespaces", False),
    ("watch", "", "configmaps", False),  # no ConfigMaps at all: odoo.conf is in each pod's template
    ("get", "", "configmaps", True),
    ("patch", "", "configmaps", True),
    ("update", "", "secrets", True),
    ("deletecollection", "", "secrets", True),
    ("delete", "apps", "deployments", True),
    ("create", "rbac.authorization.k8s.io", "clusterroles", False),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", False),
    ("escalate", "rbac.authorization.k8s.io", "roles", True),
    ("bind", "rbac.authorization.k8s.io", "roles", True),
    ("impersonate", "", "serviceaccounts", True),
    ("create", "", "serviceaccounts/token", True),
    ("get", "", "nodes", False),
    ("create", "odoo.dbmanager.io", "postgresservers", False),
    ("update", "odoo.dbmanager.io", "odoodatabases", True),
    ("delete", "odoo.dbmanager.io", "postgresservers", False),
    ("update", "apiextensions.k8s.io", "customresourcedefinitions", False),
    ("create", "admissionregistration.k8s.io", "validatingadmissionpolicies", False),
    ("get", "coordination.k8s.io", "leases", True),  # only in its own namespace
]


@pytest.fixture
def operator_rbac(cluster: LocalCluster, chart_namespace: str) -> Iterator[tuple[str, str]]:
    """The chart's ServiceAccount, ClusterRole(Binding) and lease Role(Binding), applied for real.
    Yields (service account user name, tenant namespace)."""
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    objs = [o for o in render(release=release, namespace=chart_namespace)
            if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")
            or (o["kind"] in ("ClusterRole", "ClusterRoleBinding") and o["metadata"]["name"].startswith(release))]
    assert len(objs) == 7, [o["kind"] for o in objs]  # + the template Role(Binding) in the release namespace
    tenant = f"{chart_namespace}-tenant"
    cluster.kubectl("create", "namespace", tenant)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=as_list(objs))
    sa = one(objs, "ServiceAccount")["metadata"]["name"]
    try:
        yield f"system:serviceaccount:{chart_namespace}:{sa}", tenant
    finally:
        for kind in ("clusterrolebinding", "clusterrole"):
            cluster.kubectl("delete", kind, f"{release}-odoo-db-operator", "--ignore-not-found", check=False)
        cluster.kubectl("delete", "namespace", tenant, "--wait=false", "--ignore-not-found", check=False)


@pytest.mark.e2e
def test_operator_rbac_is_least_privilege(cluster: LocalCluster, chart_namespace: str,
                                          operator_rbac: tuple[str, str]) -> None:
    user, tenant = operator_rbac
    checks = [(verb, group, resource, tenant if namespaced else None)
              for verb, group, resource, namespaced in OPERATOR_MAY + OPERATOR_MAY_NOT]
    checks.append(("update", "coordination.k8s.io", "leases", chart_namespace))  # its own Lease
    # Its template Jobs' Secrets, in its own namespace only.
    checks += [("delete", "", "secrets", chart_namespace), ("delete", "", "configmaps", chart_namespace),
               ("delete", "", "secrets", tenant), ("delete", "", "configmaps", tenant)]
    answers = access_reviews(cluster, user, checks)
    expected = [True] * len(OPERATOR_MAY) + [False] * len(OPERATOR_MAY_NOT) + [True, True, False, False, False]
    wrong = [(check, answer) for check, answer, want in zip(checks, answers, expected, strict=True) if answer != want]
    assert not wrong, f"unexpected answers (check, allowed): {wrong}"

    # The same question the way an administrator asks it.
    def can_i(*args: str) -> str:
        return cluster.kubectl("auth", "can-i", *args, f"--as={user}", check=False).stdout.strip()

    assert can_i("delete", "namespaces") == "no"
    assert can_i("list", "secrets", "--all-namespaces") == "no"
    assert can_i("get", "secrets", "-n", tenant) == "yes"  # by name; see the ClusterRole's comment
    assert can_i("patch", "databasebackups.odoo.dbmanager.io", "--subresource=status", "-n", tenant) == "yes"


@pytest.mark.e2e
def test_operator_can_apply_what_it_builds(cluster: LocalCluster, operator_rbac: tuple[str, str]) -> None:
    """As its ServiceAccount, server-side apply the backup Jobs' ServiceAccount, Role and RoleBinding (for real:
    RBAC lets it grant them only because it holds those permissions itself) and create a backup Job (dry run)."""
    user, tenant = operator_rbac
    objs = build_reporter_rbac(tenant)
    result = cluster.kubectl("apply", "--server-side", "--field-manager=odoo-db-operator", f"--as={user}",
                             "-f", "-", input=as_list(objs), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("serverside-applied") == 3, result.stdout

    job = backup_job(tenant)
    result = cluster.kubectl("create", "--dry-run=server", f"--as={user}", "-f", "-", input=json.dumps(job),
                             check=False)
    assert result.returncode == 0, result.stderr

    # A Role granting more than the operator holds is refused (no escalate/bind).
    greedy = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": "greedy", "namespace": tenant},
              "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]}]}
    result = cluster.kubectl("apply", "--server-side", "--dry-run=server", f"--as={user}", "-f", "-",
                             input=json.dumps(greedy), check=False)
    assert result.returncode != 0 and "attempting to grant RBAC permissions not currently held" in result.stderr, \
        result.stderr


def backup_job(namespace: str = "shop-ns") -> Obj:
    """A one-shot backup Job exactly as the operator builds it."""
    settings = Settings()
    db = parse_odoo_database({"metadata": {"name": "shop", "namespace": namespace, "uid": "uid-1", "generation": 1},
                              "spec": {"version": "17.0"}}, settings)
    backup = parse_database_backup({"metadata": {"name": "shop-now", "namespace": namespace, "uid": "uid-2"},
                                    "spec": {"databaseRef": {"name": "shop"}}}, settings)
    return build_backup_job(backup, db, db.database_name, settings)


def test_templates_are_on_with_their_jobs_in_the_release_namespace_and_a_role_there_only() -> None:
    objs = render(namespace="platform")
    env = env_of(objs)
    assert (env["ODOO_OPERATOR_TEMPLATES"], env["ODOO_OPERATOR_TEMPLATE_NAMESPACE"]) == ("true", "platform")
    role = next(o for o in objs if o["kind"] == "Role" and o["metadata"]["name"].endswith("-templates"))
    assert role["metadata"]["namespace"] == "platform"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]}]
    # Cluster-wide, the operator still may not delete Secrets.
    for cluster_role in (o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("operator")):
        for rule in cluster_role["rules"]:
            assert not ("secrets" in rule.get("resources", []) and "delete" in rule.get("verbs", [])), rule

    off = render(sets=("operator.templates=false",))
    assert not [o for o in off if o["kind"] == "Role" and o["metadata"]["name"].endswith("-templates")]
    assert env_of(off)["ODOO_OPERATOR_TEMPLATES"] == "false"
