"""Typed views of the custom resources, parsed once at the edge.

The API server's schema already refuses most bad input; this module checks it again because
the CRD may be older than the operator, or edited, and everything past here trusts these types.
Also the few lenient readings that must work on any body (database_name, parse_deletion,
duplicate_source_name). Not here: label constants (labels.py), conditions and times (conditions.py),
anything that talks to a server.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from odoo_operator.api.errors import SpecError as SpecError  # re-exported: every parser raises it
from odoo_operator.api.labels import TAG_LABEL_PREFIX
from odoo_operator.api.retention import Retention
from odoo_operator.api.users import Owner, UserSpec, parse_users_spec
from odoo_operator.api.versions import UpgradeSpec, parse_upgrade
from odoo_operator.config import Settings

# Every pattern here is used with fullmatch: `$` alone would also match before a trailing newline.
DATABASE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
RESERVED_DATABASE_NAMES = frozenset({"postgres", "template0", "template1"})
TAG_RE = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")
CONFIG_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
# At most 6 digits per unit (999999d is 2737 years): a date that far stays representable.
DURATION_RE = re.compile(r"^(?:([0-9]{1,6})d)?(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,6})s)?$")
VERSION_RE = re.compile(r"^(saas~)?[0-9]{1,2}\.[0-9]$")
# Kubernetes names (the CRDs hold the same patterns). An OdooDatabase's name is a DNS-1035 label: it names
# its Service and is the value of its children's labels; a DatabaseBackup's or DomainMapping's name is a
# label value on its children, so at most 63 characters; other references follow their kind's rule.
DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ARTIFACT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
S3_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
DELETION_POLICIES = ("Delete", "Retain", "Snapshot")

# odoo.conf keys the operator owns: a user value would break isolation or the operator's wiring.
OPERATOR_CONFIG_KEYS = frozenset({
    "db_host", "db_port", "db_user", "db_password", "db_name", "dbfilter", "db_sslmode", "db_template",
    "list_db", "admin_passwd", "data_dir", "proxy_mode", "http_port", "gevent_port", "longpolling_port",
    "workers", "addons_path", "http_interface", "db_maxconn", "unaccent",
})


def role_name(namespace: str, name: str) -> str:
    """A PostgreSQL role per OdooDatabase object, stable across renames and re-creation."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:20]
    return f"odoo_{digest}"


def check_object_name(name: Any, field_path: str, rule: str = "subdomain") -> str:
    """A Kubernetes name: `odoo` (an OdooDatabase: DNS-1035 label), `label` (DNS-1123 label), `short`
    (a DNS-1123 subdomain of at most 63 characters) or `subdomain` (at most 253)."""
    if rule == "odoo":
        ok = isinstance(name, str) and bool(DNS1035_LABEL_RE.fullmatch(name))
        what = ("an OdooDatabase name: 1 to 63 lower-case letters, digits and '-', starting with a letter and "
                "ending with a letter or digit")
    elif rule == "label":
        ok = isinstance(name, str) and bool(DNS1123_LABEL_RE.fullmatch(name))
        what = ("a DNS-1123 label: 1 to 63 lower-case letters, digits and '-', starting and ending with a letter "
                "or digit")
    else:
        limit = 63 if rule == "short" else 253
        ok = isinstance(name, str) and len(name) <= limit and bool(DNS1123_SUBDOMAIN_RE.fullmatch(name))
        what = (f"a Kubernetes name (DNS-1123 subdomain): 1 to {limit} lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit")
    if not ok:
        shown = name[:80] if isinstance(name, str) else name
        raise SpecError(f"{field_path} {shown!r} is not {what}")
    return str(name)


def check_database_name(name: str, field_path: str = "spec.databaseName") -> str:
    if not isinstance(name, str) or not DATABASE_NAME_RE.fullmatch(name) or len(name.encode()) > 63:
        raise SpecError(
            f"{field_path} {name!r} is not a valid Odoo database name: use letters, digits, '_', '.', '-', "
            "start with a letter or digit, at least 2 and at most 63 characters"
        )
    if name.lower() in RESERVED_DATABASE_NAMES:
        raise SpecError(f"{field_path} {name!r} is reserved by PostgreSQL; choose another name")
    return name


