"""Backups in Odoo's own format, streamed end to end: `python -m odoo_operator.backupjob create|restore|…`.

A `zip` artifact is what Odoo's database manager produces and its `restore_db` reads: `dump.sql`
(plain `pg_dump --no-owner`) as the FIRST entry, then `manifest.json`, then `filestore/<sha[:2]>/<sha>`.
`pg_dump`'s output is compressed into the zip while it is produced, and the zip is written straight to
the storage through a hashing wrapper, so memory stays flat whatever the size of the database. A
`dump` artifact is `pg_dump -Fc` (no filestore).

A restore also takes a file the operator did not write (`restore --file PATH`, a path under the storage's
root): an Odoo ZIP (`dump_db`, the database manager's Backup), a `pg_dump -Fc` archive or a plain SQL
file, told apart by their first bytes. Without a checksum to compare with, it is restored unverified (a
ZIP's own CRCs are still checked). `receive` writes such a file from stdin (the upload of `kubectl odoo
restore --file`). A dump is tenant-controlled input: psql runs it with every backslash command refused
(`\restrict`), as the database's own role.

An artifact is written under a temporary name (`<name>.partial` on a volume, created exclusively and locked
while its run lives; an uncompleted multipart upload on S3, invisible until completed), checked, published under
its final name (never over another), and only then described by a small sidecar `<name>.json`. Listing reads
sidecars only: an artifact without one does not exist for restore or retention. Several runs may back one
database up at once: each has its own artifact id, and a run removes only the partials of dead runs.

Every backup of a database shares its folder (`<namespace>/<database>/`, how artifacts are addressed). The
sidecar records which DatabaseBackup made the artifact (`backup`), and retention only ever considers that
DatabaseBackup's own artifacts; artifacts made before this was recorded belong to no one and are pruned only by
the run that is told to adopt them (the database's daily backup).

PostgreSQL is reached through the standard libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD,
PGSSLMODE); the S3 client is a small SigV4 implementation on the standard library (see `S3Client`).
"""

from __future__ import annotations

import argparse
import builtins
import codecs
import contextlib
import fcntl
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import IO, Any, Protocol

import psycopg
from psycopg.conninfo import make_conninfo

from odoo_operator.api.model import STORAGE_PATH_MAX, STORAGE_PATH_RE
from odoo_operator.api.retention import Retention, select_keep

log = logging.getLogger("odoo_operator.backupjob")

