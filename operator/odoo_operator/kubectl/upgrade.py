"""Upgrades on the command line: `upgrade DB` (where the database is: its version, the upgrade offered, the
deadline, the last test, the last upgrade, the pre-upgrade copy), `upgrade DB --test | --now | --rollback`,
and the upgrade lines of `status`.

The operator does the upgrades; the plugin only asks, by editing the object: --test sets spec.upgrade
(a test upgrade on a neutralized copy), --now sets spec.version (the production upgrade, without waiting for a
test), --rollback sets spec.version back to the pre-upgrade copy's version with the annotation
odoo.dbmanager.io/rollback. Each is one JSON merge patch carrying the resourceVersion read, so what was
checked (the version, the copy's expiry) is what the operator sees; a 409 means the object changed
meanwhile: read again and decide again. What is refused is refused before anything is sent.

Not here: the other subcommands (commands.py), the options (parser.py)."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable, Mapping
from typing import Any

from odoo_operator.api.conditions import format_time, parse_rfc3339
from odoo_operator.api.labels import RETEST_ANNOTATION, ROLLBACK_ANNOTATION
from odoo_operator.api.model import VERSION_RE
from odoo_operator.api.versions import version_key
from odoo_operator.kubectl.connection import Connection, get_database, patch_database
from odoo_operator.kubectl.support import (
    PluginError,
    ago,
    expires,
    human_delta,
    indent,
    now,
    one_line,
    parse_time,
    print_object,
)

OBJECT = "odoodatabase.odoo.dbmanager.io"
PRODUCTION_STATES = ("Upgrading", "Succeeded", "Failed", "RolledBack")
LOG_LINES = 20


def above(version: Any, than: Any) -> bool:
    """Both Odoo versions, the first newer."""
    return bool(VERSION_RE.fullmatch(str(version or "")) and VERSION_RE.fullmatch(str(than or ""))) and \
        version_key(str(version)) > version_key(str(than))


def check_version(value: str, what: str) -> str:
    if not VERSION_RE.fullmatch(value or ""):
        raise PluginError(f"{what} {value!r} is not an Odoo version such as 17.0, 18.0 or saas~17.2")
    return value


# ---- what is shown -------------------------------------------------------------------------------
def _seconds(value: Any) -> str:
    try:
        return human_delta(float(value))
    except (TypeError, ValueError):
        return "-"


def _when(text: Any) -> str:
    return f"{text} ({ago(text)})" if parse_time(text) else "-"


def _timing(record: Mapping[str, Any]) -> list[str]:
    """How long it took (and the app was down), and when it finished or started."""
    parts = [f"{label} {_seconds(record[key])}" for key, label in (("durationSeconds", "took"),
                                                                    ("downtimeSeconds", "downtime"))
             if record.get(key) is not None]
    if record.get("finishedAt"):
        parts.append(f"finished {ago(record['finishedAt'])}")
    elif record.get("startedAt"):
        parts.append(f"started {ago(record['startedAt'])}")
    return parts


def summarize_test(test: Mapping[str, Any]) -> str:
    """status.upgrade.test in one line: state, target, duration or start, URL."""
    state = str(test.get("state") or "?")
    parts = [f"to {test['to']}"] if test.get("to") else []
    parts += _timing(test)
    line = f"{state} ({', '.join(parts)})" if parts else state
    return line + (f": {test['url']}" if test.get("url") else "")


def summarize_upgrade(upgrade: Mapping[str, Any]) -> str:
    """A production upgrade (status.upgrade with state Upgrading/Succeeded/Failed/RolledBack) in one line."""
    state = str(upgrade.get("state") or "?")
    parts = _timing(upgrade)
    line = f"{state} {upgrade.get('from') or '?'} -> {upgrade.get('to') or '?'}"
    return line + (f" ({', '.join(parts)})" if parts else "")


def rollback_until(obj: Mapping[str, Any], moment: datetime.datetime | None = None) -> str | None:
    """The pre-upgrade copy's expiry when a rollback is still possible, else None."""
    copy = ((obj.get("status") or {}).get("upgrade") or {}).get("preUpgradeCopy") or {}
    expiry = parse_time(copy.get("expiresAt"))
    if not copy.get("version") or expiry is None or expiry <= (moment or now()):
        return None
    return str(copy["expiresAt"])


