"""Operator settings, read once from the environment (ODOO_OPERATOR_*)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_IMAGES = {"16.0": "odoo:16.0", "17.0": "odoo:17.0", "18.0": "odoo:18.0"}


def _parse_images(raw: str) -> dict[str, str]:
    """`{"17.0": "odoo:17.0"}` (JSON) or `17.0=odoo:17.0,18.0=odoo:18.0`."""
    raw = raw.strip()
    if raw.startswith("{"):
        table = json.loads(raw)
        if not isinstance(table, dict):
            raise ValueError("ODOO_OPERATOR_IMAGES must be a JSON object")
        return {str(k): str(v) for k, v in table.items()}
    pairs = (item.split("=", 1) for item in raw.split(",") if item.strip())
    return {version.strip(): image.strip() for version, image in pairs}


@dataclass(frozen=True)
class Settings:
    base_domain: str = "odoo.localhost"
    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
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
    max_duplicates: int = 5
    duplicate_expires_after: str = "15d"
    filestore_clone: str = "csi"  # "csi": PVC dataSource clone; "copy": a Job copies the files
    operator_image: str = "odoo-db-operator:0.1.0"  # runs the backup and restore Jobs
    backup_pvc: str = "odoo-backups"  # default backup storage: this PVC in the database's namespace
    backup_pvc_size: str = "20Gi"

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
        return cls(
            base_domain=get("BASE_DOMAIN") or defaults.base_domain,
            images=_parse_images(get("IMAGES") or "") or dict(DEFAULT_IMAGES),
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
            max_duplicates=int(get("MAX_DUPLICATES") or defaults.max_duplicates),
            duplicate_expires_after=get("DUPLICATE_EXPIRES_AFTER") or defaults.duplicate_expires_after,
            filestore_clone=get("FILESTORE_CLONE") or defaults.filestore_clone,
            operator_image=get("IMAGE") or defaults.operator_image,
            backup_pvc=get("BACKUP_PVC") or defaults.backup_pvc,
            backup_pvc_size=get("BACKUP_PVC_SIZE") or defaults.backup_pvc_size,
        )