CHUNK = 1 << 20
# What a restored ZIP may expand to, and hold (a zip bomb is refused): see RestoreLimits.
DEFAULT_RESTORE_MAX_BYTES = 100 << 30
DEFAULT_RESTORE_MAX_MEMBERS = 2_000_000
# Level 1 deflate: measured on a 190 MB plain dump of hard-to-compress rows, 91 MB/s against 29 MB/s
# for the default level 6, for 2% more bytes (112 MB against 110 MB).
ZIP_COMPRESSLEVEL = 1
FORMATS = ("zip", "dump")
EXTENSIONS = {"zip": "zip", "dump": "dump"}
ID_FORMAT = "%Y%m%dT%H%M%SZ"
PARTIAL = ".partial"
# A partial that no live run holds (its lock free: the run died) and that nothing wrote to for this long is
# removed; the delay covers the instant between its creation and its lock, and writers without a lock.
UNLOCKED_PARTIAL_GRACE = 600.0
# An S3 upload cannot be locked: it is another run's until nothing was uploaded to it for this long.
DEFAULT_STALE_AFTER = 6 * 3600.0
SIDECAR = ".json"
APPLICATION_NAME = "odoo-db-operator-backup"
LIBPQ_ENV = {"PGHOST": "host", "PGPORT": "port", "PGUSER": "user", "PGPASSWORD": "password",
             "PGSSLMODE": "sslmode"}


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why, for a human."""


# --- artifacts ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Artifact:
    id: str
    time: datetime
    size_bytes: int
    sha256: str
    format: str
    db_name: str
    location: str
    owner: str | None = None  # the DatabaseBackup that made it (None: made before owners were recorded)

    @property
    def name(self) -> str:
        return artifact_name(self.db_name, self.id, self.format)

    def status(self) -> dict[str, Any]:
        """The shape of `DatabaseBackup.status.artifacts[]`."""
        return {"id": self.id, "time": _iso(self.time), "sizeBytes": self.size_bytes, "sha256": self.sha256,
                "location": self.location}

    def sidecar(self) -> dict[str, Any]:
        owner = {"backup": self.owner} if self.owner is not None else {}
        return {**self.status(), "format": self.format, "db_name": self.db_name, **owner}

    @classmethod
    def from_sidecar(cls, data: Mapping[str, Any]) -> Artifact:
        owner = data.get("backup")
        return cls(id=str(data["id"]), time=_parse_iso(str(data["time"])), size_bytes=int(data["sizeBytes"]),
                   sha256=str(data["sha256"]), format=str(data["format"]), db_name=str(data["db_name"]),
                   location=str(data["location"]), owner=str(owner) if owner is not None else None)


def artifact_id(moment: datetime, suffix: str = "") -> str:
    """`20240131T020000Z` (artifacts of earlier versions), or with a random suffix, `20240131T020000Z-3fa9c2`:
    runs that start in the same second, of different DatabaseBackups or different operators, never meet."""
    stamp = moment.astimezone(UTC).strftime(ID_FORMAT)
    return f"{stamp}-{suffix}" if suffix else stamp


def artifact_name(db_name: str, ident: str, fmt: str) -> str:
    return f"{db_name}-{ident}.{EXTENSIONS[fmt]}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _sidecar_bytes(artifact: Artifact) -> bytes:
    return json.dumps(artifact.sidecar(), indent=2, sort_keys=True).encode() + b"\n"


def check_path(path: str) -> str:
    """A file path given by a user (spec.restoreFrom.file, `--file`): hostile input. Relative, no '.' or '..'
    segment, no backslash, nothing a shell or a URL reads differently (the same rule as the CRD's)."""
    if not isinstance(path, str) or len(path) > STORAGE_PATH_MAX or not STORAGE_PATH_RE.fullmatch(path):
        raise BackupError(f"file {path!r} is not a relative path inside the storage (letters, digits, '.', '_', '-', "
                          "'+', '=', '@', ',' in segments separated by '/', none starting with '.')")
    return path


# --- storage -----------------------------------------------------------------------------------

class ArtifactWriter(ABC):
    """Bytes of one new artifact, invisible under its final name until `publish()`."""

    @abstractmethod
    def write(self, data: bytes) -> int: ...

    @abstractmethod
    def finish(self) -> None:
        """Every byte is written and durable (still not published)."""

    @abstractmethod
    def verify(self, size: int, sha256: str, check: Callable[[IO[bytes]], None]) -> None:
        """Raise BackupError unless what was stored is `size` bytes with that digest; `check` may read it."""

    @abstractmethod
    def publish(self) -> None: ...

    @abstractmethod
    def abort(self) -> None:
        """Remove every trace of this artifact; safe to call in any state."""


class Storage(ABC):
    """Where artifacts live. Chosen by URL: `file:///path` (a mounted volume) or `s3://bucket/prefix`."""

    @abstractmethod
    def location(self, name: str) -> str: ...

    @abstractmethod
    def open_writer(self, name: str) -> ArtifactWriter: ...

    @abstractmethod
    def write_sidecar(self, artifact: Artifact) -> None: ...

    @abstractmethod
    def list(self) -> list[Artifact]:
        """Every artifact that has a sidecar, newest first."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def open_reader(self, artifact: Artifact) -> contextlib.AbstractContextManager[IO[bytes]]:
        """The artifact's bytes as a stream, read front to back."""

    @abstractmethod
    def delete(self, artifact: Artifact) -> None:
        """Remove the sidecar first (so the artifact stops existing at once), then the bytes."""

    @abstractmethod
    def clean_partials(self, db_name: str, stale_after: float = DEFAULT_STALE_AFTER) -> Sequence[str]:
        """Remove what dead runs of `db_name` left behind, never what a live run is writing; returns the names."""

    def presigned_url(self, artifact_id: str, seconds: int) -> str:
        raise BackupError("a short-lived download URL needs S3 storage; this storage is a volume")

    @abstractmethod
    def file_location(self, path: str) -> str:
        """Where `path` (relative to the storage's root, see `check_path`) is."""

    @abstractmethod
    def open_file_writer(self, path: str) -> ArtifactWriter:
        """A new file at `path`; refused when something is there already (an upload never overwrites)."""

    @abstractmethod
    def local_file(self, path: str, digest: bool, spool_limit: int | None = None
                   ) -> contextlib.AbstractContextManager[tuple[Path, str | None]]:
        """A seekable local file with the bytes of `path`, and their sha256 when `digest` (else None). A copy
        made in a temporary directory (S3) is refused beyond `spool_limit` bytes."""

    @contextlib.contextmanager
    def local_copy(self, artifact: Artifact, spool_limit: int | None = None) -> Iterator[tuple[Path, str]]:
        """A seekable local file with the artifact's bytes, and their sha256 (zip reading needs seeking)."""
        _check_spool(self.location(artifact.name), artifact.size_bytes, spool_limit)
        with self.open_reader(artifact) as source, _spool(source, self.location(artifact.name), spool_limit,
                                                          f".{artifact.format}") as (path, digest):
            yield path, digest

    def find(self, ref: str) -> Artifact:
        """An artifact by id (`20240131T020000Z`) or by name (`mydb-20240131T020000Z.zip`, extension optional)."""
        matches = [a for a in self.list() if ref in (a.id, a.name, a.name.rsplit(".", 1)[0])]
        if not matches:
            raise BackupError(f"no artifact {ref!r} in {self.location('')} (an artifact exists once its sidecar "
                              f"{SIDECAR} is written)")
        if len(matches) > 1:
            names = ", ".join(a.name for a in matches)
            raise BackupError(f"artifact id {ref!r} is ambiguous ({names}): give the name instead")
        return matches[0]


def _check_spool(location: str, size: int | None, spool_limit: int | None) -> None:
    if spool_limit is not None and size is not None and size > spool_limit:
        raise BackupError(f"{location} is {size} bytes, more than the {spool_limit} bytes the restore may download "
                          "to its temporary volume (the operator's ODOO_OPERATOR_RESTORE_SPOOL_SIZE)")


@contextlib.contextmanager
def _spool(source: IO[bytes], location: str, spool_limit: int | None, suffix: str = "") -> Iterator[tuple[Path, str]]:
    """`source` copied to a temporary file, hashed on the way; never more than `spool_limit` bytes."""
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(prefix="odoo-restore-", suffix=suffix) as spool:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            _check_spool(location, size, spool_limit)
            digest.update(chunk)
            spool.write(chunk)
        spool.flush()
        yield Path(spool.name), digest.hexdigest()


def _read_sidecars(blobs: Iterator[tuple[str, bytes]]) -> list[Artifact]:
    artifacts = []
    for name, data in blobs:
        try:
            artifacts.append(Artifact.from_sidecar(json.loads(data)))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable sidecar %s: %s", name, exc)
    return sorted(artifacts, key=lambda a: (a.time, a.id), reverse=True)


class FileStorage(Storage):
    """Artifacts as files in one directory of a mounted volume."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def location(self, name: str) -> str:
        return (self.root / name).as_uri() if name else self.root.as_uri()

    def open_writer(self, name: str) -> ArtifactWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        return _FileWriter(self.root / name)

    def write_sidecar(self, artifact: Artifact) -> None:
        _atomic_write(self.root / (artifact.name + SIDECAR), _sidecar_bytes(artifact))

    def list(self) -> list[Artifact]:
        if not self.root.is_dir():
            return []
        return _read_sidecars((p.name, p.read_bytes()) for p in sorted(self.root.glob("*" + SIDECAR)))

    def exists(self, name: str) -> bool:
        return (self.root / name).exists() or (self.root / (name + SIDECAR)).exists()

    @contextlib.contextmanager
    def open_reader(self, artifact: Artifact) -> Iterator[IO[bytes]]:
        with open(self.root / artifact.name, "rb") as handle:
            yield handle

    def delete(self, artifact: Artifact) -> None:
        (self.root / (artifact.name + SIDECAR)).unlink(missing_ok=True)
        (self.root / artifact.name).unlink(missing_ok=True)

    def clean_partials(self, db_name: str, stale_after: float = DEFAULT_STALE_AFTER) -> Sequence[str]:
        removed: builtins.list[str] = []
        if not self.root.is_dir():
            return removed
        grace = min(stale_after, UNLOCKED_PARTIAL_GRACE)
        for partial in self.root.glob(f"{_glob_escape(db_name)}-*{PARTIAL}"):
            if _remove_if_dead(partial, grace):
                log.info("removed %s, left by a run that died", partial.name)
                removed.append(partial.name)
        return removed

    def _inside(self, path: str) -> Path:
        """`path` under the root, also once symlinks are resolved (a link on the volume cannot lead out)."""
        target = self.root / check_path(path)
        if not target.resolve().is_relative_to(self.root.resolve()):
            raise BackupError(f"file {path!r} leads outside {self.location('')}")
        return target

    def file_location(self, path: str) -> str:
        return (self.root / check_path(path)).as_uri()

    def open_file_writer(self, path: str) -> ArtifactWriter:
        self._inside(path).parent.mkdir(parents=True, exist_ok=True)
        target = self._inside(path)  # checked again: the directories now exist, and are no links out
        if target.exists() or target.is_symlink():
            raise BackupError(f"{self.file_location(path)} exists already; choose another name")
        _remove_if_dead(target.with_name(target.name + PARTIAL), UNLOCKED_PARTIAL_GRACE)  # an interrupted upload
        try:
            return _FileWriter(target)
        except NameTaken:
            raise BackupError(f"{self.file_location(path)} is being uploaded by someone else; choose another "
                              "name") from None

    @contextlib.contextmanager
    def local_file(self, path: str, digest: bool, spool_limit: int | None = None
                   ) -> Iterator[tuple[Path, str | None]]:
        target = self._inside(path)
        if not target.is_file():
            raise BackupError(f"no file {path!r} in {self.location('')}")
        yield target, sha256_of_file(target) if digest else None

    @contextlib.contextmanager
    def local_copy(self, artifact: Artifact, spool_limit: int | None = None) -> Iterator[tuple[Path, str]]:
        path = self.root / artifact.name
        if not path.is_file():
            raise BackupError(f"{artifact.name} is listed but its file is missing from {self.location('')}")
        yield path, sha256_of_file(path)


def _remove_if_dead(partial: Path, grace: float) -> bool:
    """Remove `partial` unless a live run holds its lock, or it was written to less than `grace` seconds ago."""
    try:
        handle = open(partial, "rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its run is alive
        except OSError as exc:  # a filesystem without locks: only the age can tell
            log.debug("cannot lock %s (%s): judged by its age", partial.name, exc)
        try:
            idle = time.time() - os.fstat(handle.fileno()).st_mtime
        except OSError:
            return False
        if idle < grace:
            return False
        partial.unlink(missing_ok=True)
        return True


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}{PARTIAL}")  # concurrent writers never meet
    with open(partial, "xb") as handle:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # alive, for another run's clean_partials
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        os.replace(partial, path)  # still locked until renamed
    _fsync_dir(path.parent)


class NameTaken(BackupError):
    """Another run writes or wrote an artifact of that name: choose another."""


class _FileWriter(ArtifactWriter):
    """Writes `<name>.partial`, created exclusively (a second run choosing the same name is told so) and locked
    until published or aborted (so `clean_partials` of another run knows it is alive)."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.partial = final.with_name(final.name + PARTIAL)
        try:
            self.handle: IO[bytes] | None = open(self.partial, "xb")
        except FileExistsError:
            raise NameTaken(f"{self.partial.name} is being written by another run") from None
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a dead run's file, removed and recreated by us meanwhile: impossible with "x"
            raise NameTaken(f"{self.partial.name} is locked by another run") from None
        except OSError as exc:
            log.debug("cannot lock %s (%s): a concurrent run judges it by its age", self.partial.name, exc)
        self.finished = False

    def write(self, data: bytes) -> int:
        assert self.handle is not None
        return self.handle.write(data)

    def finish(self) -> None:
        assert self.handle is not None and not self.finished
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.finished = True  # still open: the lock says this run is alive until publish() or abort()

    def verify(self, size: int, sha256: str, check: Callable[[IO[bytes]], None]) -> None:
        stored_size = self.partial.stat().st_size
        stored_sha = sha256_of_file(self.partial)
        if (stored_size, stored_sha) != (size, sha256):
            raise BackupError(f"{self.partial.name} reads back as {stored_size} bytes, sha256 {stored_sha}; "
                              f"{size} bytes, sha256 {sha256} were written")
        with open(self.partial, "rb") as handle:
            check(handle)

    def publish(self) -> None:
        """Under the final name, never over an existing file (a hard link fails if the name is taken)."""
        try:
            os.link(self.partial, self.final)
        except FileExistsError:
            raise NameTaken(f"{self.final.name} exists already") from None
        except OSError:  # a filesystem without hard links
            if self.final.exists():
                raise NameTaken(f"{self.final.name} exists already") from None
            os.replace(self.partial, self.final)
        self.partial.unlink(missing_ok=True)
        _fsync_dir(self.final.parent)
        self._close()

    def _close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def abort(self) -> None:
        if self.handle is not None:  # still ours (a closed handle means published, or already aborted)
            self.partial.unlink(missing_ok=True)
        self._close()


# --- S3 --------------------------------------------------------------------------------------

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MIN_PART_SIZE = 5 << 20
DEFAULT_PART_SIZE = 16 << 20
MAX_PARTS = 10_000


@dataclass(frozen=True)
class S3Signer:
    """AWS Signature Version 4 for S3, header and query (presigned URL) forms. Pure."""

    access_key: str
    secret_key: str
    region: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"S3Signer(access_key={self.access_key!r}, region={self.region!r})"

    def _key(self, day: str) -> bytes:
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return key

    def _signature(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
                   payload_hash: str, stamp: str) -> tuple[str, str]:
        canonical_query = _canonical_query(query)
        lowered = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
        signed = ";".join(sorted(lowered))
        canonical_headers = "".join(f"{k}:{lowered[k]}\n" for k in sorted(lowered))
        canonical = "\n".join([method, _quote(path, safe="/~"), canonical_query, canonical_headers, signed,
                               payload_hash])
        scope = f"{stamp[:8]}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._key(stamp[:8]), to_sign.encode(), hashlib.sha256).hexdigest()
        return signature, signed

    def sign(self, method: str, host: str, path: str, query: Mapping[str, str], payload_hash: str,
             stamp: str, extra_headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """The headers to send (Host, x-amz-*, Authorization, plus `extra_headers`, all signed)."""
        headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": stamp,
                   **{k.lower(): v for k, v in (extra_headers or {}).items()}}
        if self.session_token:
            headers["x-amz-security-token"] = self.session_token
        signature, signed = self._signature(method, path, query, headers, payload_hash, stamp)
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{stamp[:8]}/{self.region}/s3/"
                                    f"aws4_request,SignedHeaders={signed},Signature={signature}")
        return headers

    def presign(self, method: str, host: str, path: str, seconds: int, stamp: str) -> str:
        """The query string of a presigned URL (without `?`)."""
        query = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                 "X-Amz-Credential": f"{self.access_key}/{stamp[:8]}/{self.region}/s3/aws4_request",
                 "X-Amz-Date": stamp, "X-Amz-Expires": str(seconds), "X-Amz-SignedHeaders": "host"}
        if self.session_token:
            query["X-Amz-Security-Token"] = self.session_token
        signature, _ = self._signature(method, path, query, {"host": host}, UNSIGNED_PAYLOAD, stamp)
        query["X-Amz-Signature"] = signature
        return _canonical_query(query)


