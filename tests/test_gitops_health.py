"""What GitOps tools make of our status: Argo CD's health checks (the chart's Lua scripts, run by
`argocd-health` in gopher-lua exactly as Argo CD runs them) and kstatus (`kstatus`, the real
sigs.k8s.io/cli-utils library that Flux and cli-utils appliers wait on). Both programs are built from
hack/tools/gitops by `make setup`.

Samples of every state live in tests/fixtures/gitops/<kind>.yaml with the expected verdicts in their
annotations; the e2e part checks the same verdicts on objects the running operator wrote."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import apply_yaml, condition, get_json, odoo_database, wait_until
from odoo_operator.api.conditions import Condition, merge_conditions, summary
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".cache" / "k8s" / "current"
SCRIPTS = REPO / "charts" / "odoo-db-operator" / "files" / "argocd"
FIXTURES = Path(__file__).parent / "fixtures" / "gitops"
EXPECT = "test.odoo.dbmanager.io/"
GROUP = "odoo.dbmanager.io"
KINDS = ("OdooDatabase", "DatabaseBackup", "DomainMapping", "PostgresServer")
CLUSTER_SCOPED = {"PostgresServer"}


def samples() -> list[dict[str, Any]]:
    return [doc for path in sorted(FIXTURES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


SAMPLES = samples()


def sample_id(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def expected(obj: Mapping[str, Any], what: str) -> str:
    return str(obj["metadata"]["annotations"][EXPECT + what])


def tool(name: str) -> Path:
    path = BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make setup` (hack/setup-k8s.sh builds {name} from hack/tools/gitops)")
    return path


def run_tool(name: str, objects: Sequence[Mapping[str, Any]], *args: str) -> subprocess.CompletedProcess[str]:
    stream = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    return subprocess.run([str(tool(name)), *args], input=stream, text=True, capture_output=True, timeout=60)


def verdicts(name: str, objects: Sequence[Mapping[str, Any]], *args: str) -> dict[str, dict[str, Any]]:
    """One line per object from argocd-health or kstatus, keyed kind/name; any error fails the test."""
    result = run_tool(name, objects, *args)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    errors = [line for line in lines if line.get("error")]
    assert result.returncode == 0 and not errors, f"{name} failed: {errors or result.stderr}"
    assert len(lines) == len(objects), result.stdout
    return {f"{line['kind']}/{line['name']}": line for line in lines}


def argocd_health(objects: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return verdicts("argocd-health", objects, "-dir", str(SCRIPTS))


def kstatus(objects: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return verdicts("kstatus", objects)


@pytest.fixture(scope="module")
def argocd_of_samples() -> dict[str, dict[str, Any]]:
    return argocd_health(SAMPLES)


@pytest.fixture(scope="module")
def kstatus_of_samples() -> dict[str, dict[str, Any]]:
    return kstatus(SAMPLES)


# ---- the scripts and the samples ----------------------------------------------------------------

def crd_for(kind: str) -> dict[str, Any]:
    for path in (REPO / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["group"] == GROUP and crd["spec"]["names"]["kind"] == kind:
            return dict(crd)
    raise AssertionError(f"no CRD of kind {kind} in crds/")


def test_one_health_check_per_kind_reading_fields_the_crds_declare() -> None:
    assert sorted(p.stem for p in SCRIPTS.glob("*.lua")) == sorted(k.lower() for k in KINDS)
    for kind in KINDS:
        status = crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert {"observedGeneration", "conditions"} <= set(status["properties"]), kind
    backup = crd_for("DatabaseBackup")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert {"suspend", "schedule"} <= set(backup["spec"]["properties"])
    assert {"lastSuccessfulTime", "lastFailure"} <= set(backup["status"]["properties"])
    assert "time" in backup["status"]["properties"]["lastFailure"]["properties"]
    database = crd_for("OdooDatabase")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert "suspended" in database["spec"]["properties"]["app"]["properties"]


def test_samples_cover_every_state_of_every_kind() -> None:
    seen: dict[str, set[tuple[str, str]]] = {kind: set() for kind in KINDS}
    for obj in SAMPLES:
        seen[obj["kind"]].add((expected(obj, "argocd-health"), expected(obj, "kstatus")))
        assert ("namespace" in obj["metadata"]) == (obj["kind"] not in CLUSTER_SCOPED), sample_id(obj)
    for kind, pairs in seen.items():
        argo = {a for a, _ in pairs}
        assert {"Healthy", "Progressing", "Degraded"} <= argo, kind
        assert {"Current", "InProgress", "Failed"} <= {k for _, k in pairs}, kind
        if kind != "PostgresServer":
            assert "Suspended" in argo, kind
    assert len({sample_id(obj) for obj in SAMPLES}) == len(SAMPLES), "sample names repeat within a kind"


@pytest.mark.parametrize("obj", SAMPLES, ids=sample_id)
def test_argocd_health_of_sample(obj: dict[str, Any], argocd_of_samples: dict[str, dict[str, Any]]) -> None:
    got = argocd_of_samples[sample_id(obj)]
    assert got["status"] == expected(obj, "argocd-health"), got
    assert expected(obj, "argocd-message") in got["message"], got


@pytest.mark.parametrize("obj", SAMPLES, ids=sample_id)
def test_kstatus_of_sample(obj: dict[str, Any], kstatus_of_samples: dict[str, dict[str, Any]]) -> None:
    got = kstatus_of_samples[sample_id(obj)]
    assert got["status"] == expected(obj, "kstatus"), got


def from_summary(kind: str, state: str, reason: str, message: str) -> dict[str, Any]:
    """An object whose conditions are what the operator's own summary() and merge_conditions() write."""
    meta: dict[str, Any] = {"name": f"{state}-{reason.lower()}", "generation": 7}
    if kind not in CLUSTER_SCOPED:
        meta["namespace"] = "shop"
    desired: tuple[Condition, ...] = summary(state, reason, message)
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": kind, "metadata": meta, "spec": {},
            "status": {"observedGeneration": 7, "conditions": merge_conditions(None, desired, 7)}}


