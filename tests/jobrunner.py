"""Executes a Job for real without a kubelet: the container's own command, args and env (Secrets
resolved, PVCs mapped to local folders), run as a local process; then the Pod's outcome is written
back as a kubelet would, so the Job controller completes or fails the Job. The Job spec is under test.

The process talks to the API server as the Job's ServiceAccount (a token from the TokenRequest API),
so the RBAC the operator created for it is exercised too."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from odoo_operator.devtools.localcluster import LocalCluster


def _get(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def _service_account_kubeconfig(cluster: LocalCluster, namespace: str, account: str, path: Path) -> Path:
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    path.write_text(yaml.safe_dump(config))
    return path


def run_job(cluster: LocalCluster, namespace: str, job_name: str, volumes_root: Path,
            env_overrides: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + 30
    job: dict[str, Any] = {}
    while time.monotonic() < deadline and not job:
        job = _get(cluster, "job", job_name, "-n", namespace)
        time.sleep(0.2)
    assert job, f"Job {namespace}/{job_name} not found"
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]

    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PYTHONUNBUFFERED": "1"}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        secret = _get(cluster, "secret", ref["name"], "-n", namespace)
        env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    env.update(env_overrides or {})

    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod_spec.get("volumes") or []
              if "persistentVolumeClaim" in v}
    mounts = {}
    scratch = {v["name"] for v in pod_spec.get("volumes") or [] if "emptyDir" in v}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] in scratch:
            continue  # an emptyDir (/tmp): the local process has its own
        local = volumes_root / namespace / claims[mount["name"]]
        local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = str(local)

    def localize(arg: str) -> str:
        for mount_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if mount_path in arg:
                return arg.replace(mount_path, local)
        return arg

    command = [sys.executable if part == "python" else part for part in container["command"]]
    argv = command + [localize(a) for a in container.get("args") or []]
    kubeconfig = volumes_root / f"{namespace}-{job_name}.kubeconfig"
    env["KUBECONFIG"] = str(_service_account_kubeconfig(cluster, namespace, pod_spec["serviceAccountName"],
                                                        kubeconfig))
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    _set_pod_outcome(cluster, namespace, job_name, result.returncode, result.stderr)
    return result


def _set_pod_outcome(cluster: LocalCluster, namespace: str, job_name: str, exit_code: int, stderr: str) -> None:
    deadline = time.monotonic() + 60
    pod = None
    while time.monotonic() < deadline:
        pods = _get(cluster, "pods", "-n", namespace, "-l", f"job-name={job_name}").get("items") or []
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        if running:
            pod = running[0]
            break
        time.sleep(0.3)
    assert pod is not None, f"no running Pod for Job {job_name}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    name = pod["spec"]["containers"][0]["name"]
    terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                  "message": stderr[-1000:], "startedAt": now, "finishedAt": now}
    status = {"status": {"phase": "Succeeded" if exit_code == 0 else "Failed",
                         "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
                         "containerStatuses": [{"name": name, "image": pod["spec"]["containers"][0]["image"],
                                                "imageID": "", "ready": False, "restartCount": 0,
                                                "state": {"terminated": terminated}}]}}
    cluster.kubectl("patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps(status))

