"""The `kubectl odoo` subcommands, one `cmd_*` function each (list, status, duplicate, rename, backup, delete,
support, restore, download), taking the parsed arguments and returning the exit code, with the few helpers
only one of them needs.

Not here: the arguments (parser.py), reaching the cluster (connection.py), showing things and redaction
(support.py), the support bundle (bundle.py), moving backup files (download.py, upload.py), upgrades and
the upgrade lines of `status` (upgrade.py), the entry point and error handling (__main__.py)."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from odoo_operator import API_VERSION, specs
from odoo_operator.api.labels import DATABASE_LABEL, MANAGED_BY_LABEL, TAG_LABEL_PREFIX
from odoo_operator.api.model import (
    TAG_RE,
    VERSION_RE,
    SpecError,
    Storage,
    check_database_name,
    database_name,
    parse_duration,
    parse_storage,
)
from odoo_operator.config import Settings
from odoo_operator.kube import KubeError
from odoo_operator.kubectl import download, upgrade, upload
from odoo_operator.kubectl.bundle import collect_bundle, write_bundle
from odoo_operator.kubectl.connection import Connection, get_database, related
from odoo_operator.kubectl.support import (
    PLUGIN,
    PluginError,
    ago,
    condition,
    conditions_of,
    event_time,
    events_table,
    expires,
    human_size,
    indent,
    now,
    one_line,
    parse_timeout,
    print_object,
    strip_noise,
    table,
    wait_for,
)


# ---- waiting for a database or a backup ----------------------------------------------------------
def db_state(obj: Mapping[str, Any] | None) -> str:
    if obj is None:
        return "gone"
    ready = condition(obj, "Ready")
    phase = (obj.get("status") or {}).get("phase") or "Pending"
    return f"phase {phase}, Ready={ready.get('status', 'Unknown')} {ready.get('reason', '')}".strip()


def database_ready(obj: Mapping[str, Any] | None) -> bool:
    """Ready for the current generation; a Stalled database is a failure waiting cannot fix."""
    if obj is None:
        raise PluginError("the OdooDatabase disappeared while waiting")
    status = obj.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(obj["metadata"].get("generation") or 0):
        return False
    stalled = condition(obj, "Stalled")
    if stalled.get("status") == "True":
        raise PluginError(f"{obj['metadata']['name']} is stalled: {stalled.get('reason', '')}: "
                          f"{one_line(stalled.get('message'))}")
    return condition(obj, "Ready").get("status") == "True"


def fetch_database(conn: Connection, namespace: str, name: str) -> dict[str, Any] | None:
    return conn.kube.get(API_VERSION, "OdooDatabase", name, namespace)


def create(conn: Connection, body: Mapping[str, Any], what: str) -> dict[str, Any]:
    created = conn.kube.create(body, field_manager=PLUGIN)
    if created is None:
        raise PluginError(f"{what} already exists")
    return created


# ---- list ----------------------------------------------------------------------------------------
def tag_selector(tags: list[str]) -> str | None:
    """Several --tag: databases carrying all of them (label existence requirements are ANDed)."""
    for tag in tags:
        if not TAG_RE.match(tag):
            raise PluginError(f"invalid tag {tag!r}: 1 to 63 lower-case letters, digits, '-', '_' or '.'")
    return ",".join(f"{TAG_LABEL_PREFIX}{tag}" for tag in dict.fromkeys(tags)) or None


def kubeconfig_namespaces(conn: Connection) -> list[str]:
    """Namespaces named by the kubeconfig: the current context's, and those of the contexts that use the
    same cluster and user (a tenant often has one context per namespace)."""
    contexts, active = conn.contexts()
    current = active.get("context") or {}
    found = [str(current.get("namespace") or "default")]
    for ctx in contexts:
        spec = ctx.get("context") or {}
        if spec.get("cluster") == current.get("cluster") and spec.get("user") == current.get("user") \
                and spec.get("namespace"):
            found.append(str(spec["namespace"]))
    return found


def candidate_namespaces(conn: Connection, extra: list[str]) -> tuple[list[str], bool]:
    """(namespaces to look in, whether that is every namespace of the cluster)."""
    try:
        return sorted(n["metadata"]["name"] for n in conn.kube.list("v1", "Namespace")), True
    except KubeError as exc:
        if exc.status not in (401, 403):
            raise
    names = [*extra, *kubeconfig_namespaces(conn)]
    # OpenShift lists exactly the projects a user may see; elsewhere this API does not exist (404).
    with contextlib.suppress(KubeError):
        names += [p["metadata"]["name"] for p in conn.kube.list("project.openshift.io/v1", "Project")]
    env = os.environ.get("KUBECTL_ODOO_NAMESPACES", "")
    names += [n.strip() for n in env.split(",") if n.strip()]
    return sorted(dict.fromkeys(names)), False


def list_all_namespaces(conn: Connection, selector: str | None,
                        extra: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every OdooDatabase the user may read: (items, notes for stderr).

    One cluster-wide list when RBAC allows it. Otherwise (a tenant bound in a few namespaces) one list per
    candidate namespace, concurrently: all namespaces when the user may list them, else the namespaces
    named by --namespaces, $KUBECTL_ODOO_NAMESPACES, the kubeconfig's contexts (and OpenShift projects).
    The namespaced list is itself the access check: a 403 there means "not readable" (asking a
    SelfSubjectAccessReview first would cost one more request per namespace and tell no more). A user who
    may not list namespaces cannot discover the others: Kubernetes has no "namespaces I can read" API
    (SelfSubjectRulesReview answers for one given namespace only).
    """
    try:
        return conn.kube.list(API_VERSION, "OdooDatabase", None, selector), []
    except KubeError as exc:
        if exc.status not in (401, 403):
            raise
    namespaces, everything = candidate_namespaces(conn, extra)

    def one(namespace: str) -> tuple[str, list[dict[str, Any]] | None]:
        try:
            return namespace, conn.kube.list(API_VERSION, "OdooDatabase", namespace, selector)
        except KubeError as exc:
            if exc.status in (401, 403):
                return namespace, None
            raise

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, namespaces))
    items = [item for _, found in results if found for item in found]
    readable = [ns for ns, found in results if found is not None]
    skipped = [ns for ns, found in results if found is None]
    notes = ["not allowed to list OdooDatabases cluster-wide; listed them namespace by namespace"]
    if not everything:
        notes.append("not allowed to list namespaces either: looked only in " + (", ".join(namespaces) or "none")
                     + " (from --namespaces, $KUBECTL_ODOO_NAMESPACES and the kubeconfig's contexts); "
                     "databases in other namespaces you may read are not shown")
    notes.append("read: " + (", ".join(readable) or "none"))
    if skipped:
        notes.append("skipped (forbidden): " + ", ".join(skipped))
    return items, notes


