"""The `kubectl odoo` command line: its subcommands, their options and help texts (argparse), each subcommand
bound to its `commands.cmd_*` function.

Not here: what the subcommands do (commands.py), the entry point (__main__.py)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from odoo_operator.api.labels import TAG_LABEL_PREFIX
from odoo_operator.api.users import DEFAULT_ROLE, ROLES
from odoo_operator.kubectl import commands, move, upgrade, users
from odoo_operator.kubectl.upload import UPLOADS

EPILOG = """examples:
  kubectl odoo list -A --tag prod
  kubectl odoo status shop -n sales
  kubectl odoo duplicate shop shop-test --for-testing --wait
  kubectl odoo rename shop shop2
  kubectl odoo backup shop --wait && kubectl odoo download shop --backup shop-manual-20250101-120000
  kubectl odoo restore shop2 --file shop.zip --identity keep --wait
  kubectl odoo delete shop-test
  kubectl odoo support shop -o shop-support.tar.gz
  kubectl odoo invite shop jane@example.com --role admin && kubectl odoo users shop
  kubectl odoo logout shop --user jane@example.com
  kubectl odoo upgrade shop --test && kubectl odoo upgrade shop && kubectl odoo upgrade shop --now
  kubectl odoo move shop pg-2 --wait && kubectl odoo drain pg-1

