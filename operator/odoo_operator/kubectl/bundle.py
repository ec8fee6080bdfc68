"""The support bundle (`kubectl odoo support`): what is collected about one database (its objects, backups,
domains, Events, PostgresServer, versions), redacted, with a pre-filled summary.md, written as a tar.gz or a
folder. Secrets are never read.

Not here: the redaction rules (support.py: scrub, scrub_text), the command line (commands.py)."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.labels import DATABASE_LABEL
from odoo_operator.api.model import database_name
from odoo_operator.kube import KubeError
from odoo_operator.kubectl.connection import Connection, get_database, related
from odoo_operator.kubectl.support import (
    LAST_APPLIED,
    REDACTED,
    condition,
    conditions_of,
    dump_yaml,
    event_time,
    human_size,
    md_table,
    now,
    one_line,
    scrub,
    scrub_text,
)

# (apiVersion, kind) of the children looked at, in an order where owners come before what they own.
CHILD_KINDS = (
    ("apps/v1", "Deployment"),
    ("batch/v1", "CronJob"),
    ("batch/v1", "Job"),
    ("apps/v1", "ReplicaSet"),
    ("v1", "Pod"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "Ingress"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ConfigMap"),
)


def owned_by(obj: Mapping[str, Any], uids: set[str]) -> bool:
    return any(ref.get("uid") in uids for ref in obj["metadata"].get("ownerReferences") or [])


def pod_containers(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"].get("spec") or {}
    if "template" in spec:
        spec = spec["template"].get("spec") or {}
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


class Bundle:
    """The files of a bundle (redacted text by name) and what could not be collected."""

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
        for api_version, kind in CHILD_KINDS:
            items: list[dict[str, Any]] = self.attempt(
                f"list {kind}s", functools.partial(self.conn.kube.list, api_version, kind, self.namespace), [])
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
        server = self.attempt("the API server's version", self.conn.kube.server_version, {})
        if server:
            versions["kubernetes server"] = server.get("gitVersion")
        client = self.attempt("kubectl's version", lambda: subprocess.run(
            [self.conn.kubectl()[0], "version", "--client", "-o", "json"], capture_output=True, text=True,
            timeout=15, check=True).stdout, "")
        if client:
            versions["kubectl client"] = (json.loads(client).get("clientVersion") or {}).get("gitVersion")
        operators = self.attempt("the operator's Deployment (cluster-wide list)", lambda: self.conn.kube.list(
            "apps/v1", "Deployment", label_selector="app.kubernetes.io/name=odoo-db-operator"), [])
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
        ["PostgreSQL database", database_name(db)],
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
    backups = bundle.attempt("list DatabaseBackups", lambda: related(conn, namespace, "DatabaseBackup", name), [])
    domains = bundle.attempt("list DomainMappings", lambda: related(conn, namespace, "DomainMapping", name), [])
    uids = {db["metadata"]["uid"]} | {o["metadata"]["uid"] for items in children.values() for o in items} \
        | {o["metadata"]["uid"] for o in backups + domains}
    events = bundle.attempt("list Events", lambda: conn.kube.list("v1", "Event", namespace), [])
    events = sorted((e for e in events if (e.get("involvedObject") or {}).get("uid") in uids), key=event_time)[-200:]
    server_name = (db.get("status") or {}).get("server") or (db.get("spec") or {}).get("server")
    server = bundle.attempt(f"get PostgresServer {server_name}", lambda: conn.kube.get(
        API_VERSION, "PostgresServer", server_name), None) if server_name else None
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
