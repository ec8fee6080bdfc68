"""Upgrades of one OdooDatabase: offered, tested on a copy, carried out with a way back, forced after the deadline.

Where the database's data is: its marker (the JSON comment on the PostgreSQL database, pg.py) records
`version` (the version its data is at; the app runs that version's image) and, while an upgrade runs,
`upgrade` {from, to, step, startedAt, downSince}. Every step reads it and writes the next one before it
acts, so an operator killed anywhere resumes (or rolls back) and never starts the app on a database whose
upgrade did not finish. The steps of a production upgrade:

    stopping     the app scaled to 0, its Pods gone, sessions terminated
    copying      the pre-upgrade copy: CREATE DATABASE … TEMPLATE (FILE_COPY, as duplicates), kept
                 ODOO_OPERATOR_UPGRADE_KEEP; the filestore is copied by the Job's init container
    upgrading    the upgrade Job: the version table's method (default `odoo -u all`) with its image
    (done)       marker version = target; the Deployment moves to the target's image
    rollingBack  on failure, or for `kubectl odoo upgrade --rollback`: the database re-created from the
                 copy (the copy's marker says `restoring` first, so a kill between DROP and CREATE is
                 finished by `recover`), then the files put back by a Job; the app returns on the old version

A test upgrade is a neutralized duplicate `<name>-upgrade-test` asking for the target version: it upgrades
itself with the same Job and no pre-upgrade copy (it is disposable); its result is reported in
status.upgrade.test of its source. Not here: the Job manifests (specs/upgrade.py), the version order and
what is offered (api/versions.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from odoo_operator import API_VERSION, failpoints, pg, specs
from odoo_operator.api.conditions import Condition, format_time, now, now_iso, parse_rfc3339, parse_time
from odoo_operator.api.labels import RETEST_ANNOTATION, ROLLBACK_ANNOTATION, TEST_COPY_LABEL
from odoo_operator.api.model import OdooDatabase, parse_duration, pre_upgrade_database_name, requested_version
from odoo_operator.api.versions import below_latest_major, newest_above, version_key
from odoo_operator.config import UpgradeMethod
from odoo_operator.controller.base import NotReady, job_failure
from odoo_operator.controller.odoodatabase_create import DatabasePass

PHASE_UPGRADING = "Upgrading"


@dataclass
class Serving:
    """What the app runs after this step: the version the data is at and its image; `problem`, when set,
    is raised once the app's children are applied (a failed upgrade: Stalled, the app back on the old version)."""
    version: str
    image: str
    problem: NotReady | None = None


def pre_upgrade_database(db: OdooDatabase) -> str:
    return pre_upgrade_database_name(db.uid)


def recover(r: DatabasePass, conn: Any) -> None:
    """Before the database is looked for: a rollback killed between DROP and CREATE left it missing and its
    copy marked `restoring` (with the marker the database gets back): finish the CREATE."""
    db = r.obj
    if not db.uid or not r.status.get("createdAt"):
        return
    copy = pg.database_info(conn, pre_upgrade_database(db))
    restoring = (copy.marker or {}).get("restoring")
    if not copy.exists or not restoring or pg.database_info(conn, db.database_name).exists:
        return
    pg.copy_database(conn, pre_upgrade_database(db), db.database_name, db.role_name, restoring)
    r.events.append(("Normal", "RollingBack", f"database {db.database_name!r} re-created from its pre-upgrade "
                     "copy (a rollback was interrupted)"))


