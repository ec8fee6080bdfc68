"""Reliability under the faults a real cluster sees, end to end (real API server, PostgreSQL, kwok).

- The operator is SIGKILLed (a failpoint: `os._exit(137)` at that line, see failpoints.py) at every
  step of create, duplicate, rename, restore, Snapshot delete and domain takeover, then started again
  without the failpoint. Every run checks: nothing lost (rows written before, credentials), nothing
  doubled (one PostgreSQL database and role per object, one Job, one backup artifact, one claim
  holder, one route per host), nothing half-done (no app on an uninitialised or unneutralized
  database, no leftover role or database after a delete, no route without its claim).
- PostgreSQL restarted in the middle of provisioning, and down during a rename: ServerUnavailable,
  then recovery by itself.
- kube-apiserver restarted (same port, certificates, etcd): the operator's watches reconnect and it
  converges on what changed meanwhile.
- 409 conflicts: writers doing read-modify-write (PUT with resourceVersion) against the operator's
  own writes: every update lands, none is lost, the operator's status stays current.

The figures (kill points, runs, violations, recovery times) are written to .cache/reliability.json
and copied into BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kubernetes
import pytest
import yaml

from conftest import OperatorProcess, condition, get_json, odoo_database, pg_query, wait_until
from jobrunner import run_job
from odoo_operator.api.model import role_name
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster
from test_duplicate import connect_as_owner
from test_lifecycle import secret_data, wait_ready, wait_reason

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

RESULTS_PATH = REPO_ROOT / ".cache" / "reliability.json"
GROUP = "odoo.dbmanager.io"


# ---- figures -------------------------------------------------------------------------------------

class Run:
    """One fault injected: what was checked and how long recovery took. Violations are counted by kind
    (lost, doubled, half_done) and asserted at the end of the test, all at once."""

    def __init__(self, flow: str, fault: str) -> None:
        self.flow, self.fault = flow, fault
        self.checks = 0
        self.violations: dict[str, list[str]] = {"lost": [], "doubled": [], "half_done": []}
        self.died = False
        self.recovery_seconds: float | None = None

    def check(self, kind: str, ok: Any, what: str) -> None:
        self.checks += 1
        if not ok:
            self.violations[kind].append(what)

    def assert_clean(self) -> None:
        bad = {k: v for k, v in self.violations.items() if v}
        assert not bad, f"{self.flow} / {self.fault}: {bad}"

    def record(self) -> dict[str, Any]:
        return {"flow": self.flow, "fault": self.fault, "died": self.died, "checks": self.checks,
                "recovery_seconds": None if self.recovery_seconds is None else round(self.recovery_seconds, 2),
                **{k: len(v) for k, v in self.violations.items()}}


_RUNS: list[dict[str, Any]] = []
_EXTRA: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    started = time.monotonic()
    yield
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    kills = [r for r in _RUNS if r["fault"].startswith("kill@")]
    RESULTS_PATH.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
                   f"{platform.system()} {platform.release()}",
        "suite_seconds": round(time.monotonic() - started, 1),
        "kill_points": sorted({r["fault"][5:] for r in kills}),
        "runs": len(_RUNS),
        "kill_runs": len(kills),
        "killed_as_planned": sum(1 for r in kills if r["died"]),
        "checks": sum(r["checks"] for r in _RUNS),
        "lost": sum(r["lost"] for r in _RUNS), "doubled": sum(r["doubled"] for r in _RUNS),
        "half_done": sum(r["half_done"] for r in _RUNS),
        **_EXTRA,
        "details": _RUNS,
    }, indent=2) + "\n")


@pytest.fixture
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[str, str], Run]]:
    made: list[Run] = []

    def make(flow: str, fault: str) -> Run:
        made.append(Run(flow, fault))
        return made[-1]
    yield make
    _RUNS.extend(r.record() for r in made)


# ---- helpers -----------------------------------------------------------------------------------

def apply_yaml(cluster: LocalCluster, text: str) -> None:
    result = cluster.kubectl("apply", "-f", "-", input=text, check=False)
    assert result.returncode == 0, result.stderr


@contextmanager
def killed_at(operator: OperatorProcess, failpoint: str, run: Run, timeout: float = 90) -> Iterator[None]:
    """The operator runs with `failpoint` armed while the body acts; it must die there (exit 137). It is
    then started again without it; run.recovery_seconds is measured from that restart by `recovered`."""
    operator.kill()
    operator.env["ODOO_OPERATOR_FAILPOINTS"] = failpoint
    point = failpoint.split("@")[0]
    before = operator.log().count(f"failpoint {point}: exiting")
    try:
        operator.start()
        yield
        wait_until(lambda: operator.process is not None and operator.process.poll() is not None, timeout,
                   f"the operator to die at {failpoint}")
        run.died = operator.process is not None and operator.process.returncode == 137 and \
            operator.log().count(f"failpoint {point}: exiting") == before + 1
        assert run.died, f"the operator did not die at {failpoint} (exit {operator.process.returncode})"
    finally:
        operator.env.pop("ODOO_OPERATOR_FAILPOINTS", None)
        operator.kill()
        operator.start()
        run.recovery_seconds = -time.monotonic()  # completed by recovered()


def recovered(run: Run, value: Any = None) -> Any:
    if run.recovery_seconds is not None and run.recovery_seconds < 0:
        run.recovery_seconds += time.monotonic()
    return value


def databases_of(cluster: LocalCluster, pg_dsn: str, namespace: str) -> list[str]:
    """Every PostgreSQL database owned by the role of an OdooDatabase of this namespace (doubles show
    up here: whatever an object creates belongs to its role)."""
    names = [o["metadata"]["name"] for o in get_json(cluster, "odb", "-n", namespace).get("items") or []]
    rows = pg_query(pg_dsn, "SELECT datname FROM pg_database WHERE pg_get_userbyid(datdba) = ANY(%s)",
                    [role_name(namespace, n) for n in names])
    return sorted(r[0] for r in rows)


def count_databases(pg_dsn: str, name: str) -> int:
    return int(pg_query(pg_dsn, "SELECT count(*) FROM pg_database WHERE datname = %s", name)[0][0])


def count_roles(pg_dsn: str, role: str) -> int:
    return int(pg_query(pg_dsn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", role)[0][0])


def public_can_connect(pg_dsn: str, name: str) -> bool:
    return bool(pg_query(pg_dsn, "SELECT has_database_privilege('public', %s, 'CONNECT')", name)[0][0])


def jobs_of(cluster: LocalCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items = get_json(cluster, "jobs", "-n", namespace).get("items") or []
    return [j for j in items if j["metadata"]["name"] == name]


def ingress_hosts(cluster: LocalCluster, host: str) -> list[str]:
    items = get_json(cluster, "ingress", "-A").get("items") or []
    return sorted(f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items
                  if any(r.get("host") == host for r in i["spec"].get("rules") or [])
                  and not i["metadata"].get("deletionTimestamp"))


def write_rows(cluster: LocalCluster, name: str, namespace: str, rows: int = 100) -> None:
    with connect_as_owner(cluster, name, namespace) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO kept SELECT g, 'row ' || g FROM generate_series(1, %s) g", (rows,))


def rows_in(cluster: LocalCluster, name: str, namespace: str) -> int:
    with connect_as_owner(cluster, name, namespace) as conn:
        return int(conn.execute("SELECT count(*) FROM kept").fetchone()[0])


def no_app(cluster: LocalCluster, name: str, namespace: str) -> bool:
    return not get_json(cluster, "deployment", name, "-n", namespace)


def gone(cluster: LocalCluster, kind: str, name: str, namespace: str) -> bool:
    return not get_json(cluster, kind, name, "-n", namespace)


# ---- create ------------------------------------------------------------------------------------

CREATE_POINTS = ["create-after-role", "create-after-database", "create-init-job-created", "create-before-status"]


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_create_killed_at_every_step(cluster, operator, namespace, pg_dsn, run, point):
    r = run("create", f"kill@{point}")
    with killed_at(operator, f"{point}@{namespace}", r):
        apply_yaml(cluster, odoo_database("cr", namespace))
    # Dead mid-create: the app never runs on a database that is not initialised.
    r.check("half_done", no_app(cluster, "cr", namespace), "a Deployment exists before the init Job completed")
    secret = secret_data(cluster, "cr-db", namespace)
    init = jobs_of(cluster, namespace, "cr-init")
    obj = recovered(r, wait_ready(cluster, "cr", namespace, timeout=120))
    role = obj["status"]["roleName"]
    r.check("doubled", count_databases(pg_dsn, "cr") == 1, "not exactly one database 'cr'")
    r.check("doubled", databases_of(cluster, pg_dsn, namespace) == ["cr"],
            f"databases: {databases_of(cluster, pg_dsn, namespace)}")
    r.check("doubled", count_roles(pg_dsn, role) == 1, "not exactly one role")
    after = jobs_of(cluster, namespace, "cr-init")
    r.check("doubled", len(after) == 1 and (not init or init[0]["metadata"]["uid"] == after[0]["metadata"]["uid"]),
            "the init Job was created again")
    r.check("lost", not secret or secret_data(cluster, "cr-db", namespace)["password"] == secret["password"],
            "the password in <name>-db changed")
    with connect_as_owner(cluster, "cr", namespace) as conn:  # the Secret's credentials work
        r.check("lost", conn.execute("SELECT current_database()").fetchone() == ("cr",), "cannot log in")
        owner = conn.execute("SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
        r.check("half_done", owner == (role,), f"pg_trgm missing or not the role's after the crash: {owner}")
    r.check("half_done", not public_can_connect(pg_dsn, "cr"), "CONNECT for PUBLIC left after the crash")
    r.check("half_done", obj["status"].get("initializedAt") and obj["status"].get("createdAt"), "status incomplete")
    r.assert_clean()


# ---- duplicate -----------------------------------------------------------------------------------

DUPLICATE_POINTS = ["duplicate-after-copy", "duplicate-before-neutralize", "neutralize-job-created"]


@pytest.mark.parametrize("point", DUPLICATE_POINTS)
def test_duplicate_killed_at_every_step(cluster, operator, namespace, pg_dsn, run, point):
    apply_yaml(cluster, odoo_database("src", namespace))
    wait_ready(cluster, "src", namespace)
    write_rows(cluster, "src", namespace, 250)
    r = run("duplicate", f"kill@{point}")
    with killed_at(operator, f"{point}@{namespace}", r):
        apply_yaml(cluster, odoo_database("dup", namespace, duplicateFrom={"name": "src", "forTesting": True}))
    r.check("half_done", no_app(cluster, "dup", namespace), "an app runs on a copy not yet neutralized")
    job = jobs_of(cluster, namespace, "dup-neutralize")
    obj = recovered(r, wait_ready(cluster, "dup", namespace, timeout=120))
    r.check("half_done", obj["status"].get("neutralized") is True, "Ready but not neutralized")
    r.check("doubled", count_databases(pg_dsn, "dup") == 1, "not exactly one database 'dup'")
    r.check("doubled", databases_of(cluster, pg_dsn, namespace) == ["dup", "src"],
            f"{databases_of(cluster, pg_dsn, namespace)}")
    r.check("doubled", count_roles(pg_dsn, obj["status"]["roleName"]) == 1, "not exactly one role")
    after = jobs_of(cluster, namespace, "dup-neutralize")
    r.check("doubled", len(after) == 1 and (not job or job[0]["metadata"]["uid"] == after[0]["metadata"]["uid"]),
            "the neutralize Job was created again")
    r.check("lost", rows_in(cluster, "dup", namespace) == 250, "rows missing in the copy")
    r.check("lost", rows_in(cluster, "src", namespace) == 250, "rows missing in the source")
    src = get_json(cluster, "odb", "src", "-n", namespace)
    r.check("half_done", condition(src, "Ready").get("status") == "True", "the source is not Ready")
    r.assert_clean()


# ---- rename --------------------------------------------------------------------------------------

def test_rename_killed_after_alter_database(cluster, operator, namespace, pg_dsn, run):
    apply_yaml(cluster, odoo_database("rn", namespace, databaseName=f"r_{namespace[2:]}"))
    obj = wait_ready(cluster, "rn", namespace)
    old, new = obj["status"]["databaseName"], f"r2_{namespace[2:]}"
    write_rows(cluster, "rn", namespace, 120)
    r = run("rename", "kill@rename-after-alter")
    with killed_at(operator, f"rename-after-alter@{namespace}", r):
        cluster.kubectl("patch", "odb", "rn", "-n", namespace, "--type=merge",
                        "-p", json.dumps({"spec": {"databaseName": new}}))
    # Renamed on the server, status still says the old name: the restart must not re-create either.
    obj = recovered(r, wait_until(lambda: (lambda o: o if condition(o, "Ready").get("status") == "True" and
                                           o["status"].get("databaseName") == new else None)(
        get_json(cluster, "odb", "rn", "-n", namespace)), 120, "the rename to finish"))
    r.check("doubled", count_databases(pg_dsn, new) == 1, "not exactly one renamed database")
    r.check("half_done", count_databases(pg_dsn, old) == 0, "the old name still exists")
    r.check("doubled", databases_of(cluster, pg_dsn, namespace) == [new], f"{databases_of(cluster, pg_dsn, namespace)}")
    r.check("lost", rows_in(cluster, "rn", namespace) == 120, "rows lost in the rename")
    old_host, new_host = f"{old.replace('_', '-')}.odoo.localhost", f"{new.replace('_', '-')}.odoo.localhost"
    r.check("half_done", wait_until(lambda: not get_json(cluster, "domainclaim", old_host), 30, "old host released"),
            "the old host is still claimed")
    claim = get_json(cluster, "domainclaim", new_host)
    r.check("half_done", (claim.get("spec") or {}).get("mappingRef", {}).get("uid") == obj["metadata"]["uid"],
            "the new host is not claimed by the database")
    r.check("half_done", ingress_hosts(cluster, new_host) == [f"{namespace}/rn"]
            and not ingress_hosts(cluster, old_host), "routes do not follow the rename")
    r.assert_clean()


# ---- restore -------------------------------------------------------------------------------------

DUMP_SQL = b"""
CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar NOT NULL UNIQUE, value text NOT NULL,
    create_uid int, create_date timestamp, write_uid int, write_date timestamp);