def _quote(text: str, safe: str = "~") -> str:
    return urllib.parse.quote(text, safe=safe)


def _canonical_query(query: Mapping[str, str]) -> str:
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))


def _amz_stamp() -> str:
    return datetime.now(UTC).strftime(ID_FORMAT)


def _xml_texts(body: bytes, tag: str) -> list[str]:
    """Texts of every element named `tag`, whatever its namespace."""
    return [el.text or "" for el in ET.fromstring(body).iter() if el.tag.rsplit("}", 1)[-1] == tag]


class S3Client:
    """The handful of S3 calls backups need, on http.client.

    Why not boto3: botocore pins python-dateutil<3 while the kubernetes client this operator depends on
    needs python-dateutil>=3, so the two cannot be installed together.
    """

    RETRIES = 3

    def __init__(self, bucket: str, endpoint: str | None, signer: S3Signer, timeout: float = 60) -> None:
        self.bucket = bucket
        self.signer = signer
        self.timeout = timeout
        if endpoint:  # MinIO, Ceph, moto …: path-style addressing
            url = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
            self.scheme, self.host, self.base = url.scheme, url.netloc, url.path.rstrip("/") + f"/{bucket}"
        else:
            self.scheme, self.host, self.base = "https", f"{bucket}.s3.{signer.region}.amazonaws.com", ""

    def url(self, key: str) -> str:
        return f"{self.scheme}://{self.host}{_quote(self._path(key), safe='/~')}"

    def _path(self, key: str) -> str:
        return f"{self.base}/{key}"

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "http":
            return http.client.HTTPConnection(self.host, timeout=self.timeout)
        context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
        return http.client.HTTPSConnection(self.host, timeout=self.timeout, context=context)

    def _send(self, method: str, key: str, query: Mapping[str, str], body: bytes,
              headers: Mapping[str, str] | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        path = self._path(key)
        signed = self.signer.sign(method, self.host, path, query, hashlib.sha256(body).hexdigest(), _amz_stamp(),
                                  headers)
        target = _quote(path, safe="/~") + (f"?{_canonical_query(query)}" if query else "")
        conn = self._connection()
        try:
            conn.request(method, target, body=body if body or method in ("PUT", "POST") else None, headers=signed)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def request(self, method: str, key: str, query: Mapping[str, str] | None = None, body: bytes = b"",
                headers: Mapping[str, str] | None = None, ok: Sequence[int] = (200, 204)) -> tuple[int, bytes,
                                                                                                 dict[str, str]]:
        """One call, retried on network errors and 5xx; raises BackupError for any other answer not in `ok`."""
        for attempt in range(1, self.RETRIES + 1):
            try:
                conn, response = self._send(method, key, query or {}, body, headers)
                with contextlib.closing(conn):
                    data = response.read()
                    answer = response.status, data, {k.lower(): v for k, v in response.getheaders()}
            except (OSError, http.client.HTTPException) as exc:
                if attempt == self.RETRIES:
                    raise BackupError(f"S3 {method} s3://{self.bucket}/{key} failed: {exc}") from None
                time.sleep(0.5 * 2 ** attempt)
                continue
            status = answer[0]
            if status >= 500 and attempt < self.RETRIES:
                time.sleep(0.5 * 2 ** attempt)
                continue
            if status not in ok:
                raise BackupError(f"S3 {method} s3://{self.bucket}/{key}: HTTP {status} {_s3_error(data)}")
            return answer
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[IO[bytes]]:
        conn, response = self._send("GET", key, {}, b"")
        with contextlib.closing(conn):
            if response.status != 200:
                raise BackupError(f"S3 GET s3://{self.bucket}/{key}: HTTP {response.status} "
                                  f"{_s3_error(response.read())}")
            yield response

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.request("PUT", key, body=body, headers={"content-type": content_type})

    def get(self, key: str) -> bytes:
        return self.request("GET", key)[1]

    def head_size(self, key: str) -> int | None:
        status, _, headers = self.request("HEAD", key, ok=(200, 404))
        return int(headers["content-length"]) if status == 200 else None

    def delete(self, key: str) -> None:
        self.request("DELETE", key, ok=(200, 204, 404))

    def list_keys(self, prefix: str) -> Iterator[str]:
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            body = self.request("GET", "", query)[1]
            yield from _xml_texts(body, "Key")
            tokens = _xml_texts(body, "NextContinuationToken")
            if _xml_texts(body, "IsTruncated") != ["true"] or not tokens:
                return
            token = tokens[0]

    def create_multipart(self, key: str) -> str:
        body = self.request("POST", key, {"uploads": ""}, headers={"content-type": "application/octet-stream"})[1]
        return _xml_texts(body, "UploadId")[0]

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        headers = self.request("PUT", key, {"partNumber": str(number), "uploadId": upload_id}, body=data)[2]
        return headers["etag"]

    def complete_multipart(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
                        for n, etag in enumerate(etags, start=1))
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        answer = self.request("POST", key, {"uploadId": upload_id}, body=body)[1]
        if _xml_texts(answer, "Error") or _xml_texts(answer, "Code"):  # S3 may answer 200 with an error body
            raise BackupError(f"S3 completing the upload of s3://{self.bucket}/{key} failed: {_s3_error(answer)}")

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self.request("DELETE", key, {"uploadId": upload_id}, ok=(200, 204, 404))

    def list_multipart(self, prefix: str) -> list[tuple[str, str, datetime | None]]:
        """(key, upload id, when it was initiated) of the uploads in progress under `prefix`."""
        body = self.request("GET", "", {"uploads": "", "prefix": prefix})[1]
        root = ET.fromstring(body)
        uploads = []
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == "Upload":
                fields = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in el}
                uploads.append((fields.get("Key", ""), fields.get("UploadId", ""), _s3_time(fields.get("Initiated"))))
        return uploads

    def last_part_time(self, key: str, upload_id: str) -> datetime | None:
        """When the newest part of an upload in progress was uploaded (None: no part yet)."""
        body = self.request("GET", key, {"uploadId": upload_id}, ok=(200, 404))[1]
        times = [t for t in map(_s3_time, _xml_texts(body, "LastModified")) if t is not None] if body else []
        return max(times) if times else None

    def presign_get(self, key: str, seconds: int) -> str:
        query = self.signer.presign("GET", self.host, self._path(key), seconds, _amz_stamp())
        return f"{self.url(key)}?{query}"


def _s3_time(text: str | None) -> datetime | None:
    try:
        return _parse_iso(text) if text else None
    except ValueError:
        return None


def _s3_error(body: bytes) -> str:
    try:
        code, message = _xml_texts(body, "Code"), _xml_texts(body, "Message")
    except ET.ParseError:
        return body[:200].decode(errors="replace")
    return ": ".join(filter(None, [code[0] if code else "", message[0] if message else ""]))


