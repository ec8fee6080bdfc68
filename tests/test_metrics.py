"""Prometheus metrics (operator/odoo_operator/runtime/metrics.py) scraped from the session operator during a
real flow, and the example PrometheusRule (plain manifest and Helm chart): equal, valid PromQL, and
only metrics that exist."""

from __future__ import annotations

import datetime
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
ALERTS = {"OdooBackupTooOld", "OdooDatabaseStalled", "OdooOperatorDown", "OdooReconcileErrors",
          "OdooUpgradeAvailable", "OdooUpgradeDeadlineSoon", "OdooUpgradeFailed"}


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


# ---- upgrades (unit level: what observe() is fed, what a scrape shows) -------------------------------------

def iso(seconds_ago: float = 0.0) -> str:
    at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds_ago)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def sample(metric: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(metric, labels) or 0.0


def upgrade_counts() -> dict[str, float]:
    """The upgrade counters and histogram counts, to compare before/after (the registry is process-wide)."""
    counts = {f"failures {kind}": sample("odoo_operator_upgrade_failures_total", kind=kind)
              for kind in ("test", "production")}
    for kind in ("test", "production"):
        for result in ("succeeded", "failed"):
            counts[f"{kind} {result}"] = sample("odoo_operator_upgrade_duration_seconds_count", kind=kind,
                                                result=result)
    counts["downtime"] = sample("odoo_operator_upgrade_downtime_seconds_count")
    counts["downtime sum"] = sample("odoo_operator_upgrade_downtime_seconds_sum")
    return counts


def added(before: dict[str, float]) -> dict[str, float]:
    return {key: value - before[key] for key, value in upgrade_counts().items() if value != before[key]}


def database(name: str, uid: str, **spec: object) -> dict:
    return {"metadata": {"name": name, "namespace": "n", "uid": uid}, "spec": spec}


def test_the_upgrade_offer_deadline_and_state_are_series_per_database():
    body = database("offered", "u-offered")
    deadline = "2030-01-02T03:04:05Z"
    metrics.observe("OdooDatabase", body, {"phase": "Ready", "version": "16.0", "availableUpgrade": "17.0",
                                           "upgradeOfferedAt": iso(), "upgradeDeadline": deadline,
                                           "upgrade": {"state": "TestFailed", "test": {"state": "Failed"}}})
    try:
        series = {"namespace": "n", "name": "offered"}
        assert sample("odoo_operator_database_upgrade_available", version="16.0", target="17.0", **series) == 1
        assert sample("odoo_operator_database_upgrade_deadline_timestamp_seconds", **series) == \
            metrics.parse_timestamp(deadline)
        assert sample("odoo_operator_database_upgrade_state", state="TestFailed", **series) == 1
        # Up to date (the operator writes null): the offer and the deadline go, the last upgrade's state stays.
        metrics.observe("OdooDatabase", body, {"phase": "Ready", "version": "17.0", "availableUpgrade": None,
                                               "upgradeDeadline": None, "upgrade": {"state": "Succeeded"}})
        text = metrics.render().decode()
        assert not re.search(r'^odoo_operator_database_upgrade_(available|deadline)\S*\{[^}]*name="offered"', text,
                             re.M)
        assert 'odoo_operator_database_upgrade_state{name="offered",namespace="n",state="Succeeded"} 1.0' in text
        assert 'state="TestFailed"' not in text
    finally:
        metrics.forget("OdooDatabase", "n", "offered", "u-offered")
    assert 'name="offered"' not in metrics.render().decode()


def test_a_failed_production_upgrade_is_also_the_stalled_condition_without_its_reason():
    # The condition series has no reason label: Stalled alone does not tell an upgrade failure
    # (OdooUpgradeFailed needs odoo_operator_database_upgrade_state).
    body = database("stalled", "u-stalled")
    metrics.observe("OdooDatabase", body, {"phase": "Ready", "version": "16.0", "upgrade": {"state": "Failed"},
                                           "conditions": [{"type": "Stalled", "status": "True",
                                                           "reason": "UpgradeFailed"}]})
    try:
        series = {"namespace": "n", "name": "stalled"}
        assert sample("odoo_operator_object_condition", kind="OdooDatabase", condition="Stalled", **series) == 1
        assert "reason" not in next(line for line in metrics.render().decode().splitlines()
                                    if line.startswith("odoo_operator_object_condition{") and 'name="stalled"' in line)
        assert sample("odoo_operator_database_upgrade_state", state="Failed", **series) == 1
    finally:
        metrics.forget("OdooDatabase", "n", "stalled", "u-stalled")


def test_each_finished_upgrade_is_counted_once():
    body = database("counted", "u-counted")
    before = upgrade_counts()

    def observe(upgrade: dict, **status: object) -> None:
        metrics.observe("OdooDatabase", body, {"phase": "Ready", "version": "16.0", "upgrade": upgrade, **status})

    try:
        test = {"state": "Running", "to": "17.0", "startedAt": iso(120)}
        observe({"state": "Testing", "from": "16.0", "to": "17.0", "test": test})
        assert added(before) == {}
        test = {**test, "state": "Succeeded", "finishedAt": iso(20), "durationSeconds": 100}
        for _ in range(3):  # every reconcile publishes the same status again
            observe({"state": "TestSucceeded", "from": "16.0", "to": "17.0", "test": test})
        assert added(before) == {"test succeeded": 1}
        assert sample("odoo_operator_upgrade_duration_seconds_sum", kind="test", result="succeeded") >= 100

        # Production: failed, its finishedAt written before the rollback; counted once Failed, its downtime
        # once the app serves again (a later status).
        upgrading = {"state": "Upgrading", "from": "16.0", "to": "17.0", "startedAt": iso(10), "test": test}
        observe(upgrading)
        observe({**upgrading, "finishedAt": iso(5), "durationSeconds": 5})  # rolling back
        assert added(before) == {"test succeeded": 1}
        failed = {**upgrading, "state": "Failed", "finishedAt": iso(5), "durationSeconds": 5}
        observe(failed)
        observe(failed)
        assert added(before) == {"test succeeded": 1, "production failed": 1, "failures production": 1}
        observe({**failed, "downtimeSeconds": 42.5})
        observe({**failed, "downtimeSeconds": 42.5})
        assert added(before) == {"test succeeded": 1, "production failed": 1, "failures production": 1,
                                 "downtime": 1, "downtime sum": 42.5}
        # A stale status (an older finish) is not counted again; a new test that fails is.
        observe({"state": "TestSucceeded", "from": "16.0", "to": "17.0", "test": test})
        failing = {"state": "Failed", "to": "17.0", "startedAt": iso(4), "finishedAt": iso(1)}  # no duration
        observe({**failed, "state": "TestFailed", "test": failing})
        observe({**failed, "state": "TestFailed", "test": failing})
        assert added(before) == {"test succeeded": 1, "production failed": 1, "failures production": 1,
                                 "downtime": 1, "downtime sum": 42.5, "test failed": 1, "failures test": 1}
        assert sample("odoo_operator_upgrade_duration_seconds_sum", kind="test", result="failed") >= 3
    finally:
        metrics.forget("OdooDatabase", "n", "counted", "u-counted")


def test_finishes_from_before_this_process_led_are_not_counted_again():
    before = upgrade_counts()
    old = {"state": "Succeeded", "from": "15.0", "to": "16.0", "startedAt": "2024-01-01T00:00:00Z",
           "finishedAt": "2024-01-01T00:10:00Z", "durationSeconds": 600, "downtimeSeconds": 550,
           "test": {"state": "Failed", "finishedAt": "2023-12-31T00:00:00Z", "durationSeconds": 60}}
    body = database("inherited", "u-inherited")
    metrics.observe("OdooDatabase", body, {"phase": "Ready", "upgrade": old})
    try:
        assert added(before) == {}  # counted by the leader that saw them finish
        # Re-created under the same name: a new object, whose recent finish is new.
        fresh = {"state": "Failed", "startedAt": iso(30), "finishedAt": iso(), "durationSeconds": 30}
        metrics.observe("OdooDatabase", database("inherited", "u-inherited-2"), {"phase": "Ready", "upgrade": fresh})
        assert added(before) == {"production failed": 1, "failures production": 1}
    finally:
        metrics.forget("OdooDatabase", "n", "inherited", "u-inherited-2")

    # Becoming the leader moves the line: what finished before was the previous leader's.
    saved = metrics.OBJECTS.leading_since
    try:
        metrics.set_leader(False)
        metrics.set_leader(True)
        assert time.time() - 2 <= metrics.OBJECTS.leading_since <= time.time()
        before = upgrade_counts()
        recent = {"state": "Succeeded", "startedAt": iso(3600), "finishedAt": iso(60), "durationSeconds": 3540}
        metrics.observe("OdooDatabase", database("led", "u-led"), {"phase": "Ready", "upgrade": recent})
        assert added(before) == {}
        # Its downtime, written later by this leader, is ours.
        metrics.observe("OdooDatabase", database("led", "u-led"),
                        {"phase": "Ready", "upgrade": {**recent, "downtimeSeconds": 70}})
        assert added(before) == {"downtime": 1, "downtime sum": 70}
    finally:
        metrics.OBJECTS.leading_since = saved
        metrics.forget("OdooDatabase", "n", "led", "u-led")


def test_an_upgrade_test_copy_reports_through_its_source():
    before = upgrade_counts()
    copy = database("prod-upgrade-test", "u-copy", duplicateFrom={"name": "prod", "forTesting": True})
    metrics.observe("OdooDatabase", copy, {"phase": "Upgrading", "version": "16.0", "upgrade": {
        "state": "Failed", "from": "16.0", "to": "17.0", "startedAt": iso(9), "finishedAt": iso(),
        "durationSeconds": 9}})
    try:
        assert added(before) == {}
        assert sample("odoo_operator_database_upgrade_state", namespace="n", name="prod-upgrade-test",
                      state="Failed") == 0
    finally:
        metrics.forget("OdooDatabase", "n", "prod-upgrade-test", "u-copy")


# ---- the PrometheusRule ------------------------------------------------------------------------------

def rule_file() -> dict:
    return yaml.safe_load(RULES.read_text())


def test_the_rule_file_is_a_prometheusrule_with_the_alerts():
    doc = rule_file()
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    rules = [rule for group in doc["spec"]["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in ("info", "warning", "critical") and rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])


def test_every_metric_the_rules_use_is_exported():
    metrics.observe("OdooDatabase", {"metadata": {"name": "x", "namespace": "n", "uid": "u-test"}},
                    {"phase": "Ready", "sizeBytes": 1, "lastBackup": "2024-01-01T00:00:00Z",
                     "expiresAt": "2024-02-01T00:00:00Z", "conditions": [{"type": "Stalled", "status": "False"}],
                     "version": "16.0", "availableUpgrade": "17.0", "upgradeDeadline": "2024-03-01T00:00:00Z",
                     "upgrade": {"state": "Upgrading", "from": "16.0", "to": "17.0"}})
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
    assert result.returncode == 0 and "SUCCESS: 7 rules found" in result.stdout, result.stderr
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