INSERT INTO ir_config_parameter (key, value) VALUES ('database.uuid', 'original-uuid'),
    ('database.secret', 'original-secret');
CREATE TABLE kept (id int PRIMARY KEY, note text);
INSERT INTO kept SELECT g, 'row ' || g FROM generate_series(1, 321) g;
"""
MANIFEST = {"odoo_dump": "1", "db_name": "origin", "version": "17.0", "version_info": [17, 0, 0, "final", 0, ""],
            "major_version": "17.0", "pg_version": "15.0", "modules": {"base": "17.0.1.3"}}


def backup_pvc(namespace: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": "odoo-backups", "namespace": namespace},
                           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})


@pytest.mark.parametrize("point", ["restore-job-created", "restore-before-marker"])
def test_restore_killed_at_every_step(cluster, operator, namespace, pg_dsn, tmp_path, run, point):
    uploads = tmp_path / namespace / "odoo-backups" / "_uploads"  # the PVC, as jobrunner maps it
    uploads.mkdir(parents=True)
    with zipfile.ZipFile(uploads / "origin.zip", "w") as archive:
        archive.writestr("dump.sql", DUMP_SQL)
        archive.writestr("manifest.json", json.dumps(MANIFEST))
        archive.writestr("filestore/ab/abcdef", b"attachment")
    apply_yaml(cluster, backup_pvc(namespace))
    r = run("restore", f"kill@{point}")
    with killed_at(operator, f"{point}@{namespace}", r):
        apply_yaml(cluster, odoo_database("rs", namespace, restoreFrom={"file": "_uploads/origin.zip"}))
        if point == "restore-before-marker":  # the Job completes while the armed operator waits for it
            wait_until(lambda: jobs_of(cluster, namespace, "rs-restore"), 60, "the restore Job")
            result = run_job(cluster, namespace, "rs-restore", tmp_path)
            assert result.returncode == 0, result.stderr
    r.check("half_done", no_app(cluster, "rs", namespace), "an app runs before the restore was recorded")
    job = jobs_of(cluster, namespace, "rs-restore")
    if point == "restore-job-created":
        result = run_job(cluster, namespace, "rs-restore", tmp_path)
        assert result.returncode == 0, result.stderr
    obj = recovered(r, wait_ready(cluster, "rs", namespace, timeout=120))
    after = jobs_of(cluster, namespace, "rs-restore")
    r.check("doubled", len(after) == 1 and job and job[0]["metadata"]["uid"] == after[0]["metadata"]["uid"],
            "the restore Job was created again")
    r.check("doubled", count_databases(pg_dsn, "rs") == 1 and databases_of(cluster, pg_dsn, namespace) == ["rs"],
            f"{databases_of(cluster, pg_dsn, namespace)}")
    r.check("doubled", count_roles(pg_dsn, obj["status"]["roleName"]) == 1, "not exactly one role")
    r.check("lost", rows_in(cluster, "rs", namespace) == 321, "restored rows missing")
    with connect_as_owner(cluster, "rs", namespace) as conn:
        uuid_ = conn.execute("SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'").fetchone()[0]
    r.check("half_done", uuid_ != "original-uuid", "the restored copy kept the original identity")
    r.check("half_done", obj["status"].get("initializedAt") and "restored from" in obj["status"].get("source", ""),
            "status does not record the restore")
    r.assert_clean()


# ---- Snapshot delete ----------------------------------------------------------------------------

SNAPSHOT_POINTS = ["snapshot-job-created", "snapshot-backup-recorded", "delete-after-drop", "delete-before-finalizer"]


@pytest.mark.parametrize("point", SNAPSHOT_POINTS)
def test_snapshot_delete_killed_at_every_step(cluster, operator, namespace, pg_dsn, tmp_path, run, point):
    apply_yaml(cluster, odoo_database("sn", namespace, deletionPolicy="Snapshot"))
    obj = wait_ready(cluster, "sn", namespace)
    role = obj["status"]["roleName"]
    write_rows(cluster, "sn", namespace, 77)
    r = run("snapshot-delete", f"kill@{point}")

    def recorded_job() -> dict[str, Any] | None:
        """The final backup Job the operator recorded in status (the only one it trusts)."""
        record = (get_json(cluster, "odb", "sn", "-n", namespace).get("status") or {}).get("finalBackup") or {}
        job = next(iter(jobs_of(cluster, namespace, "sn-final-backup")), None)
        if job and record.get("jobUid") == job["metadata"]["uid"] and not job["metadata"].get("deletionTimestamp"):
            return job
        return None

    with killed_at(operator, f"{point}@{namespace}", r):
        cluster.kubectl("delete", "odb", "sn", "-n", namespace, "--wait=false")
        if point != "snapshot-job-created":
            wait_until(recorded_job, 60, "the final backup Job")
            result = run_job(cluster, namespace, "sn-final-backup", tmp_path)
            assert result.returncode == 0, result.stderr
    if point in ("snapshot-job-created", "snapshot-backup-recorded"):
        r.check("lost", count_databases(pg_dsn, "sn") == 1, "dropped before the final backup was recorded")
    if point == "snapshot-job-created":  # created but not recorded: replaced by one it trusts, which runs
        wait_until(recorded_job, 60, "a recorded final backup Job")
        result = run_job(cluster, namespace, "sn-final-backup", tmp_path)
        assert result.returncode == 0, result.stderr
    recovered(r, wait_until(lambda: gone(cluster, "odb", "sn", namespace), 90, "the object to be gone"))
    r.check("half_done", count_databases(pg_dsn, "sn") == 0, "the database is left")
    r.check("half_done", count_roles(pg_dsn, role) == 0, "the role is left")
    r.check("half_done", not get_json(cluster, "domainclaim", "sn.odoo.localhost"), "the host is still claimed")
    zips = sorted((tmp_path / namespace / "odoo-backups").rglob("*.zip"))
    r.check("doubled", len(zips) == 1, f"{len(zips)} final backups")
    if zips:
        with zipfile.ZipFile(zips[0]) as archive:
            dump = archive.read("dump.sql").decode(errors="replace")
        r.check("lost", "kept" in dump and "row 77" in dump, "the final backup lacks the last rows")
    r.assert_clean()


# ---- domain takeover -----------------------------------------------------------------------------

def mapping(name: str, namespace: str, domain: str, database: str) -> str:
    return yaml.safe_dump({"apiVersion": f"{GROUP}/v1alpha1", "kind": "DomainMapping",
                           "metadata": {"name": name, "namespace": namespace},
                           "spec": {"domain": domain, "databaseRef": {"name": database}}})


@pytest.fixture
def rival(cluster, namespace) -> Iterator[str]:
    name = f"{namespace}-x"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "domainmappings,odb", "--all", "-n", name, "--timeout=90s", check=False, timeout=120)


@pytest.mark.parametrize("point", ["claim-taken", "domain-before-route", "claim-stale-removed"])
def test_domain_takeover_killed_at_every_step(cluster, operator, namespace, rival, run, point):
    """Mapping `a` (first namespace) holds a domain, `b` (rival namespace) waits for it. `a` goes (deleted
    through its finalizer, or — for claim-stale-removed — removed while the operator was down, leaving a
    stale claim); `b` takes the domain over with the operator killed at each step of the takeover."""
    domain = f"shop-{namespace[2:]}.example.com"
    apply_yaml(cluster, odoo_database("da", namespace))
    apply_yaml(cluster, odoo_database("db", rival))
    apply_yaml(cluster, mapping("a", namespace, domain, "da"))
    wait_until(lambda: (get_json(cluster, "domainclaim", domain).get("spec") or {}).get("mappingRef", {}).get(
        "namespace") == namespace, 60, "a to hold the domain")
    apply_yaml(cluster, mapping("b", rival, domain, "db"))
    wait_until(lambda: condition(get_json(cluster, "domainmapping", "b", "-n", rival), "Ready").get("reason") ==
               "DomainConflict", 60, "b to wait for the domain")
    wait_ready(cluster, "db", rival)
    r = run("domain-takeover", f"kill@{point}")
    operator.kill()
    if point == "claim-stale-removed":  # a is gone while nobody watched: its claim is stale
        cluster.kubectl("patch", "domainmapping", "a", "-n", namespace, "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}')
        cluster.kubectl("delete", "domainmapping", "a", "-n", namespace, "--wait=true")
    else:
        cluster.kubectl("delete", "domainmapping", "a", "-n", namespace, "--wait=false")
    with killed_at(operator, f"{point}@{rival}", r):
        pass
    at_death = ingress_hosts(cluster, domain)
    r.check("doubled", len(at_death) <= 1, f"two routes for one host at the crash: {at_death}")
    r.check("half_done", not at_death or at_death == [f"{rival}/{at_death[0].split('/')[1]}"] and
            (get_json(cluster, "domainclaim", domain).get("spec") or {}).get("mappingRef", {}).get("namespace")
            == rival, f"a route without its claim at the crash: {at_death}")

    def routed() -> dict[str, Any] | None:
        obj = get_json(cluster, "domainmapping", "b", "-n", rival)
        return obj if condition(obj, "Ready").get("status") == "True" else None
    obj = recovered(r, wait_until(routed, 90, "b to route the domain"))
    claim = get_json(cluster, "domainclaim", domain)
    r.check("half_done", (claim.get("spec") or {}).get("mappingRef", {}).get("uid") == obj["metadata"]["uid"],
            "the claim is not held by b")
    hosts = ingress_hosts(cluster, domain)
    r.check("doubled", len(hosts) == 1 and hosts[0].startswith(f"{rival}/"), f"routes for the domain: {hosts}")
    r.check("half_done", gone(cluster, "domainmapping", "a", namespace), "a is not gone")
    claims = [c for c in get_json(cluster, "domainclaims").get("items") or [] if c["spec"]["domain"] == domain]
    r.check("doubled", len(claims) == 1, f"{len(claims)} claims for one domain")
    r.assert_clean()


# ---- PostgreSQL restarted --------------------------------------------------------------------------

def test_postgres_restarted_mid_provisioning_and_down_during_a_rename(cluster, operator, namespace, pg_dsn, run):
    assert cluster.postgres is not None
    # Restarted while three databases are being provisioned.
    r = run("postgres-restart", "restart mid-create (3 databases)")
    names = ["p1", "p2", "p3"]
    for name in names:
        apply_yaml(cluster, odoo_database(name, namespace))
    wait_until(lambda: any(get_json(cluster, "odb", n, "-n", namespace).get("status") for n in names), 30,
               "provisioning to start")
    cluster.postgres.restart(down_seconds=2)
    r.recovery_seconds = -time.monotonic()
    recovered(r, [wait_ready(cluster, n, namespace, timeout=120) for n in names])
    for name in names:
        r.check("doubled", count_databases(pg_dsn, name) == 1, f"not one database {name}")
    r.check("doubled", databases_of(cluster, pg_dsn, namespace) == names, f"{databases_of(cluster, pg_dsn, namespace)}")
    r.check("half_done", operator.running(), "the operator crashed")
    r.assert_clean()

    # Down while a rename is asked for: reported as ServerUnavailable, then done once it is back.
    r2 = run("postgres-restart", "down during rename")
    write_rows(cluster, "p1", namespace, 50)
    cluster.postgres.stop()
    try:
        cluster.kubectl("patch", "odb", "p1", "-n", namespace, "--type=merge",
                        "-p", '{"spec":{"databaseName":"p1_renamed"}}')
        obj = wait_reason(cluster, "p1", namespace, "ServerUnavailable")
        r2.check("half_done", condition(obj, "Stalled").get("status") == "False", "stalled on a transient outage")
        r2.check("half_done", operator.running(), "the operator crashed")
    finally:
        cluster.postgres.start()
    r2.recovery_seconds = -time.monotonic()
    recovered(r2, wait_until(lambda: (lambda o: o if condition(o, "Ready").get("status") == "True" and
                                      o["status"].get("databaseName") == "p1_renamed" else None)(
        get_json(cluster, "odb", "p1", "-n", namespace)), 90, "the rename after the outage"))
    r2.check("doubled", count_databases(pg_dsn, "p1_renamed") == 1 and count_databases(pg_dsn, "p1") == 0,
             "rename not exactly once")
    r2.check("lost", rows_in(cluster, "p1", namespace) == 50, "rows lost")
    r2.assert_clean()


# ---- API server restarted -------------------------------------------------------------------------

def test_apiserver_restarted_the_operator_reconnects_and_converges(cluster, operator, namespace, pg_dsn, run):
    if cluster.external_kubeconfig:
        pytest.skip("the API server of an external cluster is not ours to restart")
    apply_yaml(cluster, odoo_database("k1", namespace))
    wait_ready(cluster, "k1", namespace)
    r = run("apiserver-restart", "restart (3 s down)")
    cluster.restart_apiserver(down_seconds=3)
    r.recovery_seconds = -time.monotonic()
    # What changed after the restart must reach the operator through its re-established watches.
    cluster.kubectl("patch", "odb", "k1", "-n", namespace, "--type=merge", "-p", '{"spec":{"tags":["after"]}}')
    apply_yaml(cluster, odoo_database("k2", namespace))

    def converged() -> bool:
        k1 = get_json(cluster, "odb", "k1", "-n", namespace)
        labels = k1.get("metadata", {}).get("labels") or {}
        return bool(labels.get("tag.odoo.dbmanager.io/after") is not None
                    and (k1.get("status") or {}).get("observedGeneration") == k1["metadata"]["generation"]
                    and condition(get_json(cluster, "odb", "k2", "-n", namespace), "Ready").get("status") == "True")
    recovered(r, wait_until(converged, 120, "the operator to converge after the API server restart"))
    r.check("half_done", operator.running(), "the operator crashed")
    r.check("doubled", databases_of(cluster, pg_dsn, namespace) == ["k1", "k2"],
            f"{databases_of(cluster, pg_dsn, namespace)}")
    r.assert_clean()


# ---- 409 conflicts ---------------------------------------------------------------------------------

def test_conflicting_writers_lose_no_update(cluster, operator, namespace, run):
    """Three clients do read-modify-write (PUT with the resourceVersion they read) on the object while the
    operator reconciles and writes its status and labels: the API server answers 409 to the stale ones,
    they re-read and retry. Every client's update lands, and the operator's view stays current."""
    apply_yaml(cluster, odoo_database("wr", namespace))
    wait_ready(cluster, "wr", namespace)
    r = run("conflicts", "3 writers x 15 read-modify-write + 5 spec changes")
    api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
    conflicts = [0]
    lock = threading.Lock()

    def writer(index: int) -> None:
        for n in range(15):
            while True:
                obj = api.get_namespaced_custom_object(GROUP, "v1alpha1", namespace, "odoodatabases", "wr")
                obj["metadata"].setdefault("annotations", {})[f"writer{index}.example.com/n{n}"] = str(n)
                if n % 3 == 0 and index == 0:  # a spec change too: the operator must follow it
                    obj["spec"]["tags"] = [f"t{n}"]
                try:
                    api.replace_namespaced_custom_object(GROUP, "v1alpha1", namespace, "odoodatabases", "wr", obj)
                    break
                except kubernetes.client.ApiException as exc:
                    if exc.status != 409:
                        raise
                    with lock:
                        conflicts[0] += 1
    started = time.monotonic()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    r.recovery_seconds = -time.monotonic()

    def settled() -> dict[str, Any] | None:
        obj = get_json(cluster, "odb", "wr", "-n", namespace)
        labels = obj["metadata"].get("labels") or {}
        ok = (obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
              and "tag.odoo.dbmanager.io/t12" in labels and condition(obj, "Ready").get("status") == "True")
        return obj if ok else None
    obj = recovered(r, wait_until(settled, 60, "the operator to follow the last spec"))
    annotations = obj["metadata"].get("annotations") or {}
    missing = [f"writer{i}/n{n}" for i in range(3) for n in range(15)
               if annotations.get(f"writer{i}.example.com/n{n}") != str(n)]
    r.check("lost", not missing, f"updates lost: {missing}")
    r.check("lost", [k for k in obj["metadata"].get("labels") or {} if k.startswith("tag.")] ==
            ["tag.odoo.dbmanager.io/t12"], "tag labels do not match the last spec")
    r.check("half_done", condition(obj, "Ready").get("status") == "True", "not Ready")
    _EXTRA["conflicts_409"] = conflicts[0]
    _EXTRA["conflict_writes_seconds"] = round(time.monotonic() - started, 2)
    r.assert_clean()