def ensure_version(r: DatabasePass, details: list[Condition]) -> Serving:
    """The version step of a pass over an initialised database: offer, test, upgrade or roll back. Returns
    what the app runs; raises NotReady while the app must stay down (an upgrade or a rollback under way)."""
    db = r.obj
    with pg.connect(_admin(r)) as conn:
        marker = pg.database_info(conn, db.database_name).marker or {}
    data = str(marker.get("version") or r.status.get("version") or db.version)
    if not marker.get("version"):
        _write_marker(r, marker | {"version": data})
        marker = marker | {"version": data}
    record = dict(r.status.get("upgrade") or {})
    r.new_status["version"] = data
    _expire_copy(r, marker, record)
    progress = marker.get("upgrade")
    if progress or _rollback_requested(r, marker, record, data):
        serving = _continue(r, marker, marker["upgrade"], record)  # returns only once it is done
        _offer(r, serving.version, details)
        return serving
    _finish_unreported(r, marker, record, data)
    available = _offer(r, data, details)
    desired, forced = _desired(r, data, available)
    problem: NotReady | None = None
    failed = marker.get("failedUpgrade") or {}
    if failed and (failed.get("to") != desired or r.ctx.registry.child("Job", db.namespace, str(failed.get(
            "job"))) is None and r.kube.get("batch/v1", "Job", str(failed.get("job")), db.namespace) is None):
        _write_marker(r, {k: v for k, v in marker.items() if k != "failedUpgrade"})  # retried, or given up
        marker = {k: v for k, v in marker.items() if k != "failedUpgrade"}
        failed = {}
    # A production upgrade waits for a successful test of its version when testFirst (not at the deadline);
    # spec.upgrade.targetVersion alone asks for a test and nothing more.
    needs_test = desired is not None and db.upgrade.test_first and not forced and not _is_test_copy(db)
    test_target = desired if needs_test else db.upgrade.target_version if db.upgrade.target_version and \
        version_key(db.upgrade.target_version) > version_key(data) else None
    test = _ensure_test(r, record, test_target) if test_target else None
    if desired is not None:
        tested = test is not None and test.get("to") == desired
        if failed:
            problem = NotReady("UpgradeFailed", f"the upgrade to {desired} failed and was rolled back: the database "
                               f"is back on {data}, as it was before (Job {failed.get('job')}'s log tail is in "
                               f"status.upgrade.logTail). Fix the upgrade method, then delete Job "
                               f"{failed.get('job')} to try again, or set spec.version back to {data}",
                               stalled=True)
        elif needs_test and tested and test is not None and test.get("state") == "Failed":
            problem = NotReady("UpgradeFailed", f"the test upgrade to {desired} failed on "
                               f"{test.get('database')} (status.upgrade.test.logTail); production stays on {data}. "
                               f"Fix the upgrade method, then `kubectl odoo upgrade {db.name} --test` to test again",
                               stalled=True)
        elif not needs_test or tested and test is not None and test.get("state") == "Succeeded":
            return _start(r, marker, record, data, desired, forced)
    r.new_status["upgrade"] = record or None
    return Serving(data, image_for(r, data), problem)


# ---- what is offered, and when it becomes due --------------------------------------------------------

def _offer(r: DatabasePass, data: str, details: list[Condition]) -> str | None:
    """status.availableUpgrade, the UpgradeAvailable condition and Event, status.upgradeDeadline."""
    db, settings = r.obj, r.ctx.settings
    available = newest_above(data, settings.images)
    if available is None:
        r.new_status.update({"availableUpgrade": None, "upgradeOfferedAt": None, "upgradeDeadline": None})
        details.append(Condition.false("UpgradeAvailable", "UpToDate", f"Odoo {data} is the newest version the "
                                       "operator runs"))
        return None
    offered = r.status.get("upgradeOfferedAt") if r.status.get("availableUpgrade") else None
    if not offered or r.status.get("availableUpgrade") != available:
        offered = offered or now_iso()
        r.events.append(("Normal", "UpgradeAvailable", f"Odoo {available} is available (the database runs {data}); "
                         f"`kubectl odoo upgrade {db.name} --test` tries it on a copy"))
    r.new_status.update({"availableUpgrade": available, "upgradeOfferedAt": offered})
    deadline: datetime.datetime | None = None
    if below_latest_major(data, settings.images):
        deadline = db.upgrade.deadline or parse_time(offered) + parse_duration(settings.upgrade_grace,
                                                                              "ODOO_OPERATOR_UPGRADE_GRACE")
    r.new_status["upgradeDeadline"] = format_time(deadline) if deadline else None
    when = f"; it is carried out by itself at {format_time(deadline)}" if deadline else ""
    details.append(Condition.true("UpgradeAvailable", "UpgradeAvailable", f"Odoo {available} is available{when}"))
    if deadline is not None:
        _wake(r, (deadline - now()).total_seconds())
    return available


