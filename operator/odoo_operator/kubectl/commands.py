"""`kubectl odoo …`: Odoo's database manager on the command line (installed as `kubectl-odoo`).

The commands mirror Odoo Online's "My Databases" page, on top of the OdooDatabase, DatabaseBackup and
DomainMapping objects the operator reconciles:

  list       the databases, with tags, URL, size, expiry and last backup (`-A`: every namespace you may read)
  status     one database in plain words: phase, conditions, domains, backups, recent Events
  duplicate  an exact copy (`spec.duplicateFrom`), optionally neutralized for testing; it expires (15 days)
  rename     change the PostgreSQL database name (`spec.databaseName`); the filestore and URL follow
  backup     one backup now (a one-shot DatabaseBackup)
  download   a backup ZIP to your disk (S3: a short-lived presigned URL; PVC: a short-lived reader Pod)
  restore    a new database from a local Odoo ZIP or dump (uploaded first), or from another database's backup
  delete     delete a database after you typed its name (deletionPolicy and subscription protection apply)
  support    a support bundle (tar.gz) pre-filled with the database's details; Secrets are never read

Everything goes through the Kubernetes API with your own credentials (kubeconfig, `--context`, `--as`):
the plugin can do nothing your RBAC does not allow. Exit code 0 on success, 1 on an error (one line on
stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import datetime
import functools
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from odoo_operator import API_VERSION, specs
from odoo_operator.api.labels import DATABASE_LABEL, MANAGED_BY_LABEL
from odoo_operator.api.model import (
    TAG_LABEL_PREFIX,
    TAG_RE,
    VERSION_RE,
    SpecError,
    Storage,
    check_database_name,
    parse_database_backup,
    parse_duration,
    parse_storage,
)
from odoo_operator.backupjob import program as backup
from odoo_operator.config import Settings
from odoo_operator.kube import Kube, KubeError

CHUNK = 1 << 20
PLUGIN = "kubectl-odoo"
GROUP_PATH = f"/apis/{API_VERSION}"
REDACTED = "<redacted>"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class PluginError(Exception):
    pass


# ---- connection ----------------------------------------------------------------------------------
class Connection:
    """The API client for the chosen kubeconfig/context/impersonation, and the matching kubectl command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.kubeconfig: str | None = getattr(args, "kubeconfig", None)
        self.context: str | None = getattr(args, "context", None)
        self.as_user: str | None = getattr(args, "as_user", None)
        self.as_group: str | None = getattr(args, "as_group", None)
        self._explicit_namespace: str | None = getattr(args, "namespace", None)
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(config_file=self.kubeconfig, context=self.context,
                                               client_configuration=configuration)
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise PluginError(f"cannot load the kubeconfig: {exc}") from None
        api = kubernetes.client.ApiClient(configuration)
        if self.as_user:
            api.set_default_header("Impersonate-User", self.as_user)
        if self.as_group:
            if not self.as_user:
                raise PluginError("--as-group needs --as")
            api.set_default_header("Impersonate-Group", self.as_group)
        self.kube = Kube(api)

    def contexts(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            contexts, active = kubernetes.config.list_kube_config_contexts(config_file=self.kubeconfig)
        except Exception:
            return [], {}
        if self.context:
            active = next((c for c in contexts if c.get("name") == self.context), active)
        return list(contexts or []), dict(active or {})

    @property
    def namespace(self) -> str:
        if self._explicit_namespace:
            return self._explicit_namespace
        _, active = self.contexts()
        return str((active.get("context") or {}).get("namespace") or "default")

    def kubectl(self) -> list[str]:
        command = [shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")]
        for flag, value in (("--kubeconfig", self.kubeconfig), ("--context", self.context),
                            ("--as", self.as_user), ("--as-group", self.as_group)):
            if value:
                command.append(f"{flag}={value}")
        return command

    # raw requests, for what Kube's helpers do not cover (query parameters, other resources)
    def call(self, method: str, path: str, query: Iterable[tuple[str, str]] = (), body: Any = None,
             content_type: str = "application/json") -> dict[str, Any]:
        return self.kube._call(method, path, body=body, query=list(query), content_type=content_type)

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.call("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def items(self, path: str, label_selector: str | None = None,
              field_selector: str | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        query += [("fieldSelector", field_selector)] if field_selector else []
        return list(self.call("GET", path, query).get("items") or [])


def odb_path(namespace: str | None, name: str | None = None, plural: str = "odoodatabases") -> str:
    path = f"{GROUP_PATH}/namespaces/{namespace}/{plural}" if namespace else f"{GROUP_PATH}/{plural}"
    return f"{path}/{name}" if name else path


def get_database(conn: Connection, namespace: str, name: str) -> dict[str, Any]:
    body = conn.get(odb_path(namespace, name))
    if body is None:
        raise PluginError(f'OdooDatabase "{name}" not found in namespace "{namespace}"')
    return body


# ---- formatting ----------------------------------------------------------------------------------
def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def human_delta(seconds: float) -> str:
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours and days < 10 else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes and hours < 10 else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def ago(text: str | None) -> str:
    moment = parse_time(text)
    if moment is None:
        return "-"
    delta = (now() - moment).total_seconds()
    return f"{human_delta(delta)} ago" if delta >= 0 else f"in {human_delta(delta)}"


def expires(text: str | None) -> str:
    moment = parse_time(text)
    if moment is None:
        return "-"
    delta = (moment - now()).total_seconds()
    return f"in {human_delta(delta)}" if delta > 0 else "expired"


def human_size(value: Any) -> str:
    if value in (None, ""):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["   ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def conditions_of(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in conditions_of(obj) if c.get("type") == type_), {})


def one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def strip_noise(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What `kubectl get -o yaml` shows: no managedFields."""
    body = json.loads(json.dumps(obj))
    (body.get("metadata") or {}).pop("managedFields", None)
    return body


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)


def parse_timeout(text: str) -> float:
    if re.fullmatch(r"\d+", text or ""):
        return float(text)
    try:
        return parse_duration(text, "--timeout").total_seconds()
    except SpecError as exc:
        raise PluginError(str(exc)) from None


def wait_for(fetch: Callable[[], dict[str, Any] | None], done: Callable[[dict[str, Any] | None], bool],
             timeout: float, what: str, describe: Callable[[dict[str, Any] | None], str]) -> dict[str, Any] | None:
    """Poll until `done` (which raises PluginError on a failure that waiting cannot fix)."""
    deadline = time.monotonic() + timeout
    while True:
        obj = fetch()
        if done(obj):
            return obj
        if time.monotonic() >= deadline:
            raise PluginError(f"timed out after {int(timeout)}s waiting for {what} ({describe(obj)})")
        time.sleep(2)


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
        return sorted(n["metadata"]["name"] for n in conn.items("/api/v1/namespaces")), True
    except KubeError as exc:
        if exc.status not in (401, 403):
            raise
    names = [*extra, *kubeconfig_namespaces(conn)]
    # OpenShift lists exactly the projects a user may see; elsewhere this API does not exist (404).
    with contextlib.suppress(KubeError):
        names += [p["metadata"]["name"] for p in conn.items("/apis/project.openshift.io/v1/projects")]
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
        return conn.items(odb_path(None), selector), []
    except KubeError as exc:
        if exc.status not in (401, 403):
            raise
    namespaces, everything = candidate_namespaces(conn, extra)

    def one(namespace: str) -> tuple[str, list[dict[str, Any]] | None]:
        try:
            return namespace, conn.items(odb_path(namespace), selector)
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
        row += [status.get("databaseName") or spec.get("databaseName") or meta["name"],
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
        items = conn.items(odb_path(conn.namespace), selector)
    items.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output in ("json", "yaml"):
        listing = {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [strip_noise(o) for o in items]}
        print(json.dumps(listing, indent=2) if args.output == "json" else dump_yaml(listing), end="\n")
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
def refers_to(obj: Mapping[str, Any], database: str) -> bool:
    return ((obj.get("spec") or {}).get("databaseRef") or {}).get("name") == database


def related(conn: Connection, namespace: str, plural: str, database: str) -> list[dict[str, Any]]:
    """DomainMappings / DatabaseBackups whose spec.databaseRef.name is the database (no server-side
    field selector exists for custom resources' spec fields, so: list the namespace's and filter)."""
    found = [o for o in conn.items(odb_path(namespace, plural=plural)) if refers_to(o, database)]
    return sorted(found, key=lambda o: o["metadata"]["name"])


def event_time(event: Mapping[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


def object_events(conn: Connection, namespace: str, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    meta = obj["metadata"]
    selector = f"involvedObject.uid={meta['uid']}" if meta.get("uid") else \
        f"involvedObject.kind={obj.get('kind')},involvedObject.name={meta['name']}"
    return sorted(conn.items(f"/api/v1/namespaces/{namespace}/events", field_selector=selector), key=event_time)


def events_table(events: list[dict[str, Any]], with_object: bool = False) -> str:
    rows = []
    for event in events:
        involved = event.get("involvedObject") or {}
        count = int(event.get("count") or 1)
        row = [ago(event_time(event)), event.get("type") or "-", event.get("reason") or "-"]
        if with_object:
            row.append(f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}")
        row.append(one_line(event.get("message")) + (f" (x{count})" if count > 1 else ""))
        rows.append(row)
    return table(rows, ["LAST SEEN", "TYPE", "REASON", *(["OBJECT"] if with_object else []), "MESSAGE"])


def deletion_note(spec: Mapping[str, Any]) -> str:
    policy = spec.get("deletionPolicy") or "Delete"
    return {
        "Delete": "Delete: deleting drops the PostgreSQL database and its filestore at once",
        "Retain": "Retain: deleting keeps the PostgreSQL database and only forgets it",
        "Snapshot": "Snapshot: deleting takes a final backup first, then drops the database",
    }.get(policy, policy)


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def cmd_status(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    obj = get_database(conn, namespace, args.database)
    if args.output in ("json", "yaml"):
        body = strip_noise(obj)
        print(json.dumps(body, indent=2) if args.output == "json" else dump_yaml(body), end="\n")
        return 0
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    ready = condition(obj, "Ready")
    lines = [
        ("Name", f"{meta['name']}   (namespace {namespace})"),
        ("Phase", status.get("phase") or "Pending"),
        ("Ready", " ".join(p for p in (ready.get("status", "Unknown"), ready.get("reason")) if p)
         + (f": {one_line(ready.get('message'))}" if ready.get("message") else "")),
        ("URL", status.get("url") or "-"),
        ("Database", status.get("databaseName") or spec.get("databaseName") or meta["name"]),
        ("Server", status.get("server") or spec.get("server") or "(the default PostgresServer)"),
        ("Version", status.get("version") or spec.get("version") or "-"),
        ("Size", human_size(status.get("sizeBytes"))
         + (f" (measured {ago(status.get('sizeUpdatedAt'))})" if status.get("sizeUpdatedAt") else "")),
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
    if status.get("step"):
        lines.append(("Step", status["step"]))
    if status.get("availableUpgrade"):
        lines.append(("Upgrade", f"{status['availableUpgrade']} is available"))
    if (spec.get("app") or {}).get("suspended"):
        lines.append(("App", "suspended (scaled to 0)"))
    if spec.get("subscription"):
        lines.append(("Subscription", f"{spec['subscription'].get('code')} (deleting is refused while set)"))
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
        domains = related(conn, namespace, "domainmappings", meta["name"])
        out.append(indent(table([[d["spec"].get("domain", ""), condition(d, "Ready").get("status", "Unknown"),
                                   condition(d, "Ready").get("reason") or "-",
                                   (d.get("status") or {}).get("url") or "-", d["metadata"]["name"]]
                                  for d in domains], ["DOMAIN", "READY", "REASON", "URL", "DOMAINMAPPING"]))
                   if domains else "  none (add one with a DomainMapping)")
    except KubeError as exc:
        out.append(f"  cannot list DomainMappings: {exc.message}")

    out += ["", "Backups:"]
    try:
        backups = related(conn, namespace, "databasebackups", meta["name"])
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


# ---- duplicate, rename, backup, delete -----------------------------------------------------------
def create(conn: Connection, path: str, body: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        return conn.call("POST", path, body=dict(body), query=[("fieldManager", PLUGIN)])
    except KubeError as exc:
        if exc.status == 409:
            raise PluginError(f"{what} already exists") from None
        raise


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
    created = create(conn, odb_path(namespace), body, f'OdooDatabase "{args.new}" in namespace "{namespace}"')
    expiry = args.expires_after or "15d (the operator's default for duplicates)"
    kind = "a copy neutralized for testing (mail, crons, payments … off)" if args.for_testing else "an exact copy"
    print(f"odoodatabase.odoo.dbmanager.io/{args.new} created in namespace {namespace}: {kind} of "
          f"{args.database}, version {spec['version']}" + (f", server {server}" if server else "")
          + f"; expires after {expiry}.")
    print(f"note: {args.database}'s open sessions are terminated while it is copied.", file=sys.stderr)
    if args.wait:
        wait_for(lambda: conn.get(odb_path(namespace, args.new)), database_ready, parse_timeout(args.timeout),
                 f"{args.new} to be Ready", db_state)
        final = conn.get(odb_path(namespace, args.new)) or created
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
    current = (obj.get("spec") or {}).get("databaseName") or (obj.get("status") or {}).get("databaseName") \
        or obj["metadata"]["name"]
    if current == args.new_name and (obj.get("spec") or {}).get("databaseName", current) == args.new_name:
        print(f"{args.database}: the database is already named {args.new_name}; nothing to do.")
        return 0
    patched = conn.call("PATCH", odb_path(namespace, args.database),
                        body={"spec": {"databaseName": args.new_name}},
                        query=[("fieldManager", PLUGIN)], content_type="application/merge-patch+json")
    print(f"odoodatabase.odoo.dbmanager.io/{args.database} patched: spec.databaseName {current} -> "
          f"{args.new_name} (the database, its filestore and its URL are renamed; open sessions are terminated)")
    if args.wait:
        generation = int(patched["metadata"].get("generation") or 0)

        def renamed(body: dict[str, Any] | None) -> bool:
            if body is None or int(body["metadata"].get("generation") or 0) > generation:
                raise PluginError(f"{args.database} was deleted or changed again while waiting")
            return database_ready(body) and (body.get("status") or {}).get("databaseName") == args.new_name

        final = wait_for(lambda: conn.get(odb_path(namespace, args.database)), renamed,
                         parse_timeout(args.timeout), f"{args.database} to be renamed", db_state) or {}
        print(f"{args.database} renamed: {(final.get('status') or {}).get('url') or args.new_name}")
    return 0


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
    create(conn, odb_path(namespace, plural="databasebackups"), body,
           f'DatabaseBackup "{name}" in namespace "{namespace}"')
    where = ("s3://" + storage["s3"]["bucket"]) if storage and "s3" in storage else \
        (f"PVC {storage['pvc']['claimName']}" if storage else "the operator's default storage")
    print(f"databasebackup.odoo.dbmanager.io/{name} created in namespace {namespace}: one {args.format} backup of "
          f"{args.database} now, to {where}")
    download = f"kubectl odoo download {args.database} -n {namespace} --backup {name}"
    if args.wait:
        final = wait_for(lambda: conn.get(odb_path(namespace, name, "databasebackups")), backup_done,
                         parse_timeout(args.timeout), f"backup {name}", backup_state) or {}
        artifacts = (final.get("status") or {}).get("artifacts") or []
        newest = artifacts[0] if artifacts else {}
        print(f"backup {newest.get('id', '')} taken ({human_size(newest.get('sizeBytes'))}); download it with:")
    else:
        print(f"follow it with `kubectl get odbb {name} -n {namespace} -w`; once it Succeeded, download it with:")
    print(f"  {download}")
    return 0


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


def cmd_delete(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    obj = get_database(conn, namespace, args.database)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    path = odb_path(namespace, args.database)
    # Ask the API server first (RBAC, the subscription admission policy) so nobody types a name for nothing.
    try:
        # (in the body: with a body, the API server ignores DeleteOptions given as query parameters)
        conn.call("DELETE", path, body={"propagationPolicy": "Background", "dryRun": ["All"]})
    except KubeError as exc:
        if exc.status == 403 and "ValidatingAdmissionPolicy" in exc.message:
            raise PluginError(f"refused: {policy_message(exc)}") from None
        raise
    pg_name = status.get("databaseName") or spec.get("databaseName") or args.database
    print(f"Deleting OdooDatabase {namespace}/{args.database} (PostgreSQL database {pg_name!r}"
          + (f", {status['url']}" if status.get("url") else "") + ").", file=sys.stderr)
    print(f"deletionPolicy {deletion_note(spec)}"
          + ("; this cannot be undone." if (spec.get("deletionPolicy") or "Delete") == "Delete" else "."),
          file=sys.stderr)
    typed = args.confirm if args.confirm is not None else read_confirmation(args.database)
    if typed != args.database:
        raise PluginError(f"{typed!r} does not match {args.database!r}; nothing was deleted")
    try:
        conn.call("DELETE", path, body={"propagationPolicy": "Background"})
    except KubeError as exc:
        if exc.status == 403 and "ValidatingAdmissionPolicy" in exc.message:
            raise PluginError(f"refused: {policy_message(exc)}") from None
        raise
    print(f"odoodatabase.odoo.dbmanager.io/{args.database} deletion requested")
    if args.wait:
        wait_for(lambda: conn.get(path), lambda body: body is None, parse_timeout(args.timeout),
                 f"{args.database} to be deleted", db_state)
        print(f"odoodatabase.odoo.dbmanager.io/{args.database} deleted")
    return 0


# ---- support bundle ------------------------------------------------------------------------------
# Names of fields, env vars and annotations whose values are treated as secret.
SECRET_NAME_RE = re.compile(r"(?i)(pass(wd|word)?|pwd|secret|token|credential|api[-_.]?key|access[-_.]?key|"
                            r"private[-_.]?key|[-_.]key$|^key[-_.]|cookie|bearer|auth(?!or))")
# Keys that hold a *reference* to a secret (a name), never the value itself.
REFERENCE_KEYS = frozenset({"key", "secretName"})
# user:password@ in a URL. The password is taken up to the line's last "@": unescaped "/", ":", "@" and
# spaces in it are redacted too (at worst more than the password is).
URL_CREDENTIALS_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^\r\n]*@")
# key = value, key: value, "key": "value", --key=value, ?key=value (the value: see _scrub_key_values).
KEY_VALUE_RE = re.compile(r"(?i)(?P<key>[\w.-]*(?:pass(?:wd|word)?|pwd|secret|token|api[-_]?key|access[-_]?key|"
                          r"private[-_]?key)[\w.-]*[\"']?[ \t]*[=:][ \t]*)(?P<value>[^\r\n]*)")
QUOTED_RE = re.compile(r"\"(?:\\.|[^\"\\\r\n])*\"|'(?:\\.|[^'\\\r\n])*'")
WORD_RE = re.compile(r"(?:\\.|[^\s\\])*")  # a shell word: up to unescaped whitespace
QUERY_VALUE_RE = re.compile(r"[^&#;\r\n]*")
BEARER_RE = re.compile(r"(?i)\b((?:bearer|basic)\s+)[\w.~+/=-]+")
# A private key (PEM: RSA, EC, OPENSSH, ENCRYPTED, PGP ...), its lines included; unterminated: to the end.
PEM_PRIVATE_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE[A-Z0-9 ]*|ENCRYPTED[A-Z0-9 ]*)-----.*?"
                            r"(?:-----END \1-----|\Z)", re.S)
# (path of the list, kind) of the children looked at, in an order where owners come before what they own.
CHILD_KINDS = (
    ("/apis/apps/v1/namespaces/{ns}/deployments", "Deployment"),
    ("/apis/batch/v1/namespaces/{ns}/cronjobs", "CronJob"),
    ("/apis/batch/v1/namespaces/{ns}/jobs", "Job"),
    ("/apis/apps/v1/namespaces/{ns}/replicasets", "ReplicaSet"),
    ("/api/v1/namespaces/{ns}/pods", "Pod"),
    ("/api/v1/namespaces/{ns}/services", "Service"),
    ("/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses", "Ingress"),
    ("/api/v1/namespaces/{ns}/persistentvolumeclaims", "PersistentVolumeClaim"),
    ("/api/v1/namespaces/{ns}/configmaps", "ConfigMap"),
)


def _scrub_key_values(text: str) -> str:
    """The value after a secret-looking key: a quoted string (escapes honoured) whatever it holds; an
    option's (--db_password=...) up to the next unescaped whitespace; a URL query's up to &, ; or #;
    anything else to the end of the line (config files and messages: spaces belong to the value)."""
    out, pos = [], 0
    while match := KEY_VALUE_RE.search(text, pos):
        key, value, start = match.group("key"), match.group("value"), match.start("value")
        before = text[match.start() - 1:match.start()]
        quoted = QUOTED_RE.match(value)
        if quoted:
            end, redacted = quoted.end(), value[0] + REDACTED + value[0]
        elif key.startswith("-"):
            end, redacted = len(WORD_RE.match(value)[0]), REDACTED  # type: ignore[index]
        elif before and before in "?&;":
            end, redacted = len(QUERY_VALUE_RE.match(value)[0]), REDACTED  # type: ignore[index]
        else:
            end, redacted = len(value), REDACTED
        out.append(text[pos:start] + (redacted if value else ""))
        pos = start + end if value else match.end()
    out.append(text[pos:])
    return "".join(out)


def scrub_text(text: str) -> str:
    text = PEM_PRIVATE_RE.sub(lambda m: f"-----BEGIN {m.group(1)}-----\n{REDACTED}\n-----END {m.group(1)}-----", text)
    text = URL_CREDENTIALS_RE.sub(rf"\1:{REDACTED}@", text)
    text = _scrub_key_values(text)
    return BEARER_RE.sub(rf"\1{REDACTED}", text)


def scrub(value: Any, key: str = "") -> Any:
    """A copy with every value that looks secret replaced (by the name of its field, env var or
    annotation, or by its shape: URL credentials, password=…, Bearer …). Never perfect: a secret stored
    under an innocent name in a plain env var cannot be recognised, hence Secrets are never read at all."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == LAST_APPLIED or k == "managedFields":
                continue
            if isinstance(v, str) and k not in REFERENCE_KEYS and SECRET_NAME_RE.search(str(k)):
                out[k] = REDACTED
            else:
                out[k] = scrub(v, str(k))
        # an env var, or any {name, value} pair: judged by its name
        if isinstance(out.get("name"), str) and "value" in out and SECRET_NAME_RE.search(out["name"]):
            out["value"] = REDACTED
        return out
    if isinstance(value, list):
        return [scrub(v, key) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def owned_by(obj: Mapping[str, Any], uids: set[str]) -> bool:
    return any(ref.get("uid") in uids for ref in obj["metadata"].get("ownerReferences") or [])


class Bundle:
    def __init__(self, conn: Connection, namespace: str, name: str) -> None:
        self.conn, self.namespace, self.name = conn, namespace, name
        self.files: dict[str, str] = {}
        self.problems: list[str] = []

    def attempt(self, what: str, fetch: Callable[[], Any], default: Any) -> Any:
        try:
            return fetch()
        except KubeError as exc:
            self.problems.append(f"{what}: {exc.status} {one_line(exc.message)}")
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self.problems.append(f"{what}: {exc}")
        return default

    def add(self, filename: str, obj: Any) -> None:
        self.files[filename] = dump_yaml(scrub(obj)) if not isinstance(obj, str) else scrub_text(obj)

    def children(self, db: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The database's objects: by the operator's label, or owned (transitively) by one of them."""
        uids = {db["metadata"]["uid"]}
        found: dict[str, list[dict[str, Any]]] = {}
        for template, kind in CHILD_KINDS:
            path = template.format(ns=self.namespace)
            items: list[dict[str, Any]] = self.attempt(f"list {kind}s", functools.partial(self.conn.items, path), [])
            mine = [o for o in items if (o["metadata"].get("labels") or {}).get(DATABASE_LABEL) == self.name
                    or owned_by(o, uids)]
            uids |= {o["metadata"]["uid"] for o in mine}
            if mine:
                found[kind] = [{"apiVersion": o.get("apiVersion"), "kind": kind, **o} for o in mine]
        return found

    def versions(self, children: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
        from importlib import metadata

        versions: dict[str, Any] = {}
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions["kubectl-odoo"] = metadata.version("odoo-db-operator")
        server = self.attempt("the API server's version", lambda: self.conn.call("GET", "/version"), {})
        if server:
            versions["kubernetes server"] = server.get("gitVersion")
        client = self.attempt("kubectl's version", lambda: subprocess.run(
            [self.conn.kubectl()[0], "version", "--client", "-o", "json"], capture_output=True, text=True,
            timeout=15, check=True).stdout, "")
        if client:
            versions["kubectl client"] = (json.loads(client).get("clientVersion") or {}).get("gitVersion")
        operators = self.attempt("the operator's Deployment (cluster-wide list)", lambda: self.conn.items(
            "/apis/apps/v1/deployments", label_selector="app.kubernetes.io/name=odoo-db-operator"), [])
        images = sorted({str(c.get("image")) for d in operators
                         for c in d["spec"]["template"]["spec"].get("containers") or []})
        if images:
            versions["operator image (its Deployment)"] = images
        backup_images = sorted({str(c.get("image")) for kind in ("CronJob", "Job") for o in children.get(kind, [])
                                if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
                                in ("backup", "final-backup", "restore")
                                for c in pod_containers(o)})
        if backup_images:
            versions["operator image (its backup/restore Jobs)"] = backup_images
        if not images and not backup_images:
            versions["operator image"] = "not found (no permission to list Deployments cluster-wide, no backup Job)"
        return versions


def pod_containers(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"].get("spec") or {}
    if "template" in spec:
        spec = spec["template"].get("spec") or {}
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def md_table(rows: list[list[Any]], header: list[str]) -> str:
    def cell(value: Any) -> str:
        return one_line(value).replace("|", "\\|") or "-"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_markdown(db: Mapping[str, Any], children: Mapping[str, list[dict[str, Any]]],
                     backups: list[dict[str, Any]], domains: list[dict[str, Any]], events: list[dict[str, Any]],
                     versions: Mapping[str, Any], files: list[str], problems: list[str]) -> str:
    meta, spec, status = db["metadata"], db.get("spec") or {}, db.get("status") or {}
    ready = condition(db, "Ready")
    facts = [
        ["OdooDatabase", f"{meta['namespace']}/{meta['name']}"],
        ["Phase", status.get("phase") or "Pending"],
        ["Ready", f"{ready.get('status', 'Unknown')} {ready.get('reason', '')}: {ready.get('message', '')}"],
        ["URL", status.get("url")],
        ["PostgreSQL database", status.get("databaseName") or spec.get("databaseName") or meta["name"]],
        ["Server", status.get("server") or spec.get("server")],
        ["Odoo version", status.get("version") or spec.get("version")],
        ["Image", spec.get("image") or "(the operator's version table)"],
        ["Size", human_size(status.get("sizeBytes"))],
        ["Tags", ", ".join(spec.get("tags") or [])],
        ["Created", meta.get("creationTimestamp")],
        ["Expires", status.get("expiresAt") or spec.get("expiresAfter") or "never"],
        ["Last backup", status.get("lastBackup") or "none"],
        ["Source", status.get("source") or (spec.get("duplicateFrom") or {}).get("name")],
        ["Neutralized", status.get("neutralized")],
        ["Subscription", (spec.get("subscription") or {}).get("code")],
        ["Deletion policy", spec.get("deletionPolicy") or "Delete"],
        ["Generation / observed", f"{meta.get('generation')} / {status.get('observedGeneration')}"],
    ]
    pvcs = [[p["metadata"]["name"], ((p.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage"),
             ((p.get("status") or {}).get("capacity") or {}).get("storage"), (p.get("status") or {}).get("phase")]
            for p in children.get("PersistentVolumeClaim", [])]
    backup_rows = [[b["metadata"]["name"], (b.get("spec") or {}).get("schedule") or "one-shot",
                    (b.get("status") or {}).get("phase"), (b.get("status") or {}).get("lastSuccessfulTime"),
                    ", ".join(f"{a.get('id')} ({human_size(a.get('sizeBytes'))})"
                              for a in (b.get("status") or {}).get("artifacts") or [])]
                   for b in backups]
    sections = [
        f"# Support request: Odoo database {meta['name']} (namespace {meta['namespace']})",
        "",
        "<!-- Describe the problem: what you did, what you expected, what happened instead, since when. -->",
        "",
        "**Problem:** _(please describe)_",
        "",
        f"Collected {now().strftime('%Y-%m-%d %H:%M:%S UTC')} by `kubectl odoo support`. Secrets are never read; "
        f"values that look secret (passwords, tokens, keys, credentials in URLs) are replaced by `{REDACTED}`, "
        f"and `{LAST_APPLIED}` annotations are left out. Check the files before sending them.",
        "",
        "## Database",
        md_table(facts, ["field", "value"]),
        "",
        "## Conditions",
        md_table([[c.get("type"), c.get("status"), c.get("reason"), c.get("lastTransitionTime"), c.get("message")]
                  for c in conditions_of(db)], ["type", "status", "reason", "since", "message"]),
        "",
        "## Objects",
        md_table([[kind, o["metadata"]["name"], o["metadata"].get("creationTimestamp")]
                  for kind, items in children.items() for o in items], ["kind", "name", "created"]),
        "",
        "## Storage",
        md_table(pvcs, ["PVC", "requested", "capacity", "phase"]),
        "",
        "## Backups",
        md_table(backup_rows, ["DatabaseBackup", "schedule", "phase", "last success", "artifacts"]),
        "",
        "## Domains",
        md_table([[d["spec"].get("domain"), condition(d, "Ready").get("status"), condition(d, "Ready").get("reason"),
                   (d.get("status") or {}).get("url")] for d in domains], ["domain", "ready", "reason", "url"]),
        "",
        "## Recent events",
        md_table([[event_time(e), e.get("type"), e.get("reason"),
                   f"{(e.get('involvedObject') or {}).get('kind')}/{(e.get('involvedObject') or {}).get('name')}",
                   e.get("message")] for e in events[-50:]], ["time", "type", "reason", "object", "message"]),
        "",
        "## Versions",
        md_table([[k, ", ".join(v) if isinstance(v, list) else v] for k, v in versions.items()],
                 ["component", "version"]),
        "",
        "## Files",
        *[f"- `{name}`" for name in files],
    ]
    if problems:
        sections += ["", "## Not collected", *[f"- {p}" for p in problems]]
    return "\n".join(sections) + "\n"


def collect_bundle(conn: Connection, namespace: str, name: str) -> Bundle:
    bundle = Bundle(conn, namespace, name)
    db = get_database(conn, namespace, name)
    db = {"apiVersion": API_VERSION, "kind": "OdooDatabase", **db}
    children = bundle.children(db)
    backups = bundle.attempt("list DatabaseBackups", lambda: related(conn, namespace, "databasebackups", name), [])
    domains = bundle.attempt("list DomainMappings", lambda: related(conn, namespace, "domainmappings", name), [])
    uids = {db["metadata"]["uid"]} | {o["metadata"]["uid"] for items in children.values() for o in items} \
        | {o["metadata"]["uid"] for o in backups + domains}
    events = bundle.attempt("list Events", lambda: conn.items(f"/api/v1/namespaces/{namespace}/events"), [])
    events = sorted((e for e in events if (e.get("involvedObject") or {}).get("uid") in uids), key=event_time)[-200:]
    server_name = (db.get("status") or {}).get("server") or (db.get("spec") or {}).get("server")
    server = bundle.attempt(f"get PostgresServer {server_name}", lambda: conn.get(
        f"{GROUP_PATH}/postgresservers/{server_name}"), None) if server_name else None
    versions = bundle.versions(children)

    bundle.add("odoodatabase.yaml", db)
    for kind, items in children.items():
        bundle.add(f"objects/{kind.lower()}s.yaml", {"apiVersion": "v1", "kind": "List", "items": items})
    bundle.add("databasebackups.yaml", {"apiVersion": "v1", "kind": "List", "items": backups})
    bundle.add("domainmappings.yaml", {"apiVersion": "v1", "kind": "List", "items": domains})
    bundle.add("events.yaml", {"apiVersion": "v1", "kind": "List", "items": events})
    if server:
        bundle.add("postgresserver.yaml", server)
    bundle.add("versions.yaml", versions)
    if bundle.problems:
        bundle.add("not-collected.txt", "\n".join(bundle.problems) + "\n")
    files = ["summary.md", *sorted(bundle.files)]
    summary = summary_markdown(db, children, backups, domains, events, versions, files, bundle.problems)
    bundle.files["summary.md"] = scrub_text(summary)
    return bundle


def write_bundle(bundle: Bundle, output: Path, top: str) -> None:
    if output.name.endswith((".tar.gz", ".tgz")):
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        with tarfile.open(partial, "w:gz") as archive:
            for name in ["summary.md", *sorted(n for n in bundle.files if n != "summary.md")]:
                data = bundle.files[name].encode()
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                archive.addfile(info, io.BytesIO(data))
        partial.replace(output)
    else:
        for name, text in bundle.files.items():
            path = output / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


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


# ---- download ------------------------------------------------------------------------------------
def find_artifact(kube: Kube, namespace: str, database: str, backup_name: str | None,
                  artifact_id: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    name = backup_name or f"{database}-daily"
    body = kube.get(API_VERSION, "DatabaseBackup", name, namespace)
    if body is None:
        raise PluginError(f"DatabaseBackup {namespace}/{name} not found (use --backup NAME)")
    artifacts = (body.get("status") or {}).get("artifacts") or []
    if artifact_id:
        chosen = next((a for a in artifacts if a.get("id") == artifact_id), None)
    else:
        chosen = max(artifacts, key=lambda a: a.get("time") or "") if artifacts else None
    if chosen is None:
        ids = ", ".join(a.get("id", "?") for a in artifacts) or "none yet"
        wanted = f"artifact {artifact_id}" if artifact_id else "artifact"
        raise PluginError(f"no {wanted} in {namespace}/{name} (artifacts: {ids})")
    return body, chosen


def _s3_credentials(kube: Kube, namespace: str, storage: Storage) -> None:
    """The bucket's keys, read from its Secret with your own rights, into this process's environment only."""
    if storage.s3_credentials_secret:
        secret = kube.get("v1", "Secret", storage.s3_credentials_secret, namespace)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            value = ((secret or {}).get("data") or {}).get(key)
            if not value:
                raise PluginError(f"Secret {namespace}/{storage.s3_credentials_secret} lacks {key}")
            os.environ[key] = base64.b64decode(value).decode()


def _s3_storage(kube: Kube, namespace: str, body: dict[str, Any]) -> backup.Storage:
    parsed = parse_database_backup(body, Settings.from_env())
    storage = parsed.storage
    _s3_credentials(kube, namespace, storage)
    return backup.open_storage(storage.url(namespace, parsed.database), s3_endpoint=storage.s3_endpoint,
                               s3_region=storage.s3_region)


def _copy_verified(chunks: Iterator[bytes], target: Path, sha256: str) -> int:
    digest = hashlib.sha256()
    partial = target.with_name(target.name + ".partial")
    size = 0
    with open(partial, "wb") as out:
        for chunk in chunks:
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    if sha256 and digest.hexdigest() != sha256:
        partial.unlink()
        raise PluginError(f"the download does not match the recorded sha256 ({digest.hexdigest()} != {sha256})")
    partial.replace(target)
    return size


def _read_url(url: str) -> Iterator[bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        while chunk := response.read(CHUNK):
            yield chunk


@contextlib.contextmanager
def _reader_pod(namespace: str, claim: str, image: str, kubectl: list[str]) -> Iterator[str]:
    name = f"odoo-download-{uuid.uuid4().hex[:8]}"
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "kubectl-odoo"}},
        "spec": {
            "restartPolicy": "Never", "activeDeadlineSeconds": 900,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 65532},
            "containers": [{"name": "reader", "image": image, "command": ["sleep", "600"],
                            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [{"name": "backups", "mountPath": "/backups", "readOnly": True}]}],
            "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
        },
    }
    with _short_lived_pod(pod, kubectl) as pod_name:
        yield pod_name


@contextlib.contextmanager
def _short_lived_pod(pod: Mapping[str, Any], kubectl: list[str]) -> Iterator[str]:
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(pod), text=True, check=True,
                   capture_output=True)
    try:
        subprocess.run([*kubectl, "wait", "-n", namespace, "--for=condition=Ready", f"pod/{name}", "--timeout=120s"],
                       check=True, capture_output=True)
        yield name
    finally:
        subprocess.run([*kubectl, "delete", "pod", "-n", namespace, name, "--wait=false"], capture_output=True)


def _read_from_pod(namespace: str, pod: str, path: str, kubectl: list[str]) -> Iterator[bytes]:
    proc = subprocess.Popen([*kubectl, "exec", "-n", namespace, pod, "--", "cat", path], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    while chunk := proc.stdout.read(CHUNK):
        yield chunk
    if proc.wait() != 0:
        raise PluginError(f"reading {path} from Pod {pod} failed")


# ---- restore ---------------------------------------------------------------------------------------
UPLOADS = "_uploads"  # '_' cannot start a namespace's name: never the folder of a database's backups


def uploader_pod(namespace: str, claim: str, image: str) -> dict[str, Any]:
    """A Pod of the operator's image with the backup volume writable at /backups, idle until it is sent a
    file (`kubectl exec -i … receive`); it runs as the backup Jobs do, so they can read what it writes."""
    name = f"odoo-upload-{uuid.uuid4().hex[:8]}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": PLUGIN}},
        "spec": {
            "restartPolicy": "Never", "activeDeadlineSeconds": 3600, "automountServiceAccountToken": False,
            "securityContext": specs.app.POD_SECURITY_CONTEXT,
            "containers": [{"name": "receiver", "image": image, "command": ["sleep", "3600"],
                            "securityContext": {**specs.app.CONTAINER_SECURITY_CONTEXT, "readOnlyRootFilesystem": True},
                            "volumeMounts": [{"name": "backups", "mountPath": specs.backup.BACKUPS_MOUNT}]}],
            "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def receive_command(kubectl: list[str], namespace: str, pod: str, path: str, sha256: str) -> list[str]:
    """`kubectl exec -i` of the receiver: stdin is the file, written under the volume's root, checked
    against the sha256 computed here before any byte was sent."""
    return [*kubectl, "exec", "-i", "-n", namespace, pod, "-c", "receiver", "--", "python", "-m",
            "odoo_operator.backupjob", "receive", "--storage", f"file://{specs.backup.BACKUPS_MOUNT}",
            "--file", path, "--sha256", sha256]


def run_receiver(argv: list[str], source: Path) -> dict[str, Any]:
    """Streams `source` into the receiver's stdin (never read into memory here) and returns its JSON answer."""
    with open(source, "rb") as stdin:
        done = subprocess.run(argv, stdin=stdin, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if done.returncode != 0 or not answer.get("ok"):
        raise PluginError(f"the upload failed: {answer.get('error') or one_line(done.stderr[-500:]) or 'no answer'}")
    return dict(answer)


def upload_to_pvc(conn: Connection, namespace: str, storage: Storage, local: Path, path: str, image: str
                  ) -> dict[str, Any]:
    claim = storage.pvc_claim or ""
    settings = Settings.from_env()
    if conn.kube.get("v1", "PersistentVolumeClaim", claim, namespace) is None:
        if claim != settings.backup_pvc:
            raise PluginError(f"PersistentVolumeClaim {namespace}/{claim} does not exist")
        conn.kube.create(specs.backup.build_backup_pvc(namespace, settings))  # as the operator would
        print(f"created PersistentVolumeClaim {namespace}/{claim} for backups (owned by nothing)", file=sys.stderr)
    sha256 = backup.sha256_of_file(local)
    kubectl = conn.kubectl()
    with _short_lived_pod(uploader_pod(namespace, claim, image), kubectl) as pod:
        return run_receiver(receive_command(kubectl, namespace, pod, path, sha256), local)


def upload_to_s3(conn: Connection, namespace: str, storage: Storage, local: Path, path: str) -> dict[str, Any]:
    """Straight to the bucket with its own keys and the signing client: a multipart upload, each part's
    sha256 signed (S3 refuses a damaged part), invisible until complete."""
    _s3_credentials(conn.kube, namespace, storage)
    target = backup.open_storage(storage.root_url(), s3_endpoint=storage.s3_endpoint, s3_region=storage.s3_region)
    with open(local, "rb") as source:
        return backup.receive(target, path, source)


def local_backup_facts(local: Path) -> tuple[str, str | None]:
    """Its format (by content, as the restore Job tells it) and, for an Odoo ZIP, the Odoo version it was made by."""
    if not local.is_file():
        raise PluginError(f"{local}: no such file")
    with open(local, "rb") as handle:
        fmt = backup.detect_format(handle.read(4096), local.name)
    version = None
    if fmt == "zip":
        try:
            with zipfile.ZipFile(local) as archive:
                if "dump.sql" not in archive.namelist():
                    raise PluginError(f"{local} is a ZIP but not an Odoo backup: it has no dump.sql")
                if "manifest.json" in archive.namelist():
                    manifest = json.loads(archive.read("manifest.json"))
                    found = str(manifest.get("major_version") or "") if isinstance(manifest, dict) else ""
                    version = found if VERSION_RE.fullmatch(found) else None
        except (zipfile.BadZipFile, ValueError) as exc:
            raise PluginError(f"{local} is not a valid ZIP: {exc}") from None
    return fmt, version


def restore_storage(args: argparse.Namespace, source: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None,
                                                                                         Storage]:
    """The storage to upload to: --pvc / --s3-…, else the source database's backup storage, else the default."""
    explicit = storage_from_args(args, source or {})
    return explicit, parse_storage(explicit, Settings.from_env())


def cmd_restore(args: argparse.Namespace) -> int:
    conn = Connection(args)
    namespace = conn.namespace
    if not args.file and not args.from_database:
        raise PluginError("give --file PATH (a local Odoo ZIP or dump) or --from-database SRC (its latest backup)")
    if args.file and (args.backup or args.artifact):
        raise PluginError("--backup and --artifact choose a database's backup; with --file, the file is restored")
    if conn.get(odb_path(namespace, args.new)) is not None:
        raise PluginError(f'OdooDatabase "{args.new}" in namespace "{namespace}" already exists')
    source = get_database(conn, namespace, args.from_database) if args.from_database else None
    src_spec, src_status = (source or {}).get("spec") or {}, (source or {}).get("status") or {}
    spec: dict[str, Any] = {}
    restore_from: dict[str, Any] = {"identity": args.identity, "neutralize": bool(args.neutralize)}
    fmt = version = None
    if args.file:
        local = Path(args.file)
        fmt, version = local_backup_facts(local)
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
        path = f"{UPLOADS}/{args.new}-{stamp}.{fmt}"
        print(f"uploading {args.file} ({human_size(local.stat().st_size)}, {fmt}) to {storage.describe()} as {path}",
              file=sys.stderr)
        if storage.s3_bucket:
            sent = upload_to_s3(conn, namespace, storage, local, path)
        else:
            sent = upload_to_pvc(conn, namespace, storage, local, path,
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
        create(conn, odb_path(namespace), body, f'OdooDatabase "{args.new}" in namespace "{namespace}"')
    except (KubeError, PluginError):
        if args.file:
            print(f"note: the upload stays at {restore_from['file']} on {storage.describe()}; spec.restoreFrom.file "
                  "can name it", file=sys.stderr)
        raise
    identity = "keeping its identity (moved)" if args.identity == "keep" else "with a fresh identity (copied)"
    print(f"odoodatabase.odoo.dbmanager.io/{args.new} created in namespace {namespace}: Odoo {version}, restored from "
          f"{what}, {identity}" + (", neutralized" if args.neutralize else ""))
    if args.wait:
        wait_for(lambda: conn.get(odb_path(namespace, args.new)), restored_or_failed, parse_timeout(args.timeout),
                 f"{args.new} to be Ready", db_state)
        final = conn.get(odb_path(namespace, args.new)) or {}
        print(f"{args.new} is Ready: {(final.get('status') or {}).get('url') or ''}".rstrip())
    return 0


def restored_or_failed(obj: dict[str, Any] | None) -> bool:
    if obj is None:
        raise PluginError("the OdooDatabase disappeared while waiting")
    ready = condition(obj, "Ready")
    if condition(obj, "Stalled").get("status") == "True":
        raise PluginError(f"the restore stopped: {ready.get('reason')}: {one_line(ready.get('message'))}")
    return database_ready(obj)


def download(args: argparse.Namespace) -> int:
    conn = Connection(args)
    kube = conn.kube
    namespace = conn.namespace
    body, artifact = find_artifact(kube, namespace, args.database, args.backup, args.artifact)
    location = str(artifact.get("location") or "")
    target = Path(args.output or Path(location).name or f"{args.database}-{artifact['id']}.zip")
    if location.startswith("s3://"):
        storage = _s3_storage(kube, namespace, body)
        url = storage.presigned_url(artifact["id"], args.seconds)
        if args.url:
            print(url)
            return 0
        size = _copy_verified(_read_url(url), target, artifact.get("sha256", ""))
    else:
        if args.url:
            raise PluginError("--url needs S3 storage; this backup is on a PVC")
        claim = parse_database_backup(body, Settings.from_env()).storage.pvc_claim or ""
        path = "/backups/" + location.split("/backups/", 1)[-1] if "/backups/" in location else location
        kubectl = conn.kubectl()
        with _reader_pod(namespace, claim, args.image or Settings.from_env().operator_image, kubectl) as pod:
            size = _copy_verified(_read_from_pod(namespace, pod, path, kubectl), target, artifact.get("sha256", ""))
    print(f"{target} ({size} bytes, sha256 verified)", file=sys.stderr)
    return 0


# ---- command line --------------------------------------------------------------------------------
EPILOG = """examples:
  kubectl odoo list -A --tag prod
  kubectl odoo status shop -n sales
  kubectl odoo duplicate shop shop-test --for-testing --wait
  kubectl odoo rename shop shop2
  kubectl odoo backup shop --wait && kubectl odoo download shop --backup shop-manual-20250101-120000
  kubectl odoo restore shop2 --file shop.zip --identity keep --wait
  kubectl odoo delete shop-test
  kubectl odoo support shop -o shop-support.tar.gz

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
                    "restore, download, delete, support.")
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
    ls.set_defaults(func=cmd_list)

    st = command("status", "a database in plain words: phase, conditions, domains, backups, events",
                 "Show one OdooDatabase: phase, Ready and the other conditions, URL, PostgreSQL database name, "
                 "server, size, version, expiry, last backup, its DomainMappings and DatabaseBackups, and its "
                 "recent Events.")
    st.add_argument("database", help="OdooDatabase name")
    st.add_argument("--events", type=int, default=15, help="how many recent Events to show (default 15)")
    st.add_argument("-o", "--output", choices=["json", "yaml"], help="print the object instead")
    st.set_defaults(func=cmd_status)

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
    dup.set_defaults(func=cmd_duplicate)

    ren = command("rename", "rename the PostgreSQL database (spec.databaseName)",
                  "Rename the PostgreSQL database of DATABASE by patching spec.databaseName (the object's own "
                  "name cannot change). The operator terminates the sessions, renames the database, its filestore "
                  "path and its default URL. A name in use is refused (Stalled, NameConflict).")
    ren.add_argument("database", help="OdooDatabase name")
    ren.add_argument("new_name", metavar="new-database-name", help="the new PostgreSQL database name")
    wait_options(ren, "the rename is done")
    ren.set_defaults(func=cmd_rename)

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
    bk.set_defaults(func=cmd_backup)

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
    dl.set_defaults(func=download)

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
    rs.set_defaults(func=cmd_restore)

    rm = command("delete", "delete a database, after typing its name",
                 "Delete an OdooDatabase. As in Odoo, you confirm by typing its name (read from stdin), or pass "
                 "--confirm NAME in scripts. The API server is asked first (dry run): users without the delete "
                 "right (only administrators delete) and databases linked to a subscription (admission policy) "
                 "are refused before anything is typed. What happens to the PostgreSQL database follows "
                 "spec.deletionPolicy: Delete (dropped at once), Retain (kept), Snapshot (final backup first).")
    rm.add_argument("database", help="OdooDatabase name")
    rm.add_argument("--confirm", metavar="NAME", help="the database name, instead of typing it")
    wait_options(rm, "the object is gone", "5m")
    rm.set_defaults(func=cmd_delete)

    sp = command("support", "write a support bundle (tar.gz) with the database's details",
                 "Collect what support needs about one database: its spec and status, its objects (Deployment, "
                 "ReplicaSets, Pods, Jobs, CronJobs, Service, Ingress, PVC, ConfigMap), their recent Events, its "
                 "DatabaseBackups and DomainMappings, the PostgresServer, versions; summary.md is a pre-filled "
                 "support request. Secrets are never read; values that look secret are redacted.")
    sp.add_argument("database", help="OdooDatabase name")
    sp.add_argument("-o", "--output", metavar="PATH",
                    help="a .tar.gz/.tgz file, or a directory (default odoo-support-<ns>-<db>-<time>.tar.gz)")
    sp.set_defaults(func=cmd_support)
    return parser


def error_message(exc: KubeError) -> str:
    message = one_line(exc.message) or exc.reason or "error"
    if exc.status == 0:
        return f"cannot reach the API server: {message}"
    if exc.status == 401:
        return f"unauthorized (check your credentials): {message}"
    return message


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        return int(args.func(args))
    except (PluginError, SpecError, backup.BackupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KubeError as exc:
        print(f"error: {error_message(exc)}", file=sys.stderr)
        return 1
    except (urllib3_errors()) as exc:
        print(f"error: cannot reach the API server: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if os.environ.get("KUBECTL_ODOO_DEBUG"):
            print(f"took {time.monotonic() - started:.1f}s", file=sys.stderr)


def urllib3_errors() -> tuple[type[Exception], ...]:
    import urllib3

    return (urllib3.exceptions.HTTPError, ConnectionError)


if __name__ == "__main__":
    sys.exit(main())