SUMMARY_STATES = [
    ("ready", "Done", "all good", "Healthy", "Current"),
    ("progressing", "Working", "on it", "Progressing", "InProgress"),
    ("stalled", "Broken", "a human is needed", "Degraded", "Failed"),
]


@pytest.mark.parametrize("kind", KINDS)
def test_what_summary_writes_reads_the_same_in_both_tools(kind: str) -> None:
    objects = [from_summary(kind, state, reason, message) for state, reason, message, _, _ in SUMMARY_STATES]
    argo, kst = argocd_health(objects), kstatus(objects)
    for obj, (_, _, message, want_argo, want_kstatus) in zip(objects, SUMMARY_STATES, strict=True):
        key = sample_id(obj)
        assert argo[key]["status"] == want_argo and message in argo[key]["message"], argo[key]
        assert kst[key]["status"] == want_kstatus, kst[key]


def test_harness_gives_scripts_only_the_libraries_argocd_gives(tmp_path: Path) -> None:
    """argocd-cm scripts get base, table and package: a script using string.* fails in Argo CD, and here."""
    script = tmp_path / "health.lua"
    script.write_text('return {status = "Healthy", message = string.format("%s", obj.kind)}\n')
    obj = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "OdooDatabase", "metadata": {"name": "x", "namespace": "y"}}
    result = run_tool("argocd-health", [obj], "-script", str(script))
    assert result.returncode == 1 and "string" in json.loads(result.stdout)["error"], result.stdout
    ok = run_tool("argocd-health", [obj], "-script", str(script), "-open-libs")
    assert json.loads(ok.stdout)["status"] == "Healthy", ok.stdout
    script.write_text('return {status = "Fine"}\n')  # Argo CD turns an unknown status into Unknown
    assert json.loads(run_tool("argocd-health", [obj], "-script", str(script)).stdout)["status"] == "Unknown"


