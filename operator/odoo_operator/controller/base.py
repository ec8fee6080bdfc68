"""What every reconciler shares: the Context it runs in, the NotReady it raises and the Outcome it returns,
the Reconciler skeleton (parse, converge, turn what stopped the pass into a status), the apply cache,
the run-once Jobs (ensure_job) and their state. No kind-specific logic lives here, and no time format
(api/conditions.py holds it)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from odoo_operator import failpoints
from odoo_operator.api.conditions import Condition, get_condition, now, parse_time, summary
from odoo_operator.api.model import SpecError
from odoo_operator.config import Settings
from odoo_operator.kube import Kube, KubeError
from odoo_operator.runtime.registry import Registry

PHASE_PENDING = "Pending"
PHASE_PROVISIONING = "Provisioning"
PHASE_READY = "Ready"
PHASE_SUSPENDED = "Suspended"
PHASE_FAILED = "Failed"
PHASE_DELETING = "Deleting"
PHASE_EXPIRED = "Expired"
Parsed = TypeVar("Parsed")


class NotReady(Exception):
    """A step cannot complete yet; carries what the status should say."""

    def __init__(self, reason: str, message: str, *, stalled: bool = False, retry_after: float | None = None,
                 phase: str = PHASE_PENDING, warning: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.stalled = stalled
        self.retry_after = retry_after
        self.phase = phase
        self.warning = warning


@dataclass
class Outcome:
    phase: str
    ready: Condition
    reconciling: Condition
    stalled: Condition
    details: list[Condition] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None
    warning: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)

    def conditions(self) -> list[Condition]:
        return [self.ready, self.reconciling, self.stalled, *self.details]


@dataclass
class Context:
    kube: Kube
    settings: Settings
    registry: Registry


def password() -> str:
    return secrets.token_urlsafe(24)


def decode(secret: Mapping[str, Any] | None, key: str) -> str | None:
    try:
        return base64.b64decode((secret or {}).get("data", {})[key]).decode()
    except (KeyError, ValueError, TypeError):
        return None


def digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def age_seconds(timestamp: str | None) -> float:
    if not timestamp:
        return float("inf")
    return (now() - parse_time(timestamp)).total_seconds()


def apply_cached(ctx: Context, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply a child unless the registry knows it is already as desired (same digest, and
    its generation has not moved since: nobody changed it)."""
    key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
    digest_ = digest(obj)
    if not ctx.registry.needs_apply(key, digest_):
        return ctx.registry.child(*key) or {}
    result = ctx.kube.apply(obj)
    ctx.registry.record_applied(key, digest_, result)
    return result


def remove_other_route_kind(ctx: Context, kind: str, name: str, namespace: str, label: str, value: str,
                            owner_uid: str, created: str | None = None) -> None:
    """After the operator moved between Ingress and Gateway, an owner's route of the other kind goes
    (looked for once per owner and process; not for an owner `created` after this process started, which
    no other process served)."""
    if owner_uid in ctx.registry.route_kinds_checked or ctx.registry.created_since_start(created):
        return
    other = ("gateway.networking.k8s.io/v1", "HTTPRoute") if kind == "Ingress" else ("networking.k8s.io/v1",
                                                                                   "Ingress")
    ctx.kube.delete_if_labelled(*other, name, namespace, label, value)
    ctx.registry.route_kinds_checked.add(owner_uid)


def failed_outcome(exc: NotReady, status: dict[str, Any], events: list[tuple[str, str, str]] | None = None,
                   retry_after: float | None = None) -> Outcome:
    ready, reconciling, stalled = summary("stalled" if exc.stalled else "progressing", exc.reason, exc.message)
    return Outcome(exc.phase, ready, reconciling, stalled, status=status,
                   retry_after=exc.retry_after if retry_after is None else retry_after, warning=exc.warning,
                   events=events if events is not None else [])


# ---- run-once Jobs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobRun:
    """A Job the operator creates once and never updates: its template is immutable, and a failed Job
    stays for the user to inspect; deleting it retries with the current spec."""
    name: str
    job: Mapping[str, Any]
    created: bool  # missing before this call, created by it

    @property
    def state(self) -> str:
        """Complete, Failed or Running."""
        return job_state(self.job)

    @property
    def failure(self) -> str:
        return job_failure(self.job)


