"""The formats of an artifact and of what a restore reads, without I/O of their own beyond the file handed in.

A `zip` artifact is what Odoo's database manager produces and its `restore_db` reads: `dump.sql` (plain
`pg_dump --no-owner`) as the FIRST entry, then `manifest.json`, then `filestore/<sha[:2]>/<sha>`. A `dump`
artifact is `pg_dump -Fc` (no filestore). A restore also takes a file the operator did not write (an Odoo ZIP,
a `pg_dump -Fc` archive or a plain SQL file), told apart by its first bytes (`detect_format`).

Here: the manifest (`build_manifest`, `read_manifest`, `check_manifest`: Odoo does not downgrade), the checks of
a written or received ZIP (its layout, safe paths), the zip-bomb caps (`RestoreLimits`) and the extraction of
a filestore. What is not here: running pg_dump or psql (pgtools.py), the steps of a backup or a restore
(create.py, restore.py).
"""

from __future__ import annotations

import codecs
import json
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from odoo_operator.backupjob import pgtools
from odoo_operator.backupjob.artifacts import CHUNK, BackupError

# What a restored ZIP may expand to, and hold (a zip bomb is refused): see RestoreLimits.
DEFAULT_RESTORE_MAX_BYTES = 100 << 30
DEFAULT_RESTORE_MAX_MEMBERS = 2_000_000
# Level 1 deflate: measured on a 190 MB plain dump of hard-to-compress rows, 91 MB/s against 29 MB/s
# for the default level 6, for 2% more bytes (112 MB against 110 MB).
ZIP_COMPRESSLEVEL = 1

# A restore's progress, in its filestore directory (the database's own volume): a retry after a failure at any
# step knows what an earlier attempt did. The filestore is extracted beside it (`RESTORE_STAGING`) while the SQL
# loads in one transaction, which commits only once every file is there; then the files are moved into place. A
# backup skips these entries.
RESTORE_STATE = ".odoo-restore.json"
RESTORE_STAGING = ".odoo-restore-staging"
RESTORE_ENTRIES = (RESTORE_STATE, RESTORE_STAGING)


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
    modules, server_version = pgtools.installed_modules(database, pg_env)
    return build_manifest(database, odoo_version, server_version, modules)


def _version_key(version: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def check_manifest(archive: zipfile.ZipFile, name: str, odoo_version: str | None,
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


def check_zip_layout(handle: IO[bytes], name: str, limits: RestoreLimits | None = None) -> zipfile.ZipFile:
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
        if entry.startswith("filestore/") and not entry.endswith("/") and safe_relative(entry) is None:
            archive.close()
            raise BackupError(f"{name} is not a valid Odoo backup: unsafe path {entry!r}")
    return archive


def check_written_zip(name: str) -> Callable[[IO[bytes]], None]:
    def check(handle: IO[bytes]) -> None:
        with check_zip_layout(handle, name) as archive:
            first = archive.infolist()[0].filename
            if first != "dump.sql":
                raise BackupError(f"{name}: the first entry is {first!r}, not dump.sql")
    return check


def check_written_dump(name: str) -> Callable[[IO[bytes]], None]:
    def check(handle: IO[bytes]) -> None:
        if handle.read(5) != b"PGDMP":
            raise BackupError(f"{name} is not a valid pg_dump archive: no PGDMP header")
    return check


def safe_relative(entry: str) -> PurePosixPath | None:
    """`filestore/ab/abcd…` -> `ab/abcd…`; None for anything that could leave the filestore directory."""
    relative = entry[len("filestore/"):]
    path = PurePosixPath(relative)
    if (not relative or "\\" in relative or "\x00" in relative or path.is_absolute()
            or any(part in ("..", ".", "") for part in relative.split("/")) or re.match(r"^[A-Za-z]:", relative)):
        return None
    return path


def extract_filestore(archive: zipfile.ZipFile, filestore: Path, limits: RestoreLimits, name: str) -> int:
    filestore.mkdir(parents=True, exist_ok=True)
    root = filestore.resolve()
    count = written = 0
    for info in archive.infolist():
        if not info.filename.startswith("filestore/") or info.is_dir():
            continue
        relative = safe_relative(info.filename)
        assert relative is not None  # refused earlier by check_zip_layout
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


def detect_file_format(path: Path, name: str) -> str:
    with open(path, "rb") as handle:
        return detect_format(handle.read(4096), name)
