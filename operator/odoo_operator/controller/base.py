"""What every reconciler shares: the Context it runs in, the NotReady it raises and the Outcome it returns,
the apply cache, Job state, times. No kind-specific logic lives here."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from odoo_operator.api.conditions import Condition, get_condition, summary
from odoo_operator.config import Settings
from odoo_operator.kube import Kube
from odoo_operator.runtime.registry import Registry

PHASE_PENDING = "Pending"
PHASE_PROVISIONING = "Provisioning"
PHASE_READY = "Ready"
PHASE_SUSPENDED = "Suspended"
PHASE_FAILED = "Failed"
PHASE_DELETING = "Deleting"
PHASE_EXPIRED = "Expired"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime(TIME_FORMAT)


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
                            owner_uid: str) -> None:
    """After the operator moved between Ingress and Gateway, an owner's route of the other kind goes
    (looked for once per owner and process)."""
    if owner_uid in ctx.registry.route_kinds_checked:
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


def job_state(job: Mapping[str, Any] | None) -> str:
    for cond in (job or {}).get("status", {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    return "Running"


def job_failure(job: Mapping[str, Any] | None) -> str:
    cond = get_condition((job or {}).get("status"), "Failed")
    return (cond or {}).get("message") or (cond or {}).get("reason") or "unknown reason"


def deployment_available(deployment: Mapping[str, Any], replicas: int) -> tuple[bool, str]:
    meta = deployment.get("metadata", {})
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 1):
        return False, "the Deployment controller has not seen the latest spec yet"
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < replicas or available < replicas:
        return False, f"{available}/{replicas} replica(s) available, {updated} up to date"
    return True, ""


