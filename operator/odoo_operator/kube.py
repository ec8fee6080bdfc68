"""The one place that talks to the Kubernetes API (official client, synchronous, thread-safe)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client.exceptions import ApiException

from odoo_operator import API_VERSION, FIELD_MANAGER

# apiVersion/kind -> (plural, namespaced); the kinds this operator applies or reads.
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Event"): ("events", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Namespace"): ("namespaces", False),  # read only: allowedNamespaces selectors, a namespace's plan
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("batch/v1", "CronJob"): ("cronjobs", True),
    ("networking.k8s.io/v1", "Ingress"): ("ingresses", True),
    (API_VERSION, "OdooDatabase"): ("odoodatabases", True),
    (API_VERSION, "PostgresServer"): ("postgresservers", False),
    (API_VERSION, "DatabaseBackup"): ("databasebackups", True),
    (API_VERSION, "DomainMapping"): ("domainmappings", True),
    (API_VERSION, "DomainClaim"): ("domainclaims", False),
    (API_VERSION, "OdooPlan"): ("odooplans", False),  # read only, by name (controller/plans.py)
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ("httproutes", True),
    ("discovery.k8s.io/v1", "EndpointSlice"): ("endpointslices", True),
    # Read only: the termination message (output tail) of a failed upgrade or template Job's container.
    ("v1", "Pod"): ("pods", True),
}
# Kinds only `kubectl odoo` reads, with its user's own rights (support bundle, `list -A` on OpenShift); the
# operator never touches them and its RBAC grants none of them.
PLUGIN_RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("project.openshift.io/v1", "Project"): ("projects", False),
}


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


# Every object this operator addresses has a DNS-1123 subdomain name (namespaces: labels, which match it too).
# Anything else never reaches a URL: '..' or '/' would address another object, even escaped ('%2F' is decoded
# by the API server before it splits the path, and the HTTP client removes '.'/'..' segments).
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > 253 or not NAME_RE.fullmatch(value):
        raise KubeError(422, "Invalid", f"{what} {str(value)[:80]!r} is not a valid Kubernetes name")
    return quote(value, safe="")


def _resource(api_version: str, kind: str) -> tuple[str, bool]:
    return RESOURCES.get((api_version, kind)) or PLUGIN_RESOURCES[(api_version, kind)]


def _collection(api_version: str, kind: str, namespace: str | None) -> str:
    plural, namespaced = _resource(api_version, kind)
    base = f"/api/{quote(api_version, safe='/')}" if "/" not in api_version else \
        f"/apis/{quote(api_version, safe='/')}"
    if namespaced and namespace:
        base += f"/namespaces/{_segment(namespace, 'namespace')}"
    return f"{base}/{quote(plural, safe='')}"


def _path(api_version: str, kind: str, name: str | None, namespace: str | None, sub: str = "") -> str:
    _, namespaced = _resource(api_version, kind)
    if namespaced and not namespace:
        raise ValueError(f"{kind} {name} needs a namespace")
    path = _collection(api_version, kind, namespace)
    if name is not None:
        path += f"/{_segment(name, f'{kind} name')}"
    return path + (f"/{quote(sub, safe='')}" if sub else "")


def api_client(kubeconfig: str | None = None, context: str | None = None, *, in_cluster: bool = True,
               pool_size: int | None = None, retries: bool = True) -> kubernetes.client.ApiClient:
    """The one way every program here connects: the Pod's ServiceAccount when running in one (unless
    `in_cluster` is False), else the kubeconfig (`kubeconfig`, or $KUBECONFIG / ~/.kube/config; `context`,
    or its current one). `pool_size` bounds the connections kept open; `retries=False` turns off urllib3's
    own retries. Raises kubernetes.config.ConfigException (or OSError) when there is no configuration."""
    configuration = kubernetes.client.Configuration()
    try:
        if not in_cluster:
            raise kubernetes.config.ConfigException("in-cluster configuration not wanted")
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=kubeconfig, context=context,
                                           client_configuration=configuration)
    if pool_size is not None:
        configuration.connection_pool_maxsize = pool_size
    if not retries:
        configuration.retries = False
    return kubernetes.client.ApiClient(configuration)


class Kube:
    def __init__(self, api_client: kubernetes.client.ApiClient | None = None) -> None:
        self.api = api_client or kubernetes.client.ApiClient()
        self.requests = 0

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        self.requests += 1
        url_method, url, headers, payload, _ = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(url_method, url, header_params=headers, body=payload, _request_timeout=30)
        except ApiException as exc:
            raise KubeError(exc.status or 0, "", exc.reason or str(exc)) from None
        data = response.read()
        if not 200 <= response.status < 300:
            message, reason = response.reason or "", ""
            try:
                payload = json.loads(data or b"{}")
                message = payload.get("message", message)
                reason = payload.get("reason", "")
            except ValueError:
                pass
            raise KubeError(response.status, reason, message)
        return json.loads(data) if data else {}

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply under our one field manager; we own what we declare."""
        meta = obj["metadata"]
        path = _path(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        return self._call(
            "PATCH",
            path,
            body=dict(obj),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self._call("GET", _path(api_version, kind, name, namespace))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any] | None:
        """Create; None if it already exists (the API server's create is the atomic decision)."""
        meta = obj["metadata"]
        try:
            return self._call(
                "POST",
                _path(obj["apiVersion"], obj["kind"], None, meta.get("namespace")),
                body=dict(obj),
                query=[("fieldManager", field_manager)],
            )
        except KubeError as exc:
            if exc.status == 409:
                return None
            raise

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               preconditions: Mapping[str, str] | None = None, dry_run: bool = False) -> bool:
        """Delete; False if it was already gone or (with preconditions: uid, resourceVersion) if it is
        no longer the object we looked at. dry_run: only ask (RBAC, admission), nothing is deleted."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if dry_run:
            body["dryRun"] = ["All"]  # in the body: with a body, query-parameter DeleteOptions are ignored
        if preconditions:
            body["preconditions"] = dict(preconditions)
        try:
            self._call("DELETE", _path(api_version, kind, name, namespace), body=body)
            return True
        except KubeError as exc:
            if exc.status == 404 or (exc.status == 409 and preconditions):
                return False
            raise

    def delete_if_labelled(self, api_version: str, kind: str, name: str, namespace: str, label: str,
                           value: str) -> bool:
        """Delete the object if it carries label=value (it is ours), guarded by its uid; False if absent
        (also when its API is not served) or someone else's."""
        existing = self.get(api_version, kind, name, namespace)
        if existing is None or (existing["metadata"].get("labels") or {}).get(label) != value:
            return False
        return self.delete(api_version, kind, name, namespace, preconditions={"uid": existing["metadata"]["uid"]})

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str | None, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._call(
            "PATCH",
            _path(api_version, kind, name, namespace, "status"),
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
        )

    def scale(self, api_version: str, kind: str, name: str, namespace: str, replicas: int) -> bool:
        """Set spec.replicas (a merge patch: the operator's next apply takes the field back); False if the
        object does not exist."""
        try:
            self._call("PATCH", _path(api_version, kind, name, namespace),
                       body={"spec": {"replicas": replicas}}, content_type="application/merge-patch+json")
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    def patch_metadata(
        self, api_version: str, kind: str, name: str, namespace: str | None, metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._call(
            "PATCH",
            _path(api_version, kind, name, namespace),
            body={"metadata": dict(metadata)},
            content_type="application/merge-patch+json",
        )

    def merge_patch(self, api_version: str, kind: str, name: str, namespace: str | None, patch: Mapping[str, Any],
                    field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """A JSON merge patch of the object (not a subresource) under the given field manager."""
        return self._call(
            "PATCH",
            _path(api_version, kind, name, namespace),
            body=dict(patch),
            query=[("fieldManager", field_manager)],
            content_type="application/merge-patch+json",
        )

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[dict[str, Any]]:
        """The objects of one namespace, or of every namespace (namespace None) for a namespaced kind."""
        query = [("labelSelector", label_selector)] if label_selector else []
        query += [("fieldSelector", field_selector)] if field_selector else []
        return list(self._call("GET", _collection(api_version, kind, namespace), query=query).get("items", []))

    def server_version(self) -> dict[str, Any]:
        """The API server's /version (gitVersion, platform ...)."""
        return self._call("GET", "/version")