def status_lines(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The upgrade lines of `kubectl odoo status`: availability, deadline, last test, last upgrade, rollback."""
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    upgrade = status.get("upgrade") or {}
    lines: list[tuple[str, str]] = []
    if status.get("availableUpgrade"):
        lines.append(("Upgrade", f"{status['availableUpgrade']} is available (kubectl odoo upgrade {name})"))
    elif status.get("version"):
        lines.append(("Upgrade", "up to date"))
    if status.get("upgradeDeadline"):
        lines.append(("Upgrade deadline", f"{status['upgradeDeadline']} ({expires(status['upgradeDeadline'])}): "
                                          "the operator upgrades by itself then"))
    if upgrade.get("test"):
        lines.append(("Upgrade test", summarize_test(upgrade["test"])))
    if upgrade.get("state") in PRODUCTION_STATES:
        lines.append(("Last upgrade", summarize_upgrade(upgrade)))
    until = rollback_until(obj)
    if until:
        lines.append(("Rollback", f"to {upgrade['preUpgradeCopy']['version']} possible until {until} "
                                  f"({expires(until)})"))
    return lines


def _log(title: str, text: Any) -> list[str]:
    tail = str(text or "").rstrip().splitlines()[-LOG_LINES:]
    return ["", f"{title} (last lines):", indent("\n".join(tail)) if tail else "  (no output recorded)"]


def report(obj: Mapping[str, Any]) -> str:
    """`kubectl odoo upgrade DB`: where the database is with upgrades, and what can be done next."""
    name = obj["metadata"]["name"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    upgrade, planned = status.get("upgrade") or {}, spec.get("upgrade") or {}
    test = upgrade.get("test") or {}
    copy = upgrade.get("preUpgradeCopy") or {}
    version = status.get("version")
    lines = [("Database", f"{name}   (namespace {obj['metadata'].get('namespace')})")]
    wanted = spec.get("version")
    lines.append(("Version", (version or "not reported yet")
                  + (f" (spec.version {wanted}: asked for)" if wanted and version and wanted != version else "")))
    available = status.get("availableUpgrade")
    lines.append(("Available", (f"{available}" + (f" (offered {ago(status['upgradeOfferedAt'])})"
                                                 if status.get("upgradeOfferedAt") else ""))
                  if available else ("up to date" if version else "-")))
    lines.append(("Deadline", f"{status['upgradeDeadline']} ({expires(status['upgradeDeadline'])}): the operator "
                              "upgrades by itself then" if status.get("upgradeDeadline") else "none"))
    if planned.get("targetVersion"):
        lines.append(("Planned", f"{planned['targetVersion']}, "
                                 + ("tested first" if planned.get("testFirst", True) else "without a test")
                                 + (f", deadline {planned['deadline']}" if planned.get("deadline") else "")))
    lines.append(("Last test", summarize_test(test) if test else "none"))
    if test.get("database"):
        lines.append(("Test database", str(test["database"])))
    lines.append(("Last upgrade", summarize_upgrade(upgrade) if upgrade.get("state") in PRODUCTION_STATES
                  else "none"))
    if copy.get("version"):
        until = rollback_until(obj)
        lines.append(("Pre-upgrade copy", f"{copy['version']}, taken {ago(copy.get('createdAt'))}; "
                      + (f"rollback possible until {until} ({expires(until)})" if until
                         else f"expired {copy.get('expiresAt') or ''}".rstrip() + ": no rollback any more")))
    width = max(len(key) for key, _ in lines) + 2
    out = [f"{(key + ':').ljust(width)}{value}" for key, value in lines]
    if test.get("state") == "Failed":
        out += _log("Test log", test.get("logTail"))
    if upgrade.get("state") == "Failed":
        out += _log("Upgrade log", upgrade.get("logTail"))
    hints = next_steps(obj)
    if hints:
        out += ["", "Next:", *(f"  {hint}" for hint in hints)]
    return "\n".join(out)


def next_steps(obj: Mapping[str, Any]) -> list[str]:
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    upgrade = status.get("upgrade") or {}
    test = upgrade.get("test") or {}
    hints = []
    if upgrade.get("state") == "Upgrading":
        return [f"the upgrade is running; follow it with `kubectl odoo upgrade {name}`"]
    if test.get("state") == "Running":
        hints.append(f"the test is running; follow it with `kubectl odoo upgrade {name}`")
    elif test.get("state") == "Succeeded" and above(test.get("to"), status.get("version")):
        hints.append(f"check the test database{' at ' + test['url'] if test.get('url') else ''}, then upgrade: "
                     f"`kubectl odoo upgrade {name} --now`")
    elif status.get("availableUpgrade"):
        hints.append(f"test the upgrade to {status['availableUpgrade']} on a copy: "
                     f"`kubectl odoo upgrade {name} --test`")
    if rollback_until(obj):
        hints.append(f"go back to {upgrade['preUpgradeCopy']['version']}: `kubectl odoo upgrade {name} --rollback`")
    return hints


def report_data(obj: Mapping[str, Any]) -> dict[str, Any]:
    """-o json/yaml: the upgrade fields of the spec and status."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    data: dict[str, Any] = {"name": obj["metadata"]["name"], "version": status.get("version"),
                            "specVersion": spec.get("version")}
    for key in ("availableUpgrade", "upgradeOfferedAt", "upgradeDeadline", "upgrade"):
        if status.get(key) is not None:
            data[key] = status[key]
    if spec.get("upgrade") is not None:
        data["specUpgrade"] = spec["upgrade"]
    return data


