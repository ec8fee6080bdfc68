"""Pure builders of the routes that bring a host to an OdooDatabase's Service: an Ingress, or a Gateway
API HTTPRoute when the operator is set for a Gateway (settings.gateway).

One builder, `build_route`, for both owners of a route: the database itself (its own host:
`build_database_route`) and a DomainMapping (its custom domain: `build_mapping_route`); they differ only
in the route's metadata, host and TLS. No I/O here; the Service the routes lead to, and every other
child of a database, is built in specs/app.py; which route exists when is the controllers' business.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.domains import DomainMapping
from odoo_operator.api.labels import MANAGED_BY, MAPPING_LABEL
from odoo_operator.api.model import OdooDatabase
from odoo_operator.config import Settings
from odoo_operator.specs.app import ODOO_HTTP_PORT, ODOO_LONGPOLLING_PORT, labels, owner_reference

INGRESS_API = "networking.k8s.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
ISSUER_ANNOTATION = "cert-manager.io/cluster-issuer"


def websocket_port(db: OdooDatabase) -> tuple[str, int]:
    """The Service port that serves /websocket: the gevent (longpolling) server exists only in
    prefork mode (workers > 0); the threaded server (workers 0) serves it on the HTTP port."""
    if db.app.workers > 0:
        return "longpolling", ODOO_LONGPOLLING_PORT
    return "http", ODOO_HTTP_PORT


def build_route(metadata: dict[str, Any], host: str, db: OdooDatabase, settings: Settings, *,
                tls_secret: str | None = None, cluster_issuer: str | None = None,
                annotations_always: bool = False) -> dict[str, Any]:
    """`host` to `db`'s Service: /websocket to the port that serves it (websocket_port), the rest to the
    HTTP port. An HTTPRoute on the configured Gateway (which terminates TLS), else an Ingress, with TLS
    when `tls_secret` is given; `cluster_issuer` asks cert-manager to issue that Secret.
    `annotations_always`: the Ingress carries an annotations map even when empty (a database's own
    Ingress always has; a mapping's only with an issuer): the objects stay as they were rendered."""
    if settings.gateway:
        return {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": dict(metadata),
                "spec": _httproute_spec(host, db.name, settings, websocket_port(db)[1])}
    return _ingress(metadata, host, db.name, websocket_port(db)[0], settings, tls_secret, cluster_issuer,
                    annotations_always)


def _httproute_spec(hostname: str, service: str, settings: Settings, websocket: int) -> dict[str, Any]:
    parent = settings.gateway_parent
    assert parent is not None

    def rule(prefix: str, port: int) -> dict[str, Any]:
        return {"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                "backendRefs": [{"group": "", "kind": "Service", "name": service, "port": port, "weight": 1}]}

    return {"parentRefs": [parent], "hostnames": [hostname],
            "rules": [rule("/websocket", websocket), rule("/", ODOO_HTTP_PORT)]}


def _ingress(metadata: dict[str, Any], host: str, service: str, websocket: str, settings: Settings,
             tls_secret: str | None, cluster_issuer: str | None, annotations_always: bool) -> dict[str, Any]:
    def path(prefix: str, port: str) -> dict[str, Any]:
        return {"path": prefix, "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"name": port}}}}

    spec: dict[str, Any] = {"rules": [{"host": host, "http": {"paths": [path("/websocket", websocket),
                                                                          path("/", "http")]}}]}
    if settings.ingress_class:
        spec["ingressClassName"] = settings.ingress_class
    annotations = {ISSUER_ANNOTATION: cluster_issuer} if cluster_issuer and tls_secret else {}
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    meta = {**metadata, "annotations": annotations} if annotations or annotations_always else dict(metadata)
    return {"apiVersion": INGRESS_API, "kind": "Ingress", "metadata": meta, "spec": spec}


# ---- the database's own host -------------------------------------------------------------------

def build_database_route(db: OdooDatabase, settings: Settings) -> dict[str, Any]:
    """The database's host, named like the database; TLS from the operator's cluster issuer."""
    metadata = {"name": db.name, "namespace": db.namespace, "labels": labels(db, "app"),
                "ownerReferences": [owner_reference(db)]}
    issuer = settings.cluster_issuer
    return build_route(metadata, db.hostname, db, settings, tls_secret=f"{db.name}-tls" if issuer else None,
                       cluster_issuer=issuer, annotations_always=True)


def build_database_ingress(db: OdooDatabase, settings: Settings) -> dict[str, Any]:
    """The database's route as an Ingress, whatever settings.gateway says."""
    return build_database_route(db, dataclasses.replace(settings, gateway=None))


def database_url(db: OdooDatabase, settings: Settings) -> str:
    return f"{settings.url_scheme}://{db.hostname}"


# ---- a DomainMapping's domain --------------------------------------------------------------------

def mapping_route_name(mapping_name: str) -> str:
    return f"{mapping_name[:246]}-domain"


def build_mapping_route(mapping: DomainMapping, db: OdooDatabase, settings: Settings) -> dict[str, Any]:
    """The mapped domain routed like the database's own host, owned by the mapping. TLS: one Secret (and
    so one Certificate) per domain when cert-manager issues it, so a failing certificate blocks no
    other domain; or the mapping's own Secret."""
    name = mapping_route_name(mapping.name)
    metadata = {
        "name": name,
        "namespace": mapping.namespace,
        "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/component": "domain",
                   MAPPING_LABEL: mapping.name},
        "ownerReferences": [{"apiVersion": API_VERSION, "kind": "DomainMapping", "name": mapping.name,
                             "uid": mapping.uid, "controller": True, "blockOwnerDeletion": True}],
    }
    tls_secret = f"{name}-tls" if mapping.cluster_issuer else mapping.secret_name
    return build_route(metadata, mapping.domain, db, settings, tls_secret=tls_secret,
                       cluster_issuer=mapping.cluster_issuer)
