"""Making a backup: `create_backup` streams pg_dump (and, for a zip, the manifest and the filestore) into a new
artifact on a `Store`, checks it and publishes it; `prune` then applies the DatabaseBackup's retention.

pg_dump's output is compressed into the zip while it is produced, and the zip is written straight to the
storage through a hashing wrapper, so memory stays flat whatever the size of the database. Every backup of a
database shares its folder (`<namespace>/<database>/`); the sidecar records which DatabaseBackup made the
artifact, and retention only ever considers that DatabaseBackup's own artifacts (artifacts made before this was
recorded belong to no one and are pruned only by the run told to adopt them: the database's daily backup).
What is not here: the formats' details (archive.py), the storage (storage.py), the command line (__main__.py).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
import zipfile
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from odoo_operator.api.retention import Retention, select_keep
from odoo_operator.backupjob import pgtools
from odoo_operator.backupjob.archive import (
    RESTORE_ENTRIES,
    ZIP_COMPRESSLEVEL,
    check_written_dump,
    check_written_zip,
    odoo_release,
    read_manifest,
)
from odoo_operator.backupjob.artifacts import CHUNK, FORMATS, Artifact, BackupError, artifact_id, artifact_name
from odoo_operator.backupjob.deflate import default_workers, deflate_entry
from odoo_operator.backupjob.storage import DEFAULT_STALE_AFTER, ArtifactWriter, HashingWriter, NameTaken, Store

log = logging.getLogger("odoo_operator.backupjob")

# A filestore file whose first 64 KiB deflate to more than this share of their size (an image, a PDF, an
# archive: compressed already) is stored as it is: deflating it costs a core's time for nothing.
SAMPLE = 1 << 16
INCOMPRESSIBLE = 0.97


def _compress_type(path: Path) -> int:
    with open(path, "rb") as handle:
        head = handle.read(SAMPLE)
    if not head:
        return zipfile.ZIP_STORED
    packed = zlib.compressobj(ZIP_COMPRESSLEVEL, zlib.DEFLATED, -15)
    size = len(packed.compress(head)) + len(packed.flush())
    return zipfile.ZIP_STORED if size > INCOMPRESSIBLE * len(head) else zipfile.ZIP_DEFLATED


def _write_zip(out: HashingWriter, database: str, odoo_version: str, filestore: Path,
               pg_env: Mapping[str, str] | None) -> dict[str, int]:
    stats = {"dump_bytes": 0, "files": 0}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_COMPRESSLEVEL,
                         allowZip64=True, strict_timestamps=False) as archive:
        with pgtools.pg_dump(database, "zip", pg_env) as dump, archive.open("dump.sql", "w", force_zip64=True) as entry:
            deflate_entry(entry, ZIP_COMPRESSLEVEL, default_workers())  # deflating the SQL is most of the work
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
                    archive.write(path, arcname, compress_type=_compress_type(path))
                except FileNotFoundError:  # Odoo's garbage collector removed it meanwhile
                    log.info("%s disappeared while being backed up; skipped", arcname)
                    continue
                stats["files"] += 1
    return stats


def _write_dump(out: HashingWriter, database: str, pg_env: Mapping[str, str] | None) -> dict[str, int]:
    with pgtools.pg_dump(database, "dump", pg_env) as dump:
        while chunk := dump.read(CHUNK):
            out.write(chunk)
    return {"dump_bytes": out.size, "files": 0}


def _open_fresh(storage: Store, database: str, fmt: str, moment: datetime) -> tuple[str, ArtifactWriter]:
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


def create_backup(storage: Store, database: str, *, fmt: str = "zip", odoo_version: str = "17.0",
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
        out = HashingWriter(writer)
        if fmt == "zip":
            assert filestore is not None  # checked above
            stats = _write_zip(out, database, odoo_version, filestore, pg_env)
        else:
            stats = _write_dump(out, database, pg_env)
        writer.finish()
        sha256 = out.digest.hexdigest()
        check = check_written_zip(name) if fmt == "zip" else check_written_dump(name)
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


def prune(storage: Store, db_name: str, retention: Retention, keep: str, now: datetime, *,
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