def _desired(r: DatabasePass, data: str, available: str | None) -> tuple[str | None, bool]:
    """The version to upgrade to now, and whether the deadline forces it; None: no upgrade is due."""
    db = r.obj
    deadline = r.new_status.get("upgradeDeadline")
    if available and deadline and now() >= parse_time(deadline) and version_key(db.version) < version_key(available):
        return available, True
    if version_key(db.version) > version_key(data):
        return db.version, False
    return None, False


def _is_test_copy(db: OdooDatabase) -> bool:
    return bool(db.duplicate_from and db.duplicate_from.for_testing)


def image_for(r: DatabasePass, version: str) -> str:
    """The image of the version the data is at: spec's when that is spec.version, else the table's."""
    db = r.obj
    return db.image if version == db.version else r.ctx.settings.images.get(version, db.image)


def method_for(r: DatabasePass, to: str) -> tuple[UpgradeMethod, str]:
    settings = r.ctx.settings
    image = r.obj.image if to == r.obj.version else settings.images.get(to, r.obj.image)
    return settings.upgrade_methods.get(to, UpgradeMethod()), image


# ---- the test upgrade ------------------------------------------------------------------------------

def _source_name(copy: OdooDatabase) -> str:
    return copy.duplicate_from.name if copy.duplicate_from else copy.name


def _is_our_copy(db: OdooDatabase, copy: Mapping[str, Any]) -> bool:
    meta = copy["metadata"]
    return (meta.get("labels") or {}).get(TEST_COPY_LABEL) == db.name and \
        any(o.get("uid") == db.uid for o in meta.get("ownerReferences") or [])


