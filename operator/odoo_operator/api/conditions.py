"""Status conditions in the Kubernetes API convention (kstatus / Argo CD compatible), and the one UTC
timestamp format of every status field (`2026-01-31T12:00:00Z`). No reconciling logic lives here."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # metav1.Time, second precision, always UTC
MICROTIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # a Lease's renewTime; a request annotation (never two alike)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=datetime.UTC)


def now_iso() -> str:
    return format_time(now())


def parse_rfc3339(text: str) -> datetime.datetime:
    """Any RFC 3339 time (a fraction, an offset or `Z`; S3's and the API server's) as an aware UTC datetime;
    ValueError when it is not one. Our own writes use TIME_FORMAT (format_time)."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).astimezone(datetime.UTC)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""

    @classmethod
    def true(cls, type_: str, reason: str, message: str = "") -> Condition:
        return cls(type_, "True", reason, message)

    @classmethod
    def false(cls, type_: str, reason: str, message: str = "") -> Condition:
        return cls(type_, "False", reason, message)


def summary(state: str, reason: str, message: str = "") -> tuple[Condition, Condition, Condition]:
    """Ready, Reconciling, Stalled as kstatus reads them. state: "ready" (work done), "progressing"
    (work under way or being retried) or "stalled" (a human is needed)."""
    return (
        Condition("Ready", "True" if state == "ready" else "False", reason, message),
        Condition("Reconciling", "True" if state == "progressing" else "False", reason,
                  message if state == "progressing" else ""),
        Condition("Stalled", "True" if state == "stalled" else "False", reason, message if state == "stalled" else ""),
    )


def merge_conditions(
    previous: Iterable[Mapping[str, Any]] | None, desired: Iterable[Condition], generation: int
) -> list[dict[str, Any]]:
    """New condition list; lastTransitionTime only moves when a condition's status changes."""
    old = {c.get("type"): c for c in previous or []}
    merged = []
    for cond in desired:
        before = old.get(cond.type)
        changed = before is None or before.get("status") != cond.status
        merged.append({
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "observedGeneration": generation,
            "lastTransitionTime": now_iso() if changed or before is None else before.get("lastTransitionTime"),
        })
    return merged


def get_condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None
