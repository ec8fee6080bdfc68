"""Backups in Odoo's own format, streamed end to end: `python -m odoo_operator.backupjob create|restore|…`.

The command line only: `create` (a backup, then retention), `restore` (an artifact or any file on the storage),
`receive` (stdin to a new file on the storage), `list`, `presign`. Each prints one JSON line with the result
(`ok`, and what was done or the error) and exits 0 or 1; with `--report NAMESPACE/NAME` the result is also
written into that DatabaseBackup's status (report.py), and in a Pod it is the container's termination message.
SIGTERM (the Job deleted) unwinds: the partial artifact is removed and pg_dump stopped. The work itself is in
create.py, restore.py, storage.py (file:// and s3://), archive.py and pgtools.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from odoo_operator.api.conditions import format_time as iso
from odoo_operator.api.retention import Retention
from odoo_operator.backupjob.archive import DEFAULT_RESTORE_MAX_BYTES, DEFAULT_RESTORE_MAX_MEMBERS, RestoreLimits
from odoo_operator.backupjob.artifacts import FORMATS, BackupError
from odoo_operator.backupjob.create import create_backup, prune
from odoo_operator.backupjob.restore import receive, restore_backup, restore_storage_file
from odoo_operator.backupjob.storage import DEFAULT_STALE_AFTER, Store, open_store

log = logging.getLogger("odoo_operator.backupjob")


class _Terminated(BaseException):
    """SIGTERM (the Job is deleted): unwind, so the partial artifact is removed and pg_dump stopped."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def _store_of(args: argparse.Namespace) -> Store:
    return open_store(args.storage, args.s3_endpoint, args.s3_region)


def _cmd_create(args: argparse.Namespace) -> dict[str, Any]:
    storage = _store_of(args)
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
        restored = restore_storage_file(_store_of(args), args.file, args.database, args.filestore,
                                        sha256=args.sha256, odoo_version=args.odoo_version, limits=limits,
                                        spool_limit=args.spool_limit)
        return {"ok": True, **restored, "database": args.database}
    if args.sha256:
        raise BackupError("--sha256 goes with --file (an artifact is checked against its sidecar)")
    artifact, result = restore_backup(_store_of(args), args.artifact, args.database, args.filestore,
                                      odoo_version=args.odoo_version, limits=limits, spool_limit=args.spool_limit)
    return {"ok": True, "artifact": artifact.status(), **result.report(), "database": args.database,
            "verified": True}


def _cmd_receive(args: argparse.Namespace) -> dict[str, Any]:
    return {"ok": True, **receive(_store_of(args), args.file, sys.stdin.buffer, args.sha256)}


def _sha256_arg(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise argparse.ArgumentTypeError("a sha256 is 64 lower-case hexadecimal digits")
    return text


def _cmd_list(args: argparse.Namespace) -> dict[str, Any]:
    return {"ok": True, "artifacts": [a.sidecar() for a in _store_of(args).list()]}


def _cmd_presign(args: argparse.Namespace) -> dict[str, Any]:
    url = _store_of(args).presigned_url(args.artifact, args.seconds)
    return {"ok": True, "url": url, "expiresAt": iso(datetime.now(UTC) + timedelta(seconds=args.seconds))}


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
        from odoo_operator.backupjob import report as backup_report  # only to report: it loads the Kubernetes client
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
