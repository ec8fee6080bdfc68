"""Leader election (operator/odoo_operator/runtime/leader.py): unit tests against an in-memory Lease API, then
two operator processes electing against the real API server.

The end-to-end test runs its own two operators, restricted to its namespace (`--namespace`), and
stops the session operator for the module (`without_session_operator`): that one watches all
namespaces and does not elect, so it would reconcile the same objects and prove nothing.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.request
import uuid
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from conftest import OperatorProcess, get_json, odoo_database, pg_query, wait_until
from odoo_operator.runtime.leader import ElectionConfig, LeaderElector
from test_lifecycle import databases, events, ready

# ---- unit: client-go's semantics against a fake Lease API ---------------------------------------


class FakeLeases:
    """read/create/replace of one Lease with resourceVersion checks, as the API server does them."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.fail = False

    class _Response:
        def __init__(self, obj: dict[str, Any]) -> None:
            self.data = json.dumps(obj).encode()

    def _check(self) -> None:
        if self.fail:
            raise ApiException(status=503, reason="Service Unavailable")

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> Any:
        self._check()
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return self._Response(copy.deepcopy(self.lease))

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        self._check()
        if self.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return self._Response(self.lease)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        self._check()
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return self._Response(self.lease)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(api: FakeLeases, clock: Clock, identity: str, lost: list[str]) -> LeaderElector:
    config = ElectionConfig(name="op", namespace="ns", identity=identity)
    return LeaderElector(config, api, on_lost=lost.append, clock=clock)  # type: ignore[arg-type]


def test_first_comes_first_served_and_the_other_waits_for_expiry_by_its_own_clock():
    api, clock, lost = FakeLeases(), Clock(), []
    a, b = elector(api, clock, "a", lost), elector(api, clock, "b", lost)
    assert a.try_acquire_or_renew() and api.lease["spec"]["holderIdentity"] == "a"
    assert not b.try_acquire_or_renew() and b.holder == "a"
    clock.now += 9.9  # a stops renewing; b saw the record 9.9 s ago: not expired yet
    assert not b.try_acquire_or_renew()
    clock.now += 0.2
    assert b.try_acquire_or_renew()
    assert api.lease["spec"]["holderIdentity"] == "b" and api.lease["spec"]["leaseTransitions"] == 1
    # a's renewal now finds b: lost, never taken back.
    a._leader = True
    assert not a.try_acquire_or_renew() and api.lease["spec"]["holderIdentity"] == "b"


def test_renewals_keep_the_lease_and_a_stale_update_loses_with_409():
    api, clock, lost = FakeLeases(), Clock(), []
    a, b = elector(api, clock, "a", lost), elector(api, clock, "b", lost)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    for _ in range(10):  # a renews every 2 s: the record keeps changing, b never sees it expire
        clock.now += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    # Both see an expired Lease and race: c read before b's update, so c's update carries a stale
    # resourceVersion and loses with a 409; b stays the holder.
    clock.now += 11
    stale = copy.deepcopy(api.lease)
    c = elector(api, clock, "c", lost)
    c._read = lambda: copy.deepcopy(stale)  # type: ignore[method-assign]
    assert b.try_acquire_or_renew()
    assert not c.try_acquire_or_renew()
    assert api.lease["spec"]["holderIdentity"] == "b"


def test_release_hands_over_at_once_and_the_renew_deadline_is_enforced():
    api, clock, lost = FakeLeases(), Clock(), []
    a, b = elector(api, clock, "a", lost), elector(api, clock, "b", lost)
    assert a.acquire() and a.is_leader
    assert not b.try_acquire_or_renew()
    assert a.release()
    assert "holderIdentity" not in api.lease["spec"] and api.lease["spec"]["leaseDurationSeconds"] == 1
    assert b.try_acquire_or_renew()  # no waiting for the old lease duration
    # b cannot renew (API down) for longer than renewDeadline: its watchdog declares the Lease lost.
    b._leader, b._valid_until = True, clock.now + 7
    api.fail = True
    b.start_renewing()
    clock.now += 7.5
    wait_until(lambda: lost, 5, "the watchdog to fire")
    b.stop_renewing()
    assert "renew deadline" in lost[0]


def test_the_timings_must_nest():
    with pytest.raises(ValueError):
        ElectionConfig(name="x", namespace="y", identity="z", lease_duration=5, renew_deadline=7)


# ---- end to end: two electing operators ------------------------------------------------------------

def lease(cluster, name):
    return get_json(cluster, "lease", name, "-n", "odoo-system")


def holder(cluster, name) -> str | None:
    return (lease(cluster, name).get("spec") or {}).get("holderIdentity")


def electing_operator(cluster, namespace, lease_name, identity) -> OperatorProcess:
    return OperatorProcess(cluster, cluster.workdir, name=f"{lease_name}-{identity}", args=[f"--namespace={namespace}"],
                           env={"ODOO_OPERATOR_LEADER_ELECTION": "true", "ODOO_OPERATOR_LEASE_NAME": lease_name,
                                "ODOO_OPERATOR_LEASE_NAMESPACE": "odoo-system", "ODOO_OPERATOR_POD_NAME": identity})


