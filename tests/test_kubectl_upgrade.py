"""`kubectl odoo upgrade` and the upgrade lines of `status`: what is shown for each state of status.upgrade
(pure, from objects as the operator writes them: docs in /work/notes/ISSUE14.md, the contract with the
operator), what --test / --now / --rollback ask for and what they refuse (pure, then against the real API
server: the spec and annotation edits they make, refusals sending nothing).

Objects name an absent PostgresServer (tests/test_kubectl.py explains why the operator then leaves the
status we write alone)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from conftest import get_json
from odoo_operator.api.labels import ROLLBACK_ANNOTATION
from odoo_operator.devtools.localcluster import LocalCluster
from odoo_operator.kubectl import upgrade
from odoo_operator.kubectl.support import PluginError
from test_kubectl import fabricate, failed, ok, ready_status
from test_kubectl_users import kodoo, resource_version

MOMENT = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
LATER = "2099-01-01T00:00:00Z"
EARLIER = "2001-01-01T00:00:00Z"


def database(status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None,
             **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "odoo.dbmanager.io/v1alpha1", "kind": "OdooDatabase",
            "metadata": {"name": "shop", "namespace": "sales", "resourceVersion": "1",
                         **({"annotations": annotations} if annotations else {})},
            "spec": {"version": "16.0", **spec}, "status": status or {}}


def fields(text: str) -> dict[str, str]:
    """The `Key: value` block at the top of a report."""
    head = text.split("\n\n", 1)[0]
    return {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in head.splitlines())}


FAILED_TEST = {"state": "Failed", "database": "shop-upgrade-test", "url": "http://shop-upgrade-test.odoo.localhost",
               "to": "17.0", "startedAt": "2024-01-01T00:00:00Z", "finishedAt": "2024-01-01T00:05:00Z",
               "durationSeconds": 300, "logTail": "\n".join(f"line {i}" for i in range(40)) + "\nKeyError: 'x'"}
SUCCEEDED = {"state": "Succeeded", "from": "16.0", "to": "17.0", "startedAt": "2024-01-02T00:00:00Z",
             "finishedAt": "2024-01-02T00:12:00Z", "durationSeconds": 720, "downtimeSeconds": 190,
             "test": {**FAILED_TEST, "state": "Succeeded", "logTail": ""},
             "preUpgradeCopy": {"version": "16.0", "createdAt": "2024-01-02T00:00:00Z", "expiresAt": LATER}}


# ---- what is shown (pure) ------------------------------------------------------------------------
def test_report_of_an_offered_upgrade_and_a_failed_test() -> None:
    obj = database({"version": "16.0", "availableUpgrade": "17.0", "upgradeOfferedAt": "2024-01-01T00:00:00Z",
                    "upgradeDeadline": LATER, "upgrade": {"state": "TestFailed", "from": "16.0", "to": "17.0",
                                                          "test": FAILED_TEST}},
                   upgrade={"targetVersion": "17.0", "testFirst": True})
    text = upgrade.report(obj)
    top = fields(text)
    assert top["Version"] == "16.0" and top["Available"].startswith("17.0 (offered ")
    assert top["Deadline"].startswith(LATER) and "upgrades by itself" in top["Deadline"]
    assert top["Planned"] == "17.0, tested first"
    assert top["Last test"].startswith("Failed (to 17.0, took 5m, finished ")
    assert top["Last test"].endswith(": http://shop-upgrade-test.odoo.localhost")
    assert top["Last upgrade"] == "none" and "Pre-upgrade copy" not in top
    log = text.split("Test log (last lines):\n", 1)[1].split("\n\n")[0].splitlines()
    assert log[-1] == "  KeyError: 'x'" and len(log) == upgrade.LOG_LINES and "line 0" not in text
    assert "Upgrade log" not in text
    assert "kubectl odoo upgrade shop --test" in text.split("Next:", 1)[1]

    lines = dict(upgrade.status_lines(obj))
    assert lines["Upgrade"] == "17.0 is available (kubectl odoo upgrade shop)"
    assert lines["Upgrade deadline"].startswith(LATER) and lines["Upgrade test"].startswith("Failed (to 17.0")
    assert "Last upgrade" not in lines and "Rollback" not in lines


def test_report_of_a_done_upgrade_with_its_copy_and_of_a_failed_one() -> None:
    obj = database({"version": "17.0", "upgrade": SUCCEEDED}, version="17.0")
    text = upgrade.report(obj)
    top = fields(text)
    assert top["Available"] == "up to date" and top["Deadline"] == "none"
    assert top["Last upgrade"].startswith("Succeeded 16.0 -> 17.0 (took 12m, downtime 3m, finished ")
    assert top["Pre-upgrade copy"].startswith("16.0, taken ") and f"rollback possible until {LATER}" in \
        top["Pre-upgrade copy"]
    assert "log (last lines)" not in text
    assert "`kubectl odoo upgrade shop --rollback`" in text and "--now" not in text
    lines = dict(upgrade.status_lines(obj))
    assert lines["Upgrade"] == "up to date" and lines["Last upgrade"].startswith("Succeeded 16.0 -> 17.0")
    assert lines["Rollback"].startswith(f"to 16.0 possible until {LATER}")

    expired = {**SUCCEEDED, "preUpgradeCopy": {**SUCCEEDED["preUpgradeCopy"], "expiresAt": EARLIER}}
    text = upgrade.report(database({"version": "17.0", "upgrade": expired}))
    assert fields(text)["Pre-upgrade copy"].endswith(f"expired {EARLIER}: no rollback any more")
    assert "--rollback" not in text and "Rollback" not in dict(upgrade.status_lines(database(
        {"version": "17.0", "upgrade": expired})))

    failed_upgrade = {"state": "Failed", "from": "16.0", "to": "17.0", "startedAt": "2024-01-02T00:00:00Z",
                      "finishedAt": "2024-01-02T00:03:00Z", "durationSeconds": 180, "downtimeSeconds": 180,
                      "logTail": "odoo.modules.migration: boom"}
    text = upgrade.report(database({"version": "16.0", "availableUpgrade": "17.0", "upgrade": failed_upgrade},
                                   version="17.0"))
    top = fields(text)
    assert top["Version"] == "16.0 (spec.version 17.0: asked for)"
    assert top["Last upgrade"].startswith("Failed 16.0 -> 17.0 (took 3m, downtime 3m")
    assert text.split("Upgrade log (last lines):\n", 1)[1].startswith("  odoo.modules.migration: boom")

    running = upgrade.report(database({"version": "16.0", "upgrade": {"state": "Upgrading", "from": "16.0",
                                                                      "to": "17.0", "startedAt": EARLIER}}))
    assert fields(running)["Last upgrade"].startswith("Upgrading 16.0 -> 17.0 (started ")
    assert "the upgrade is running" in running.split("Next:", 1)[1]
    tested = upgrade.report(database({"version": "16.0", "availableUpgrade": "17.0",
                                      "upgrade": {"state": "TestSucceeded", "test": SUCCEEDED["test"]}}))
    assert "http://shop-upgrade-test.odoo.localhost, then upgrade: `kubectl odoo upgrade shop --now`" in tested
    assert "--test" not in tested.split("Next:", 1)[1]
    # Nothing reported yet: no claim of "up to date".
    fresh = upgrade.report(database())
    assert fields(fresh)["Version"] == "not reported yet" and fields(fresh)["Available"] == "-"
    assert upgrade.status_lines(database()) == []


# ---- what is asked for (pure) --------------------------------------------------------------------
def test_test_asks_for_the_offered_version_or_refuses() -> None:
    offered = database({"version": "16.0", "availableUpgrade": "18.0"}, upgrade={"deadline": LATER})
    patch, message = upgrade.plan_test(offered, None)
    assert patch == {"spec": {"upgrade": {"targetVersion": "18.0", "testFirst": True}}}
    assert "16.0 -> 18.0" in message and "shop-upgrade-test" in message
    assert upgrade.plan_test(offered, "17.0")[0] == {"spec": {"upgrade": {"targetVersion": "17.0",
                                                                          "testFirst": True}}}
    asked = database({"version": "16.0", "availableUpgrade": "18.0",
                      "upgrade": {"state": "Testing", "test": {"state": "Running", "to": "18.0"}}},
                     upgrade={"targetVersion": "18.0", "testFirst": True})
    patch, message = upgrade.plan_test(asked, None)
    assert patch is None and "already asked for (last test: Running (to 18.0))" in message
    with pytest.raises(PluginError, match=r"up to date at 17.0: no upgrade is offered .* give --to VERSION"):
        upgrade.plan_test(database({"version": "17.0"}), None)
    with pytest.raises(PluginError, match="already at 17.0: --to 16.0 is not above it"):
        upgrade.plan_test(database({"version": "17.0"}), "16.0")
    with pytest.raises(PluginError, match=r"not reported the version of shop yet"):
        upgrade.plan_test(database({"availableUpgrade": "17.0"}), None)


def test_now_upgrades_to_the_planned_then_the_offered_version_and_never_down() -> None:
    planned = database({"version": "16.0", "availableUpgrade": "18.0"}, upgrade={"targetVersion": "17.0"})
    patch, message = upgrade.plan_now(planned, None)
    assert patch == {"spec": {"version": "17.0", "upgrade": {"testFirst": False}}}
    assert "16.0 -> 17.0" in message and "without waiting for a test" in message
    assert upgrade.plan_now(planned, "18.0")[0] == {"spec": {"version": "18.0", "upgrade": {"testFirst": False}}}
    offered = database({"version": "16.0", "availableUpgrade": "saas~17.2"})
    assert upgrade.plan_now(offered, None)[0] == {"spec": {"version": "saas~17.2",
                                                           "upgrade": {"testFirst": False}}}
    done = database({"version": "16.0", "availableUpgrade": "17.0"}, version="17.0", upgrade={"testFirst": False})
    patch, message = upgrade.plan_now(done, None)
    assert patch is None and "already asked for; nothing to do" in message
    with pytest.raises(PluginError, match="already at 17.0: 16.0 is not above it .*--rollback"):
        upgrade.plan_now(database({"version": "17.0"}, version="17.0"), "16.0")
    with pytest.raises(PluginError, match="already at saas~17.2: 17.0 is not above it"):
        upgrade.plan_now(database({"version": "saas~17.2"}), "17.0")
    with pytest.raises(PluginError, match="up to date at 17.0"):
        upgrade.plan_now(database({"version": "17.0"}), None)


def test_rollback_needs_a_live_pre_upgrade_copy() -> None:
    obj = database({"version": "17.0", "upgrade": SUCCEEDED}, version="17.0")
    patch, message = upgrade.plan_rollback(obj, MOMENT)
    assert patch == {"metadata": {"annotations": {ROLLBACK_ANNOTATION: "2030-01-01T12:00:00Z"}},
                     "spec": {"version": "16.0"}}
    assert "rollback to 16.0" in message and "lost" in message
    asked = database({"version": "17.0", "upgrade": SUCCEEDED}, {ROLLBACK_ANNOTATION: "x"}, version="16.0")
    assert upgrade.plan_rollback(asked, MOMENT)[0] is None
    with pytest.raises(PluginError, match=r"no pre-upgrade copy to roll back to .*kubectl odoo restore"):
        upgrade.plan_rollback(database({"version": "17.0", "upgrade": {"state": "Succeeded"}}), MOMENT)
    copy = {**SUCCEEDED["preUpgradeCopy"], "expiresAt": "2030-01-01T12:00:00Z"}  # expires at this very moment
    with pytest.raises(PluginError, match=r"\(16.0\) expired at 2030-01-01T12:00:00Z: a rollback is no longer"):
        upgrade.plan_rollback(database({"version": "17.0", "upgrade": {**SUCCEEDED, "preUpgradeCopy": copy}}),
                              MOMENT)
    with pytest.raises(PluginError, match="expired at"):
        upgrade.plan_rollback(database({"upgrade": {"preUpgradeCopy": {"version": "16.0", "expiresAt": "soon"}}}),
                              MOMENT)


# ---- against the API server ----------------------------------------------------------------------
def write_status(cluster: LocalCluster, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    cluster.kubectl("patch", "odb", name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))
    return get_json(cluster, "odb", name, "-n", namespace)


@pytest.mark.e2e
def test_upgrade_shows_and_asks_through_the_spec(cluster: LocalCluster, operator: Any, namespace: str) -> None:
    offer = {"version": "16.0", "availableUpgrade": "17.0"}
    fabricate(cluster, namespace, "shop", ready_status("shop", **offer), version="16.0")
    out = ok(kodoo(cluster, "-n", namespace, "upgrade", "shop"))
    assert fields(out)["Version"] == "16.0" and fields(out)["Available"] == "17.0", out
    assert "kubectl odoo upgrade shop --test" in out, out
    status = ok(kodoo(cluster, "-n", namespace, "status", "shop"))
    assert "17.0 is available (kubectl odoo upgrade shop)" in status, status
    data = json.loads(ok(kodoo(cluster, "-n", namespace, "upgrade", "shop", "-o", "json")))
    assert data["version"] == "16.0" and data["availableUpgrade"] == "17.0"

    out = ok(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--test"))
    assert "patched: spec.upgrade: test the upgrade 16.0 -> 17.0" in out, out
    spec = get_json(cluster, "odb", "shop", "-n", namespace)["spec"]
    assert spec["upgrade"] == {"targetVersion": "17.0", "testFirst": True} and spec["version"] == "16.0"
    before = resource_version(cluster, namespace, "shop")
    assert "nothing to do" in ok(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--test"))
    assert resource_version(cluster, namespace, "shop") == before

    # Refused before anything is sent.
    write_status(cluster, namespace, "shop", offer)
    failed(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--now", "--to", "16.0"), "not above")
    failed(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--rollback"), "no pre-upgrade copy")
    failed(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--to", "17.0"), "--to goes with --test or --now")
    failed(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--now", "--to", "17"), "not an Odoo version")
    both = kodoo(cluster, "-n", namespace, "upgrade", "shop", "--now", "--rollback")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    failed(kodoo(cluster, "-n", namespace, "upgrade", "nope", "--now"), 'OdooDatabase "nope" not found')
    assert resource_version(cluster, namespace, "shop") == before

    out = ok(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--now"))
    assert "patched: spec.version 16.0 -> 17.0" in out, out
    spec = get_json(cluster, "odb", "shop", "-n", namespace)["spec"]
    assert spec["version"] == "17.0" and spec["upgrade"] == {"targetVersion": "17.0", "testFirst": False}
    write_status(cluster, namespace, "shop", offer)
    assert "already asked for; nothing to do" in ok(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--now"))

    fabricate(cluster, namespace, "latest", ready_status("latest"))
    out = ok(kodoo(cluster, "-n", namespace, "upgrade", "latest"))
    assert fields(out)["Available"] == "up to date" and "Next:" not in out, out
    failed(kodoo(cluster, "-n", namespace, "upgrade", "latest", "--test"), "up to date at 17.0", "--to VERSION")
    failed(kodoo(cluster, "-n", namespace, "upgrade", "latest", "--now"), "up to date at 17.0")


@pytest.mark.e2e
def test_rollback_sets_the_annotation_and_the_copys_version(cluster: LocalCluster, operator: Any,
                                                            namespace: str) -> None:
    fabricate(cluster, namespace, "shop", ready_status("shop", version="17.0"), version="17.0")
    obj = write_status(cluster, namespace, "shop", {"upgrade": SUCCEEDED})
    assert "upgrade" in obj.get("status", {}), obj.get("status")  # the CRD keeps status.upgrade
    status = ok(kodoo(cluster, "-n", namespace, "status", "shop"))
    assert "Last upgrade:" in status and "Succeeded 16.0 -> 17.0" in status and f"until {LATER}" in status
    out = ok(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--rollback"))
    assert "patched: rollback to 16.0 asked for" in out, out
    obj = get_json(cluster, "odb", "shop", "-n", namespace)
    stamp = obj["metadata"]["annotations"][ROLLBACK_ANNOTATION]
    assert datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ") and obj["spec"]["version"] == "16.0"
    before = resource_version(cluster, namespace, "shop")
    assert "already asked for" in ok(kodoo(cluster, "-n", namespace, "upgrade", "shop", "--rollback"))
    assert resource_version(cluster, namespace, "shop") == before

    fabricate(cluster, namespace, "old", ready_status("old", version="17.0"), version="17.0")
    expired = {**SUCCEEDED, "preUpgradeCopy": {**SUCCEEDED["preUpgradeCopy"], "expiresAt": EARLIER}}
    write_status(cluster, namespace, "old", {"upgrade": expired})
    failed(kodoo(cluster, "-n", namespace, "upgrade", "old", "--rollback"), "expired at", "no longer possible")
    assert get_json(cluster, "odb", "old", "-n", namespace)["spec"]["version"] == "17.0"
