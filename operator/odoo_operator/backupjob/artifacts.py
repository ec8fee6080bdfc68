"""What a backup artifact is: its id and name, its sidecar (`<name>.json`), and which one a user means.

An artifact is `<database>-<id>.<zip|dump>` in its database's folder; its sidecar records its time, size, sha256,
format and the DatabaseBackup that made it (`backup`). `Artifact.status()` is the shape of
`DatabaseBackup.status.artifacts[]`; `api.model.choose_artifact` picks one of those (by id, else the newest) for the
kubectl plugin's download and restore. Also here: `BackupError` (every failure a human should read) and
`check_path`, the rule for a file path a user gives. Nothing here does I/O: storage.py reads and writes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from odoo_operator.api.conditions import format_time as iso
from odoo_operator.api.conditions import parse_rfc3339 as parse_iso
from odoo_operator.api.model import STORAGE_PATH_MAX, STORAGE_PATH_RE

log = logging.getLogger("odoo_operator.backupjob")

CHUNK = 1 << 20
FORMATS = ("zip", "dump")
EXTENSIONS = {"zip": "zip", "dump": "dump"}
ID_FORMAT = "%Y%m%dT%H%M%SZ"
SIDECAR = ".json"


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why, for a human."""


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
        return {"id": self.id, "time": iso(self.time), "sizeBytes": self.size_bytes, "sha256": self.sha256,
                "location": self.location}

    def sidecar(self) -> dict[str, Any]:
        owner = {"backup": self.owner} if self.owner is not None else {}
        return {**self.status(), "format": self.format, "db_name": self.db_name, **owner}

    @classmethod
    def from_sidecar(cls, data: Mapping[str, Any]) -> Artifact:
        owner = data.get("backup")
        return cls(id=str(data["id"]), time=parse_iso(str(data["time"])), size_bytes=int(data["sizeBytes"]),
                   sha256=str(data["sha256"]), format=str(data["format"]), db_name=str(data["db_name"]),
                   location=str(data["location"]), owner=str(owner) if owner is not None else None)


def artifact_id(moment: datetime, suffix: str = "") -> str:
    """`20240131T020000Z` (artifacts of earlier versions), or with a random suffix, `20240131T020000Z-3fa9c2`:
    runs that start in the same second, of different DatabaseBackups or different operators, never meet."""
    stamp = moment.astimezone(UTC).strftime(ID_FORMAT)
    return f"{stamp}-{suffix}" if suffix else stamp


def artifact_name(db_name: str, ident: str, fmt: str) -> str:
    return f"{db_name}-{ident}.{EXTENSIONS[fmt]}"


def sidecar_bytes(artifact: Artifact) -> bytes:
    return json.dumps(artifact.sidecar(), indent=2, sort_keys=True).encode() + b"\n"


def read_sidecars(blobs: Iterable[tuple[str, bytes]]) -> list[Artifact]:
    """The artifacts these sidecars (name, bytes) describe, newest first; an unreadable one is skipped."""
    artifacts = []
    for name, data in blobs:
        try:
            artifacts.append(Artifact.from_sidecar(json.loads(data)))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable sidecar %s: %s", name, exc)
    return sorted(artifacts, key=lambda a: (a.time, a.id), reverse=True)


def check_path(path: str) -> str:
    """A file path given by a user (spec.restoreFrom.file, `--file`): hostile input. Relative, no '.' or '..'
    segment, no backslash, nothing a shell or a URL reads differently (the same rule as the CRD's)."""
    if not isinstance(path, str) or len(path) > STORAGE_PATH_MAX or not STORAGE_PATH_RE.fullmatch(path):
        raise BackupError(f"file {path!r} is not a relative path inside the storage (letters, digits, '.', '_', '-', "
                          "'+', '=', '@', ',' in segments separated by '/', none starting with '.')")
    return path