def database_name(body: Mapping[str, Any]) -> str:
    """The PostgreSQL database an OdooDatabase object has now: status.databaseName (recorded once created or
    renamed) wins over spec.databaseName (wanted, maybe not applied yet: a rename in progress), then
    metadata.name. Not validated: for display and deletion. The wanted name, validated, is
    parse_odoo_database(...).database_name."""
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    return str(status.get("databaseName") or spec.get("databaseName") or body["metadata"]["name"])


def parse_duration(text: str, field_path: str = "spec.expiresAfter") -> datetime.timedelta:
    """`15d`, `36h`, `90m`, `45s`, or combinations in that order such as `1d12h`."""
    match = DURATION_RE.fullmatch(text) if isinstance(text, str) else None
    if not text or not match:
        shown = text[:40] if isinstance(text, str) else text
        raise SpecError(f"{field_path} {shown!r} is not a duration such as 15d, 36h, 90m, 45s or 1d12h "
                        "(at most 6 digits per unit)")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


@dataclass(frozen=True)
class DuplicateFrom:
    name: str
    for_testing: bool = False


# A file on a backup storage, relative to its root (the volume's root, or the bucket's prefix). Hostile
# input: each segment starts with a letter, digit or '_' (so no '.', '..' or hidden files), no '//', no
# leading '/', no backslash. The CRD's CEL rule is the same expression.
STORAGE_PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+=@,-]*(/[A-Za-z0-9_][A-Za-z0-9._+=@,-]*)*$")
STORAGE_PATH_MAX = 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
IDENTITIES = ("fresh", "keep")


def check_storage_path(path: Any, field_path: str = "spec.restoreFrom.file") -> str:
    if not isinstance(path, str) or len(path) > STORAGE_PATH_MAX or not STORAGE_PATH_RE.fullmatch(path):
        raise SpecError(f"{field_path} {path!r} must be a relative path inside the backup storage: segments of "
                        "letters, digits, '.', '_', '-', '+', '=', '@', ',' separated by '/', none starting with '.' "
                        f"(no '..'), at most {STORAGE_PATH_MAX} characters")
    return path


@dataclass(frozen=True)
class RestoreFrom:
    """Either `backup` (+ `artifact`): an artifact a DatabaseBackup made, checked against its sidecar; or
    `file` (+ `storage`, `sha256`): any Odoo ZIP, pg_dump archive or SQL file on a backup storage.
    `identity`: fresh (Odoo's "copied": new uuid and secret) or keep (Odoo's "moved")."""
    backup: str | None = None
    artifact: str | None = None
    neutralize: bool = False
    file: str | None = None
    storage: Storage | None = None
    sha256: str | None = None
    identity: str = "fresh"

    @property
    def keep_identity(self) -> bool:
        return self.identity == "keep"


@dataclass(frozen=True)
class Storage:
    pvc_claim: str | None = None
    s3_bucket: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_prefix: str = ""
    s3_credentials_secret: str | None = None

    def url(self, namespace: str, database: str) -> str:
        if self.s3_bucket:
            prefix = "/".join(p for p in (self.s3_prefix.strip("/"), namespace, database) if p)
            return f"s3://{self.s3_bucket}/{prefix}"
        return f"file:///backups/{namespace}/{database}"

    def root_url(self) -> str:
        """The storage's root, which `spec.restoreFrom.file` is relative to: the volume's root or the prefix."""
        if self.s3_bucket:
            return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}".rstrip("/")
        return "file:///backups"

    def describe(self) -> str:
        return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}".rstrip("/") if self.s3_bucket else \
            f"PVC {self.pvc_claim}"


@dataclass(frozen=True)
class DuplicateSource:
    """spec.duplicateFrom resolved: where the source OdooDatabase's database is."""
    spec: DuplicateFrom
    server: str | None
    database_name: str | None  # None only once copied, if the status lost sourceDatabase
    role_name: str
    version: str | None = None  # the version the source's data is at (its status.version)


