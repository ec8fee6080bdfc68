"""`kubectl odoo …`: the kubectl plugin shipped with the package (installed as `kubectl-odoo`).

`download <database>` gets a backup ZIP to the user's disk: from S3 through a short-lived presigned
URL (`--url` only prints it), from a backup PVC through a short-lived Pod that mounts it read-only
(`kubectl exec … cat`). The sha256 recorded in the DatabaseBackup's status is checked either way.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes

from . import API_VERSION, backup
from .config import Settings
from .kube import Kube
from .model import SpecError, parse_database_backup

CHUNK = 1 << 20


class PluginError(Exception):
    pass


def _kube(kubeconfig: str | None) -> Kube:
    kubernetes.config.load_kube_config(config_file=kubeconfig)
    return Kube(kubernetes.client.ApiClient())


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    with contextlib.suppress(Exception):
        _, active = kubernetes.config.list_kube_config_contexts(config_file=args.kubeconfig)
        return str(active["context"].get("namespace") or "default")
    return "default"


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


def _s3_storage(kube: Kube, namespace: str, body: dict[str, Any]) -> backup.Storage:
    parsed = parse_database_backup(body, Settings.from_env())
    storage = parsed.storage
    if storage.s3_credentials_secret:
        secret = kube.get("v1", "Secret", storage.s3_credentials_secret, namespace)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            value = ((secret or {}).get("data") or {}).get(key)
            if not value:
                raise PluginError(f"Secret {namespace}/{storage.s3_credentials_secret} lacks {key}")
            os.environ[key] = base64.b64decode(value).decode()
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


def download(args: argparse.Namespace) -> int:
    kube = _kube(args.kubeconfig)
    namespace = _namespace(args)
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
        kubectl = [shutil.which("kubectl") or "kubectl"] + ([f"--kubeconfig={args.kubeconfig}"] if args.kubeconfig
                                                           else [])
        with _reader_pod(namespace, claim, args.image or Settings.from_env().operator_image, kubectl) as pod:
            size = _copy_verified(_read_from_pod(namespace, pod, path, kubectl), target, artifact.get("sha256", ""))
    print(f"{target} ({size} bytes, sha256 verified)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubectl odoo", description="Odoo databases on Kubernetes")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    parser.add_argument("-n", "--namespace")
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help="download a backup ZIP of a database")
    dl.add_argument("database")
    dl.add_argument("--backup", help="DatabaseBackup name (default <database>-daily)")
    dl.add_argument("--artifact", help="artifact id (default: the newest)")
    dl.add_argument("-o", "--output", help="file to write (default: the artifact's name)")
    dl.add_argument("--url", action="store_true", help="S3 only: print a short-lived presigned URL instead")
    dl.add_argument("--seconds", type=int, default=600, help="lifetime of the presigned URL")
    dl.add_argument("--image", help="image of the reader Pod for PVC storage (default: the operator image)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        return download(args)
    except (PluginError, SpecError, backup.BackupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if os.environ.get("KUBECTL_ODOO_DEBUG"):
            print(f"took {time.monotonic() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
