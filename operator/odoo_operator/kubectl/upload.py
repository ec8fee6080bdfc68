"""Getting a local backup file into the backup storage (`kubectl odoo restore --file`): what the file is (its
format, the Odoo version of a ZIP), then S3 straight from here with the bucket's keys, or a PVC through a
short-lived Pod of the operator's image that receives it on `kubectl exec -i` and checks its sha256.

Not here: the restore itself (an OdooDatabase with spec.restoreFrom, commands.py); the storage and the
receiving end (backupjob: storage, restore.receive, `python -m odoo_operator.backupjob receive`)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

from odoo_operator import specs
from odoo_operator.api.labels import MANAGED_BY_LABEL
from odoo_operator.api.model import VERSION_RE, Storage
from odoo_operator.backupjob.archive import detect_format
from odoo_operator.backupjob.restore import receive
from odoo_operator.backupjob.storage import open_store, sha256_of_file
from odoo_operator.config import Settings
from odoo_operator.kubectl.connection import Connection
from odoo_operator.kubectl.download import s3_credentials, short_lived_pod
from odoo_operator.kubectl.support import PLUGIN, PluginError, one_line

UPLOADS = "_uploads"  # '_' cannot start a namespace's name: never the folder of a database's backups


def uploader_pod(namespace: str, claim: str, image: str) -> dict[str, Any]:
    """A Pod of the operator's image with the backup volume writable at /backups, idle until it is sent a
    file (`kubectl exec -i … receive`); it runs as the backup Jobs do, so they can read what it writes."""
    name = f"odoo-upload-{uuid.uuid4().hex[:8]}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY_LABEL: PLUGIN}},
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
    sha256 = sha256_of_file(local)
    kubectl = conn.kubectl()
    with short_lived_pod(uploader_pod(namespace, claim, image), kubectl) as pod:
        return run_receiver(receive_command(kubectl, namespace, pod, path, sha256), local)


def upload_to_s3(conn: Connection, namespace: str, storage: Storage, local: Path, path: str) -> dict[str, Any]:
    """Straight to the bucket with its own keys and the signing client: a multipart upload, each part's
    sha256 signed (S3 refuses a damaged part), invisible until complete."""
    s3_credentials(conn.kube, namespace, storage)
    target = open_store(storage.root_url(), s3_endpoint=storage.s3_endpoint, s3_region=storage.s3_region)
    with open(local, "rb") as source:
        return receive(target, path, source)


def local_backup_facts(local: Path) -> tuple[str, str | None]:
    """Its format (by content, as the restore Job tells it) and, for an Odoo ZIP, the Odoo version it was made by."""
    if not local.is_file():
        raise PluginError(f"{local}: no such file")
    with open(local, "rb") as handle:
        fmt = detect_format(handle.read(4096), local.name)
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