# ---- end to end: what the running operator writes --------------------------------------------------

def judged(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(kstatus, Argo CD health, Argo CD message) of one live object."""
    key = sample_id(obj)
    argo = argocd_health([obj])[key]
    return kstatus([obj])[key]["status"], argo["status"], argo["message"]


def wait_ready_reason(cluster: LocalCluster, name: str, namespace: str, reason: str,
                      timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", name, "-n", namespace)
        return obj if condition(obj, "Ready").get("reason") == reason else None
    return dict(wait_until(check, timeout, f"{namespace}/{name} Ready reason {reason}"))


@pytest.fixture
def late_server(cluster: LocalCluster, namespace: str) -> Iterator[str]:
    """The name of a PostgresServer that does not exist yet; deleted after the test's databases."""
    name = f"gitops-{namespace}"
    yield name
    cluster.kubectl("delete", "odb", "--all", "-n", namespace, "--timeout=90s", check=False, timeout=120)
    cluster.kubectl("delete", "pgs", name, "--ignore-not-found", "--timeout=60s", check=False, timeout=90)


@pytest.mark.e2e
def test_database_is_in_progress_until_ready_then_current_and_healthy(
        cluster: LocalCluster, operator: Any, namespace: str, late_server: str) -> None:
    # Its PostgresServer does not exist yet: the operator retries (Reconciling=True, ServerNotFound).
    apply_yaml(cluster, odoo_database("gitops", namespace, server=late_server))
    obj = wait_ready_reason(cluster, "gitops", namespace, "ServerNotFound")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    kst, argo, message = judged(obj)
    assert (kst, argo) == ("InProgress", "Progressing") and message.startswith("ServerNotFound: "), message

    # The server appears (the harness's PostgreSQL again, not default): the database becomes Ready.
    server = get_json(cluster, "pgs", "local")
    apply_yaml(cluster, yaml.safe_dump({"apiVersion": f"{GROUP}/v1alpha1", "kind": "PostgresServer",
                                        "metadata": {"name": late_server},
                                        "spec": {**server["spec"], "default": False}}))
    obj = wait_ready_reason(cluster, "gitops", namespace, "Ready")
    assert condition(obj, "Ready")["status"] == "True"
    kst, argo, message = judged(obj)
    assert (kst, argo) == ("Current", "Healthy") and "is serving" in message, message


@pytest.mark.e2e
def test_stalled_database_is_failed_and_degraded(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    apply_yaml(cluster, odoo_database("gitops-bad", namespace, version="99.0"))  # no image for that version
    obj = wait_ready_reason(cluster, "gitops-bad", namespace, "InvalidSpec", timeout=60)
    assert condition(obj, "Stalled")["status"] == "True"
    kst, argo, message = judged(obj)
    assert (kst, argo) == ("Failed", "Degraded"), (kst, argo, message)
    assert message.startswith("InvalidSpec: no image is configured for Odoo 99.0"), message


@pytest.mark.e2e
@pytest.mark.parametrize("example", ["odoodatabase.yaml", "domainmapping.yaml", "backup-now.yaml",
                                     "postgresserver.yaml"])
def test_a_new_object_is_in_progress_before_the_operator_writes(cluster: LocalCluster, example: str) -> None:
    """The CRDs default status.observedGeneration to 0: kstatus (Flux, `kubectl wait`) and Argo CD see a
    just-created object as InProgress / Progressing, never Current before the operator has looked."""
    docs = [d for d in yaml.safe_load_all((REPO_ROOT / "examples" / example).read_text())
            if d and d["apiVersion"].startswith("odoo.dbmanager.io/")]  # not the example's Secret
    (doc,) = docs
    obj = json.loads(cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                                     input=json.dumps(doc)).stdout)
    assert obj["status"] == {"observedGeneration": 0}
    kst, argo, message = judged(obj)
    assert (kst, argo) == ("InProgress", "Progressing"), (kst, argo, message)