def list_row(obj: Mapping[str, Any], wide: bool, all_namespaces: bool) -> list[str]:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    ready = condition(obj, "Ready")
    row = [meta["namespace"]] if all_namespaces else []
    row += [meta["name"], ready.get("status", "Unknown"), status.get("phase") or "Pending",
            status.get("version") or spec.get("version") or "-", human_size(status.get("sizeBytes")),
            ",".join(spec.get("tags") or []) or "-", status.get("url") or "-", expires(status.get("expiresAt")),
            ago(status.get("lastBackup"))]
    if wide:
        source = (spec.get("duplicateFrom") or {}).get("name") or status.get("source") or "-"
        row += [database_name(obj),
                status.get("server") or spec.get("server") or "-", source, ready.get("reason") or "-",
                one_line(ready.get("message")) or "-"]
    return row


def cmd_list(args: argparse.Namespace) -> int:
    conn = Connection(args)
    selector = tag_selector(args.tag or [])
    notes: list[str] = []
    if args.all_namespaces:
        items, notes = list_all_namespaces(conn, selector, args.namespaces or [])
    else:
        items = conn.kube.list(API_VERSION, "OdooDatabase", conn.namespace, selector)
    items.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output in ("json", "yaml"):
        print_object({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [strip_noise(o) for o in items]},
                     args.output)
        return 0
    if not items:
        where = "any namespace you may read" if args.all_namespaces else f"namespace {conn.namespace}"
        tags = f" tagged {', '.join(args.tag)}" if args.tag else ""
        print(f"No OdooDatabases{tags} in {where}.", file=sys.stderr)
        return 0
    wide = args.output == "wide"
    header = (["NAMESPACE"] if args.all_namespaces else []) + [
        "NAME", "READY", "PHASE", "VERSION", "SIZE", "TAGS", "URL", "EXPIRES", "LAST BACKUP"]
    if wide:
        header += ["DATABASE", "SERVER", "SOURCE", "REASON", "MESSAGE"]
    print(table([list_row(o, wide, args.all_namespaces) for o in items], header))
    return 0


