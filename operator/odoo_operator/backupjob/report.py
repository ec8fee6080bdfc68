"""Used by the backup Job itself: write its result into the DatabaseBackup's status.

The Job's ServiceAccount may only get/patch `databasebackups/status` in its namespace. A success
replaces `artifacts` with what the storage now holds (after pruning) and sets `lastSuccessfulTime`;
a failure only sets `lastFailure`, so earlier artifacts are never erased by a failed run.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import kubernetes

from odoo_operator import API_VERSION
from odoo_operator.kube import Kube


def _client() -> Kube:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return Kube(kubernetes.client.ApiClient())


def status_patch(result: Mapping[str, Any], now: datetime.datetime | None = None) -> dict[str, Any]:
    moment = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if result.get("ok"):
        artifact = result.get("artifact") or {}
        return {"artifacts": list(result.get("artifacts") or []),
                "lastSuccessfulTime": artifact.get("time") or moment}
    return {"lastFailure": {"time": moment, "message": str(result.get("error") or "unknown error")[:1000]}}


def report(namespace: str, name: str, result: Mapping[str, Any]) -> None:
    _client().patch_status(API_VERSION, "DatabaseBackup", name, namespace, status_patch(result))
