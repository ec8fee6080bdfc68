"""Getting a backup artifact onto the user's disk (`kubectl odoo download`): which artifact, and its bytes from
S3 (a short-lived presigned URL) or from a PVC (a short-lived reader Pod and `kubectl exec cat`), checked
against the sha256 the DatabaseBackup recorded. Also the S3 credentials and the short-lived Pod that uploads
(upload.py) reuse.

Not here: the command line (commands.py, parser.py); the store, the S3 client and which artifact is the newest
(backupjob: storage.open_store; api.model.choose_artifact)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from odoo_operator import API_VERSION
from odoo_operator.api.labels import MANAGED_BY_LABEL
from odoo_operator.api.model import Storage, choose_artifact, parse_database_backup
from odoo_operator.backupjob.storage import Store, open_store
from odoo_operator.config import Settings
from odoo_operator.kube import Kube
from odoo_operator.kubectl.support import PLUGIN, PluginError

CHUNK = 1 << 20


def find_artifact(kube: Kube, namespace: str, database: str, backup_name: str | None,
                  artifact_id: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    name = backup_name or f"{database}-daily"
    body = kube.get(API_VERSION, "DatabaseBackup", name, namespace)
    if body is None:
        raise PluginError(f"DatabaseBackup {namespace}/{name} not found (use --backup NAME)")
    artifacts = (body.get("status") or {}).get("artifacts") or []
    chosen = choose_artifact(artifacts, artifact_id)
    if chosen is None:
        ids = ", ".join(a.get("id", "?") for a in artifacts) or "none yet"
        wanted = f"artifact {artifact_id}" if artifact_id else "artifact"
        raise PluginError(f"no {wanted} in {namespace}/{name} (artifacts: {ids})")
    return body, chosen


def s3_credentials(kube: Kube, namespace: str, storage: Storage) -> None:
    """The bucket's keys, read from its Secret with your own rights, into this process's environment only."""
    if storage.s3_credentials_secret:
        secret = kube.get("v1", "Secret", storage.s3_credentials_secret, namespace)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            value = ((secret or {}).get("data") or {}).get(key)
            if not value:
                raise PluginError(f"Secret {namespace}/{storage.s3_credentials_secret} lacks {key}")
            os.environ[key] = base64.b64decode(value).decode()


def s3_storage(kube: Kube, namespace: str, body: dict[str, Any]) -> Store:
    """The DatabaseBackup's bucket, opened with the keys of its Secret."""
    parsed = parse_database_backup(body, Settings.from_env())
    storage = parsed.storage
    s3_credentials(kube, namespace, storage)
    return open_store(storage.url(namespace, parsed.database), s3_endpoint=storage.s3_endpoint,
                      s3_region=storage.s3_region)


def pvc_claim(body: dict[str, Any]) -> str:
    """The PersistentVolumeClaim a DatabaseBackup writes to."""
    return parse_database_backup(body, Settings.from_env()).storage.pvc_claim or ""


def copy_verified(chunks: Iterator[bytes], target: Path, sha256: str) -> int:
    """Write `target` (through `<target>.partial`, renamed once complete and matching `sha256`); its size."""
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


def read_url(url: str) -> Iterator[bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        while chunk := response.read(CHUNK):
            yield chunk


@contextlib.contextmanager
def reader_pod(namespace: str, claim: str, image: str, kubectl: list[str]) -> Iterator[str]:
    """A Pod with the backup volume mounted read-only at /backups, for as long as the block lasts."""
    name = f"odoo-download-{uuid.uuid4().hex[:8]}"
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY_LABEL: PLUGIN}},
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
    with short_lived_pod(pod, kubectl) as pod_name:
        yield pod_name


@contextlib.contextmanager
def short_lived_pod(pod: Mapping[str, Any], kubectl: list[str]) -> Iterator[str]:
    """Apply the Pod with `kubectl`, wait until it is Ready, yield its name; delete it on the way out."""
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(pod), text=True, check=True,
                   capture_output=True)
    try:
        subprocess.run([*kubectl, "wait", "-n", namespace, "--for=condition=Ready", f"pod/{name}", "--timeout=120s"],
                       check=True, capture_output=True)
        yield name
    finally:
        subprocess.run([*kubectl, "delete", "pod", "-n", namespace, name, "--wait=false"], capture_output=True)


def read_from_pod(namespace: str, pod: str, path: str, kubectl: list[str]) -> Iterator[bytes]:
    proc = subprocess.Popen([*kubectl, "exec", "-n", namespace, pod, "--", "cat", path], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    while chunk := proc.stdout.read(CHUNK):
        yield chunk
    if proc.wait() != 0:
        raise PluginError(f"reading {path} from Pod {pod} failed")