# ---- status --------------------------------------------------------------------------------------
def object_events(conn: Connection, namespace: str, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    meta = obj["metadata"]
    selector = f"involvedObject.uid={meta['uid']}" if meta.get("uid") else \
        f"involvedObject.kind={obj.get('kind')},involvedObject.name={meta['name']}"
    return sorted(conn.kube.list("v1", "Event", namespace, field_selector=selector), key=event_time)


def deletion_note(spec: Mapping[str, Any]) -> str:
    policy = spec.get("deletionPolicy") or "Delete"
    return {
        "Delete": "Delete: deleting drops the PostgreSQL database and its filestore at once",
        "Retain": "Retain: deleting keeps the PostgreSQL database and only forgets it",
        "Snapshot": "Snapshot: deleting takes a final backup first, then drops the database",
    }.get(policy, policy)


def cmd_status(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    obj = get_database(conn, namespace, args.database)
    if args.output in ("json", "yaml"):
        print_object(strip_noise(obj), args.output)
        return 0
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    ready = condition(obj, "Ready")
    lines = [
        ("Name", f"{meta['name']}   (namespace {namespace})"),
        ("Phase", status.get("phase") or "Pending"),
        ("Ready", " ".join(p for p in (ready.get("status", "Unknown"), ready.get("reason")) if p)
         + (f": {one_line(ready.get('message'))}" if ready.get("message") else "")),
        ("URL", status.get("url") or "-"),
        ("Database", database_name(obj)),
        ("Server", status.get("server") or spec.get("server") or "(the default PostgresServer)"),
        ("Version", status.get("version") or spec.get("version") or "-"),
        ("Size", human_size(status.get("sizeBytes"))
         + (f" (last change {ago(status.get('sizeUpdatedAt'))})" if status.get("sizeUpdatedAt") else "")),
        ("Tags", ", ".join(spec.get("tags") or []) or "-"),
        ("Created", f"{meta.get('creationTimestamp')} ({ago(meta.get('creationTimestamp'))})"),
        ("Expires", f"{status['expiresAt']} ({expires(status['expiresAt'])})" if status.get("expiresAt")
         else (f"after {spec['expiresAfter']}" if spec.get("expiresAfter") else "never")),
        ("Last backup", f"{status['lastBackup']} ({ago(status['lastBackup'])})" if status.get("lastBackup")
         else "none yet"),
    ]
    if spec.get("duplicateFrom") or status.get("source"):
        source = status.get("source") or f"duplicate of {spec['duplicateFrom']['name']}"
        lines.append(("Source", source + (" (neutralized for testing)" if status.get("neutralized") else "")))
    lines += upgrade.status_lines(obj)
    if (spec.get("app") or {}).get("suspended"):
        lines.append(("App", "suspended (scaled to 0)"))
    move = status.get("move") or {}
    if move.get("to"):
        down = f", down {move['downtimeSeconds']} s" if move.get("downtimeSeconds") is not None else ""
        lines.append(("Move", f"{move.get('from')} -> {move.get('to')}: {move.get('phase')}{down}"))
    if spec.get("subscription"):
        lines.append(("Subscription", f"{spec['subscription'].get('code')} (deleting is refused while set)"))
    last_logout = status.get("lastLogout") or {}
    if last_logout.get("completedAt"):
        done = (f"{last_logout['sessionsEnded']} session(s) ended" if last_logout.get("sessionsEnded") is not None
                else one_line(last_logout.get("message")) or "answered")
        who = str(last_logout.get("request") or "").partition(" ")[2] or "?"
        lines.append(("Last logout", f"{done}, {'all users' if who == '*' else who}, "
                      f"{ago(last_logout['completedAt'])}"))
    lines.append(("Deletion", deletion_note(spec)))
    if meta.get("deletionTimestamp"):
        lines.append(("Deleting", f"since {meta['deletionTimestamp']}"))
    width = max(len(k) for k, _ in lines) + 2
    out = [f"{(key + ':').ljust(width)}{value}" for key, value in lines]

    conds = conditions_of(obj)
    out += ["", "Conditions:"]
    out.append(indent(table([[c.get("type", ""), c.get("status", ""), c.get("reason") or "-",
                               ago(c.get("lastTransitionTime")), one_line(c.get("message")) or "-"]
                              for c in conds], ["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"]))
               if conds else "  none yet (the operator has not processed this database)")

    out += ["", "Domains:"]
    try:
        domains = related(conn, namespace, "DomainMapping", meta["name"])
        out.append(indent(table([[d["spec"].get("domain", ""), condition(d, "Ready").get("status", "Unknown"),
                                   condition(d, "Ready").get("reason") or "-",
                                   (d.get("status") or {}).get("url") or "-", d["metadata"]["name"]]
                                  for d in domains], ["DOMAIN", "READY", "REASON", "URL", "DOMAINMAPPING"]))
                   if domains else "  none (add one with a DomainMapping)")
    except KubeError as exc:
        out.append(f"  cannot list DomainMappings: {exc.message}")

    out += ["", "Backups:"]
    try:
        backups = related(conn, namespace, "DatabaseBackup", meta["name"])
        out.append(indent(table([[b["metadata"]["name"], (b.get("spec") or {}).get("schedule") or "one-shot",
                                   (b.get("status") or {}).get("phase") or "-",
                                   ago((b.get("status") or {}).get("lastSuccessfulTime")),
                                   str(len((b.get("status") or {}).get("artifacts") or []))]
                                  for b in backups], ["NAME", "SCHEDULE", "PHASE", "LAST SUCCESS", "ARTIFACTS"]))
                   if backups else "  none")
    except KubeError as exc:
        out.append(f"  cannot list DatabaseBackups: {exc.message}")

    out += ["", "Events:"]
    try:
        events = object_events(conn, namespace, obj)[-args.events:]
        out.append(indent(events_table(events)) if events else "  none")
    except KubeError as exc:
        out.append(f"  cannot list Events: {exc.message}")
    print("\n".join(out))
    return 0


# ---- duplicate, rename ---------------------------------------------------------------------------
def cmd_duplicate(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    source = get_database(conn, namespace, args.database)
    if args.expires_after:
        try:
            parse_duration(args.expires_after, "--expires-after")
        except SpecError as exc:
            raise PluginError(str(exc)) from None
    src_spec, src_status = source.get("spec") or {}, source.get("status") or {}
    spec: dict[str, Any] = {
        "version": src_status.get("version") or src_spec["version"],
        "duplicateFrom": {"name": args.database, "forTesting": bool(args.for_testing)},
    }
    server = src_spec.get("server") or src_status.get("server")
    if server:
        spec["server"] = server
    if src_spec.get("image"):
        spec["image"] = src_spec["image"]
    if args.expires_after:
        spec["expiresAfter"] = args.expires_after
    if args.tag:
        tag_selector(args.tag)
        spec["tags"] = list(dict.fromkeys(args.tag))
    body = {"apiVersion": API_VERSION, "kind": "OdooDatabase",
            "metadata": {"name": args.new, "namespace": namespace}, "spec": spec}
    created = create(conn, body, f'OdooDatabase "{args.new}" in namespace "{namespace}"')
    expiry = args.expires_after or "15d (the operator's default for duplicates)"
    kind = "a copy neutralized for testing (mail, crons, payments … off)" if args.for_testing else "an exact copy"
    print(f"odoodatabase.odoo.dbmanager.io/{args.new} created in namespace {namespace}: {kind} of "
          f"{args.database}, version {spec['version']}" + (f", server {server}" if server else "")
          + f"; expires after {expiry}.")
    print(f"note: {args.database}'s open sessions are terminated while it is copied.", file=sys.stderr)
    if args.wait:
        wait_for(lambda: fetch_database(conn, namespace, args.new), database_ready, parse_timeout(args.timeout),
                 f"{args.new} to be Ready", db_state)
        final = fetch_database(conn, namespace, args.new) or created
        print(f"{args.new} is Ready: {(final.get('status') or {}).get('url') or ''}".rstrip())
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    try:
        check_database_name(args.new_name, "the new database name")
    except SpecError as exc:
        raise PluginError(str(exc)) from None
    obj = get_database(conn, namespace, args.database)
    # The wanted name (spec first): a rename already asked for is "nothing to do", even while in progress.
    current = (obj.get("spec") or {}).get("databaseName") or database_name(obj)
    if current == args.new_name and (obj.get("spec") or {}).get("databaseName", current) == args.new_name:
        print(f"{args.database}: the database is already named {args.new_name}; nothing to do.")
        return 0
    patched = conn.kube.merge_patch(API_VERSION, "OdooDatabase", args.database, namespace,
                                    {"spec": {"databaseName": args.new_name}}, field_manager=PLUGIN)
    print(f"odoodatabase.odoo.dbmanager.io/{args.database} patched: spec.databaseName {current} -> "
          f"{args.new_name} (the database, its filestore and its URL are renamed; open sessions are terminated)")
    if args.wait:
        generation = int(patched["metadata"].get("generation") or 0)

        def renamed(body: dict[str, Any] | None) -> bool:
            if body is None or int(body["metadata"].get("generation") or 0) > generation:
                raise PluginError(f"{args.database} was deleted or changed again while waiting")
            return database_ready(body) and (body.get("status") or {}).get("databaseName") == args.new_name

        final = wait_for(lambda: fetch_database(conn, namespace, args.database), renamed,
                         parse_timeout(args.timeout), f"{args.database} to be renamed", db_state) or {}
        print(f"{args.database} renamed: {(final.get('status') or {}).get('url') or args.new_name}")
    return 0


# ---- backup --------------------------------------------------------------------------------------
def storage_from_args(args: argparse.Namespace, database: Mapping[str, Any]) -> dict[str, Any] | None:
    if args.pvc and args.s3_bucket:
        raise PluginError("--pvc and --s3-bucket exclude each other")
    if args.pvc:
        return {"pvc": {"claimName": args.pvc}}
    if args.s3_bucket:
        s3: dict[str, Any] = {"bucket": args.s3_bucket}
        for key, value in (("endpoint", args.s3_endpoint), ("region", args.s3_region), ("prefix", args.s3_prefix)):
            if value:
                s3[key] = value
        if args.s3_credentials_secret:
            s3["credentialsSecret"] = {"name": args.s3_credentials_secret}
        return {"s3": s3}
    if any((args.s3_endpoint, args.s3_region, args.s3_prefix, args.s3_credentials_secret)):
        raise PluginError("the --s3-… options need --s3-bucket")
    # Same place as the database's scheduled backups, so `download` and restores find them alike.
    storage = ((database.get("spec") or {}).get("backup") or {}).get("storage")
    return dict(storage) if storage else None


def backup_state(obj: Mapping[str, Any] | None) -> str:
    if obj is None:
        return "gone"
    ready = condition(obj, "Ready")
    return f"phase {(obj.get('status') or {}).get('phase') or 'Pending'}, {ready.get('reason') or 'not started'}"


def backup_done(obj: Mapping[str, Any] | None) -> bool:
    if obj is None:
        raise PluginError("the DatabaseBackup disappeared while waiting")
    ready, stalled = condition(obj, "Ready"), condition(obj, "Stalled")
    if stalled.get("status") == "True" or ready.get("reason") == "BackupFailed":
        failure = (obj.get("status") or {}).get("lastFailure") or {}
        raise PluginError(f"the backup failed: {one_line(failure.get('message') or ready.get('message'))}")
    return ready.get("status") == "True" and ready.get("reason") == "Succeeded"


def cmd_backup(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    database = get_database(conn, namespace, args.database)
    name = args.name or specs.app.child_name(args.database, f"manual-{now().strftime('%Y%m%d-%H%M%S')}")
    spec: dict[str, Any] = {"databaseRef": {"name": args.database}, "format": args.format}
    storage = storage_from_args(args, database)
    if storage:
        spec["storage"] = storage
    body = {"apiVersion": API_VERSION, "kind": "DatabaseBackup",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {DATABASE_LABEL: args.database, MANAGED_BY_LABEL: PLUGIN}},
            "spec": spec}
    create(conn, body, f'DatabaseBackup "{name}" in namespace "{namespace}"')
    where = ("s3://" + storage["s3"]["bucket"]) if storage and "s3" in storage else \
        (f"PVC {storage['pvc']['claimName']}" if storage else "the operator's default storage")
    print(f"databasebackup.odoo.dbmanager.io/{name} created in namespace {namespace}: one {args.format} backup of "
          f"{args.database} now, to {where}")
    command = f"kubectl odoo download {args.database} -n {namespace} --backup {name}"
    if args.wait:
        final = wait_for(lambda: conn.kube.get(API_VERSION, "DatabaseBackup", name, namespace), backup_done,
                         parse_timeout(args.timeout), f"backup {name}", backup_state) or {}
        artifacts = (final.get("status") or {}).get("artifacts") or []
        newest = artifacts[0] if artifacts else {}
        print(f"backup {newest.get('id', '')} taken ({human_size(newest.get('sizeBytes'))}); download it with:")
    else:
        print(f"follow it with `kubectl get odbb {name} -n {namespace} -w`; once it Succeeded, download it with:")
    print(f"  {command}")
    return 0


# ---- delete --------------------------------------------------------------------------------------
def policy_message(exc: KubeError) -> str:
    """The admission policy's own words, without the API server's prefix."""
    message = one_line(exc.message)
    marker = "denied request: "
    return message.split(marker, 1)[1] if marker in message else message


def read_confirmation(expected: str) -> str:
    print(f"Type the name of the database to confirm ({expected}): ", end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not sys.stdin.isatty():
        print(file=sys.stderr)  # what was typed was not echoed: end the prompt's line
    if not line:
        raise PluginError(f"no confirmation (stdin closed): type the name, or pass --confirm {expected}")
    return line.strip()


def delete_database(conn: Connection, namespace: str, name: str, dry_run: bool) -> None:
    """Delete (or only ask whether we may: RBAC, the subscription admission policy)."""
    try:
        deleted = conn.kube.delete(API_VERSION, "OdooDatabase", name, namespace, dry_run=dry_run)
    except KubeError as exc:
        if exc.status == 403 and "ValidatingAdmissionPolicy" in exc.message:
            raise PluginError(f"refused: {policy_message(exc)}") from None
        raise
    if not deleted:
        raise PluginError(f'OdooDatabase "{name}" not found in namespace "{namespace}"')


def cmd_delete(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    obj = get_database(conn, namespace, args.database)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    # Ask the API server first (RBAC, the subscription admission policy) so nobody types a name for nothing.
    delete_database(conn, namespace, args.database, dry_run=True)
    pg_name = database_name(obj)
    print(f"Deleting OdooDatabase {namespace}/{args.database} (PostgreSQL database {pg_name!r}"
          + (f", {status['url']}" if status.get("url") else "") + ").", file=sys.stderr)
    print(f"deletionPolicy {deletion_note(spec)}"
          + ("; this cannot be undone." if (spec.get("deletionPolicy") or "Delete") == "Delete" else "."),
          file=sys.stderr)
    typed = args.confirm if args.confirm is not None else read_confirmation(args.database)
    if typed != args.database:
        raise PluginError(f"{typed!r} does not match {args.database!r}; nothing was deleted")
    delete_database(conn, namespace, args.database, dry_run=False)
    print(f"odoodatabase.odoo.dbmanager.io/{args.database} deletion requested")
    if args.wait:
        wait_for(lambda: fetch_database(conn, namespace, args.database), lambda body: body is None,
                 parse_timeout(args.timeout), f"{args.database} to be deleted", db_state)
        print(f"odoodatabase.odoo.dbmanager.io/{args.database} deleted")
    return 0


# ---- support -------------------------------------------------------------------------------------
def cmd_support(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    stamp = now().strftime("%Y%m%d-%H%M%S")
    top = f"odoo-support-{namespace}-{args.database}-{stamp}"
    output = Path(args.output or f"{top}.tar.gz")
    bundle = collect_bundle(conn, namespace, args.database)
    write_bundle(bundle, output, top)
    for problem in bundle.problems:
        print(f"note: not collected: {problem}", file=sys.stderr)
    print(f"{output}: support bundle for {namespace}/{args.database} ({len(bundle.files)} files; start with "
          "summary.md and describe the problem there). Secrets are never read; check the files before sending.")
    return 0


# ---- restore -------------------------------------------------------------------------------------
def restore_storage(args: argparse.Namespace, source: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None,
                                                                                         Storage]:
    """The storage to upload to: --pvc / --s3-…, else the source database's backup storage, else the default."""
    explicit = storage_from_args(args, source or {})
    return explicit, parse_storage(explicit, Settings.from_env())


def restored_or_failed(obj: dict[str, Any] | None) -> bool:
    if obj is None:
        raise PluginError("the OdooDatabase disappeared while waiting")
    ready = condition(obj, "Ready")
    if condition(obj, "Stalled").get("status") == "True":
        raise PluginError(f"the restore stopped: {ready.get('reason')}: {one_line(ready.get('message'))}")
    return database_ready(obj)


def cmd_restore(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    if not args.file and not args.from_database:
        raise PluginError("give --file PATH (a local Odoo ZIP or dump) or --from-database SRC (its latest backup)")
    if args.file and (args.backup or args.artifact):
        raise PluginError("--backup and --artifact choose a database's backup; with --file, the file is restored")
    if fetch_database(conn, namespace, args.new) is not None:
        raise PluginError(f'OdooDatabase "{args.new}" in namespace "{namespace}" already exists')
    source = get_database(conn, namespace, args.from_database) if args.from_database else None
    src_spec, src_status = (source or {}).get("spec") or {}, (source or {}).get("status") or {}
    spec: dict[str, Any] = {}
    restore_from: dict[str, Any] = {"identity": args.identity, "neutralize": bool(args.neutralize)}
    fmt = version = None
    if args.file:
        local = Path(args.file)
        fmt, version = upload.local_backup_facts(local)
    version = args.version or src_status.get("version") or src_spec.get("version") or version
    if not version or not VERSION_RE.fullmatch(version):
        raise PluginError("give --version (e.g. 17.0): the file does not say which Odoo made it"
                          if not version else f"--version {version!r} is not an Odoo version such as 17.0")
    spec["version"] = version
    for key in ("server", "image"):
        if src_spec.get(key) or (key == "server" and src_status.get("server")):
            spec[key] = src_spec.get(key) or src_status.get(key)
    if args.file:
        explicit, storage = restore_storage(args, source)
        stamp = now().strftime("%Y%m%dT%H%M%SZ")
        path = f"{upload.UPLOADS}/{args.new}-{stamp}.{fmt}"
        print(f"uploading {args.file} ({human_size(local.stat().st_size)}, {fmt}) to {storage.describe()} as {path}",
              file=sys.stderr)
        if storage.s3_bucket:
            sent = upload.upload_to_s3(conn, namespace, storage, local, path)
        else:
            sent = upload.upload_to_pvc(conn, namespace, storage, local, path,
                                        args.image or Settings.from_env().operator_image)
        restore_from.update({"file": path, "sha256": sent["sha256"]})
        if explicit:
            restore_from["storage"] = explicit
        what = f"{args.file} (uploaded to {path}, sha256 {sent['sha256'][:12]}…)"
    else:
        restore_from["backup"] = args.backup or f"{args.from_database}-daily"
        if args.artifact:
            restore_from["artifact"] = args.artifact
        what = f"DatabaseBackup {restore_from['backup']}, artifact {args.artifact or 'the newest'}"
    spec["restoreFrom"] = restore_from
    body = {"apiVersion": API_VERSION, "kind": "OdooDatabase",
            "metadata": {"name": args.new, "namespace": namespace}, "spec": spec}
    try:
        create(conn, body, f'OdooDatabase "{args.new}" in namespace "{namespace}"')
    except (KubeError, PluginError):
        if args.file:
            print(f"note: the upload stays at {restore_from['file']} on {storage.describe()}; spec.restoreFrom.file "
                  "can name it", file=sys.stderr)
        raise
    identity = "keeping its identity (moved)" if args.identity == "keep" else "with a fresh identity (copied)"
    print(f"odoodatabase.odoo.dbmanager.io/{args.new} created in namespace {namespace}: Odoo {version}, restored from "
          f"{what}, {identity}" + (", neutralized" if args.neutralize else ""))
    if args.wait:
        wait_for(lambda: fetch_database(conn, namespace, args.new), restored_or_failed, parse_timeout(args.timeout),
                 f"{args.new} to be Ready", db_state)
        final = fetch_database(conn, namespace, args.new) or {}
        print(f"{args.new} is Ready: {(final.get('status') or {}).get('url') or ''}".rstrip())
    return 0


# ---- download ------------------------------------------------------------------------------------
def cmd_download(args: argparse.Namespace) -> int:
    conn = Connection(args)
    kube = conn.kube
    namespace = conn.namespace
    body, artifact = download.find_artifact(kube, namespace, args.database, args.backup, args.artifact)
    location = str(artifact.get("location") or "")
    target = Path(args.output or Path(location).name or f"{args.database}-{artifact['id']}.zip")
    if location.startswith("s3://"):
        storage = download.s3_storage(kube, namespace, body)
        url = storage.presigned_url(artifact["id"], args.seconds)
        if args.url:
            print(url)
            return 0
        size = download.copy_verified(download.read_url(url), target, artifact.get("sha256", ""))
    else:
        if args.url:
            raise PluginError("--url needs S3 storage; this backup is on a PVC")
        claim = download.pvc_claim(body)
        path = "/backups/" + location.split("/backups/", 1)[-1] if "/backups/" in location else location
        kubectl = conn.kubectl()
        with download.reader_pod(namespace, claim, args.image or Settings.from_env().operator_image, kubectl) as pod:
            size = download.copy_verified(download.read_from_pod(namespace, pod, path, kubectl), target,
                                          artifact.get("sha256", ""))
    print(f"{target} ({size} bytes, sha256 verified)", file=sys.stderr)
    return 0