def request_pending(body: Mapping[str, Any]) -> bool:
    """A `kubectl odoo upgrade` request its passes have not answered yet — a rollback (its annotation is removed
    once carried out or refused) or a new test: an annotation changes no generation, so its watch event must
    wake the object's loop (handlers.on_database_event), as a logout request does."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if annotations.get(ROLLBACK_ANNOTATION):
        return True
    test = (((body.get("status") or {}).get("upgrade") or {}).get("test")) or {}
    return _retest_asked(body, test) is not None


def _retest_asked(body: Mapping[str, Any], test: Mapping[str, Any]) -> str | None:
    """The RETEST_ANNOTATION asking for a new test after this one finished (the plugin writes a time after
    status.upgrade.test.finishedAt), not answered yet (a test started for it records it: never twice)."""
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(RETEST_ANNOTATION)
    if not value or value == test.get("retest"):
        return None
    try:
        asked = parse_rfc3339(str(value))
        finished = parse_rfc3339(str(test["finishedAt"])) if test.get("finishedAt") else None
    except ValueError:
        return None  # not a time: nothing is asked
    return str(value) if finished is None or asked > finished else None


def _ensure_test(r: DatabasePass, record: dict[str, Any], to: str) -> dict[str, Any]:
    """The test copy for `to`, created once; its result copied into status.upgrade.test."""
    db = r.obj
    name = specs.upgrade.test_copy_name(db)
    test = dict(record.get("test") or {})
    copy = r.kube.get(API_VERSION, "OdooDatabase", name, db.namespace)
    finished = test.get("to") == to and test.get("state") in ("Succeeded", "Failed")
    retest = _retest_asked(r.body, test) if finished else None
    if retest is not None:
        # Asked to test again (kubectl odoo upgrade --test): the finished copy goes, a fresh one follows.
        if copy is not None and not copy["metadata"].get("deletionTimestamp") and _is_our_copy(db, copy):
            r.kube.delete(API_VERSION, "OdooDatabase", name, db.namespace)
        record["test"] = {"state": "Running", "to": to, "database": name, "startedAt": now_iso(), "retest": retest}
        record["state"] = "Testing"
        _wake(r, 5)
        return record["test"]
    if copy is not None and not _is_our_copy(db, copy):
        # Not ours: never touched; the test is reported failed (production keeps serving).
        record["test"] = {"state": "Failed", "to": to, "database": name, "logTail": f"OdooDatabase {name} exists "
                          "and is not this database's test copy; rename or delete it to test an upgrade"}
        return record["test"]
    if copy is not None and requested_version(copy) != to:
        # A test of another version: that copy goes (it is ours), a new one follows once it is gone.
        if not copy["metadata"].get("deletionTimestamp"):
            r.kube.delete(API_VERSION, "OdooDatabase", name, db.namespace)
        record["test"] = {"state": "Running", "to": to, "database": name, "startedAt": now_iso()}
        record["state"] = "Testing"
        _wake(r, 5)
        return record["test"]
    if copy is None:
        if test.get("to") == to and test.get("state") in ("Succeeded", "Failed"):
            return test  # the result stands after the copy expired (kubectl odoo upgrade --test tests again)
        r.refuse_when_deleting()
        created = r.kube.create(specs.upgrade.build_test_copy(db, to, r.new_status.get("server")))
        again = test.get("to") == to and test.get("state") == "Running"  # asked again; the old copy is gone now
        test = {"state": "Running", "to": to, "database": name,
                "startedAt": test.get("startedAt") if again and test.get("startedAt") else now_iso(),
                **({"retest": test["retest"]} if again and test.get("retest") else {})}
        if created is not None:
            r.events.append(("Normal", "UpgradeTestStarted", f"test upgrade to {to} on a neutralized copy, "
                             f"OdooDatabase {name}; production keeps serving"))
        record["test"] = test
        record.setdefault("state", "Testing")
        return test
    status = copy.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    stalled = conditions.get("Stalled") or {}
    upgrade = status.get("upgrade") or {}
    test.update({"to": to, "database": name, "url": status.get("url")})
    test.setdefault("startedAt", copy["metadata"].get("creationTimestamp") or now_iso())
    state = test.get("state")
    if status.get("version") == to and (conditions.get("Ready") or {}).get("status") == "True":
        state = "Succeeded"
    elif stalled.get("status") == "True":
        state = "Failed"
        test["logTail"] = upgrade.get("logTail") or stalled.get("message")
    if state != test.get("state") and state in ("Succeeded", "Failed"):
        test["finishedAt"] = now_iso()
        test["durationSeconds"] = upgrade.get("durationSeconds") or round(
            (now() - parse_time(test["startedAt"])).total_seconds(), 1)
        if state == "Succeeded":
            r.events.append(("Normal", "UpgradeTestSucceeded", f"the test upgrade to {to} succeeded on {name} "
                             f"({test.get('url')}); set spec.version to {to} to upgrade production"))
        else:
            r.events.append(("Warning", "UpgradeTestFailed", f"the test upgrade to {to} failed on {name}; see "
                             "status.upgrade.test.logTail"))
        record["state"] = "TestSucceeded" if state == "Succeeded" else "TestFailed"
    test["state"] = state or "Running"
    record["test"] = test
    record.setdefault("state", "Testing")
    return test


# ---- the production upgrade --------------------------------------------------------------------------

def _start(r: DatabasePass, marker: dict[str, Any], record: dict[str, Any], data: str, to: str,
           forced: bool) -> Serving:
    progress = {"from": data, "to": to, "step": "stopping", "startedAt": now_iso()}
    _write_marker(r, marker | {"upgrade": progress})
    why = " (its deadline passed)" if forced else ""
    r.events.append(("Normal", "Upgrading", f"upgrading from Odoo {data} to {to}{why}: the app stops, a copy of "
                     "the database is kept, then the upgrade Job runs"))
    record.update({"state": "Upgrading", "from": data, "to": to, "startedAt": progress["startedAt"],
                   "finishedAt": None, "durationSeconds": None, "downtimeSeconds": None, "logTail": None,
                   "downSince": None, "failure": None})
    return _continue(r, marker | {"upgrade": progress}, progress, record)


def _continue(r: DatabasePass, marker: dict[str, Any], progress: Mapping[str, Any],
              record: dict[str, Any]) -> Serving:
    """One more step of the upgrade (or rollback) the marker records."""
    db = r.obj
    step, source, to = progress.get("step"), str(progress.get("from")), str(progress.get("to"))
    if record.get("startedAt") != progress.get("startedAt"):  # the pass that started it did not publish
        rollback = bool(progress.get("rollback"))
        for key in ("finishedAt", "durationSeconds", "downtimeSeconds", "logTail", "failure", "downSince"):
            record.pop(key, None)
        record.update({"state": "RollingBack" if rollback else "Upgrading", "from": to if rollback else source,
                       "to": source if rollback else to, "startedAt": progress.get("startedAt")})
    if progress.get("downSince"):
        record["downSince"] = record.get("downSince") or progress["downSince"]
    r.new_status["upgrade"] = record
    old = specs.upgrade.serving(db, source, image_for(r, source))
    if step == "stopping":  # on the image it runs: the version of its data (`to` for a rollback)
        _stop_app(r, specs.upgrade.serving(db, to, image_for(r, to)) if progress.get("rollback") else old, record)
        step = "rollingBack" if progress.get("rollback") else "upgrading" if _is_test_copy(db) else "copying"
        marker = marker | {"upgrade": dict(progress) | {"step": step, "downSince": record.get("downSince")}}
        _write_marker(r, marker)
        failpoints.hit("upgrade-after-stop", db.namespace)
    if step == "copying":
        _copy_aside(r, marker, source)
        step = "upgrading"
        marker = marker | {"upgrade": dict(marker["upgrade"]) | {"step": step}}
        _write_marker(r, marker)
        failpoints.hit("upgrade-after-copy", db.namespace)
    if step == "upgrading":
        return _upgrading(r, marker, old, record)
    if step == "rollingBack":
        return _rolling_back(r, marker, old, record)
    if step == "failed":  # a test copy: no way back, nothing served
        raise NotReady("UpgradeFailed", f"the upgrade to {to} failed on this test copy (status.upgrade.logTail); "
                       f"its source is untouched. `kubectl odoo upgrade {_source_name(db)} --test` tests again "
                       "on a fresh copy", stalled=True,
                       phase=PHASE_UPGRADING)
    raise NotReady("UpgradeStepUnknown", f"the database's marker records an upgrade step {step!r} this operator "
                   "does not know (written by a newer operator?)", stalled=True, phase=PHASE_UPGRADING)


def _stop_app(r: DatabasePass, old: OdooDatabase, record: dict[str, Any]) -> None:
    """The app at 0 replicas (its image unchanged), its Pods gone, its sessions terminated."""
    db = r.obj
    if r.ctx.registry.child("Deployment", db.namespace, db.name) is not None or r.kube.get(
            "apps/v1", "Deployment", db.name, db.namespace) is not None:
        r.apply(specs.app.build_deployment(old, 0, _credentials(r), r.endpoint))
    record["downSince"] = record.get("downSince") or now_iso()
    pods = r.kube.list("v1", "Pod", db.namespace, label_selector=",".join(
        f"{k}={v}" for k, v in specs.app.selector_labels(db).items()))
    if pods:
        raise NotReady(PHASE_UPGRADING, f"upgrading to {record.get('to') or db.version}: waiting for the app's "
                       f"{len(pods)} Pod(s) to stop", retry_after=1, warning=False, phase=PHASE_UPGRADING)
    with pg.connect(_admin(r)) as conn:
        pg.terminate_connections(conn, db.database_name)


def _credentials(r: DatabasePass) -> str:
    """The fingerprint the app's template carries (its pods restart only when the password changes)."""
    return specs.app.credentials_fingerprint(r.obj, r.tenant.password)


