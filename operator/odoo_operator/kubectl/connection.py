"""How `kubectl odoo` reaches the cluster: the user's kubeconfig, context, namespace and impersonation turned
into a `Kube` (the operator's own client, used through its public methods only) and into the matching
`kubectl` command line; and the reads several commands share (one OdooDatabase, the objects that refer to it).

Not here: what the commands do with what they read (commands.py), how it is shown (support.py)."""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kubernetes

from odoo_operator import API_VERSION, kube
from odoo_operator.kube import Kube, KubeError
from odoo_operator.kubectl.support import PLUGIN, PluginError

# An edit that loses a race (409: the object changed since it was read) is read, decided and sent again; the
# operator's own status writes change the resourceVersion too, so several plugin edits at once need more than
# a handful of tries: retry with a jittered, growing pause for up to this long.
CONFLICT_BUDGET = 30.0
Plan = Callable[[Mapping[str, Any]], tuple[dict[str, Any] | None, str]]


class Connection:
    """The API client for the chosen kubeconfig/context/impersonation, and the matching kubectl command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.kubeconfig: str | None = getattr(args, "kubeconfig", None)
        self.context: str | None = getattr(args, "context", None)
        self.as_user: str | None = getattr(args, "as_user", None)
        self.as_group: str | None = getattr(args, "as_group", None)
        self._explicit_namespace: str | None = getattr(args, "namespace", None)
        try:
            api = kube.api_client(self.kubeconfig, self.context, in_cluster=False)
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise PluginError(f"cannot load the kubeconfig: {exc}") from None
        if self.as_user:
            api.set_default_header("Impersonate-User", self.as_user)
        if self.as_group:
            if not self.as_user:
                raise PluginError("--as-group needs --as")
            api.set_default_header("Impersonate-Group", self.as_group)
        self.kube = Kube(api)

    def contexts(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            contexts, active = kubernetes.config.list_kube_config_contexts(config_file=self.kubeconfig)
        except Exception:
            return [], {}
        if self.context:
            active = next((c for c in contexts if c.get("name") == self.context), active)
        return list(contexts or []), dict(active or {})

    @property
    def namespace(self) -> str:
        if self._explicit_namespace:
            return self._explicit_namespace
        _, active = self.contexts()
        return str((active.get("context") or {}).get("namespace") or "default")

    def kubectl(self) -> list[str]:
        command = [shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")]
        for flag, value in (("--kubeconfig", self.kubeconfig), ("--context", self.context),
                            ("--as", self.as_user), ("--as-group", self.as_group)):
            if value:
                command.append(f"{flag}={value}")
        return command


def get_database(conn: Connection, namespace: str, name: str) -> dict[str, Any]:
    try:
        body = conn.kube.get(API_VERSION, "OdooDatabase", name, namespace)
    except KubeError as exc:
        if exc.status != 422:
            raise
        body = None  # not a valid name (refused before any request): no such object
    if body is None:
        raise PluginError(f'OdooDatabase "{name}" not found in namespace "{namespace}"')
    return body


def patch_database(conn: Connection, namespace: str, name: str, plan: Plan, what: str) -> tuple[bool, str]:
    """Read the database, let `plan` decide (the merge patch, None when nothing is to be done, and a message)
    and send the patch with the resourceVersion read, so it applies only to what was decided on; a 409 means
    someone changed the object meanwhile: read again, decide again. Returns (changed, message)."""
    deadline = time.monotonic() + CONFLICT_BUDGET
    conflicts = 0
    while True:
        obj = get_database(conn, namespace, name)
        patch, message = plan(obj)
        if patch is None:
            return False, message
        metadata = {**patch.get("metadata", {}), "resourceVersion": obj["metadata"]["resourceVersion"]}
        try:
            conn.kube.merge_patch(API_VERSION, "OdooDatabase", name, namespace, {**patch, "metadata": metadata},
                                  field_manager=PLUGIN)
        except KubeError as exc:
            if exc.status != 409:
                raise
            conflicts += 1
            if time.monotonic() >= deadline:
                raise PluginError(f"{name} kept changing while {what} ({conflicts} conflicts in "
                                  f"{CONFLICT_BUDGET:.0f} s); try again") from None
            time.sleep(random.uniform(0.05, min(2.0, 0.1 * 2 ** min(conflicts, 5))))
            continue
        return True, message


def related(conn: Connection, namespace: str, kind: str, database: str) -> list[dict[str, Any]]:
    """DomainMappings / DatabaseBackups whose spec.databaseRef.name is the database (no server-side
    field selector exists for custom resources' spec fields, so: list the namespace's and filter)."""
    found = [o for o in conn.kube.list(API_VERSION, kind, namespace)
             if ((o.get("spec") or {}).get("databaseRef") or {}).get("name") == database]
    return sorted(found, key=lambda o: o["metadata"]["name"])
