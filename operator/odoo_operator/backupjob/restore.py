"""Restoring: an artifact (`restore_backup`, checked against its sidecar) or any file on the storage
(`restore_storage_file`: an Odoo ZIP, a pg_dump -Fc archive or plain SQL, with or without a checksum) into an
EXISTING EMPTY database and its filestore directory; and `receive`, which writes such a file from a stream (the
upload of `kubectl odoo restore --file`).

A restore is resumable: its progress is recorded in the filestore directory (archive.RESTORE_STATE), the
filestore extracted beside its final place while the SQL loads in one transaction (committed once every file is
there), the files moved into place last;
a retry with the same file finds the step it reached. Without a checksum a file is restored unverified (a ZIP's
own CRCs are still checked). What is not here: running psql / pg_restore (pgtools.py), the formats
(archive.py), the storage (storage.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import zipfile
import zlib
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from odoo_operator.backupjob import pgtools
from odoo_operator.backupjob.archive import (
    RESTORE_STAGING,
    RESTORE_STATE,
    RestoreLimits,
    check_manifest,
    check_zip_layout,
    detect_file_format,
    detect_format,
    extract_filestore,
)
from odoo_operator.backupjob.artifacts import CHUNK, Artifact, BackupError, check_path
from odoo_operator.backupjob.storage import HashingWriter, Store, atomic_write, fsync_dir

log = logging.getLogger("odoo_operator.backupjob")


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
        atomic_write(filestore / RESTORE_STATE, json.dumps({"source": source, "step": step}).encode())


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
    relations, _ = pgtools.database_state(database, pg_env)
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

    Everything that can be checked is checked before anything is loaded; the filestore is extracted beside its
    final place meanwhile, and the load runs in one transaction, committed once every file is extracted, that
    stops at the first error, as whatever role
    the connection uses (in the restore Job: the database's own, never an administrator: the SQL comes from a
    user); the files are moved into place last. A failure before the load leaves the database empty; after it,
    a retry with the same file finds the step it reached in `filestore` and finishes. `verified` means its
    sha256 already matched, which makes reading every zip entry once more (to check CRCs) pointless.
    """
    name = name or path.name
    limits = limits or RestoreLimits()
    fmt = detect_file_format(path, name)
    if fmt == "zip" and filestore is None:
        raise BackupError("restoring a zip backup needs a filestore directory (--filestore)")
    identity = _source_identity(path)
    relations, server_version = pgtools.database_state(database, pg_env)
    result = Restored(fmt)
    if relations:
        if not _loaded_by_earlier_attempt(_read_state(filestore), identity):
            raise _not_empty(database, relations)
        log.info("%s: its SQL was loaded into %s by an earlier attempt; finishing", name, database)
        result.resumed = True
        if fmt == "zip":
            with open(path, "rb") as handle, check_zip_layout(handle, name, limits) as archive:
                result.manifest, result.warnings = check_manifest(archive, name, None, server_version)
            assert filestore is not None
            result.files = _publish_staging(filestore)
        _clear_state(filestore)
        return result
    if filestore is not None and filestore.is_dir():
        _discard_staging(filestore)
    target = [f"--dbname={pgtools.conninfo_dbname(database)}", "--no-password"]
    try:
        if fmt == "dump":
            _write_state(filestore, identity, "loading")
            pgtools.run_loader(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                                "--single-transaction", *target, str(path)], None, pg_env, f"pg_restore of {name}",
                               lambda exc: BackupError(f"{name}: {exc}"))
        elif fmt == "sql":
            _write_state(filestore, identity, "loading")
            with open(path, "rb") as sql_file:
                pgtools.run_loader(pgtools.psql_argv(target), pgtools.RestrictedSql(sql_file), pg_env,
                                   f"psql loading {name}", lambda exc: BackupError(f"{name}: {exc}"))
        else:
            assert filestore is not None
            _load_zip(path, name, database, filestore, identity, target, result, pg_env=pg_env, verified=verified,
                      odoo_version=odoo_version, limits=limits, server_version=server_version)
    except BaseException:
        with contextlib.suppress(BackupError, OSError):
            if not pgtools.database_state(database, pg_env)[0]:  # nothing committed: the next attempt starts afresh
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

    with open(path, "rb") as handle, check_zip_layout(handle, name, limits) as archive:
        result.manifest, result.warnings = check_manifest(archive, name, odoo_version, server_version)
        if not verified:
            try:
                bad = archive.testzip()
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise corrupt(exc) from None
            if bad is not None:
                raise corrupt(Exception(f"entry {bad!r} is damaged (bad CRC)"))
        _write_state(filestore, identity, "loading")
        # The files are extracted beside their place while psql loads (PostgreSQL's work, on another core); the
        # SQL's end, which makes psql COMMIT, is held back until they all are (see _ThenWait).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="filestore") as pool, \
                archive.open("dump.sql") as sql_stream:
            staging = pool.submit(_extract_staging, path, name, filestore, limits)
            pgtools.run_loader(pgtools.psql_argv(target), _ThenWait(pgtools.RestrictedSql(sql_stream), staging),
                               pg_env, f"psql loading dump.sql of {name}", corrupt)
        log.info("%s: dump.sql loaded, %d filestore files extracted beside %s", name, staging.result(), filestore)


def _extract_staging(path: Path, name: str, filestore: Path, limits: RestoreLimits) -> int:
    with zipfile.ZipFile(path) as archive:  # a handle of its own: the SQL is read meanwhile
        return extract_filestore(archive, filestore / RESTORE_STAGING, limits, name)


class _ThenWait:
    """`source`, whose end comes only once `work` is done: psql commits at the end of its input, so a restore
    whose files could not be extracted (or a Job killed meanwhile) never leaves a loaded database behind."""

    def __init__(self, source: pgtools.RestrictedSql, work: Future[int]) -> None:
        self.source, self.work = source, work

    def read(self, size: int = CHUNK) -> bytes:
        chunk = self.source.read(size)
        if not chunk:
            self.work.result()  # its error, if any, makes run_loader kill psql before its input ends
        return chunk


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
    fsync_dir(root)
    return moved


def restore_backup(storage: Store, ref: str, database: str, filestore: Path | None, *,
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


def restore_storage_file(storage: Store, path: str, database: str, filestore: Path | None, *,
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


def receive(storage: Store, path: str, source: IO[bytes], sha256: str | None = None) -> dict[str, Any]:
    """Write `source` (stdin of the uploader, or a local file) to `path` on the storage, streamed: under a
    temporary name until every byte is there and, with `sha256`, matches it. Only what a restore accepts."""
    name = PurePosixPath(check_path(path)).name
    writer = storage.open_file_writer(path)
    try:
        out = HashingWriter(writer)
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