def ensure_job(ctx: Context, namespace: str, name: str, build: Callable[[], dict[str, Any]], *,
               before_create: Callable[[], None] | None = None, failpoint: str | None = None) -> JobRun:
    """The Job `name` as the watch (registry) knows it, else created from build() (before_create runs first:
    it may refuse by raising). No GET first: the watch sees every Job of ours, so one it has not shown is
    missing, but for the moments after a start (the watch still listing) or a lost race, which the
    create's 409 tells, and then the Job is read."""
    job = ctx.registry.child("Job", namespace, name)
    if job is not None:
        return JobRun(name, job, created=False)
    if before_create is not None:
        before_create()
    job = ctx.kube.create(build())
    if job is None:  # it exists
        job = ctx.kube.get("batch/v1", "Job", name, namespace)
        if job:
            ctx.registry.record_child("Job", job, deleted=False)
        return JobRun(name, job or {}, created=False)
    if failpoint:
        failpoints.hit(failpoint, namespace)
    ctx.registry.record_child("Job", job, deleted=False)
    return JobRun(name, job, created=True)


def job_state(job: Mapping[str, Any] | None) -> str:
    for cond in (job or {}).get("status", {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    return "Running"


def job_failure(job: Mapping[str, Any] | None) -> str:
    cond = get_condition((job or {}).get("status"), "Failed")
    return (cond or {}).get("message") or (cond or {}).get("reason") or "unknown reason"


def deployment_available(deployment: Mapping[str, Any], replicas: int) -> tuple[bool, str]:
    """Whether every replica of the Deployment's latest spec is available; if not, why, in words that do not
    change with each step of the rollout (each change would be one more status write per database: the
    Deployment itself shows the counts)."""
    meta = deployment.get("metadata", {})
    status = deployment.get("status") or {}
    seen = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 1)
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if not seen or updated < replicas or available < replicas:
        return False, (f"{replicas} replica(s) of the latest spec to become available "
                       f"(see Deployment {meta.get('name')})")
    return True, ""




# ---- the reconciler skeleton ---------------------------------------------------------------------

class Reconciler(Generic[Parsed]):
    """One pass over one object: parse its spec (what `invalid` says if it cannot be: Stalled InvalidSpec
    unless a subclass knows better), converge, and turn what stopped the pass (NotReady, an API server
    refusal, what `not_ready` of a subclass knows) into a status (`failed`). A subclass gives `parse` and
    `converge`; its steps use `apply` and `ensure_job`, which never create a child once the object is being
    deleted. `status` is the object's status as read, `new_status` what this pass writes."""

    noun = "object"  # in "the <noun> is being deleted"

    def __init__(self, body: Mapping[str, Any], ctx: Context, live: Mapping[str, Any] | None = None) -> None:
        self.body = body
        self.live = body if live is None else live  # kopf keeps this one current while we work
        self.ctx = ctx
        self.kube = ctx.kube
        self.namespace: str = body["metadata"]["namespace"]
        self.status: Mapping[str, Any] = body.get("status") or {}
        self.new_status: dict[str, Any] = {}
        self.events: list[tuple[str, str, str]] = []
        self.obj: Parsed

    def parse(self) -> Parsed:
        raise NotImplementedError

    def converge(self) -> Outcome:
        raise NotImplementedError

    def run(self) -> Outcome:
        try:
            self.obj = self.parse()
        except SpecError as exc:
            return self.failed(self.invalid(exc))
        try:
            return self.converge()
        except Exception as exc:
            problem = self.not_ready(exc)
            if problem is None:
                raise  # a programming error: the loop logs it and retries
            return self.failed(problem)

    def invalid(self, exc: SpecError) -> NotReady:
        """What the status says of a spec that does not parse (a subclass may also undo what it had done)."""
        return NotReady("InvalidSpec", str(exc), stalled=True, phase=PHASE_FAILED)

    def not_ready(self, exc: Exception) -> NotReady | None:
        """What the status says of an exception that stopped the pass; None: let it escape."""
        if isinstance(exc, NotReady):
            return exc
        if isinstance(exc, KubeError):
            return NotReady("KubernetesError", f"the API server refused a change: {exc.message}",
                            retry_after=self.ctx.settings.retry_max_seconds)
        return None

    def failed(self, exc: NotReady) -> Outcome:
        return failed_outcome(exc, self.new_status, self.events)

    def refuse_when_deleting(self) -> None:
        """Never (re)create children once the owner is being deleted (the live body says so)."""
        if (self.live.get("metadata") or {}).get("deletionTimestamp"):
            raise NotReady("Deleting", f"the {self.noun} is being deleted", phase=PHASE_DELETING, warning=False)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.refuse_when_deleting()
        return apply_cached(self.ctx, obj)

    def ensure_job(self, name: str, build: Callable[[], dict[str, Any]], *,
                   prepare: Callable[[], None] | None = None, failpoint: str | None = None) -> JobRun:
        """ensure_job in this object's namespace; refused once the object is being deleted."""
        def before_create() -> None:
            self.refuse_when_deleting()
            if prepare is not None:
                prepare()
        return ensure_job(self.ctx, self.namespace, name, build, before_create=before_create, failpoint=failpoint)