def _copy_aside(r: DatabasePass, marker: dict[str, Any], version: str) -> None:
    """The pre-upgrade copy of the database (made again after a kill: the earlier one may be partial) and
    the volume its files go to."""
    db = r.obj
    copy = pre_upgrade_database(db)
    r.apply(specs.upgrade.build_pre_upgrade_pvc(db, r.ctx.settings))
    with pg.connect(_admin(r)) as conn:
        if pg.database_info(conn, copy).exists:
            pg.drop_database(conn, copy)
        pg.terminate_connections(conn, db.database_name)
        pg.copy_database(conn, db.database_name, copy, db.role_name,
                         db.owner_marker | {"uid": db.uid, "preUpgradeOf": db.database_name, "version": version})


def _upgrading(r: DatabasePass, marker: dict[str, Any], old: OdooDatabase, record: dict[str, Any]) -> Serving:
    db = r.obj
    progress = dict(marker["upgrade"])
    to = str(progress["to"])
    method, image = method_for(r, to)
    snapshot = not _is_test_copy(db)
    name = specs.upgrade.upgrade_job_name(db, to, str(progress["startedAt"]))
    run = r.ensure_job(name, lambda: specs.upgrade.build_upgrade_job(old, r.endpoint, name, to, method, image,
                                                                     snapshot=snapshot),
                       failpoint="upgrade-job-created")
    if run.state == "Running":
        raise NotReady(PHASE_UPGRADING, f"Job {run.name} is upgrading the database from Odoo {old.version} to {to}; "
                       "the app is stopped meanwhile", retry_after=15, warning=False, phase=PHASE_UPGRADING)
    tail = _log_tail(r, run.name)
    finished = now_iso()
    record.update({"finishedAt": finished, "logTail": tail,
                   "durationSeconds": round((now() - parse_time(str(progress["startedAt"]))).total_seconds(), 1)})
    if run.state == "Complete":
        keep = {k: v for k, v in marker.items() if k not in ("upgrade", "preUpgrade")}
        done = keep | {"version": to}
        if snapshot:
            expires = format_time(now() + parse_duration(r.ctx.settings.upgrade_keep, "ODOO_OPERATOR_UPGRADE_KEEP"))
            done["preUpgrade"] = {"version": old.version, "createdAt": progress["startedAt"], "expiresAt": expires}
            record["preUpgradeCopy"] = done["preUpgrade"]
        _write_marker(r, done)
        failpoints.hit("upgrade-after-marker", db.namespace)
        record["state"] = "Succeeded"
        r.new_status["version"] = to
        r.events.append(("Normal", "Upgraded", f"upgraded from Odoo {old.version} to {to} by Job {run.name} in "
                         f"{record['durationSeconds']} s; the app starts on {to}"))
        return Serving(to, image_for(r, to))
    failure = f"Job {run.name} failed ({run.failure})"
    if not snapshot:  # a test copy: reported, never served
        _write_marker(r, marker | {"upgrade": progress | {"step": "failed"}})
        record["state"] = "Failed"
        r.events.append(("Warning", "UpgradeFailed", f"the upgrade to {to} failed: {failure}"))
        raise NotReady("UpgradeFailed", f"the upgrade to {to} failed: {failure}; this test copy is not served, its "
                       f"source is untouched (status.upgrade.logTail). `kubectl odoo upgrade {_source_name(db)} "
                       "--test` tests again on a fresh copy",
                       stalled=True, phase=PHASE_UPGRADING)
    record["failure"] = failure
    rolling = marker | {"upgrade": progress | {"step": "rollingBack", "job": run.name}}
    _write_marker(r, rolling)
    r.events.append(("Warning", "UpgradeFailed", f"the upgrade to {to} failed: {failure}; putting the database "
                     "back from its pre-upgrade copy"))
    return _rolling_back(r, rolling, old, record)


