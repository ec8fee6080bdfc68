"""Prometheus metrics (operator/odoo_operator/runtime/metrics.py) scraped from the session operator during a
real flow, and the example PrometheusRule (plain manifest and Helm chart): equal, valid PromQL, and
only metrics that exist."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import odoo_database, wait_until
from jobrunner import run_job
from odoo_operator.api.model import parse_database_backup
from odoo_operator.config import Settings
from odoo_operator.devtools.localcluster import REPO_ROOT
from odoo_operator.runtime import metrics
from test_lifecycle import wait_ready

RULES = REPO_ROOT / "manifests" / "monitoring" / "prometheusrule-example.yaml"
CHART = REPO_ROOT / "charts" / "odoo-db-operator"
TOOLS = REPO_ROOT / ".cache" / "k8s" / "current"
ALERTS = {"OdooBackupTooOld", "OdooDatabaseStalled", "OdooOperatorDown", "OdooReconcileErrors"}


# ---- scraped from the session operator --------------------------------------------------------------

@pytest.mark.e2e
def test_metrics_follow_a_database_and_its_backup(cluster, operator, namespace, tmp_path):
    wait_until(operator.scrape, 60, "/metrics to answer")
    assert operator.metric("odoo_operator_leader") == 1  # no election: always the leader
    assert operator.metric("odoo_operator_build_info", version="0.1.0") == 1
    before = operator.metric("odoo_operator_reconcile_total", kind="OdooDatabase", result="success") or 0

    cluster.kubectl("apply", "-f", "-", input=odoo_database("metered", namespace))
    wait_ready(cluster, "metered", namespace)
    series = {"namespace": namespace, "name": "metered"}
    wait_until(lambda: (operator.metric("odoo_operator_database_size_bytes", **series) or 0) > 0, 30,
               "the size gauge")
    assert operator.metric("odoo_operator_reconcile_total", kind="OdooDatabase", result="success") > before
    assert operator.metric("odoo_operator_reconcile_duration_seconds_count", kind="OdooDatabase") > 0
    assert operator.metric("odoo_operator_databases", phase="Ready") >= 1
    assert operator.metric("odoo_operator_object_condition", kind="OdooDatabase", condition="Ready", **series) == 1
    assert operator.metric("odoo_operator_object_condition", kind="OdooDatabase", condition="Stalled",
                           **series) == 0
    daily = {"namespace": namespace, "name": "metered-daily", "database": "metered"}
    wait_until(lambda: operator.metric("odoo_operator_backup_scheduled", schedule="@daily", **daily) == 1, 30,
               "the daily backup's schedule gauge")
    assert operator.metric("odoo_operator_backup_last_success_timestamp_seconds", **daily) is None

    # Run the daily backup once (as the CronJob would): the timestamps follow.
    cluster.kubectl("create", "job", "metered-manual", "--from=cronjob/metered-daily", "-n", namespace)
    started = time.time()
    result = run_job(cluster, namespace, "metered-manual", tmp_path)
    assert result.returncode == 0, result.stderr
    last = wait_until(lambda: operator.metric("odoo_operator_backup_last_success_timestamp_seconds", **daily), 60,
                      "the backup's last success")
    assert started - 5 <= last <= time.time() + 5
    database_last = wait_until(lambda: operator.metric("odoo_operator_database_last_backup_timestamp_seconds",
                                                       **series), 60, "the database's last backup")
    assert abs(database_last - last) < 2

    # Deleted: its series go.
    cluster.kubectl("delete", "odb", "metered", "-n", namespace, "--timeout=90s", timeout=120)
    wait_until(lambda: operator.metric("odoo_operator_database_size_bytes", **series) is None, 30,
               "the size gauge to go")
    assert operator.metric("odoo_operator_object_condition", **series) is None


@pytest.mark.e2e
def test_a_stalled_database_is_visible_to_the_stalled_alert(cluster, operator, namespace):
    cluster.kubectl("apply", "-f", "-", input=odoo_database("nostall", namespace, version="99.0"))
    series = {"kind": "OdooDatabase", "namespace": namespace, "name": "nostall"}
    wait_until(lambda: operator.metric("odoo_operator_object_condition", condition="Stalled", **series) == 1, 60,
               "Stalled = 1")
    assert operator.metric("odoo_operator_reconcile_errors_total", kind="OdooDatabase", reason="InvalidSpec") >= 1
    assert operator.metric("odoo_operator_databases", phase="Failed") >= 1


# ---- the PrometheusRule ------------------------------------------------------------------------------

def rule_file() -> dict:
    return yaml.safe_load(RULES.read_text())


def test_the_rule_file_is_a_prometheusrule_with_the_alerts():
    doc = rule_file()
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    rules = [rule for group in doc["spec"]["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])


def test_every_metric_the_rules_use_is_exported():
    metrics.observe("OdooDatabase", {"metadata": {"name": "x", "namespace": "n", "uid": "u-test"}},
                    {"phase": "Ready", "sizeBytes": 1, "lastBackup": "2024-01-01T00:00:00Z",
                     "expiresAt": "2024-02-01T00:00:00Z", "conditions": [{"type": "Stalled", "status": "False"}]})
    backup = {"metadata": {"name": "x-daily", "namespace": "n", "uid": "u-test-2",
                           "creationTimestamp": "2024-01-01T00:00:00Z"},
              "spec": {"schedule": "@daily", "databaseRef": {"name": "x"}}}
    metrics.observe("DatabaseBackup", backup, {"phase": "Scheduled", "lastSuccessfulTime": "2024-01-01T00:00:00Z"},
                    parse_database_backup(backup, Settings()))
    metrics.record_reconcile("OdooDatabase", "error", "InvalidSpec", 0.1)
    try:
        exported = set(re.findall(r"^(odoo_operator_\w+)", metrics.render().decode(), re.M))
    finally:
        metrics.forget("OdooDatabase", "n", "x", "u-test")
        metrics.forget("DatabaseBackup", "n", "x-daily", "u-test-2")
    used = set(re.findall(r"\bodoo_operator_\w+", RULES.read_text()))
    assert used and used <= exported, used - exported
    # The per-object series are gone once forgotten.
    assert 'name="x"' not in metrics.render().decode()


def promql_check() -> Path:
    tool = TOOLS / "promql-check"
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run `make setup` (hack/setup-k8s.sh builds it from hack/tools/promql)")
    return tool


def test_the_rules_pass_promtools_checks(tmp_path):
    tool = promql_check()
    result = subprocess.run([str(tool), str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0 and "SUCCESS: 4 rules found" in result.stdout, result.stderr
    # It does catch mistakes: a broken expression and a broken annotation template.
    doc = rule_file()
    doc["spec"]["groups"][0]["rules"][0]["expr"] = "sum(rate(odoo_operator_reconcile_total[5m])"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    result = subprocess.run([str(tool), str(broken)], capture_output=True, text=True)
    assert result.returncode != 0 and "unclosed left parenthesis" in result.stderr
    doc = rule_file()
    doc["spec"]["groups"][0]["rules"][1]["annotations"]["summary"] = "{{ $labels.name "
    broken.write_text(yaml.safe_dump(doc))
    assert subprocess.run([str(tool), str(broken)], capture_output=True, text=True).returncode != 0


def helm() -> str:
    found = TOOLS / "helm"
    if found.exists():
        return str(found)
    pytest.fail(f"{found} is missing: run `make setup` (helm is built from its Go module)")


def render_chart(*sets: str) -> str:
    result = subprocess.run([helm(), "template", "odoo-db-operator", str(CHART), "--kube-version", "1.36.0",
                             "--namespace", "odoo-system", *(a for s in sets for a in ("--set", s))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_chart_renders_the_same_rules_only_when_enabled(tmp_path):
    assert "kind: PrometheusRule" not in render_chart()
    docs = [d for d in yaml.safe_load_all(render_chart("metrics.prometheusRule.enabled=true",
                                                       "metrics.prometheusRule.labels.release=prometheus"))
            if d and d.get("kind") == "PrometheusRule"]
    assert len(docs) == 1
    rendered = docs[0]
    assert rendered["metadata"]["namespace"] == "odoo-system"
    assert rendered["metadata"]["labels"]["release"] == "prometheus"
    assert rendered["spec"] == rule_file()["spec"]
    if (TOOLS / "promql-check").exists():
        path = tmp_path / "rendered.yaml"
        path.write_text(yaml.safe_dump(rendered))
        result = subprocess.run([str(TOOLS / "promql-check"), str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