# ---- what is asked for ---------------------------------------------------------------------------
Plan = Callable[[Mapping[str, Any]], tuple[dict[str, Any] | None, str]]


def current_version(obj: Mapping[str, Any]) -> str:
    version = (obj.get("status") or {}).get("version")
    if not version or not VERSION_RE.fullmatch(str(version)):
        raise PluginError(f"the operator has not reported the version of {obj['metadata']['name']} yet "
                          "(status.version); wait until it is Ready and try again")
    return str(version)


def plan_test(obj: Mapping[str, Any], to: str | None, moment: datetime.datetime | None = None
              ) -> tuple[dict[str, Any] | None, str]:
    """--test: spec.upgrade = {targetVersion, testFirst: true} (a test upgrade on a neutralized copy); when a
    test of that target already finished (failed, or succeeded on an older build), the retest annotation asks
    for a new one on a fresh copy."""
    name = obj["metadata"]["name"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    version = current_version(obj)
    target = to or status.get("availableUpgrade")
    if not target:
        raise PluginError(f"{name} is up to date at {version}: no upgrade is offered (status.availableUpgrade); "
                          "give --to VERSION to test another version")
    if version_key(target) <= version_key(version):
        raise PluginError(f"{name} is already at {version}: --to {target} is not above it")
    planned = spec.get("upgrade") or {}
    asked = planned.get("targetVersion") == target and planned.get("testFirst", True) is True
    test = (status.get("upgrade") or {}).get("test") or {}
    if test.get("to") == target and test.get("state") in ("Succeeded", "Failed"):
        # After the test's end as the operator wrote it, whatever this machine's clock says.
        moment = moment or datetime.datetime.now(datetime.UTC)
        if test.get("finishedAt"):
            moment = max(moment, parse_rfc3339(str(test["finishedAt"])) + datetime.timedelta(seconds=1))
        stamp = format_time(moment)
        patch: dict[str, Any] = {"metadata": {"annotations": {RETEST_ANNOTATION: stamp}}}
        if not asked:
            patch["spec"] = {"upgrade": {"targetVersion": target, "testFirst": True}}
        return patch, (f"the last test of {target} ({summarize_test(test)}) is over: the operator tests again on a "
                       f"fresh copy, {name}-upgrade-test; {name} itself is not touched")
    if asked:
        state = f" (last test: {summarize_test(test)})" if test.get("to") == target else ""
        return None, f"a test upgrade of {name} to {target} is already asked for{state}; nothing to do."
    return {"spec": {"upgrade": {"targetVersion": target, "testFirst": True}}}, \
        (f"spec.upgrade: test the upgrade {version} -> {target} (the operator upgrades a neutralized copy, "
         f"{name}-upgrade-test, and reports in status.upgrade.test; {name} itself is not touched)")


def plan_now(obj: Mapping[str, Any], to: str | None) -> tuple[dict[str, Any] | None, str]:
    """--now: spec.version = target and spec.upgrade.testFirst = false (the production upgrade, no test)."""
    name = obj["metadata"]["name"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    version = current_version(obj)
    target = to or (spec.get("upgrade") or {}).get("targetVersion") or status.get("availableUpgrade")
    if not target:
        raise PluginError(f"{name} is up to date at {version}: no upgrade is offered (status.availableUpgrade) "
                          "or planned (spec.upgrade.targetVersion); give --to VERSION")
    if version_key(target) <= version_key(version):
        raise PluginError(f"{name} is already at {version}: {target} is not above it (to go back after an "
                          f"upgrade: kubectl odoo upgrade {name} --rollback)")
    if spec.get("version") == target and (spec.get("upgrade") or {}).get("testFirst") is False:
        return None, f"the upgrade of {name} to {target} is already asked for; nothing to do " \
            f"(follow it with `kubectl odoo upgrade {name}`)."
    return {"spec": {"version": target, "upgrade": {"testFirst": False}}}, \
        (f"spec.version {version} -> {target}: the operator upgrades {name} now, without waiting for a test "
         "(the app is down while the data is migrated; a pre-upgrade copy is kept for a rollback)")


def plan_rollback(obj: Mapping[str, Any], moment: datetime.datetime) -> tuple[dict[str, Any] | None, str]:
    """--rollback: spec.version = the pre-upgrade copy's version, with the rollback annotation."""
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    copy = (status.get("upgrade") or {}).get("preUpgradeCopy") or {}
    if not copy.get("version"):
        raise PluginError(f"{name} has no pre-upgrade copy to roll back to (status.upgrade.preUpgradeCopy): "
                          f"restore a backup instead (kubectl odoo restore NEW --from-database {name})")
    if rollback_until(obj, moment) is None:
        raise PluginError(f"the pre-upgrade copy of {name} ({copy['version']}) expired at "
                          f"{copy.get('expiresAt') or '?'}: a rollback is no longer possible; restore a backup "
                          f"instead (kubectl odoo restore NEW --from-database {name})")
    asked = ((obj["metadata"].get("annotations") or {}).get(ROLLBACK_ANNOTATION))
    if asked and (obj.get("spec") or {}).get("version") == copy["version"]:
        return None, f"a rollback of {name} to {copy['version']} is already asked for (at {asked}); nothing to do."
    return {"metadata": {"annotations": {ROLLBACK_ANNOTATION: format_time(moment)}},
            "spec": {"version": copy["version"]}}, \
        (f"rollback to {copy['version']} asked for: the operator puts back the pre-upgrade copy (database and "
         f"filestore as they were at {copy.get('createdAt') or 'the upgrade'}); what changed since is lost")


def cmd_upgrade(args: argparse.Namespace) -> int:
    to = check_version(args.to, "--to") if args.to is not None else None
    action = "test" if args.test else "now" if args.now else "rollback" if args.rollback else None
    if to and action not in ("test", "now"):
        raise PluginError("--to goes with --test or --now" + (" (--rollback goes back to the pre-upgrade copy's "
                                                              "version)" if action else ""))
    if args.output and action:
        raise PluginError(f"-o shows the upgrade fields; it does not go with --{action}")
    conn = Connection(args)
    namespace = conn.namespace
    if action is None:
        obj = get_database(conn, namespace, args.database)
        if args.output in ("json", "yaml"):
            print_object(report_data(obj), args.output)
        else:
            print(report(obj))
        return 0
    plans: dict[str, Plan] = {
        "test": lambda obj: plan_test(obj, to),
        "now": lambda obj: plan_now(obj, to),
        "rollback": lambda obj: plan_rollback(obj, now()),
    }
    changed, message = patch_database(conn, namespace, args.database, plans[action], "the upgrade was asked for")
    print(f"{OBJECT}/{args.database} patched: {message}" if changed else message)
    if changed:
        final = get_database(conn, namespace, args.database)
        image = (final.get("spec") or {}).get("image")
        if image and action != "test":
            print(f"note: spec.image is set ({one_line(image)}): it overrides the operator's image for the version; "
                  "make it an image of the new version too", file=sys.stderr)
        print(f"follow it with `kubectl odoo upgrade {args.database} -n {namespace}`", file=sys.stderr)
    return 0