def _rolling_back(r: DatabasePass, marker: dict[str, Any], old: OdooDatabase, record: dict[str, Any]) -> Serving:
    """The database re-created from the pre-upgrade copy (the copy first marked `restoring`), then its files
    put back; the app returns on the old version."""
    db = r.obj
    progress = dict(marker["upgrade"])
    to, back = str(progress["to"]), str(progress["from"])
    copy = pre_upgrade_database(db)
    if not progress.get("databaseRestored"):
        with pg.connect(_admin(r)) as conn:
            info = pg.database_info(conn, copy)
            if not info.exists:
                raise NotReady("UpgradeFailed", f"the database must be put back from its pre-upgrade copy {copy!r}, "
                               "which no longer exists; restore it from a backup", stalled=True,
                               phase=PHASE_UPGRADING)
            restored_marker = marker | {"upgrade": progress | {"databaseRestored": True}}
            pg.set_database_marker(conn, copy, (info.marker or {}) | {"restoring": restored_marker})
            failpoints.hit("rollback-before-drop", db.namespace)
            pg.drop_database(conn, db.database_name)
            failpoints.hit("rollback-after-drop", db.namespace)
            pg.copy_database(conn, copy, db.database_name, db.role_name, restored_marker)
            pg.set_database_marker(conn, copy, {k: v for k, v in (info.marker or {}).items() if k != "restoring"})
        marker = restored_marker
    name = specs.upgrade.files_rollback_job_name(db, to, str(progress["startedAt"]))
    run = r.ensure_job(name, lambda: specs.upgrade.build_files_rollback_job(old, name))
    if run.state == "Failed":
        raise NotReady("RollbackFailed", f"the database was put back, but Job {run.name} failed to put the filestore "
                       f"back ({run.failure}); delete the Job to retry", stalled=True, phase=PHASE_UPGRADING)
    if run.state != "Complete":
        raise NotReady(PHASE_UPGRADING, f"Job {run.name} is putting the filestore back as it was before the upgrade "
                       f"to {to}", retry_after=5, warning=False, phase=PHASE_UPGRADING)
    back_marker = {k: v for k, v in marker.items() if k != "upgrade"} | {"version": back}
    requested = bool(progress.get("rollback"))
    if not requested and progress.get("job") and not record.get("logTail"):  # lost with a killed pass's status
        record["logTail"] = _log_tail(r, str(progress["job"]))
        job = r.ctx.registry.child("Job", db.namespace, str(progress["job"])) or r.kube.get(
            "batch/v1", "Job", str(progress["job"]), db.namespace)
        record["failure"] = record.get("failure") or f"Job {progress['job']} failed ({job_failure(job)})"
    if not requested:
        back_marker["failedUpgrade"] = {"to": to, "job": progress.get("job"), "at": now_iso()}
    _write_marker(r, back_marker)
    r.new_status["version"] = back
    record.update({"state": "RolledBack" if requested else "Failed", "finishedAt": record.get("finishedAt")
                   or now_iso()})
    if record.get("durationSeconds") is None and record.get("startedAt"):
        record["durationSeconds"] = round((parse_time(str(record["finishedAt"])) - parse_time(
            str(record["startedAt"]))).total_seconds(), 1)
    if requested:
        r.kube.patch_metadata(API_VERSION, "OdooDatabase", db.name, db.namespace,
                              {"annotations": {ROLLBACK_ANNOTATION: None}})
        r.events.append(("Normal", "RolledBack", f"rolled back from Odoo {to} to {back}: the database and its files "
                         "are as they were before the upgrade"))
        return Serving(back, image_for(r, back))
    r.events.append(("Normal", "RolledBack", f"the failed upgrade to {to} was rolled back: the database and its files "
                     f"are as they were before, the app returns on Odoo {back}"))
    problem = NotReady("UpgradeFailed", f"the upgrade to {to} failed ({record.get('failure')}) and was rolled "
                       f"back: the database is on {back} as before (status.upgrade.logTail). Fix the upgrade "
                       f"method, then delete Job {progress.get('job')} to try again, or set spec.version back to "
                       f"{back}", stalled=True)
    return Serving(back, image_for(r, back), problem)