@dataclass(frozen=True)
class RestoreSource:
    """spec.restoreFrom resolved: the artifact of a DatabaseBackup (checked against its sidecar), or the file."""
    spec: RestoreFrom
    storage: Storage
    label: str  # for messages: "<backup>/<artifact>" or "file <path> on <storage>"
    verified: bool  # its bytes are checked (an artifact's sidecar, or spec.restoreFrom.sha256)
    artifact: str | None = None
    source_database: str | None = None  # the database the backup was taken of


@dataclass(frozen=True)
class BackupSettings:
    """spec.backup of an OdooDatabase: the owned DatabaseBackup <name>-daily."""
    schedule: str
    retention: Retention
    storage: Storage


SCHEDULE_RE = re.compile(r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+ +){4}\S+)$")


def parse_retention(raw: Any) -> Retention:
    raw = raw or {}
    return Retention(**{field: _int(raw.get(key), f"retention.{key}", 0, 10000, getattr(Retention(), field))
                        for field, key in (("keep_last", "keepLast"), ("keep_daily", "keepDaily"),
                                           ("keep_weekly", "keepWeekly"), ("keep_monthly", "keepMonthly"))})


def parse_storage(raw: Any, settings: Settings, field_path: str = "spec.storage") -> Storage:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{field_path} must be an object with pvc or s3")
    if raw.get("s3"):
        s3 = raw["s3"]
        if not isinstance(s3, Mapping) or not s3.get("bucket"):
            raise SpecError(f"{field_path}.s3.bucket is required")
        bucket = s3["bucket"]
        if not isinstance(bucket, str) or not S3_BUCKET_RE.fullmatch(bucket):
            raise SpecError(f"{field_path}.s3.bucket {str(bucket)[:80]!r} is not a bucket name: letters, digits, "
                            "'.', '_' and '-', starting with a letter or digit, at most 255 characters")
        secret = (s3.get("credentialsSecret") or {}).get("name")
        if secret is not None:
            check_object_name(secret, f"{field_path}.s3.credentialsSecret.name")
        return Storage(s3_bucket=bucket, s3_endpoint=s3.get("endpoint"), s3_region=s3.get("region"),
                       s3_prefix=s3.get("prefix") or "", s3_credentials_secret=secret)
    claim = (raw.get("pvc") or {}).get("claimName")
    if claim is not None:
        check_object_name(claim, f"{field_path}.pvc.claimName")
    return Storage(pvc_claim=claim or settings.backup_pvc)


def parse_backup_settings(raw: Any, settings: Settings) -> BackupSettings | None:
    raw = raw or {}
    if raw.get("enabled") is False:
        return None
    schedule = raw.get("schedule") or "@daily"
    if not isinstance(schedule, str) or not SCHEDULE_RE.fullmatch(schedule):
        raise SpecError(f"spec.backup.schedule {schedule!r} is not a cron expression or @daily-style macro")
    return BackupSettings(schedule, parse_retention(raw.get("retention")),
                          parse_storage(raw.get("storage"), settings, "spec.backup.storage"))


@dataclass(frozen=True)
class DatabaseBackup:
    name: str
    namespace: str
    uid: str
    generation: int
    database: str
    schedule: str | None
    format: str
    storage: Storage
    retention: Retention
    suspend: bool


ArtifactT = TypeVar("ArtifactT", bound=Mapping[str, Any])


def choose_artifact(artifacts: Sequence[ArtifactT], wanted: str | None) -> ArtifactT | None:
    """Of `DatabaseBackup.status.artifacts[]`, the one with id `wanted`, or without `wanted` the newest (by its
    time); None when there is no such artifact."""
    if wanted:
        return next((a for a in artifacts if a.get("id") == wanted), None)
    return max(artifacts, key=lambda a: a.get("time") or "") if artifacts else None


def parse_database_backup(body: Mapping[str, Any], settings: Settings) -> DatabaseBackup:
    meta = body.get("metadata", {})
    spec = body.get("spec") or {}
    check_object_name(meta.get("name"), "metadata.name", "short")
    database = (spec.get("databaseRef") or {}).get("name")
    if not database:
        raise SpecError("spec.databaseRef.name must name an OdooDatabase in this namespace")
    check_object_name(database, "spec.databaseRef.name", "odoo")
    schedule = spec.get("schedule") or None
    if schedule and (not isinstance(schedule, str) or not SCHEDULE_RE.fullmatch(schedule)):
        raise SpecError(f"spec.schedule {schedule!r} is not a cron expression or @daily-style macro")
    fmt = spec.get("format") or "zip"
    if fmt not in ("zip", "dump"):
        raise SpecError("spec.format must be zip or dump")
    return DatabaseBackup(
        name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 0), database=database, schedule=schedule, format=fmt,
        storage=parse_storage(spec.get("storage"), settings), retention=parse_retention(spec.get("retention")),
        suspend=bool(spec.get("suspend", False)),
    )