def kopf_lines(log: str) -> list[str]:
    """Lines that are not the leader election's own: kopf or handler activity."""
    return [line for line in log.splitlines() if line.strip() and "odoo_operator.leader" not in line]


def created_events(cluster, namespace, name):
    out = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                          f"involvedObject.name={name},involvedObject.kind=OdooDatabase,reason=Created",
                          "-o", "json").stdout
    return sum(int(e.get("count") or 1) for e in json.loads(out)["items"])


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_only_the_leader_reconciles_and_the_standby_takes_over(cluster, default_server, namespace, pg_dsn,
                                                              without_session_operator):
    lease_name = f"odoo-test-{uuid.uuid4().hex[:6]}"
    a = electing_operator(cluster, namespace, lease_name, "op-a")
    b = electing_operator(cluster, namespace, lease_name, "op-b")
    try:
        a.start()
        wait_until(lambda: holder(cluster, lease_name) == "op-a", 60, "op-a to hold the Lease")
        b.start()
        wait_until(lambda: "held by op-a" in b.log(), 60, "op-b to stand by")
        wait_until(lambda: a.metric("odoo_operator_leader") == 1 and b.metric("odoo_operator_leader") == 0, 30,
                   "the leader gauges (a: 1, b: 0)")
        # The standby's liveness endpoint answers (kopf's is not running there), so its Pod is not restarted.
        with urllib.request.urlopen(f"http://127.0.0.1:{b.liveness_port}/healthz", timeout=5) as response:
            assert response.status == 200

        names = [f"el{i}" for i in range(4)]
        for name in names:
            cluster.kubectl("apply", "-f", "-", input=odoo_database(name, namespace))
        # Mid-work: some PostgreSQL databases exist, not every object is Ready yet.
        wait_until(lambda: set(names) & databases(pg_dsn), 60, "a first database to be created")
        assert not kopf_lines(b.log()), "the standby did something: " + "\n".join(kopf_lines(b.log())[:5])
        killed = time.monotonic()
        a.kill()
        wait_until(lambda: holder(cluster, lease_name) == "op-b", 20, "op-b to take the Lease over", interval=0.1)
        takeover = time.monotonic() - killed
        print(f"\ntakeover after SIGKILL of the leader: {takeover:.1f} s")
        assert takeover <= 15

        objects = {name: wait_until(lambda n=name: ready(cluster, n, namespace), 120, f"{name} to be Ready")
                   for name in names}
        assert lease(cluster, lease_name)["spec"]["leaseTransitions"] >= 1
        assert b.metric("odoo_operator_leader") == 1
        for name, obj in objects.items():
            # Each database created once, by its owner: one Created Event, our marker, one init Job.
            assert created_events(cluster, namespace, name) <= 1, events(cluster, namespace, name)
            comment = pg_query(pg_dsn, "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                               "WHERE datname = %s", name)
            assert len(comment) == 1 and json.loads(comment[0][0])["uid"] == obj["metadata"]["uid"]
            jobs = get_json(cluster, "jobs", "-n", namespace, "-l", f"odoo.dbmanager.io/database={name}")["items"]
            assert [j["metadata"]["name"] for j in jobs] == [f"{name}-init"]
        assert sum(created_events(cluster, namespace, n) for n in names) >= 1

        # Graceful stop of the leader: the Lease is released, the standby (op-a again) takes over at once.
        a.start()
        wait_until(lambda: "held by op-b" in a.log().split("waiting for the leader Lease")[-1], 60,
                   "op-a to stand by")
        stopping = time.monotonic()
        b.stop()
        stopped = time.monotonic() - stopping
        wait_until(lambda: holder(cluster, lease_name) == "op-a", 15, "op-a to take over", interval=0.05)
        handover = time.monotonic() - stopping
        print(f"graceful handover: {handover:.1f} s after SIGTERM (the old leader took {stopped:.1f} s to stop)")
        assert b.process is not None and b.process.returncode == 0, b.log()[-3000:]
        assert "released the leader Lease" in b.log()
        assert handover - stopped < 3
        # The new leader reconciles.
        cluster.kubectl("apply", "-f", "-", input=odoo_database("el-after", namespace))
        wait_until(lambda: ready(cluster, "el-after", namespace), 120, "el-after to be Ready")
        # Clean up while a leader runs (the finalizers need it; the session operator is stopped).
        cluster.kubectl("delete", "odb", "--all", "-n", namespace, "--timeout=120s", timeout=150)
        assert not set(names) & databases(pg_dsn)
    finally:
        for proc in (a, b):
            proc.stop()
        for proc in (a, b):
            print(f"--- {proc.log_path.name} (tail)\n" + "\n".join(proc.log().splitlines()[-15:]))