def _finish_unreported(r: DatabasePass, marker: Mapping[str, Any], record: dict[str, Any], data: str) -> None:
    """An upgrade (or rollback) whose end a killed operator never published: the marker says how it ended."""
    state = record.get("state")
    if state not in ("Upgrading", "RollingBack"):
        return
    failed = marker.get("failedUpgrade") or {}
    if state == "RollingBack":
        record["state"] = "RolledBack"
    elif data == record.get("to"):
        record["state"] = "Succeeded"
    elif failed.get("to") == record.get("to"):
        record["state"] = "Failed"
    else:
        return
    record["finishedAt"] = record.get("finishedAt") or now_iso()
    if record.get("startedAt") and record.get("durationSeconds") is None:
        record["durationSeconds"] = round((now() - parse_time(str(record["startedAt"]))).total_seconds(), 1)
    if record.get("to") and record.get("startedAt") and not record.get("logTail") and state == "Upgrading":
        record["logTail"] = _log_tail(r, specs.upgrade.upgrade_job_name(r.obj, str(record["to"]),
                                                                       str(record["startedAt"])))


def _rollback_requested(r: DatabasePass, marker: dict[str, Any], record: dict[str, Any], data: str) -> bool:
    """kubectl odoo upgrade --rollback: the annotation, with spec.version set back to the copy's version."""
    db = r.obj
    asked = ((r.body.get("metadata") or {}).get("annotations") or {}).get(ROLLBACK_ANNOTATION)
    if not asked:
        return False
    copy = marker.get("preUpgrade") or {}
    if copy and data == copy.get("version") and (r.status.get("upgrade") or {}).get("state") in (
            "RollingBack", "RolledBack"):  # done by a pass killed before it removed the annotation
        r.kube.patch_metadata(API_VERSION, "OdooDatabase", db.name, db.namespace,
                              {"annotations": {ROLLBACK_ANNOTATION: None}})
        return False
    if not copy or db.version != copy.get("version") or version_key(db.version) >= version_key(data):
        r.events.append(("Warning", "RollbackRefused", "a rollback was asked, but " + (
            "there is no pre-upgrade copy (none was made, or it expired)" if not copy else
            f"spec.version must be set back to {copy.get('version')} along with it")))
        r.kube.patch_metadata(API_VERSION, "OdooDatabase", db.name, db.namespace,
                              {"annotations": {ROLLBACK_ANNOTATION: None}})
        return False
    progress = {"from": copy["version"], "to": data, "step": "stopping", "rollback": True, "startedAt": now_iso()}
    marker["upgrade"] = progress
    _write_marker(r, marker)
    record.update({"state": "RollingBack", "from": data, "to": copy["version"], "startedAt": progress["startedAt"],
                   "finishedAt": None, "logTail": None, "downSince": None, "downtimeSeconds": None,
                   "durationSeconds": None, "failure": None})
    r.events.append(("Normal", "RollingBack", f"rolling back from Odoo {data} to the pre-upgrade copy of "
                     f"{copy['version']} made at {copy.get('createdAt')}"))
    return True