class S3Storage(Storage):
    """Artifacts as objects under `s3://bucket/prefix/`."""

    def __init__(self, client: S3Client, prefix: str, part_size: int = DEFAULT_PART_SIZE) -> None:
        self.client = client
        self.prefix = prefix.strip("/")
        self.part_size = max(part_size, MIN_PART_SIZE)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, name: str) -> str:
        return f"s3://{self.client.bucket}/{self.key(name)}"

    def open_writer(self, name: str) -> ArtifactWriter:
        return _S3Writer(self.client, self.key(name), self.part_size)

    def write_sidecar(self, artifact: Artifact) -> None:
        self.client.put(self.key(artifact.name + SIDECAR), _sidecar_bytes(artifact), "application/json")

    def _names(self) -> list[str]:
        base = self.key("")
        return [key[len(base):] for key in self.client.list_keys(base) if "/" not in key[len(base):]]

    def list(self) -> list[Artifact]:
        return _read_sidecars((n, self.client.get(self.key(n))) for n in self._names() if n.endswith(SIDECAR))

    def exists(self, name: str) -> bool:
        names = set(self._names())
        return name in names or name + SIDECAR in names

    def open_reader(self, artifact: Artifact) -> contextlib.AbstractContextManager[IO[bytes]]:
        return self.client.stream(self.key(artifact.name))

    def delete(self, artifact: Artifact) -> None:
        self.client.delete(self.key(artifact.name + SIDECAR))
        self.client.delete(self.key(artifact.name))

    def clean_partials(self, db_name: str, stale_after: float = DEFAULT_STALE_AFTER) -> Sequence[str]:
        """An upload in progress is another run's as long as it moves: only one idle for `stale_after` seconds
        (nothing initiated nor uploaded since) is a dead run's and aborted."""
        removed: builtins.list[str] = []
        cutoff = datetime.now(UTC) - timedelta(seconds=stale_after)
        for key, upload_id, initiated in self.client.list_multipart(self.key(f"{db_name}-")):
            if initiated is None or initiated > cutoff:
                continue
            last_part = self.client.last_part_time(key, upload_id)
            if last_part is not None and last_part > cutoff:
                continue
            log.info("aborting the upload of %s, idle since %s: its run died", key, _iso(last_part or initiated))
            self.client.abort_multipart(key, upload_id)
            removed.append(key)
        return removed

    def file_location(self, path: str) -> str:
        return self.location(check_path(path))

    def open_file_writer(self, path: str) -> ArtifactWriter:
        key = self.key(check_path(path))
        if self.client.head_size(key) is not None:
            raise BackupError(f"{self.file_location(path)} exists already; choose another name")
        return _S3Writer(self.client, key, self.part_size)

    @contextlib.contextmanager
    def local_file(self, path: str, digest: bool, spool_limit: int | None = None
                   ) -> Iterator[tuple[Path, str | None]]:
        key = self.key(check_path(path))
        size = self.client.head_size(key)
        if size is None:
            raise BackupError(f"no file {path!r} in {self.location('')}")
        _check_spool(self.file_location(path), size, spool_limit)
        with self.client.stream(key) as source, _spool(source, self.file_location(path), spool_limit) as spooled:
            yield spooled

    def presigned_url(self, artifact_id: str, seconds: int) -> str:
        if not 1 <= seconds <= 7 * 24 * 3600:
            raise BackupError("a presigned URL lasts between 1 second and 7 days")
        return self.client.presign_get(self.key(self.find(artifact_id).name), seconds)


class _S3Writer(ArtifactWriter):
    """A multipart upload straight to the final key: S3 shows nothing there until it is completed, and an
    aborted upload leaves nothing. Each part's SHA-256 is signed, so S3 itself refuses a damaged part."""

    def __init__(self, client: S3Client, key: str, part_size: int) -> None:
        self.client = client
        self.key = key
        self.part_size = part_size
        self.upload_id: str | None = client.create_multipart(key)
        self.etags: list[str] = []
        self.buffer = bytearray()
        self.completed = False

    def _target(self) -> int:
        # 10,000 parts at most: grow the part size so a large artifact never runs out of them.
        return self.part_size * (1 + len(self.etags) // 1000)

    def _flush_part(self) -> None:
        assert self.upload_id is not None
        data = bytes(self.buffer)
        self.buffer.clear()
        if len(self.etags) >= MAX_PARTS:
            raise BackupError(f"s3://{self.client.bucket}/{self.key} would need more than {MAX_PARTS} parts")
        self.etags.append(self.client.upload_part(self.key, self.upload_id, len(self.etags) + 1, data))

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= self._target():
            self._flush_part()
        return len(data)

    def finish(self) -> None:
        assert self.upload_id is not None
        if self.buffer or not self.etags:
            self._flush_part()
        self.client.complete_multipart(self.key, self.upload_id, self.etags)
        self.completed = True

    def verify(self, size: int, sha256: str, check: Callable[[IO[bytes]], None]) -> None:
        stored = self.client.head_size(self.key)
        if stored != size:
            raise BackupError(f"s3://{self.client.bucket}/{self.key} holds {stored} bytes; {size} were uploaded")

    def publish(self) -> None:
        self.upload_id = None

    def abort(self) -> None:
        if self.completed and self.upload_id is not None:
            self.client.delete(self.key)
        elif self.upload_id is not None:
            self.client.abort_multipart(self.key, self.upload_id)
        self.upload_id = None


def open_storage(url: str, s3_endpoint: str | None = None, s3_region: str | None = None,
                 part_size: int = DEFAULT_PART_SIZE) -> Storage:
    """`file:///path/dir` or `s3://bucket/prefix` (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise BackupError(f"storage URL {url!r}: a file URL has no host (file:///path)")
        return FileStorage(Path(urllib.parse.unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise BackupError(f"storage URL {url!r} names no bucket (s3://bucket/prefix)")
        access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access_key or not secret_key:
            raise BackupError("S3 storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment")
        region = s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        signer = S3Signer(access_key, secret_key, region, os.environ.get("AWS_SESSION_TOKEN") or None)
        endpoint = s3_endpoint or os.environ.get("S3_ENDPOINT") or None
        return S3Storage(S3Client(parsed.netloc, endpoint, signer), urllib.parse.unquote(parsed.path), part_size)
    raise BackupError(f"storage URL {url!r}: use file:///path or s3://bucket/prefix")


# --- PostgreSQL tools --------------------------------------------------------------------------

def _conninfo_dbname(database: str) -> str:
    escaped = database.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def _tool_env(pg_env: Mapping[str, str] | None) -> dict[str, str]:
    return {**os.environ, **(pg_env or {}), "PGAPPNAME": APPLICATION_NAME}


def _connect(database: str, pg_env: Mapping[str, str] | None) -> psycopg.Connection[Any]:
    params = {key: value for var, key in LIBPQ_ENV.items() if (value := (pg_env or {}).get(var))}
    conninfo = make_conninfo("", dbname=database, connect_timeout=10, application_name=APPLICATION_NAME, **params)
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot connect to database {database!r}: {str(exc).strip()}") from None


def _tail(handle: IO[bytes], lines: int = 8) -> str:
    handle.seek(0, os.SEEK_END)
    handle.seek(max(0, handle.tell() - 4096))
    text = handle.read().decode(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "(no message)"


def _server_version_string(server_version: int) -> str:
    # Odoo's own formula, kept as is: 150018 -> "15.0", 90624 -> "9.6".
    major, minor = divmod(server_version / 100, 100)
    return f"{int(major)}.{int(minor)}"


def odoo_release(version: str) -> tuple[str, list[Any], str]:
    """`version`, `version_info` and `major_version` as in Odoo's odoo/release.py, from e.g. "17.0"."""
    match = re.fullmatch(r"(saas~)?(\d+)\.(\d+)(\+e)?", version)
    if not match:
        raise BackupError(f"Odoo version {version!r} is not like 17.0, saas~17.2 or 17.0+e")
    saas, major, minor, edition = match.groups()
    first: int | str = f"saas~{major}" if saas else int(major)
    return version, [first, int(minor), 0, "final", 0, edition or ""], f"{first}.{minor}"


def build_manifest(db_name: str, odoo_version: str, server_version: int,
                   modules: Mapping[str, str | None]) -> dict[str, Any]:
    version, version_info, major_version = odoo_release(odoo_version)
    return {"odoo_dump": "1", "db_name": db_name, "version": version, "version_info": version_info,
            "major_version": major_version, "pg_version": _server_version_string(server_version),
            "modules": dict(sorted(modules.items()))}


def read_manifest(database: str, odoo_version: str, pg_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    with _connect(database, pg_env) as conn:
        modules: dict[str, str | None] = {}
        if conn.execute("SELECT to_regclass('ir_module_module') IS NOT NULL").fetchone() == (True,):
            rows = conn.execute("SELECT name, latest_version FROM ir_module_module WHERE state = 'installed'")
            modules = dict(rows.fetchall())
        return build_manifest(database, odoo_version, conn.info.server_version, modules)


@contextlib.contextmanager
def _pg_dump(database: str, fmt: str, pg_env: Mapping[str, str] | None) -> Iterator[IO[bytes]]:
    """pg_dump's stdout; on leaving, BackupError with the end of its stderr unless it exited 0."""
    # The custom format compresses itself: level 1 for the same reason as ZIP_COMPRESSLEVEL.
    formats = ["--format=plain"] if fmt == "zip" else ["--format=custom", "--compress=1"]
    argv = ["pg_dump", "--no-owner", "--no-password", *formats, f"--dbname={_conninfo_dbname(database)}"]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                env=_tool_env(pg_env))
        assert proc.stdout is not None
        try:
            yield proc.stdout
            proc.stdout.close()
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if code != 0:
            raise BackupError(f"pg_dump of {database!r} failed (exit {code}): {_tail(stderr)}")


class _HashingWriter:
    """Counts and hashes every byte on its way to the storage. No tell()/seek(): zipfile then writes
    sizes in data descriptors instead of seeking back, so the bytes hashed are the bytes stored."""

    def __init__(self, target: ArtifactWriter) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.target.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the storage writer is flushed by `finish()`."""

    def close(self) -> None:
        """Nothing to do: the storage writer is closed by `finish()` or `abort()`."""


@dataclass(frozen=True)
class RestoreLimits:
    """What a ZIP may expand to. zipfile never extracts more than an entry's declared size, so the sizes and the
    count in its central directory are checked before anything is written: a zip bomb is refused at once."""

    max_bytes: int = DEFAULT_RESTORE_MAX_BYTES
    max_members: int = DEFAULT_RESTORE_MAX_MEMBERS

    def too_big(self, name: str, size: int) -> BackupError:
        return BackupError(f"{name} expands to {size} bytes, more than the {self.max_bytes} a restore accepts "
                           "(the operator's ODOO_OPERATOR_RESTORE_MAX_BYTES; --max-bytes)")

    def too_many(self, name: str, count: int) -> BackupError:
        return BackupError(f"{name} holds {count} entries, more than the {self.max_members} a restore accepts "
                           "(the operator's ODOO_OPERATOR_RESTORE_MAX_MEMBERS; --max-members)")


def _declared_entries(handle: IO[bytes]) -> int | None:
    """The entry count of a zip's end record, read before its central directory is (all in memory)."""
    end_record = getattr(zipfile, "_EndRecData", None)
    try:
        record = end_record(handle) if end_record else None
        return int(record[4]) if record else None
    except (OSError, ValueError, IndexError, TypeError, struct.error):
        return None
    finally:
        handle.seek(0)


def _check_zip_layout(handle: IO[bytes], name: str, limits: RestoreLimits | None = None) -> zipfile.ZipFile:
    """The zip opens (its central directory is intact), dump.sql is there, every path is safe and, with `limits`,
    it expands to no more than they allow."""
    if limits is not None and (declared := _declared_entries(handle)) is not None and declared > limits.max_members:
        raise limits.too_many(name, declared)
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise BackupError(f"{name} is not a valid Odoo backup: {exc}") from None
    if limits is not None:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if len(infos) > limits.max_members or total > limits.max_bytes:
            archive.close()
            raise limits.too_many(name, len(infos)) if len(infos) > limits.max_members else limits.too_big(name, total)
    names = archive.namelist()
    if "dump.sql" not in names:
        archive.close()
        raise BackupError(f"{name} is not a valid Odoo backup: it has no dump.sql")
    for entry in names:
        if entry.startswith("filestore/") and not entry.endswith("/") and _safe_relative(entry) is None:
            archive.close()
            raise BackupError(f"{name} is not a valid Odoo backup: unsafe path {entry!r}")
    return archive


def _check_written_zip(name: str) -> Callable[[IO[bytes]], None]:
    def check(handle: IO[bytes]) -> None:
        with _check_zip_layout(handle, name) as archive:
            first = archive.infolist()[0].filename
            if first != "dump.sql":
                raise BackupError(f"{name}: the first entry is {first!r}, not dump.sql")
    return check


def _check_written_dump(name: str) -> Callable[[IO[bytes]], None]:
    def check(handle: IO[bytes]) -> None:
        if handle.read(5) != b"PGDMP":
            raise BackupError(f"{name} is not a valid pg_dump archive: no PGDMP header")
    return check


def _safe_relative(entry: str) -> PurePosixPath | None:
    """`filestore/ab/abcd…` -> `ab/abcd…`; None for anything that could leave the filestore directory."""
    relative = entry[len("filestore/"):]
    path = PurePosixPath(relative)
    if (not relative or "\\" in relative or "\x00" in relative or path.is_absolute()
            or any(part in ("..", ".", "") for part in relative.split("/")) or re.match(r"^[A-Za-z]:", relative)):
        return None
    return path


# --- create ------------------------------------------------------------------------------------

def _write_zip(out: _HashingWriter, database: str, odoo_version: str, filestore: Path,
               pg_env: Mapping[str, str] | None) -> dict[str, int]:
    stats = {"dump_bytes": 0, "files": 0}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_COMPRESSLEVEL,
                         allowZip64=True, strict_timestamps=False) as archive:
        with _pg_dump(database, "zip", pg_env) as dump, archive.open("dump.sql", "w", force_zip64=True) as entry:
            while chunk := dump.read(CHUNK):
                entry.write(chunk)
                stats["dump_bytes"] += len(chunk)
        manifest = read_manifest(database, odoo_version, pg_env)
        archive.writestr("manifest.json", json.dumps(manifest, indent=4))
        if not filestore.is_dir():  # a database without attachments yet; Odoo skips it too
            log.warning("filestore %s does not exist: the backup has no filestore/", filestore)
            return stats
        for directory, subdirs, files in os.walk(filestore):
            if Path(directory) == filestore:  # a restore's own progress is no attachment
                subdirs[:] = [d for d in subdirs if d not in RESTORE_ENTRIES]
                files = [f for f in files if f not in RESTORE_ENTRIES]
            subdirs.sort()
            for file_name in sorted(files):
                path = Path(directory, file_name)
                arcname = "filestore/" + path.relative_to(filestore).as_posix()
                try:
                    archive.write(path, arcname)
                except FileNotFoundError:  # Odoo's garbage collector removed it meanwhile
                    log.info("%s disappeared while being backed up; skipped", arcname)
                    continue
                stats["files"] += 1
    return stats