@dataclass(frozen=True)
class AppSpec:
    replicas: int = 1
    workers: int = 0
    resources: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, str] = field(default_factory=dict)
    suspended: bool = False


@dataclass(frozen=True)
class OdooDatabase:
    name: str
    namespace: str
    uid: str
    generation: int
    database_name: str
    version: str
    image: str
    server: str | None
    hostname: str
    tags: tuple[str, ...]
    deletion_policy: str
    app: AppSpec
    subscription: str | None = None
    duplicate_from: DuplicateFrom | None = None
    expires_after: datetime.timedelta | None = None
    creation_timestamp: str | None = None
    restore_from: RestoreFrom | None = None
    backup: BackupSettings | None = None
    users: tuple[UserSpec, ...] = ()  # spec.users, e-mails normalised (api/users.py)
    owner: Owner | None = None  # spec.owner: the admin user's login, name and e-mail
    server_selector: Mapping[str, Any] | None = None  # spec.serverSelector: the pool it is placed in
    upgrade: UpgradeSpec = field(default_factory=UpgradeSpec)  # spec.upgrade (api/versions.py)
    image_pinned: bool = False  # spec.image set: the image is not the version table's

    @property
    def role_name(self) -> str:
        return role_name(self.namespace, self.name)

    @property
    def owner_marker(self) -> dict[str, str]:
        return {"managedBy": "odoo-db-operator", "namespace": self.namespace, "name": self.name}

    @property
    def tag_labels(self) -> dict[str, str]:
        return {f"{TAG_LABEL_PREFIX}{tag}": "true" for tag in self.tags}