def _expire_copy(r: DatabasePass, marker: dict[str, Any], record: dict[str, Any]) -> None:
    """Past ODOO_OPERATOR_UPGRADE_KEEP the pre-upgrade copy (database and volume) goes."""
    db = r.obj
    copy = marker.get("preUpgrade")
    if not copy:
        record.pop("preUpgradeCopy", None)
        return
    record["preUpgradeCopy"] = copy
    remaining = (parse_time(copy["expiresAt"]) - now()).total_seconds()
    if remaining > 0:
        _wake(r, remaining)
        return
    with pg.connect(_admin(r)) as conn:
        pg.drop_database(conn, pre_upgrade_database(db))
    r.kube.delete("v1", "PersistentVolumeClaim", specs.upgrade.pre_upgrade_pvc_name(db), db.namespace)
    _write_marker(r, {k: v for k, v in marker.items() if k != "preUpgrade"})
    marker.pop("preUpgrade", None)
    record.pop("preUpgradeCopy", None)
    r.events.append(("Normal", "PreUpgradeCopyExpired", f"the pre-upgrade copy of Odoo {copy.get('version')} was "
                     "kept until " + str(copy["expiresAt"]) + " and is now removed"))


def app_back(r: DatabasePass, available: bool) -> None:
    """Once the app serves again after an upgrade or a rollback: the downtime, from the app's stop."""
    record = r.new_status.get("upgrade") or {}
    if available and record.get("downSince") and record.get("downtimeSeconds") is None and \
            record.get("state") in ("Succeeded", "Failed", "RolledBack"):
        record["downtimeSeconds"] = round((now() - parse_time(record["downSince"])).total_seconds(), 1)


# ---- helpers -----------------------------------------------------------------------------------------

def _write_marker(r: DatabasePass, marker: Mapping[str, Any]) -> None:
    with pg.connect(_admin(r)) as conn:
        pg.set_database_marker(conn, r.obj.database_name, dict(marker))


def _log_tail(r: DatabasePass, job: str) -> str | None:
    """The upgrade container's termination message (the tail of its output, specs.upgrade's wrapper)."""
    pods = r.kube.list("v1", "Pod", r.obj.namespace, label_selector=f"job-name={job}")
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True):
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        statuses += (pod.get("status") or {}).get("initContainerStatuses") or []
        for status in statuses:
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                return str(message)[-specs.upgrade.LOG_TAIL_BYTES:]
    return None


def _wake(r: DatabasePass, seconds: float) -> None:
    current = getattr(r, "wake_in", None)
    cast(Any, r).wake_in = max(1.0, seconds) if current is None else max(1.0, min(current, seconds))


def _admin(r: DatabasePass) -> pg.ServerAddress:
    """The server's admin login of this pass (odoodatabase.Reconciler.admin)."""
    return cast(pg.ServerAddress, cast(Any, r).admin)