def _write_dump(out: _HashingWriter, database: str, pg_env: Mapping[str, str] | None) -> dict[str, int]:
    with _pg_dump(database, "dump", pg_env) as dump:
        while chunk := dump.read(CHUNK):
            out.write(chunk)
    return {"dump_bytes": out.size, "files": 0}


def _open_fresh(storage: Storage, database: str, fmt: str, moment: datetime) -> tuple[str, ArtifactWriter]:
    """A new artifact id (its time, a random suffix) and a writer for it; another run never has the same."""
    for _ in range(20):
        ident = artifact_id(moment, secrets.token_hex(3))
        name = artifact_name(database, ident, fmt)
        if storage.exists(name):
            continue
        try:
            return ident, storage.open_writer(name)
        except NameTaken:
            continue
    raise BackupError(f"no free artifact name for {database} in {storage.location('')}")


def create_backup(storage: Storage, database: str, *, fmt: str = "zip", odoo_version: str = "17.0",
                  filestore: Path | None = None, pg_env: Mapping[str, str] | None = None,
                  now: datetime | None = None, owner: str | None = None,
                  stale_after: float = DEFAULT_STALE_AFTER) -> Artifact:
    """Back `database` up into `storage` as an artifact of DatabaseBackup `owner`; returns the published artifact
    (its sidecar written). Other runs may back the same database up meanwhile."""
    if fmt not in FORMATS:
        raise BackupError(f"format {fmt!r}: use zip or dump")
    if fmt == "zip":
        odoo_release(odoo_version)  # refuse a bad version before dumping for minutes
        if filestore is None:
            raise BackupError("a zip backup needs the database's filestore directory (--filestore)")
    storage.clean_partials(database, stale_after)
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    ident, writer = _open_fresh(storage, database, fmt, moment)
    name = artifact_name(database, ident, fmt)
    log.info("backing up %s (%s) to %s", database, fmt, storage.location(name))
    started = time.monotonic()
    try:
        out = _HashingWriter(writer)
        if fmt == "zip":
            assert filestore is not None  # checked above
            stats = _write_zip(out, database, odoo_version, filestore, pg_env)
        else:
            stats = _write_dump(out, database, pg_env)
        writer.finish()
        sha256 = out.digest.hexdigest()
        check = _check_written_zip(name) if fmt == "zip" else _check_written_dump(name)
        writer.verify(out.size, sha256, check)
        writer.publish()
    except BaseException:
        writer.abort()
        raise
    artifact = Artifact(id=ident, time=moment, size_bytes=out.size, sha256=sha256, format=fmt, db_name=database,
                        location=storage.location(name), owner=owner)
    storage.write_sidecar(artifact)
    elapsed = max(time.monotonic() - started, 1e-6)
    log.info("backed up %s: %.1f MB of SQL, %d filestore files -> %.1f MB artifact in %.1f s (%.1f MB/s of SQL)",
             database, stats["dump_bytes"] / 1e6, stats["files"], out.size / 1e6, elapsed,
             stats["dump_bytes"] / 1e6 / elapsed)
    return artifact


def prune(storage: Storage, db_name: str, retention: Retention, keep: str, now: datetime, *,
          owner: str | None = None, adopt_unowned: bool = False) -> tuple[list[Artifact], list[str]]:
    """Delete the artifacts of `db_name` made by DatabaseBackup `owner` that the retention rule lets go (never
    `keep`, the newest good one); with `adopt_unowned`, also those made before owners were recorded. Any other
    artifact, of another DatabaseBackup of the same database, is not looked at."""
    mine = [a for a in storage.list()
            if a.db_name == db_name and (a.owner == owner or (adopt_unowned and a.owner is None))]
    kept = select_keep([(a.id, a.time) for a in mine], retention.keep_last, retention.keep_daily,
                       retention.keep_weekly, retention.keep_monthly, now) | {keep}
    pruned = []
    for artifact in mine:
        if artifact.id not in kept:
            log.info("retention: deleting %s", artifact.name)
            storage.delete(artifact)
            pruned.append(artifact.id)
    return [a for a in mine if a.id in kept], pruned