Connection options (--kubeconfig, --context, -n, --as) go after `odoo`: kubectl does not pass its own
flags to plugins. Docs: docs/kubectl-odoo.md."""


def connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection")
    group.add_argument("--kubeconfig", default=default(os.environ.get("KUBECONFIG") or None),
                       help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    group.add_argument("--context", default=default(None), help="kubeconfig context to use")
    group.add_argument("-n", "--namespace", default=default(None),
                       help="namespace (default: the context's namespace, else default)")
    group.add_argument("--as", dest="as_user", metavar="USER", default=default(None),
                       help="impersonate this user (needs the right to impersonate)")
    group.add_argument("--as-group", metavar="GROUP", default=default(None), help="impersonate this group")


def wait_options(parser: argparse.ArgumentParser, what: str, timeout: str = "10m") -> None:
    parser.add_argument("--wait", action="store_true", help=f"wait until {what}")
    parser.add_argument("--timeout", default=timeout, help=f"how long --wait waits: 90s, 10m, 1h… (default {timeout})")


def storage_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """--pvc or --s3-* : the backup storage a command writes to (backup) or uploads to (restore)."""
    parser.add_argument("--pvc", metavar="CLAIM", help=f"{verb} this PersistentVolumeClaim")
    parser.add_argument("--s3-bucket", metavar="BUCKET", help=f"{verb} this S3-compatible bucket")
    parser.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint (default AWS)")
    parser.add_argument("--s3-region", metavar="REGION")
    parser.add_argument("--s3-prefix", metavar="PREFIX")
    parser.add_argument("--s3-credentials-secret", metavar="SECRET", help="Secret with AWS_ACCESS_KEY_ID/…SECRET…")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl odoo", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Odoo's database manager for OdooDatabase objects: list, status, duplicate, rename, backup, "
                    "restore, download, delete, support; users, invite, remove-user, logout; upgrade.")
    connection_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_, description=description)
        connection_options(cmd, suppress=True)
        return cmd

    ls = command("list", "list databases (name, version, Ready, size, tags, URL, expiry, last backup)",
                 "List OdooDatabases like Odoo's database manager. --tag filters by tag, server-side (label "
                 f"{TAG_LABEL_PREFIX}<tag>); several --tag: databases with all of them. -A: every namespace you "
                 "may read. When you may not list databases cluster-wide, each namespace is tried in turn: every "
                 "namespace if you may list namespaces, otherwise those of --namespaces, $KUBECTL_ODOO_NAMESPACES "
                 "and your kubeconfig's contexts (same cluster and user); the namespaces that were forbidden are "
                 "named on stderr.")
    ls.add_argument("--tag", action="append", metavar="TAG", help="only databases with this tag (repeatable: all)")
    ls.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace you may read")
    ls.add_argument("--namespaces", type=lambda s: [n for n in s.split(",") if n], metavar="NS,NS",
                    help="with -A, when namespaces cannot be listed: more namespaces to look in")
    ls.add_argument("-o", "--output", choices=["wide", "json", "yaml"], help="output format")
    ls.set_defaults(func=commands.cmd_list)

    st = command("status", "a database in plain words: phase, conditions, domains, backups, events",
                 "Show one OdooDatabase: phase, Ready and the other conditions, URL, PostgreSQL database name, "
                 "server, size, version, expiry, last backup, its DomainMappings and DatabaseBackups, and its "
                 "recent Events.")
    st.add_argument("database", help="OdooDatabase name")
    st.add_argument("--events", type=int, default=15, help="how many recent Events to show (default 15)")
    st.add_argument("-o", "--output", choices=["json", "yaml"], help="print the object instead")
    st.set_defaults(func=commands.cmd_status)

    dup = command("duplicate", "copy a database (optionally neutralized for testing)",
                  "Create NEW as an exact copy (database and filestore, fresh identity) of DATABASE: an "
                  "OdooDatabase with spec.duplicateFrom, the source's version, server and image. --for-testing "
                  "neutralizes the copy as Odoo does (outgoing mail, crons, payment providers, delivery carriers, "
                  "IAP tokens, webhooks off). Duplicates expire: after --expires-after, else the operator's "
                  "default (15 days). At most 5 live duplicates per database.")
    dup.add_argument("database", help="the OdooDatabase to copy")
    dup.add_argument("new", help="name of the new OdooDatabase (also its PostgreSQL database name)")
    dup.add_argument("--for-testing", action="store_true", help="neutralize the copy (spec.duplicateFrom.forTesting)")
    dup.add_argument("--expires-after", metavar="DURATION", help="e.g. 15d, 36h, 1d12h (default: 15d)")
    dup.add_argument("--tag", action="append", metavar="TAG", help="tag the copy (repeatable)")
    wait_options(dup, "the copy is Ready")
    dup.set_defaults(func=commands.cmd_duplicate)

    ren = command("rename", "rename the PostgreSQL database (spec.databaseName)",
                  "Rename the PostgreSQL database of DATABASE by patching spec.databaseName (the object's own "
                  "name cannot change). The operator terminates the sessions, renames the database, its filestore "
                  "path and its default URL. A name in use is refused (Stalled, NameConflict).")
    ren.add_argument("database", help="OdooDatabase name")
    ren.add_argument("new_name", metavar="new-database-name", help="the new PostgreSQL database name")
    wait_options(ren, "the rename is done")
    ren.set_defaults(func=commands.cmd_rename)

    mv = command("move", "move a database to another PostgresServer (spec.server)",
                 "Move DATABASE to the PostgresServer SERVER by setting spec.server. The operator checks the target "
                 "(exists, allows the namespace, not cordoned, room left: otherwise Stalled MoveRefused and the "
                 "database keeps being served), stops the app, copies the database (pg_dump | pg_restore as its own "
                 "role), verifies it, serves it from SERVER and drops the source last. status.move reports it.")
    mv.add_argument("database", help="OdooDatabase name")
    mv.add_argument("server", help="PostgresServer name")
    wait_options(mv, "the move is done", "30m")
    mv.set_defaults(func=move.cmd_move)

    dr = command("drain", "cordon a PostgresServer and move each of its databases off it",
                 "Set spec.cordoned on SERVER (no new database is placed on it), then move each OdooDatabase on it "
                 "to the server of its pool (spec.serverSelector, else the default servers) with the most free "
                 "capacity, as the servers' status reports it. Exit status 1 when some database has nowhere to go.")
    dr.add_argument("server", help="PostgresServer name")
    wait_options(dr, "every move is done", "2h")
    dr.set_defaults(func=move.cmd_drain)

    bk = command("backup", "take one backup now (a one-shot DatabaseBackup)",
                 "Create a one-shot DatabaseBackup <database>-manual-<UTC time> (no schedule: one Job now). "
                 "Storage: as the database's scheduled backups (spec.backup.storage), else the operator's default "
                 "(the PVC odoo-backups of the namespace), unless --pvc or --s3-bucket says otherwise.")
    bk.add_argument("database", help="OdooDatabase name")
    bk.add_argument("--name", help="name of the DatabaseBackup (default <database>-manual-<time>)")
    bk.add_argument("--format", choices=["zip", "dump"], default="zip",
                    help="zip: Odoo's format with the filestore (default); dump: pg_dump -Fc, database only")
    storage_options(bk, "write to")
    wait_options(bk, "the backup succeeded", "30m")
    bk.set_defaults(func=commands.cmd_backup)

    dl = command("download", "download a backup ZIP of a database",
                 "Download a backup artifact: from S3 through a short-lived presigned URL, from a PVC through a "
                 "short-lived reader Pod. The sha256 recorded in the DatabaseBackup is verified.")
    dl.add_argument("database")
    dl.add_argument("--backup", help="DatabaseBackup name (default <database>-daily)")
    dl.add_argument("--artifact", help="artifact id (default: the newest)")
    dl.add_argument("-o", "--output", help="file to write (default: the artifact's name)")
    dl.add_argument("--url", action="store_true", help="S3 only: print a short-lived presigned URL instead")
    dl.add_argument("--seconds", type=int, default=600, help="lifetime of the presigned URL")
    dl.add_argument("--image", help="image of the reader Pod for PVC storage (default: the operator image)")
    dl.set_defaults(func=commands.cmd_download)

    rs = command("restore", "a new database from a local Odoo ZIP or dump, or from a database's backup",
                 "Create NEW from a backup. --file: a local file (a ZIP from Odoo's database manager or "
                 "`kubectl odoo download`, a pg_dump -Fc archive, or plain SQL; told by its content) is uploaded to "
                 f"the backup storage under {UPLOADS}/ (S3: straight to the bucket with the keys of its Secret; PVC: "
                 "through a short-lived Pod of the operator's image, `kubectl exec -i`), its sha256 computed here "
                 "and checked by the restore. --from-database SRC: SRC's version, server and image (and its backup "
                 "storage for --file); without --file, SRC's newest backup (--backup, --artifact). --identity fresh "
                 "(default) gives a new database.uuid/secret like Odoo's 'copied'; keep leaves them, like 'moved'.")
    rs.add_argument("new", help="name of the new OdooDatabase")
    rs.add_argument("--file", metavar="PATH", help="a local Odoo ZIP, pg_dump -Fc archive or SQL file to upload")
    rs.add_argument("--from-database", metavar="SRC", help="take version/server/image (and backups) from SRC")
    rs.add_argument("--backup", help="without --file: the DatabaseBackup (default <SRC>-daily)")
    rs.add_argument("--artifact", help="without --file: the artifact id (default: the newest)")
    rs.add_argument("--version", help="Odoo version of the new database (default: SRC's, or the ZIP's manifest)")
    rs.add_argument("--identity", choices=["fresh", "keep"], default="fresh",
                    help="fresh: new uuid/secret (a copy, default); keep: as in the backup (a moved database)")
    rs.add_argument("--neutralize", action="store_true", help="neutralize it as a test copy (mail, crons … off)")
    storage_options(rs, "upload to")
    rs.add_argument("--image", help="image of the uploader Pod for PVC storage (default: the operator image)")
    wait_options(rs, "the restored database is Ready", "30m")
    rs.set_defaults(func=commands.cmd_restore)

    rm = command("delete", "delete a database, after typing its name",
                 "Delete an OdooDatabase. As in Odoo, you confirm by typing its name (read from stdin), or pass "
                 "--confirm NAME in scripts. The API server is asked first (dry run): users without the delete "
                 "right (only administrators delete) and databases linked to a subscription (admission policy) "
                 "are refused before anything is typed. What happens to the PostgreSQL database follows "
                 "spec.deletionPolicy: Delete (dropped at once), Retain (kept), Snapshot (final backup first).")
    rm.add_argument("database", help="OdooDatabase name")
    rm.add_argument("--confirm", metavar="NAME", help="the database name, instead of typing it")
    wait_options(rm, "the object is gone", "5m")
    rm.set_defaults(func=commands.cmd_delete)

    sp = command("support", "write a support bundle (tar.gz) with the database's details",
                 "Collect what support needs about one database: its spec and status, its objects (Deployment, "
                 "ReplicaSets, Pods, Jobs, CronJobs, Service, Ingress, PVC, ConfigMap), their recent Events, its "
                 "DatabaseBackups and DomainMappings, the PostgresServer, versions; summary.md is a pre-filled "
                 "support request. Secrets are never read; values that look secret are redacted.")
    sp.add_argument("database", help="OdooDatabase name")
    sp.add_argument("-o", "--output", metavar="PATH",
                    help="a .tar.gz/.tgz file, or a directory (default odoo-support-<ns>-<db>-<time>.tar.gz)")
    sp.set_defaults(func=commands.cmd_support)

    us = command("users", "list a database's users (spec.users and where the operator is with them)",
                 "List the users of DATABASE: its owner (spec.owner), the users the operator manages (status.users: "
                 "Invited until they first sign in, Active, Archived once removed) and the entries of spec.users it "
                 "has not brought in yet (Pending). A role change still to be made shows as `old -> new`.")
    us.add_argument("database", help="OdooDatabase name")
    us.add_argument("-o", "--output", choices=["json", "yaml"], help="print the rows as JSON or YAML")
    us.set_defaults(func=users.cmd_users)

    inv = command("invite", "invite a user by e-mail (adds it to spec.users)",
                  "Add EMAIL to spec.users of DATABASE with --role (default user): the operator creates the user "
                  "in Odoo (login = e-mail) with the role's groups and sends Odoo's invitation; an existing user of "
                  "that login is adopted. Already invited with that role: nothing to do; with another role: the role "
                  "changes. The edit carries the resourceVersion read, so a concurrent edit is never overwritten.")
    inv.add_argument("database", help="OdooDatabase name")
    inv.add_argument("email", help="the user's e-mail address (also their login)")
    inv.add_argument("--role", choices=list(ROLES), default=DEFAULT_ROLE,
                     help="admin (Settings, access rights), user (internal user, default) or portal")
    inv.set_defaults(func=users.cmd_invite)

    rmu = command("remove-user", "remove a user (from spec.users: archived in Odoo, never deleted)",
                  "Remove EMAIL from spec.users of DATABASE: the operator archives the user in Odoo (their records "
                  "keep their author; they can no longer sign in). Not in spec.users: nothing to do.")
    rmu.add_argument("database", help="OdooDatabase name")
    rmu.add_argument("email", help="the user's e-mail address")
    rmu.set_defaults(func=users.cmd_remove_user)

    lo = command("logout", "end every session of a user, or of every user, of a database",
                 "Log out everywhere: the operator runs a Job of the database's image that deletes the sessions "
                 "(Odoo's session store, on the database's sessions volume) of --user, or of every user; their "
                 "cookies stop working at once, passwords and invitation links stay valid. Works while the app "
                 "is scaled to 0. Sets the annotation odoo.dbmanager.io/logout and waits for status.lastLogout.")
    lo.add_argument("database", help="OdooDatabase name")
    lo.add_argument("--user", metavar="EMAIL", help="only this user's sessions (default: every user's)")
    lo.add_argument("--timeout", default="5m", help="how long to wait for the operator: 90s, 5m… (default 5m)")
    lo.add_argument("--no-wait", action="store_true", help="only ask; do not wait for the count")
    lo.set_defaults(func=users.cmd_logout)

    up = command("upgrade", "upgrades: what is offered, test one on a copy, upgrade now, roll back",
                 "Without an option: the database's version, the upgrade offered (status.availableUpgrade) and "
                 "the deadline after which the operator upgrades by itself, the last test upgrade (its URL, and "
                 "its log when it failed), the last upgrade (duration, downtime) and the pre-upgrade copy a "
                 "rollback goes back to. --test sets spec.upgrade: the operator upgrades a neutralized copy "
                 "(<database>-upgrade-test) and leaves the database alone. --now sets spec.version: the "
                 "production upgrade, without waiting for a test. --rollback puts back the pre-upgrade copy "
                 "(until it expires: 7 days by default), annotation odoo.dbmanager.io/rollback; what changed "
                 "since the upgrade is lost. Each edit carries the resourceVersion read.")
    up.add_argument("database", help="OdooDatabase name")
    action = up.add_mutually_exclusive_group()
    action.add_argument("--test", action="store_true", help="test the upgrade on a neutralized copy first")
    action.add_argument("--now", action="store_true", help="upgrade the database now, without waiting for a test")
    action.add_argument("--rollback", action="store_true", help="go back to the version before the last upgrade")
    up.add_argument("--to", metavar="VERSION",
                    help="the version to go to (--test: default the one offered; --now: default the planned one "
                         "(spec.upgrade.targetVersion), else the one offered)")
    up.add_argument("-o", "--output", choices=["json", "yaml"], help="without an option: print the fields as data")
    up.set_defaults(func=upgrade.cmd_upgrade)
    return parser