def _int(value: Any, field_path: str, lo: int, hi: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SpecError(f"{field_path} must be an integer between {lo} and {hi}")
    return value


def parse_app(raw: Any) -> AppSpec:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise SpecError("spec.app must be an object")
    config = raw.get("config") or {}
    if not isinstance(config, Mapping):
        raise SpecError("spec.app.config must be a map of odoo.conf keys to values")
    for key, value in config.items():
        if not isinstance(key, str) or not CONFIG_KEY_RE.fullmatch(key):
            raise SpecError(f"spec.app.config key {key!r} is not a valid odoo.conf key")
        if key in OPERATOR_CONFIG_KEYS:
            raise SpecError(f"spec.app.config.{key} is managed by the operator and cannot be set")
        if not isinstance(value, str) or "\n" in value or "\r" in value or len(value) > 1024:
            raise SpecError(f"spec.app.config.{key} must be a single-line string of at most 1024 characters")
    resources = raw.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise SpecError("spec.app.resources must be an object with limits/requests")
    return AppSpec(
        replicas=_int(raw.get("replicas"), "spec.app.replicas", 0, 20, 1),
        workers=_int(raw.get("workers"), "spec.app.workers", 0, 64, 0),
        resources={k: dict(v) for k, v in resources.items() if k in ("limits", "requests") and v},
        config=dict(config),
        suspended=bool(raw.get("suspended", False)),
    )


def parse_odoo_database(body: Mapping[str, Any], settings: Settings) -> OdooDatabase:
    meta = body.get("metadata", {})
    spec = body.get("spec") or {}
    name = check_object_name(meta.get("name"), "metadata.name", "odoo")
    database_name = check_database_name(
        spec.get("databaseName") or name, "spec.databaseName" if spec.get("databaseName") else "metadata.name"
    )
    version = spec.get("version")
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise SpecError(f"spec.version {version!r} is not an Odoo version such as '17.0'")
    image = spec.get("image") or settings.images.get(version)
    if not image:
        known = ", ".join(sorted(settings.images)) or "none"
        raise SpecError(f"no image is configured for Odoo {version} (known versions: {known}); set spec.image")
    # Odoo allows "_" in database names; a DNS label does not: the default host uses "-" instead.
    hostname = spec.get("hostname") or f"{database_name.lower().replace('_', '-')}.{settings.base_domain}"
    if not isinstance(hostname, str) or not HOSTNAME_RE.fullmatch(hostname) or "_" in hostname:
        raise SpecError(f"hostname {hostname!r} is not a valid DNS name; set spec.hostname")
    tags = spec.get("tags") or []
    if not isinstance(tags, list):
        raise SpecError("spec.tags must be a list")
    for tag in tags:
        if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
            raise SpecError(f"tag {tag!r} must be lower-case letters, digits, '-', '_' or '.' (max 63)")
    policy = spec.get("deletionPolicy") or "Delete"
    if policy not in DELETION_POLICIES:
        raise SpecError(f"spec.deletionPolicy {policy!r} must be one of {', '.join(DELETION_POLICIES)}")
    subscription = (spec.get("subscription") or {}).get("code")
    restore_from = parse_restore_from(spec["restoreFrom"], settings) if spec.get("restoreFrom") is not None else None
    duplicate_from = None
    if spec.get("duplicateFrom"):
        raw = spec["duplicateFrom"]
        source = raw.get("name") if isinstance(raw, Mapping) else None
        if not isinstance(source, str) or not source:
            raise SpecError("spec.duplicateFrom.name must name an OdooDatabase in this namespace")
        check_object_name(source, "spec.duplicateFrom.name", "odoo")
        if source == name:
            raise SpecError("spec.duplicateFrom.name cannot name the database itself")
        duplicate_from = DuplicateFrom(source, bool(raw.get("forTesting", False)))
    expires_raw = spec.get("expiresAfter") or (settings.duplicate_expires_after if duplicate_from else None)
    expires_after = parse_duration(expires_raw) if expires_raw else None
    users, owner = parse_users_spec(spec)
    return OdooDatabase(
        name=name,
        namespace=meta["namespace"],
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 0),
        database_name=database_name,
        version=version,
        image=image,
        server=check_object_name(spec["server"], "spec.server") if spec.get("server") is not None else None,
        server_selector=parse_label_selector(spec.get("serverSelector"), "spec.serverSelector"),
        hostname=hostname,
        tags=tuple(sorted(set(tags))),
        deletion_policy=policy,
        app=parse_app(spec.get("app")),
        subscription=subscription,
        duplicate_from=duplicate_from,
        expires_after=expires_after,
        creation_timestamp=meta.get("creationTimestamp"),
        restore_from=restore_from,
        backup=parse_backup_settings(spec.get("backup"), settings),
        users=users,
        owner=owner,
        upgrade=parse_upgrade(spec.get("upgrade"), settings.images),
        image_pinned=bool(spec.get("image")),
    )


def pre_upgrade_database_name(uid: str) -> str:
    """The pre-upgrade copy of an OdooDatabase's database (controller/odoodatabase_upgrade.py): a leading "_"
    that no OdooDatabase may take (Odoo's name rule), the object's uid making it unique on the server."""
    return f"_pre_upgrade_{uid.replace('-', '')[:24]}"


def duplicate_source_name(body: Mapping[str, Any]) -> str | None:
    """spec.duplicateFrom.name of any OdooDatabase body, valid or not (a source counts its duplicates)."""
    raw = (body.get("spec") or {}).get("duplicateFrom")
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return name if isinstance(name, str) else None


def is_copy_for_testing(body: Mapping[str, Any]) -> bool:
    """spec.duplicateFrom.forTesting of any OdooDatabase body, valid or not (limits count them, metrics skip them)."""
    raw = (body.get("spec") or {}).get("duplicateFrom")
    return isinstance(raw, Mapping) and raw.get("forTesting") is True


def requested_version(body: Mapping[str, Any]) -> str | None:
    """spec.version of any OdooDatabase body, valid or not (another object's: a test copy's target)."""
    version = (body.get("spec") or {}).get("version")
    return version if isinstance(version, str) else None


