"""Used by the backup Job itself: write its result into the DatabaseBackup's status.

The Job's ServiceAccount may only get/patch `databasebackups/status` in its namespace. A success
replaces `artifacts` with what the storage now holds (after pruning) and sets `lastSuccessfulTime`;
a failure only sets `lastFailure`, so earlier artifacts are never erased by a failed run.
Imported only when `--report` is given (it needs the Kubernetes client); connecting is kube.api_client's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.conditions import format_time as iso
from odoo_operator.kube import Kube, api_client


def status_patch(result: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    moment = iso(now or datetime.now(UTC))
    if result.get("ok"):
        artifact = result.get("artifact") or {}
        return {"artifacts": list(result.get("artifacts") or []),
                "lastSuccessfulTime": artifact.get("time") or moment}
    return {"lastFailure": {"time": moment, "message": str(result.get("error") or "unknown error")[:1000]}}


def report(namespace: str, name: str, result: Mapping[str, Any]) -> None:
    Kube(api_client()).patch_status(API_VERSION, "DatabaseBackup", name, namespace, status_patch(result))
