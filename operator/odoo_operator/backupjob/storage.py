"""Where artifacts live, as the Job sees it: `Store`, opened from a URL by `open_store` — `file:///path` (a
mounted volume: `FileStore`) or `s3://bucket/prefix` (`S3Store`, on the client in s3.py).

Not to be confused with `api.model.Storage`, the spec's description of where backups go (`spec.storage`: a PVC
or a bucket and its Secret): a `Store` is that place opened, with the operations on it.

An artifact is written under a temporary name (`<name>.partial` on a volume, created exclusively and locked
while its run lives; an uncompleted multipart upload on S3, invisible until completed), checked, published under
its final name (never over another), and only then described by its sidecar `<name>.json`. Listing reads
sidecars only: an artifact without one does not exist for restore or retention. Several runs may back one
database up at once: each has its own artifact id, and a run removes only the partials of dead runs.

What is not here: the formats written (archive.py), the backup and restore steps (create.py, restore.py).
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import tempfile
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from odoo_operator.api.conditions import format_time as iso
from odoo_operator.backupjob.artifacts import (
    CHUNK,
    SIDECAR,
    Artifact,
    BackupError,
    check_path,
    read_sidecars,
    sidecar_bytes,
)
from odoo_operator.backupjob.s3 import DEFAULT_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, S3Client, S3Signer

log = logging.getLogger("odoo_operator.backupjob")

PARTIAL = ".partial"
# A partial that no live run holds (its lock free: the run died) and that nothing wrote to for this long is
# removed; the delay covers the instant between its creation and its lock, and writers without a lock.
UNLOCKED_PARTIAL_GRACE = 600.0
# An S3 upload cannot be locked: it is another run's until nothing was uploaded to it for this long.
DEFAULT_STALE_AFTER = 6 * 3600.0


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


class Store(ABC):
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


class FileStore(Store):
    """Artifacts as files in one directory of a mounted volume."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def location(self, name: str) -> str:
        return (self.root / name).as_uri() if name else self.root.as_uri()

    def open_writer(self, name: str) -> ArtifactWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        return _FileWriter(self.root / name)

    def write_sidecar(self, artifact: Artifact) -> None:
        atomic_write(self.root / (artifact.name + SIDECAR), sidecar_bytes(artifact))

    def list(self) -> list[Artifact]:
        if not self.root.is_dir():
            return []
        return read_sidecars((p.name, p.read_bytes()) for p in sorted(self.root.glob("*" + SIDECAR)))

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


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}{PARTIAL}")  # concurrent writers never meet
    with open(partial, "xb") as handle:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # alive, for another run's clean_partials
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        os.replace(partial, path)  # still locked until renamed
    fsync_dir(path.parent)


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
        fsync_dir(self.final.parent)
        self._close()

    def _close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def abort(self) -> None:
        if self.handle is not None:  # still ours (a closed handle means published, or already aborted)
            self.partial.unlink(missing_ok=True)
        self._close()


class S3Store(Store):
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
        self.client.put(self.key(artifact.name + SIDECAR), sidecar_bytes(artifact), "application/json")

    def _names(self) -> list[str]:
        base = self.key("")
        return [key[len(base):] for key in self.client.list_keys(base) if "/" not in key[len(base):]]

    def list(self) -> list[Artifact]:
        return read_sidecars((n, self.client.get(self.key(n))) for n in self._names() if n.endswith(SIDECAR))

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
            log.info("aborting the upload of %s, idle since %s: its run died", key, iso(last_part or initiated))
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


def open_store(url: str, s3_endpoint: str | None = None, s3_region: str | None = None,
                 part_size: int = DEFAULT_PART_SIZE) -> Store:
    """`file:///path/dir` or `s3://bucket/prefix` (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise BackupError(f"storage URL {url!r}: a file URL has no host (file:///path)")
        return FileStore(Path(urllib.parse.unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise BackupError(f"storage URL {url!r} names no bucket (s3://bucket/prefix)")
        access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access_key or not secret_key:
            raise BackupError("S3 storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment")
        region = s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        signer = S3Signer(access_key, secret_key, region, os.environ.get("AWS_SESSION_TOKEN") or None)
        endpoint = s3_endpoint or os.environ.get("S3_ENDPOINT") or None
        return S3Store(S3Client(parsed.netloc, endpoint, signer), urllib.parse.unquote(parsed.path), part_size)
    raise BackupError(f"storage URL {url!r}: use file:///path or s3://bucket/prefix")


class HashingWriter:
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