# --- restore -----------------------------------------------------------------------------------

class _Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def _run_loader(argv: list[str], source: _Reader | None, pg_env: Mapping[str, str] | None, what: str,
                corrupt: Callable[[Exception], BackupError]) -> None:
    """Run psql / pg_restore, feeding it `source`. A read error kills it before its input ends, so the
    single transaction it runs in is rolled back instead of committing half a dump."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if source is None else subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=stderr, env=_tool_env(pg_env))
        try:
            if source is not None:
                assert proc.stdin is not None
                try:
                    while chunk := source.read(CHUNK):
                        proc.stdin.write(chunk)
                except BrokenPipeError:
                    pass  # it stopped at an error: its exit code and stderr say which
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise corrupt(exc) from None
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            code = proc.wait()
        except BaseException:
            proc.kill()  # before its stdin closes: EOF would make psql COMMIT what it has read
            proc.wait()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            raise
        if code != 0:
            raise BackupError(f"{what} failed (exit {code}), nothing was restored: {_tail(stderr)}")


def _extract_filestore(archive: zipfile.ZipFile, filestore: Path, limits: RestoreLimits, name: str) -> int:
    filestore.mkdir(parents=True, exist_ok=True)
    root = filestore.resolve()
    count = written = 0
    for info in archive.infolist():
        if not info.filename.startswith("filestore/") or info.is_dir():
            continue
        relative = _safe_relative(info.filename)
        assert relative is not None  # refused earlier by _check_zip_layout
        target = root.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(root):
            raise BackupError(f"{info.filename!r} would be written outside {filestore} (through a symlink)")
        with archive.open(info) as source, open(target, "wb") as destination:
            while chunk := source.read(CHUNK):  # zipfile stops at the declared size; counted all the same
                written += len(chunk)
                if written > limits.max_bytes:
                    raise limits.too_big(name, written)
                destination.write(chunk)
        count += 1
    return count


RESTORE_FORMATS = ("zip", "dump", "sql")


def detect_format(head: bytes, name: str) -> str:
    """zip (Odoo's backup), dump (pg_dump's custom format) or sql (plain SQL), from the first bytes, never from
    the file's name."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"PGDMP"):
        return "dump"
    if head.startswith(b"\x1f\x8b"):
        raise BackupError(f"{name} is gzip-compressed: decompress it first (a ZIP, a pg_dump -Fc archive or plain SQL "
                          "is restored)")
    if len(head) > 262 and head[257:262] == b"ustar":
        raise BackupError(f"{name} is a tar archive (pg_dump --format=tar?): use Odoo's ZIP, pg_dump -Fc or plain SQL")
    if not head.strip():
        raise BackupError(f"{name} is empty")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)  # a multi-byte character may be cut at the end
    except UnicodeDecodeError:
        raise BackupError(f"{name} is not an Odoo ZIP backup, a pg_dump -Fc archive nor SQL text") from None
    if b"\x00" in head:
        raise BackupError(f"{name} is not an Odoo ZIP backup, a pg_dump -Fc archive nor SQL text")
    return "sql"


def _detect_file_format(path: Path, name: str) -> str:
    with open(path, "rb") as handle:
        return detect_format(handle.read(4096), name)


_PSQL_RESTRICT_LINE = re.compile(rb"^\\(un)?restrict [^\s]+\s*$")
_COPY_FROM_STDIN = re.compile(rb"^COPY .* FROM stdin;\s*$")


class _RestrictedSql:
    """What psql reads: `\\restrict <random key>` first, so that psql refuses every backslash command of the SQL
    that follows (`\\!` would run a shell in the Job, `\\copy` and `\\o` touch its files, `\\c` another
    database). A dump by a recent pg_dump restricts itself the same way: its own `\\restrict`/`\\unrestrict`
    lines (outside COPY data) are dropped, ours stays in force. Lines are read in bounded pieces, so a huge
    row never sits in memory whole."""

    PIECE = 1 << 16

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.pending = bytearray(b"\\restrict " + secrets.token_hex(16).encode() + b"\n")
        self.in_copy = False
        self.line_start = True
        self.eof = False

    def read(self, size: int = CHUNK) -> bytes:
        while len(self.pending) < size and not self.eof:
            piece = self.source.readline(self.PIECE)
            if not piece:
                self.eof = True
                break
            starts, self.line_start = self.line_start, piece.endswith(b"\n")
            if starts:
                if self.in_copy:
                    self.in_copy = piece.rstrip(b"\r\n") != b"\\."
                elif _PSQL_RESTRICT_LINE.match(piece):
                    continue
                elif _COPY_FROM_STDIN.match(piece):
                    self.in_copy = True
            self.pending += piece
        out = bytes(self.pending[:size])
        del self.pending[:size]
        return out


