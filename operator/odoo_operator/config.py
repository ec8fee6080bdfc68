"""Operator settings, read once from the environment (ODOO_OPERATOR_*)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_IMAGES = {"16.0": "odoo:16.0", "17.0": "odoo:17.0", "18.0": "odoo:18.0"}


@dataclass(frozen=True)
class UpgradeMethod:
    """How a database is moved to one version of the table: a command in an image, run by the upgrade Job
    on the database (its odoo.conf at /etc/odoo/odoo.conf, ODOO_DATABASE naming it, its filestore
    mounted). Default: the version's own image running Odoo's `odoo -u all --stop-after-init` — right for
    a newer build of the same series; a major version names its migration image (OpenUpgrade, or an
    organisation's own) and command."""
    image: str | None = None  # None: the version's image
    command: tuple[str, ...] | None = None  # None: odoo -u all --stop-after-init


def _parse_images(raw: str) -> tuple[dict[str, str], dict[str, UpgradeMethod]]:
    """The version table: `{"17.0": "odoo:17.0"}` or, with an upgrade method,
    `{"17.0": {"image": "odoo:17.0", "upgrade": {"image": "…", "command": ["…"]}}}` (JSON), or
    `17.0=odoo:17.0,18.0=odoo:18.0`. Returns the images and the upgrade methods by version."""
    raw = raw.strip()
    if not raw.startswith("{"):
        pairs = (item.split("=", 1) for item in raw.split(",") if item.strip())
        return {version.strip(): image.strip() for version, image in pairs}, {}
    table = json.loads(raw)
    if not isinstance(table, dict):
        raise ValueError("ODOO_OPERATOR_IMAGES must be a JSON object")
    images: dict[str, str] = {}
    methods: dict[str, UpgradeMethod] = {}
    for version, entry in table.items():
        if isinstance(entry, str):
            images[str(version)] = entry
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise ValueError(f"ODOO_OPERATOR_IMAGES[{version!r}] must be an image or an object with an image")
        images[str(version)] = entry["image"]
        upgrade = entry.get("upgrade") or {}
        if not isinstance(upgrade, dict):
            raise ValueError(f"ODOO_OPERATOR_IMAGES[{version!r}].upgrade must be an object")
        command = upgrade.get("command")
        if command is not None and (not isinstance(command, list) or not command
                                    or not all(isinstance(a, str) for a in command)):
            raise ValueError(f"ODOO_OPERATOR_IMAGES[{version!r}].upgrade.command must be a list of strings")
        image = upgrade.get("image")
        if image is not None and not isinstance(image, str):
            raise ValueError(f"ODOO_OPERATOR_IMAGES[{version!r}].upgrade.image must be a string")
        methods[str(version)] = UpgradeMethod(image, tuple(command) if command else None)
    return images, methods


def _bool(raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    base_domain: str = "odoo.localhost"
    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    upgrade_methods: Mapping[str, UpgradeMethod] = field(default_factory=dict)  # by version; default method else
    upgrade_grace: str = "60d"  # a database below the latest major is upgraded this long after the offer
    upgrade_keep: str = "7d"  # how long the pre-upgrade copy is kept (kubectl odoo upgrade --rollback)
    ingress_class: str | None = None
    cluster_issuer: str | None = None
    storage_class: str | None = None
    filestore_size: str = "1Gi"
    filestore_access_mode: str = "ReadWriteOnce"
    size_refresh_seconds: float = 300.0
    resync_seconds: float = 600.0
    max_concurrent_reconciles: int = 16
    pg_connect_timeout: int = 5
    retry_max_seconds: float = 30.0
    namespace: str | None = None
    # New databases as copies of a template initialised once by Odoo per server, version and image
    # (controller/templates.py); the template Jobs run in template_namespace (default: the service
    # account's namespace, else odoo-system).
    templates: bool = True
    template_namespace: str | None = None
    max_duplicates: int = 5
    duplicate_expires_after: str = "15d"
    filestore_clone: str = "csi"  # "csi": PVC dataSource clone; "copy": a Job copies the files
    operator_image: str = "odoo-db-operator:0.1.0"  # runs the backup and restore Jobs
    backup_pvc: str = "odoo-backups"  # default backup storage: this PVC in the database's namespace
    backup_pvc_size: str = "20Gi"
    # A restore Job: what an Odoo ZIP may expand to (a zip bomb is refused), and the size of the temporary
    # volume an S3 artifact is downloaded to (larger ones are refused before the download).
    restore_max_bytes: int = 100 << 30
    restore_max_members: int = 2_000_000
    restore_spool_size: str = "20Gi"
    gateway: str | None = None  # "namespace/name[/section]": DomainMappings become HTTPRoutes on this Gateway
    allow_wildcard_domains: bool = False
    dns_check: bool = True  # DomainMapping's DNSConfigured condition (never blocking)
    dns_server: str | None = None  # "host[:port]" asked for DNSConfigured; default: /etc/resolv.conf's first
    # Leader election with a coordination.k8s.io Lease (leader.py); off: one process, no Lease.
    leader_election: bool = False
    lease_name: str = "odoo-db-operator"
    lease_namespace: str | None = None  # default: the service account's namespace, else odoo-system
    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0
    pod_name: str | None = None  # the Lease holder identity; default: hostname + a random suffix
    metrics_port: int = 0  # Prometheus /metrics (metrics.py); 0: off
    metrics_address: str = "0.0.0.0"  # a Pod's metrics are scraped from outside it

    @property
    def gateway_parent(self) -> dict[str, str] | None:
        """The HTTPRoute parentRef of ODOO_OPERATOR_GATEWAY ("namespace/name[/section]")."""
        if not self.gateway:
            return None
        parts = self.gateway.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"ODOO_OPERATOR_GATEWAY={self.gateway!r} is not namespace/name[/section]")
        parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": parts[0], "name": parts[1]}
        if len(parts) == 3:
            parent["sectionName"] = parts[2]
        return parent

    @property
    def url_scheme(self) -> str:
        return "https" if self.cluster_issuer else "http"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"ODOO_OPERATOR_{name}")
            return value if value else None

        defaults = cls()
        images, methods = _parse_images(get("IMAGES") or "")
        settings = cls(
            base_domain=get("BASE_DOMAIN") or defaults.base_domain,
            images=images or dict(DEFAULT_IMAGES),
            upgrade_methods=methods,
            upgrade_grace=get("UPGRADE_GRACE") or defaults.upgrade_grace,
            upgrade_keep=get("UPGRADE_KEEP") or defaults.upgrade_keep,
            ingress_class=get("INGRESS_CLASS"),
            cluster_issuer=get("CLUSTER_ISSUER"),
            storage_class=get("STORAGE_CLASS"),
            filestore_size=get("FILESTORE_SIZE") or defaults.filestore_size,
            filestore_access_mode=get("FILESTORE_ACCESS_MODE") or defaults.filestore_access_mode,
            size_refresh_seconds=float(get("SIZE_REFRESH_SECONDS") or defaults.size_refresh_seconds),
            resync_seconds=float(get("RESYNC_SECONDS") or defaults.resync_seconds),
            max_concurrent_reconciles=int(get("MAX_CONCURRENT_RECONCILES") or defaults.max_concurrent_reconciles),
            pg_connect_timeout=int(get("PG_CONNECT_TIMEOUT") or defaults.pg_connect_timeout),
            retry_max_seconds=float(get("RETRY_MAX_SECONDS") or defaults.retry_max_seconds),
            namespace=get("NAMESPACE"),
            templates=_bool(get("TEMPLATES"), defaults.templates),
            template_namespace=get("TEMPLATE_NAMESPACE"),
            max_duplicates=int(get("MAX_DUPLICATES") or defaults.max_duplicates),
            duplicate_expires_after=get("DUPLICATE_EXPIRES_AFTER") or defaults.duplicate_expires_after,
            filestore_clone=get("FILESTORE_CLONE") or defaults.filestore_clone,
            operator_image=get("IMAGE") or defaults.operator_image,
            backup_pvc=get("BACKUP_PVC") or defaults.backup_pvc,
            backup_pvc_size=get("BACKUP_PVC_SIZE") or defaults.backup_pvc_size,
            restore_max_bytes=int(get("RESTORE_MAX_BYTES") or defaults.restore_max_bytes),
            restore_max_members=int(get("RESTORE_MAX_MEMBERS") or defaults.restore_max_members),
            restore_spool_size=get("RESTORE_SPOOL_SIZE") or defaults.restore_spool_size,
            gateway=get("GATEWAY"),
            allow_wildcard_domains=_bool(get("ALLOW_WILDCARD_DOMAINS"), defaults.allow_wildcard_domains),
            dns_check=_bool(get("DNS_CHECK"), defaults.dns_check),
            dns_server=get("DNS_SERVER"),
            leader_election=_bool(get("LEADER_ELECTION"), defaults.leader_election),
            lease_name=get("LEASE_NAME") or defaults.lease_name,
            lease_namespace=get("LEASE_NAMESPACE"),
            lease_duration=float(get("LEASE_DURATION") or defaults.lease_duration),
            renew_deadline=float(get("RENEW_DEADLINE") or defaults.renew_deadline),
            retry_period=float(get("RETRY_PERIOD") or defaults.retry_period),
            pod_name=get("POD_NAME"),
            metrics_port=int(get("METRICS_PORT") or defaults.metrics_port),
            metrics_address=get("METRICS_ADDRESS") or defaults.metrics_address,
        )
        settings.gateway_parent  # noqa: B018 - a malformed ODOO_OPERATOR_GATEWAY stops the operator at start
        return settings