@dataclass(frozen=True)
class Deletion:
    """What deleting an OdooDatabase needs, read leniently: an object whose spec no longer parses must still
    be deletable. `policy` is kept as written; anything but Delete and Snapshot retains the database."""
    name: str
    namespace: str
    uid: str
    database_name: str  # as the server has it now (database_name)
    policy: str
    server: str | None  # spec.server, unchecked: the status's server wins anyway
    created: bool  # status.createdAt: the operator created (or adopted) the database


def parse_deletion(body: Mapping[str, Any]) -> Deletion:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    server = spec.get("server")
    return Deletion(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""),
                    database_name=database_name(body), policy=str(spec.get("deletionPolicy") or "Delete"),
                    server=server if isinstance(server, str) and server else None,
                    created=bool(status.get("createdAt")))


def parse_restore_from(raw: Any, settings: Settings) -> RestoreFrom:
    if not isinstance(raw, Mapping) or bool(raw.get("backup")) == bool(raw.get("file")):
        raise SpecError("spec.restoreFrom needs exactly one of backup (a DatabaseBackup in this namespace) or file "
                        "(a path on a backup storage)")
    identity = raw.get("identity") or "fresh"
    if identity not in IDENTITIES:
        raise SpecError(f"spec.restoreFrom.identity {identity!r} must be fresh or keep")
    neutralize = bool(raw.get("neutralize", False))
    if raw.get("backup"):
        if raw.get("storage") or raw.get("sha256"):
            raise SpecError("spec.restoreFrom.storage and sha256 go with file, not with backup (a backup's artifacts "
                            "carry their storage and checksum)")
        artifact = raw.get("artifact") or None
        if artifact is not None and (not isinstance(artifact, str) or not ARTIFACT_ID_RE.fullmatch(artifact)):
            raise SpecError(f"spec.restoreFrom.artifact {str(artifact)[:80]!r} is not an artifact id (see the "
                            "backup's status.artifacts): letters, digits, '.', '_' and '-', at most 63 characters")
        return RestoreFrom(backup=check_object_name(raw["backup"], "spec.restoreFrom.backup", "short"),
                           artifact=artifact, neutralize=neutralize, identity=identity)
    if raw.get("artifact"):
        raise SpecError("spec.restoreFrom.artifact goes with backup, not with file")
    sha256 = raw.get("sha256") or None
    if sha256 is not None and (not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256)):
        raise SpecError("spec.restoreFrom.sha256 must be 64 lower-case hexadecimal digits")
    return RestoreFrom(file=check_storage_path(raw["file"]),
                       storage=parse_storage(raw.get("storage"), settings, "spec.restoreFrom.storage"),
                       sha256=sha256, neutralize=neutralize, identity=identity)


@dataclass(frozen=True)
class AllowedNamespaces:
    """spec.allowedNamespaces of a PostgresServer: a namespace is allowed when it is listed in names or
    its labels match selector (a metav1.LabelSelector; selector_matches)."""
    names: tuple[str, ...] = ()
    selector: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PostgresServer:
    name: str
    host: str
    port: int
    admin_secret_namespace: str
    admin_secret_name: str
    ssl_mode: str
    default: bool
    max_databases: int | None
    allowed_namespaces: AllowedNamespaces | None = None  # None: every namespace may use the server
    uid: str = ""  # metadata.uid: owner of its template databases' Jobs (controller/templates.py)
    labels: Mapping[str, str] = field(default_factory=dict)  # metadata.labels: its pools (spec.serverSelector)
    cordoned: bool = False  # spec.cordoned: no new database is placed on it
    max_storage: int | None = None  # spec.maxStorage in bytes: placement stops when its databases reach it


SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _parse_allowed_namespaces(value: Any) -> AllowedNamespaces | None:
    if value is None:
        return None
    path = "spec.allowedNamespaces"
    if not isinstance(value, Mapping):
        raise SpecError(f"{path} must be an object with names and/or selector")
    names = value.get("names") or []
    if not isinstance(names, list):
        raise SpecError(f"{path}.names must be a list of namespace names")
    for index, name in enumerate(names):
        check_object_name(name, f"{path}.names[{index}]", "label")
    return AllowedNamespaces(tuple(names), parse_label_selector(value.get("selector"), f"{path}.selector"))


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels, as the API server evaluates it ({}: everything)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def parse_label_selector(selector: Any, path: str) -> Mapping[str, Any] | None:
    """A metav1.LabelSelector (matchLabels, matchExpressions), checked; None when absent."""
    if selector is None:
        return None
    if not isinstance(selector, Mapping) or not isinstance(selector.get("matchLabels") or {}, Mapping) \
            or not isinstance(selector.get("matchExpressions") or [], list):
        raise SpecError(f"{path} must be a label selector (matchLabels, matchExpressions)")
    for index, expression in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{index}]"
        if not isinstance(expression, Mapping) or not isinstance(expression.get("key"), str) \
                or expression.get("operator") not in SELECTOR_OPERATORS:
            raise SpecError(f"{where} needs a key and an operator among {', '.join(SELECTOR_OPERATORS)}")
        values = expression.get("values") or []
        if (expression["operator"] in ("In", "NotIn")) != bool(values) or not isinstance(values, list):
            raise SpecError(f"{where}: In and NotIn need values, Exists and DoesNotExist take none")
    return selector


_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}


def human_bytes(value: int) -> str:
    """1.5 GiB, 12.0 MiB, 300 B: sizes in messages."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def quantity_bytes(quantity: str | int) -> int:
    """A Kubernetes storage quantity ("20Gi", "500M", "1073741824" or an integer) in bytes."""
    match = _QUANTITY.match(str(quantity).strip())
    if not match:
        raise ValueError(f"{quantity!r} is not a storage quantity like 20Gi")
    return int(match[1]) * _UNITS[match[2]]


def parse_postgres_server(body: Mapping[str, Any]) -> PostgresServer:
    spec = body.get("spec") or {}
    ref = spec.get("adminSecretRef") or {}
    if not spec.get("host") or not ref.get("name") or not ref.get("namespace"):
        raise SpecError("spec.host and spec.adminSecretRef {namespace, name} are required")
    check_object_name(ref["namespace"], "spec.adminSecretRef.namespace", "label")
    check_object_name(ref["name"], "spec.adminSecretRef.name")
    return PostgresServer(
        name=body["metadata"]["name"],
        host=spec["host"],
        port=_int(spec.get("port"), "spec.port", 1, 65535, 5432),
        admin_secret_namespace=ref["namespace"],
        admin_secret_name=ref["name"],
        ssl_mode=spec.get("sslMode") or "prefer",
        default=bool(spec.get("default", False)),
        max_databases=spec.get("maxDatabases"),
        allowed_namespaces=_parse_allowed_namespaces(spec.get("allowedNamespaces")),
        uid=str(body["metadata"].get("uid") or ""),
        labels=dict(body["metadata"].get("labels") or {}),
        cordoned=bool(spec.get("cordoned", False)),
        max_storage=_max_storage(spec.get("maxStorage")),
    )


def _max_storage(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return quantity_bytes(value)
    except ValueError as exc:
        raise SpecError(f"spec.maxStorage: {exc}") from None


# ---- OdooPlan: limits for the namespaces bound to it ---------------------------------------------

@dataclass(frozen=True)
class OdooPlan:
    name: str
    max_storage_per_database: int | None = None  # bytes; over it: OverQuota, no new copy, restore or backup of it
    max_test_copies: int | None = None  # duplicates forTesting per source (the operator's max_duplicates otherwise)
    custom_domains: bool = True  # DomainMappings and a spec.hostname outside the base domain

    def describe(self) -> str:
        return f"OdooPlan {self.name!r}"


def parse_odoo_plan(body: Mapping[str, Any]) -> OdooPlan:
    spec = body.get("spec") or {}
    storage = spec.get("maxStoragePerDatabase")
    try:
        max_storage = quantity_bytes(storage) if storage is not None else None
    except ValueError as exc:
        raise SpecError(f"spec.maxStoragePerDatabase: {exc}") from None
    copies = spec.get("maxTestCopies")
    return OdooPlan(
        name=str(body["metadata"]["name"]),
        max_storage_per_database=max_storage,
        max_test_copies=_int(copies, "spec.maxTestCopies", 0, 1000, 0) if copies is not None else None,
        custom_domains=bool(spec.get("customDomains", True)),
    )
