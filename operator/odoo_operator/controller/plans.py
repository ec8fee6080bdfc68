"""OdooPlans: the limits of the namespaces bound to one (the namespace label odoo.dbmanager.io/plan), as each
controller meets them — storage per database (OverQuota, then no new copy, restore or backup of it), copies
for testing per source, custom domains. Admission refuses what it can see alone (charts' admission-policy-plans).

Plans and namespace labels are read by name, at most once a minute per namespace: the operator watches neither.
Not here: the OdooPlan's typed model (api/model.py), the admission policy (charts, manifests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.conditions import Condition, get_condition
from odoo_operator.api.labels import PLAN_LABEL
from odoo_operator.api.model import OdooPlan, SpecError, human_bytes, parse_odoo_plan
from odoo_operator.controller.base import Context, NotReady

PLAN_CACHE_SECONDS = 60.0


def plan_for(ctx: Context, namespace: str) -> OdooPlan | None:
    """The plan a namespace is bound to (None: no plan, no limits). A label naming a plan that does not exist,
    or an invalid one, is NotReady: no limits are assumed for a namespace meant to have some."""
    found, plan = ctx.registry.recently(("plan-of", namespace), PLAN_CACHE_SECONDS)
    if found:
        if isinstance(plan, NotReady):
            raise plan
        return plan if isinstance(plan, OdooPlan) else None
    body = ctx.kube.get("v1", "Namespace", namespace) or {}
    name = ((body.get("metadata") or {}).get("labels") or {}).get(PLAN_LABEL)
    result: OdooPlan | NotReady | None = None
    if name:
        plan_body = ctx.kube.get(API_VERSION, "OdooPlan", name)
        if plan_body is None:
            result = NotReady("PlanNotFound", f"namespace {namespace!r} is bound to OdooPlan {name!r} (label "
                              f"{PLAN_LABEL}), which does not exist", stalled=True, retry_after=60)
        else:
            try:
                result = parse_odoo_plan(plan_body)
            except SpecError as exc:
                result = NotReady("PlanInvalid", f"OdooPlan {name!r}: {exc}", stalled=True, retry_after=60)
    ctx.registry.remember(("plan-of", namespace), result)
    if isinstance(result, NotReady):
        raise result
    return result


def storage_condition(plan: OdooPlan | None, size: int | None) -> Condition | None:
    """OverQuota of a database of `size` bytes under `plan` (None: the plan limits no storage)."""
    if plan is None or plan.max_storage_per_database is None:
        return None
    limit = plan.max_storage_per_database
    if size is not None and size > limit:
        return Condition.true("OverQuota", "StorageLimit", f"the database takes {human_bytes(size)}, more than the "
                              f"{human_bytes(limit)} of {plan.describe()}: new duplicates, restores and backups of it "
                              "are refused until it is below")
    return Condition.false("OverQuota", "WithinLimits", f"{human_bytes(size or 0)} of the {human_bytes(limit)} of "
                           f"{plan.describe()}")


def refuse_when_over_quota(database: Mapping[str, Any] | None, what: str) -> None:
    """NotReady (Stalled OverQuota) when `database` (an OdooDatabase body) is over its plan's storage limit."""
    over = get_condition((database or {}).get("status"), "OverQuota") or {}
    if over.get("status") == "True":
        name = (database or {}).get("metadata", {}).get("name")
        raise NotReady("OverQuota", f"{what} of OdooDatabase {name!r} is refused: {over.get('message')}",
                       stalled=True, retry_after=60)