def _version_key(version: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def _check_manifest(archive: zipfile.ZipFile, name: str, odoo_version: str | None,
                    server_version: int | None) -> tuple[dict[str, Any], list[str]]:
    """Odoo's manifest.json (see Odoo's `dump_db_manifest`): what it says, and warnings for a human. Odoo does not
    downgrade: a backup of a newer Odoo than the database's (`odoo_version`) is refused before anything is
    loaded; one of an older major version is restored with a warning (it needs an upgrade before that Odoo can
    serve it)."""
    if "manifest.json" not in archive.namelist():
        return {}, [f"{name} has no manifest.json: the Odoo version that made it is unknown and was not checked"]
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except (ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise BackupError(f"{name}: its manifest.json is unreadable: {exc}") from None
    if not isinstance(manifest, dict):
        raise BackupError(f"{name}: its manifest.json is not a JSON object")
    modules = manifest.get("modules")
    info: dict[str, Any] = {key: str(manifest[key]) for key in ("version", "major_version", "pg_version", "db_name")
                            if isinstance(manifest.get(key), (str, int, float))}
    info["modules"] = len(modules) if isinstance(modules, dict) else 0
    warnings = []
    made_by = str(manifest.get("major_version") or manifest.get("version") or "")
    theirs = _version_key(made_by)
    if odoo_version is not None:
        ours = _version_key(odoo_version)
        if theirs is None:
            warnings.append(f"{name}: its manifest.json names no Odoo version; it was not checked against "
                            f"this database's Odoo {odoo_version}")
        elif ours is not None and theirs > ours:
            raise BackupError(f"{name} was made by Odoo {made_by}, newer than this database's Odoo {odoo_version}: "
                              "Odoo cannot downgrade a database; restore it into an OdooDatabase of version "
                              f"{theirs[0]}.{theirs[1]} or later")
        elif ours is not None and theirs < ours:
            warnings.append(f"{name} was made by Odoo {made_by}, older than this database's Odoo {odoo_version}: "
                            "Odoo does not migrate a database to a newer version by itself; it must be upgraded "
                            f"(Odoo's upgrade service, or OpenUpgrade) before Odoo {odoo_version} can serve it")
    dumped_on = _version_key(str(manifest.get("pg_version") or ""))
    if dumped_on and server_version and dumped_on[0] > server_version // 10000:
        warnings.append(f"{name} was dumped from PostgreSQL {manifest.get('pg_version')}, newer than this server's "
                        f"{_server_version_string(server_version)}: its SQL may use what this server lacks")
    return info, warnings


def _psql_argv(target: list[str]) -> list[str]:
    return ["psql", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-X", "-q", *target, "-f", "-"]


# A restore's progress, in its filestore directory (the database's own volume): a retry after a failure at any
# step knows what an earlier attempt did. The filestore is first extracted beside it (`RESTORE_STAGING`), the SQL
# then loaded in one transaction, and only then are the files moved into place.
RESTORE_STATE = ".odoo-restore.json"
RESTORE_STAGING = ".odoo-restore-staging"
RESTORE_ENTRIES = (RESTORE_STATE, RESTORE_STAGING)


@dataclass
class Restored:
    format: str
    files: int = 0
    resumed: bool = False
    manifest: dict[str, Any] | None = None
    warnings: list[str] | None = None

    def report(self) -> dict[str, Any]:
        result: dict[str, Any] = {"format": self.format, "filestoreFiles": self.files, "resumed": self.resumed,
                                  "warnings": self.warnings or []}
        if self.manifest is not None:
            result["manifest"] = self.manifest
        return result


def _source_identity(path: Path) -> str:
    """Tells the same file again (its size, its first and last MiB) without reading it whole."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(CHUNK))
        if size > CHUNK:
            handle.seek(max(CHUNK, size - CHUNK))
            digest.update(handle.read(CHUNK))
    return f"{size}:{digest.hexdigest()}"


def _database_state(database: str, pg_env: Mapping[str, str] | None) -> tuple[int, int]:
    """How many relations `database` holds (0: empty, as a restore needs it), and the server's version."""
    with _connect(database, pg_env) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
        ).fetchone()
        return (int(row[0]) if row else 0), conn.info.server_version


def _read_state(filestore: Path | None) -> dict[str, Any] | None:
    if filestore is None:
        return None
    try:
        state = json.loads((filestore / RESTORE_STATE).read_bytes())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _write_state(filestore: Path | None, source: str, step: str) -> None:
    if filestore is not None:
        filestore.mkdir(parents=True, exist_ok=True)
        _atomic_write(filestore / RESTORE_STATE, json.dumps({"source": source, "step": step}).encode())


def _clear_state(filestore: Path | None) -> None:
    if filestore is not None:
        _discard_staging(filestore)
        (filestore / RESTORE_STATE).unlink(missing_ok=True)


def _discard_staging(filestore: Path) -> None:
    staging = filestore / RESTORE_STAGING
    if staging.is_symlink() or staging.is_file():
        staging.unlink()
    elif staging.exists():
        shutil.rmtree(staging)


def _check_restorable(database: str, filestore: Path | None, pg_env: Mapping[str, str] | None) -> None:
    """Before a long download: the database is empty, or holds what an interrupted restore loaded."""
    relations, _ = _database_state(database, pg_env)
    if relations and _read_state(filestore) is None:
        raise _not_empty(database, relations)


def _not_empty(database: str, relations: int) -> BackupError:
    return BackupError(f"database {database!r} is not empty ({relations} relations) and no interrupted restore of "
                       "this same backup is recorded in its filestore: restore needs an empty one")


def _loaded_by_earlier_attempt(state: Mapping[str, Any] | None, identity: str) -> bool:
    """The SQL of this same file committed in an earlier attempt: the one transaction it loads in either
    committed whole or left the database empty, and nothing else writes to a database being restored."""
    return state is not None and state.get("source") == identity and state.get("step") in ("loading", "publishing")


def restore_file(path: Path, database: str, filestore: Path | None, *, pg_env: Mapping[str, str] | None = None,
                 verified: bool = False, name: str | None = None, odoo_version: str | None = None,
                 limits: RestoreLimits | None = None) -> Restored:
    """Restore a local file (Odoo's zip, a pg_dump custom archive or plain SQL, told by its first bytes) into the
    EXISTING EMPTY `database` and its `filestore` directory.

    Everything that can be checked is checked, and the filestore extracted beside its final place, before
    anything is loaded; the load itself runs in one transaction that stops at the first error, as whatever role
    the connection uses (in the restore Job: the database's own, never an administrator: the SQL comes from a
    user); the files are moved into place last. A failure before the load leaves the database empty; after it,
    a retry with the same file finds the step it reached in `filestore` and finishes. `verified` means its
    sha256 already matched, which makes reading every zip entry once more (to check CRCs) pointless.
    """
    name = name or path.name
    limits = limits or RestoreLimits()
    fmt = _detect_file_format(path, name)
    if fmt == "zip" and filestore is None:
        raise BackupError("restoring a zip backup needs a filestore directory (--filestore)")
    identity = _source_identity(path)
    relations, server_version = _database_state(database, pg_env)
    result = Restored(fmt)
    if relations:
        if not _loaded_by_earlier_attempt(_read_state(filestore), identity):
            raise _not_empty(database, relations)
        log.info("%s: its SQL was loaded into %s by an earlier attempt; finishing", name, database)
        result.resumed = True
        if fmt == "zip":
            with open(path, "rb") as handle, _check_zip_layout(handle, name, limits) as archive:
                result.manifest, result.warnings = _check_manifest(archive, name, None, server_version)
            assert filestore is not None
            result.files = _publish_staging(filestore)
        _clear_state(filestore)
        return result
    if filestore is not None and filestore.is_dir():
        _discard_staging(filestore)
    target = [f"--dbname={_conninfo_dbname(database)}", "--no-password"]
    try:
        if fmt == "dump":
            _write_state(filestore, identity, "loading")
            _run_loader(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                         *target, str(path)], None, pg_env, f"pg_restore of {name}",
                        lambda exc: BackupError(f"{name}: {exc}"))
        elif fmt == "sql":
            _write_state(filestore, identity, "loading")
            with open(path, "rb") as sql_file:
                _run_loader(_psql_argv(target), _RestrictedSql(sql_file), pg_env, f"psql loading {name}",
                            lambda exc: BackupError(f"{name}: {exc}"))
        else:
            assert filestore is not None
            _load_zip(path, name, database, filestore, identity, target, result, pg_env=pg_env, verified=verified,
                      odoo_version=odoo_version, limits=limits, server_version=server_version)
    except BaseException:
        with contextlib.suppress(BackupError, OSError):
            if not _database_state(database, pg_env)[0]:  # nothing committed: the next attempt starts afresh
                _clear_state(filestore)
                if filestore is not None:
                    filestore.rmdir()  # if this attempt made it and it is empty (a mount point stays)
        raise
    if fmt == "zip":
        assert filestore is not None
        _write_state(filestore, identity, "publishing")
        result.files = _publish_staging(filestore)
    _clear_state(filestore)
    for warning in result.warnings or []:
        log.warning("%s", warning)
    log.info("restored %s into %s (%d filestore files)", name, database, result.files)
    return result


def _load_zip(path: Path, name: str, database: str, filestore: Path, identity: str, target: list[str],
              result: Restored, *, pg_env: Mapping[str, str] | None, verified: bool, odoo_version: str | None,
              limits: RestoreLimits, server_version: int) -> None:
    def corrupt(exc: Exception) -> BackupError:
        return BackupError(f"{name} is not a valid Odoo backup: {exc}")

    with open(path, "rb") as handle, _check_zip_layout(handle, name, limits) as archive:
        result.manifest, result.warnings = _check_manifest(archive, name, odoo_version, server_version)
        if not verified:
            try:
                bad = archive.testzip()
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise corrupt(exc) from None
            if bad is not None:
                raise corrupt(Exception(f"entry {bad!r} is damaged (bad CRC)"))
        _write_state(filestore, identity, "staging")
        staged = _extract_filestore(archive, filestore / RESTORE_STAGING, limits, name)
        log.info("%s: %d filestore files extracted beside %s; loading dump.sql", name, staged, filestore)
        _write_state(filestore, identity, "loading")
        with archive.open("dump.sql") as sql_stream:
            _run_loader(_psql_argv(target), _RestrictedSql(sql_stream), pg_env, f"psql loading dump.sql of {name}",
                        corrupt)


def _publish_staging(filestore: Path) -> int:
    """Move the extracted files into place (a rename each, on the same volume); idempotent."""
    staging = filestore / RESTORE_STAGING
    if not staging.is_dir() or staging.is_symlink():
        return 0
    root = filestore.resolve()
    moved = 0
    for directory, _, files in os.walk(staging):
        for file_name in files:
            source = Path(directory, file_name)
            target = root / source.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.parent.resolve().is_relative_to(root):
                raise BackupError(f"{target} would be written outside {filestore} (through a symlink)")
            os.replace(source, target)
            moved += 1
    shutil.rmtree(staging)
    _fsync_dir(root)
    return moved


def restore_backup(storage: Storage, ref: str, database: str, filestore: Path | None, *,
                   pg_env: Mapping[str, str] | None = None, odoo_version: str | None = None,
                   limits: RestoreLimits | None = None, spool_limit: int | None = None) -> tuple[Artifact, Restored]:
    """Restore artifact `ref` (id or name) from `storage` into the EXISTING EMPTY `database` and `filestore`."""
    artifact = storage.find(ref)
    if artifact.format == "zip" and filestore is None:
        raise BackupError("restoring a zip backup needs a filestore directory (--filestore)")
    _check_restorable(database, filestore, pg_env)  # before a long download
    with storage.local_copy(artifact, spool_limit) as (path, sha256):
        if sha256 != artifact.sha256:
            raise BackupError(f"{artifact.name} is not a valid Odoo backup: its sha256 is {sha256}, not the "
                              f"{artifact.sha256} recorded when it was made (corrupt or truncated)")
        restored = restore_file(path, database, filestore, pg_env=pg_env, verified=True, name=artifact.name,
                                odoo_version=odoo_version, limits=limits)
    return artifact, restored


def restore_storage_file(storage: Storage, path: str, database: str, filestore: Path | None, *,
                         sha256: str | None = None, odoo_version: str | None = None,
                         pg_env: Mapping[str, str] | None = None, limits: RestoreLimits | None = None,
                         spool_limit: int | None = None) -> dict[str, Any]:
    """Restore `path` (relative to the storage's root; any Odoo ZIP, pg_dump archive or SQL file, no sidecar
    needed) into the EXISTING EMPTY `database`. With `sha256` the bytes must match it; without, the restore is
    unverified and says so."""
    location = storage.file_location(path)
    _check_restorable(database, filestore, pg_env)  # before a long download
    with storage.local_file(path, sha256 is not None, spool_limit) as (local, digest):
        if sha256 is not None and digest != sha256:
            raise BackupError(f"{location}: its sha256 is {digest}, not the {sha256} given (corrupt, truncated or "
                              "another file)")
        if sha256 is None:
            log.warning("%s: no checksum given, restoring it unverified", location)
        restored = restore_file(local, database, filestore, pg_env=pg_env, verified=sha256 is not None,
                                name=PurePosixPath(path).name, odoo_version=odoo_version, limits=limits)
    return {"file": location, **restored.report(), "verified": sha256 is not None, "sha256": digest}


def receive(storage: Storage, path: str, source: IO[bytes], sha256: str | None = None) -> dict[str, Any]:
    """Write `source` (stdin of the uploader, or a local file) to `path` on the storage, streamed: under a
    temporary name until every byte is there and, with `sha256`, matches it. Only what a restore accepts."""
    name = PurePosixPath(check_path(path)).name
    writer = storage.open_file_writer(path)
    try:
        out = _HashingWriter(writer)
        head = b""
        while chunk := source.read(CHUNK):
            if len(head) < 4096:
                head += chunk[:4096 - len(head)]
            out.write(chunk)
        detect_format(head, name)
        writer.finish()
        digest = out.digest.hexdigest()
        if sha256 is not None and digest != sha256:
            raise BackupError(f"{name}: received {out.size} bytes with sha256 {digest}, not the {sha256} sent")
        writer.verify(out.size, digest, lambda handle: None)
        writer.publish()
    except BaseException:
        writer.abort()
        raise
    log.info("received %s: %d bytes, sha256 %s", storage.file_location(path), out.size, digest)
    return {"file": storage.file_location(path), "sizeBytes": out.size, "sha256": digest}


# --- command line ------------------------------------------------------------------------------

class _Terminated(BaseException):
    """SIGTERM (the Job is deleted): unwind, so the partial artifact is removed and pg_dump stopped."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def _storage_of(args: argparse.Namespace) -> Storage:
    return open_storage(args.storage, args.s3_endpoint, args.s3_region)


def _cmd_create(args: argparse.Namespace) -> dict[str, Any]:
    storage = _storage_of(args)
    artifact = create_backup(storage, args.database, fmt=args.format, odoo_version=args.odoo_version,
                             filestore=args.filestore, owner=args.owner, stale_after=args.stale_after)
    retention = Retention(args.keep_last, args.keep_daily, args.keep_weekly, args.keep_monthly)
    try:
        remaining, pruned = prune(storage, args.database, retention, artifact.id, artifact.time, owner=args.owner,
                                  adopt_unowned=args.adopt_unowned)
    except BackupError as exc:  # the backup itself is good: say so, so its status can still record it
        return {"ok": False, "error": f"{artifact.name} was published, but retention failed: {exc}",
                "artifact": artifact.status()}
    return {"ok": True, "artifact": artifact.status(), "artifacts": [a.status() for a in remaining],
            "pruned": pruned}


def _cmd_restore(args: argparse.Namespace) -> dict[str, Any]:
    limits = RestoreLimits(args.max_bytes, args.max_members)
    if args.file:
        restored = restore_storage_file(_storage_of(args), args.file, args.database, args.filestore,
                                        sha256=args.sha256, odoo_version=args.odoo_version, limits=limits,
                                        spool_limit=args.spool_limit)
        return {"ok": True, **restored, "database": args.database}
    if args.sha256:
        raise BackupError("--sha256 goes with --file (an artifact is checked against its sidecar)")
    artifact, result = restore_backup(_storage_of(args), args.artifact, args.database, args.filestore,
                                      odoo_version=args.odoo_version, limits=limits, spool_limit=args.spool_limit)
    return {"ok": True, "artifact": artifact.status(), **result.report(), "database": args.database,
            "verified": True}


def _cmd_receive(args: argparse.Namespace) -> dict[str, Any]:
    return {"ok": True, **receive(_storage_of(args), args.file, sys.stdin.buffer, args.sha256)}


def _sha256_arg(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise argparse.ArgumentTypeError("a sha256 is 64 lower-case hexadecimal digits")
    return text


def _cmd_list(args: argparse.Namespace) -> dict[str, Any]:
    return {"ok": True, "artifacts": [a.sidecar() for a in _storage_of(args).list()]}


def _cmd_presign(args: argparse.Namespace) -> dict[str, Any]:
    url = _storage_of(args).presigned_url(args.artifact, args.seconds)
    return {"ok": True, "url": url, "expiresAt": _iso(datetime.now(UTC) + timedelta(seconds=args.seconds))}


def _report_target(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return namespace, name


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m odoo_operator.backupjob", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def storage_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--storage", required=True, help="file:///path/dir or s3://bucket/prefix")
        sub.add_argument("--s3-endpoint", help="S3 endpoint URL (default: env S3_ENDPOINT, else AWS)")
        sub.add_argument("--s3-region", help="S3 region (default: env AWS_REGION, else us-east-1)")

    create = commands.add_parser("create", help="back a database up, then apply retention")
    create.add_argument("--format", choices=FORMATS, default="zip")
    create.add_argument("--database", required=True)
    create.add_argument("--odoo-version", default="17.0", help="written to manifest.json, e.g. 17.0")
    create.add_argument("--filestore", type=Path, help="the database's filestore directory (zip format)")
    storage_options(create)
    defaults = Retention()
    create.add_argument("--keep-last", type=_non_negative, default=defaults.keep_last)
    create.add_argument("--keep-daily", type=_non_negative, default=defaults.keep_daily)
    create.add_argument("--keep-weekly", type=_non_negative, default=defaults.keep_weekly)
    create.add_argument("--keep-monthly", type=_non_negative, default=defaults.keep_monthly)
    create.add_argument("--owner", metavar="NAME", help="the DatabaseBackup making it: retention only ever "
                        "prunes its own artifacts (without: the artifacts made without --owner)")
    create.add_argument("--adopt-unowned", action="store_true", help="retention also prunes the artifacts made "
                        "before owners were recorded (given to the database's daily backup)")
    create.add_argument("--stale-after", type=_positive_seconds, default=DEFAULT_STALE_AFTER, metavar="SECONDS",
                        help="an S3 upload idle this long is a dead run's and aborted (a volume's partials are "
                        "locked by their live runs)")
    create.add_argument("--report", type=_report_target, metavar="NAMESPACE/NAME")
    create.set_defaults(run=_cmd_create)

    restore = commands.add_parser("restore", help="restore an artifact into an existing empty database")
    storage_options(restore)
    source = restore.add_mutually_exclusive_group(required=True)
    source.add_argument("--artifact", help="artifact id or name (checked against its sidecar)")
    source.add_argument("--file", help="any Odoo ZIP, pg_dump -Fc archive or SQL file: its path under the storage")
    restore.add_argument("--sha256", type=_sha256_arg, help="with --file: the bytes must have this sha256")
    restore.add_argument("--odoo-version", help="the database's Odoo version: a backup of a newer one is refused")
    restore.add_argument("--database", required=True)
    restore.add_argument("--filestore", type=Path, help="where to put the filestore (zip format)")
    restore.add_argument("--max-bytes", type=_non_negative, default=DEFAULT_RESTORE_MAX_BYTES,
                         help="refuse a ZIP that expands to more bytes (dump.sql and filestore together)")
    restore.add_argument("--max-members", type=_non_negative, default=DEFAULT_RESTORE_MAX_MEMBERS,
                         help="refuse a ZIP with more entries")
    restore.add_argument("--spool-limit", type=_non_negative, metavar="BYTES",
                         help="refuse to download (S3) a larger file to the temporary directory")
    restore.add_argument("--report", type=_report_target, metavar="NAMESPACE/NAME")
    restore.set_defaults(run=_cmd_restore)

    receiving = commands.add_parser("receive", help="write stdin to a new file on the storage (an upload)")
    storage_options(receiving)
    receiving.add_argument("--file", required=True, help="its path under the storage, e.g. _uploads/shop.zip")
    receiving.add_argument("--sha256", type=_sha256_arg, help="refuse (and remove) it unless it has this sha256")
    receiving.set_defaults(run=_cmd_receive, report=None)

    listing = commands.add_parser("list", help="the artifacts in a storage, newest first")
    storage_options(listing)
    listing.set_defaults(run=_cmd_list, report=None)

    presign = commands.add_parser("presign", help="a short-lived download URL (S3)")
    storage_options(presign)
    presign.add_argument("--artifact", required=True)
    presign.add_argument("--seconds", type=int, default=600)
    presign.set_defaults(run=_cmd_presign, report=None)
    return parser


def _report(target: tuple[str, str], result: dict[str, Any]) -> None:
    try:
        from odoo_operator.backupjob import report as backup_report  # optional: written separately
    except ImportError:
        log.info("odoo_operator.backupjob.report is not available; not reporting to %s/%s", *target)
        return
    try:
        backup_report.report(target[0], target[1], result)
    except Exception:
        log.exception("reporting to %s/%s failed", *target)


TERMINATION_LOG = Path("/dev/termination-log")


def _termination_message(result: Mapping[str, Any]) -> None:
    """In a Pod, the result (its warnings first: manifest versions, an unverified file) is also the container's
    termination message, shown by `kubectl describe` and in the Pod's status (4096 bytes at most)."""
    if not TERMINATION_LOG.is_file():
        return
    short = {key: result[key] for key in ("ok", "error", "warnings", "manifest", "resumed") if key in result}
    with contextlib.suppress(OSError):
        TERMINATION_LOG.write_text(json.dumps(short)[:4096])


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = args.run(args)
    except BackupError as exc:
        result = {"ok": False, "error": str(exc)}
    except _Terminated:
        result = {"ok": False, "error": "terminated (SIGTERM) before finishing; nothing was published"}
    except Exception as exc:
        log.exception("unexpected failure")
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if args.report:
        _report(args.report, result)
    _termination_message(result)
    print(json.dumps(result), flush=True)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
