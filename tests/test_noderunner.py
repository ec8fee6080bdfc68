"""The local node runner: Pods of "real" namespaces run as local processes, like a kubelet would run them.

The pure rules (image table, command/args, `$(VAR)`) are checked without a cluster; the rest against a
LocalCluster with the runner on: env, volumes, the Odoo image's entrypoint, pod network, probes,
restarts, deletion, Jobs, and a real Odoo 16.0 that becomes Ready on /web/health.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import psycopg
import pytest
from psycopg import sql

from conftest import condition, get_json, wait_until
from odoo_operator.devtools.localcluster import RUNNER_NODE, LocalCluster
from odoo_operator.devtools.noderunner import Runner, log_tail
from odoo_operator.devtools.noderunner_exec import (
    ImagePullError,
    ImageSettings,
    container_argv,
    expand,
    resolve_image,
)

ODOO_HOME = Path(__file__).resolve().parents[1] / ".cache" / "odoo" / "current"
HAS_ODOO = (ODOO_HOME / "src" / "odoo-bin").exists() and (ODOO_HOME / "venv" / "bin" / "python").exists()
needs_odoo = pytest.mark.skipif(not HAS_ODOO, reason=f"no Odoo prepared at {ODOO_HOME}")
OPERATOR_IMAGE = os.environ.get("ODOO_OPERATOR_IMAGE") or "odoo-db-operator:0.1.0"
NON_ROOT = {"runAsUser": 101, "runAsGroup": 101, "fsGroup": 101, "runAsNonRoot": True}


# ---- pure rules ---------------------------------------------------------------------------------
@pytest.fixture
def images(tmp_path: Path) -> ImageSettings:
    home = tmp_path / "odoo16"
    (home / "src").mkdir(parents=True)
    (home / "src" / "odoo-bin").write_text("")
    return ImageSettings({"16.0": home, "17.0": tmp_path / "absent"}, "odoo-db-operator:0.1.0", tmp_path / "images")


def test_command_skips_the_entrypoint_and_args_replace_cmd(images: ImageSettings) -> None:
    odoo = resolve_image("registry.example.com/library/odoo:16.0", images)
    assert container_argv({"command": ["odoo", "--version"]}, odoo, {}) == ["odoo", "--version"]
    assert container_argv({"command": ["bash"]}, odoo, {}) == ["bash"]  # CMD is ignored too
    assert container_argv({"args": ["--version"]}, odoo, {}) == ["/entrypoint.sh", "--version"]
    assert container_argv({}, odoo, {}) == ["/entrypoint.sh", "odoo"]
    assert odoo.uid == 101 and odoo.env["ODOO_RC"] == "/etc/odoo/odoo.conf"


def test_variable_references_expand_like_kubernetes() -> None:
    env = {"DB": "prod", "EMPTY": ""}
    assert expand("-d $(DB) $(MISSING) $$(DB) $(EMPTY)x", env) == "-d prod $(MISSING) $(DB) x"
    odoo_less = resolve_image("busybox:1", ImageSettings({}, "op:1", Path("/nonexistent")))
    assert container_argv({"command": ["echo", "$(DB)"]}, odoo_less, env) == ["echo", "prod"]


def test_pod_addresses_go_round_robin_so_a_released_one_is_given_last(tmp_path: Path) -> None:
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration())
    runner = Runner(api, "n", tmp_path, "odoobr9", "10.9.9.0/29", ImageSettings({}, "op:1", tmp_path))
    first, second = runner.allocate_ip(), runner.allocate_ip()
    assert (first, second) == ("10.9.9.2", "10.9.9.3")  # .1 is the bridge's
    runner.release_ip(first)
    assert [runner.allocate_ip() for _ in range(4)] == ["10.9.9.4", "10.9.9.5", "10.9.9.6", "10.9.9.2"]
    with pytest.raises(RuntimeError, match="full"):
        runner.allocate_ip()


def test_a_series_that_is_not_prepared_cannot_be_pulled(images: ImageSettings) -> None:
    with pytest.raises(ImagePullError, match="Odoo series here: 16.0"):
        resolve_image("odoo:17.0", images)
    with pytest.raises(ImagePullError):
        resolve_image("odoo:latest", images)


def test_operator_image_runs_this_python(images: ImageSettings) -> None:
    operator = resolve_image("odoo-db-operator:0.1.0", images)
    assert operator.host_network and operator.env["PATH"].split(":")[0] == str(Path(os.sys.executable).parent)


# ---- against a cluster ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rcluster(cluster: LocalCluster) -> LocalCluster:
    """The session cluster, which has the runner on (conftest)."""
    assert cluster.with_runner
    return cluster


@pytest.fixture
def real_ns(rcluster: LocalCluster) -> Iterator[str]:
    name = f"r-{uuid.uuid4().hex[:8]}"
    rcluster.real_namespace(name)
    wait_until(lambda: rcluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
               30, "the default ServiceAccount")
    yield name
    rcluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(cluster: LocalCluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def pod(name: str, namespace: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5, "containers": containers, **spec}}


def phase(cluster: LocalCluster, namespace: str, name: str) -> str:
    return str((get_json(cluster, "pod", name, "-n", namespace).get("status") or {}).get("phase", ""))


def wait_phase(cluster: LocalCluster, namespace: str, name: str, want: str, timeout: float = 60) -> dict[str, Any]:
    """Waits for the pod's phase; a pod that ends in another phase, or never gets there, fails the test at
    once with what a person would look at: its status, its containers' logs and the runner's lines about it."""
    def reached() -> bool:
        now = phase(cluster, namespace, name)
        if now in ("Succeeded", "Failed") and now != want:
            raise AssertionError(f"pod {name} is {now}, not {want}\n{pod_diagnosis(cluster, namespace, name)}")
        return now == want

    try:
        wait_until(reached, timeout, f"pod {name} {want}")
    except AssertionError as exc:
        if "timed out" in str(exc):
            raise AssertionError(f"{exc}\n{pod_diagnosis(cluster, namespace, name)}") from None
        raise
    return get_json(cluster, "pod", name, "-n", namespace)


def pod_diagnosis(cluster: LocalCluster, namespace: str, name: str) -> str:
    pod = get_json(cluster, "pod", name, "-n", namespace)
    status = pod.get("status") or {}
    lines = [f"node {pod['spec'].get('nodeName')!r}, phase {status.get('phase')!r}, "
             f"conditions {status.get('conditions')}, containers {status.get('containerStatuses')}"]
    for c in pod["spec"]["containers"]:
        try:
            lines.append(f"--- log of {c['name']}:\n" + log_of(cluster, namespace, name, c["name"])[-3000:])
        except FileNotFoundError as exc:
            lines.append(f"--- {exc}")
    runner_log = cluster.workdir / "noderunner.log"
    if runner_log.exists():
        text = runner_log.read_text(errors="replace").splitlines()
        about = [line for i, line in enumerate(text)  # its lines and the tracebacks that follow them
                 if any(name in before for before in text[max(0, i - 20):i + 1])][-60:]
        lines.append("--- the runner about it:\n" + "\n".join(about))
    return "\n".join(lines)


def log_of(cluster: LocalCluster, namespace: str, name: str, container: str = "main", previous: bool = False) -> str:
    return cluster.pod_log(namespace, name, container, previous).read_text(errors="replace")


def secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def config_map(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def claim(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}


def test_pods_of_real_namespaces_land_on_the_runner_and_others_on_kwok(rcluster: LocalCluster, real_ns: str) -> None:
    apply(rcluster, pod("here", real_ns, [{"name": "main", "image": "busybox:1", "command": ["true"]}]))
    rcluster.kubectl("create", "namespace", f"{real_ns}-fake")
    apply(rcluster, pod("there", f"{real_ns}-fake", [{"name": "main", "image": "busybox:1", "command": ["true"]}]))
    here = wait_phase(rcluster, real_ns, "here", "Succeeded")
    assert here["spec"]["nodeName"] == RUNNER_NODE
    assert {"key": "odoo.dbmanager.io/runner", "operator": "Equal", "value": "local",
            "effect": "NoSchedule"} in here["spec"]["tolerations"]
    there = wait_until(lambda: get_json(rcluster, "pod", "there", "-n", f"{real_ns}-fake")["spec"].get("nodeName"))
    assert there == "kwok-node-0"
    rcluster.kubectl("delete", "namespace", f"{real_ns}-fake", "--wait=false")


def test_env_from_secrets_config_maps_and_fields_and_a_config_map_at_etc_odoo(
        rcluster: LocalCluster, real_ns: str) -> None:
    apply(rcluster, secret("db", real_ns, {"password": "s3cret"}),
          config_map("conf", real_ns, {"odoo.conf": "[options]\ndata_dir = /var/lib/odoo\n", "mode": "fast"}))
    script = ('echo "PW=$PW MODE=$MODE NAME=$NAME NS=$NS IP=$IP MISSING=${MISSING-unset} REF=$REF"; '
              'cat /etc/odoo/odoo.conf; echo "PFX=$CFG_mode"; touch /etc/odoo/x 2>/dev/null || echo read-only; id -u')
    env = [
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "mode"}}},
        {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": True}}},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "REF", "value": "mode-$(MODE)"},
    ]
    apply(rcluster, pod("env", real_ns, [{
        "name": "main", "image": "busybox:1", "command": ["sh", "-c", script], "env": env,
        "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "conf"}}],
        "volumeMounts": [{"name": "conf", "mountPath": "/etc/odoo", "readOnly": True}],
    }], securityContext=NON_ROOT, volumes=[{"name": "conf", "configMap": {"name": "conf"}}]))
    done = wait_phase(rcluster, real_ns, "env", "Succeeded")
    out = log_of(rcluster, real_ns, "env")
    ip = done["status"]["podIP"]
    assert ip.startswith(rcluster.pod_gateway_ip.rsplit(".", 1)[0] + ".") and ip != rcluster.pod_gateway_ip
    assert f"PW=s3cret MODE=fast NAME=env NS={real_ns} IP={ip} MISSING=unset REF=mode-fast" in out
    assert "data_dir = /var/lib/odoo" in out and "PFX=fast" in out and "read-only" in out
    assert out.strip().endswith("101")


def test_a_missing_secret_is_a_config_error_until_it_appears(rcluster: LocalCluster, real_ns: str) -> None:
    apply(rcluster, pod("later", real_ns, [{"name": "main", "image": "busybox:1", "command": ["sh", "-c", "echo $PW"],
                                            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {
                                                "name": "late", "key": "pw"}}}]}]))

    def waiting_reason() -> str:
        statuses = (get_json(rcluster, "pod", "later", "-n", real_ns).get("status") or {}).get("containerStatuses")
        return str(((statuses or [{}])[0].get("state") or {}).get("waiting", {}).get("reason", ""))

    wait_until(lambda: waiting_reason() == "CreateContainerConfigError", 30, "CreateContainerConfigError")
    apply(rcluster, secret("late", real_ns, {"pw": "arrived"}))
    wait_phase(rcluster, real_ns, "later", "Succeeded")
    assert "arrived" in log_of(rcluster, real_ns, "later")


def fake_odoo_bin(namespace: str) -> dict[str, Any]:
    """An `odoo` that prints its arguments (password masked), and the image's Python as `python3`."""
    return config_map("fakebin", namespace, {
        "odoo": '#!/bin/sh\necho "ARGV: $*" | sed -E "s/(--db_password )[^ ]+/\\1***/"\n',
        "python3": f'#!/bin/sh\nexec {ODOO_HOME / "venv" / "bin" / "python"} "$@"\n',
    })


@needs_odoo
def test_the_odoo_entrypoint_runs_for_args_and_is_skipped_by_command(rcluster: LocalCluster, real_ns: str) -> None:
    assert rcluster.postgres is not None
    pg = rcluster.postgres
    apply(rcluster, fake_odoo_bin(real_ns),
          secret("db", real_ns, {"host": rcluster.pod_gateway_ip, "port": str(pg.port), "user": pg.user,
                                 "password": pg.password}))
    env = [{"name": n, "valueFrom": {"secretKeyRef": {"name": "db", "key": k}}}
           for n, k in (("HOST", "host"), ("PORT", "port"), ("USER", "user"), ("PASSWORD", "password"))]
    env += [{"name": "PATH", "value": "/fakebin:/usr/local/bin:/usr/bin:/bin"}]
    volumes = [{"name": "fakebin", "configMap": {"name": "fakebin", "defaultMode": 0o755}}]
    mounts = [{"name": "fakebin", "mountPath": "/fakebin"}]
    for name, field in (("via-entrypoint", "args"), ("via-command", "command")):
        argv = ["--version"] if field == "args" else ["odoo", "--version"]
        apply(rcluster, pod(name, real_ns, [{"name": "main", "image": "odoo:16.0", field: argv, "env": env,
                                             "volumeMounts": mounts}], securityContext=NON_ROOT, volumes=volumes))
    wait_phase(rcluster, real_ns, "via-entrypoint", "Succeeded", 90)
    wait_phase(rcluster, real_ns, "via-command", "Succeeded")
    # wait-for-psql.py reached PostgreSQL through the pod network, then the --db_* arguments were added.
    assert (f"ARGV: --version --db_host {rcluster.pod_gateway_ip} --db_port {pg.port} --db_user {pg.user} "
            "--db_password ***") in log_of(rcluster, real_ns, "via-entrypoint")
    assert log_of(rcluster, real_ns, "via-command").strip() == "ARGV: --version"
    assert pg.password not in log_of(rcluster, real_ns, "via-entrypoint")


@needs_odoo
def test_the_odoo_image_runs_the_prepared_odoo_and_refuses_other_series(rcluster: LocalCluster, real_ns: str) -> None:
    apply(rcluster, pod("version", real_ns, [{"name": "main", "image": "odoo:16.0", "command": ["odoo", "--version"]}],
                        securityContext=NON_ROOT),
          pod("newer", real_ns, [{"name": "main", "image": "odoo:17.0", "command": ["odoo", "--version"]}]))
    wait_phase(rcluster, real_ns, "version", "Succeeded", 60)
    assert "Odoo Server 16.0" in log_of(rcluster, real_ns, "version")

    def waiting() -> dict[str, Any]:
        statuses = (get_json(rcluster, "pod", "newer", "-n", real_ns).get("status") or {}).get("containerStatuses")
        return dict(((statuses or [{}])[0].get("state") or {}).get("waiting") or {})

    state = wait_until(lambda: waiting().get("reason") in ("ErrImagePull", "ImagePullBackOff") and waiting(), 30)
    assert "16.0" in state["message"] and phase(rcluster, real_ns, "newer") == "Pending"


def test_a_claim_is_one_folder_shared_by_pods_and_kept_after_them(rcluster: LocalCluster, real_ns: str) -> None:
    apply(rcluster, claim("files", real_ns))
    volumes = [{"name": "files", "persistentVolumeClaim": {"claimName": "files"}}]

    def user(name: str, script: str) -> dict[str, Any]:
        mount = {"name": "files", "mountPath": "/var/lib/odoo/filestore/db1"}
        return pod(name, real_ns, [{"name": "main", "image": "busybox:1", "command": ["sh", "-c", script],
                                    "volumeMounts": [mount]}], securityContext=NON_ROOT, volumes=volumes)

    apply(rcluster, user("writer", "echo hello > /var/lib/odoo/filestore/db1/a.txt && exec sleep 300"))
    wait_phase(rcluster, real_ns, "writer", "Running")
    apply(rcluster, user("reader", "cat /var/lib/odoo/filestore/db1/a.txt; ls -ln /var/lib/odoo/filestore/db1"))
    wait_phase(rcluster, real_ns, "reader", "Succeeded")
    assert "hello" in log_of(rcluster, real_ns, "reader")
    assert " 101 " in log_of(rcluster, real_ns, "reader")  # written by the pods' user
    rcluster.kubectl("delete", "pod", "writer", "-n", real_ns, "--timeout=60s")
    apply(rcluster, user("after", "cat /var/lib/odoo/filestore/db1/a.txt"))
    wait_phase(rcluster, real_ns, "after", "Succeeded")
    assert "hello" in log_of(rcluster, real_ns, "after")


def http_server(name: str, namespace: str, port: int = 8069, **probe: Any) -> dict[str, Any]:
    return pod(name, namespace, [{
        "name": "main", "image": "python:3.11", "command": ["python3", "-m", "http.server", str(port)],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, **probe},
    }], restartPolicy="Always", securityContext=NON_ROOT)


def test_each_pod_has_its_own_address_and_readiness_follows_the_http_probe(
        rcluster: LocalCluster, real_ns: str) -> None:
    apply(rcluster, http_server("web-a", real_ns), http_server("web-b", real_ns))
    ips = []
    for name in ("web-a", "web-b"):
        ready = wait_until(lambda n=name: condition(get_json(rcluster, "pod", n, "-n", real_ns), "Ready").get(
            "status") == "True" and get_json(rcluster, "pod", n, "-n", real_ns), 60, f"{name} Ready")
        ips.append(ready["status"]["podIP"])
        status = ready["status"]["containerStatuses"][0]
        assert status["ready"] and status["started"] and "running" in status["state"]
    assert len(set(ips)) == 2  # both listen on 8069 at once
    assert ready["status"]["hostIP"] == rcluster.pod_gateway_ip


def test_a_failing_liveness_probe_restarts_the_container(rcluster: LocalCluster, real_ns: str) -> None:
    apply(rcluster, pod("sick", real_ns, [{
        "name": "main", "image": "busybox:1", "command": ["sh", "-c", "echo started; exec sleep 300"],
        "startupProbe": {"exec": {"command": ["sh", "-c", "test -d /proc/self"]}, "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1, "failureThreshold": 2},
    }], restartPolicy="Always", terminationGracePeriodSeconds=1))

    def restarts() -> int:
        statuses = (get_json(rcluster, "pod", "sick", "-n", real_ns).get("status") or {}).get("containerStatuses")
        return int((statuses or [{}])[0].get("restartCount", 0))

    wait_until(lambda: restarts() >= 1, 60, "a restart")
    assert "started" in log_of(rcluster, real_ns, "sick", previous=True)
    last = get_json(rcluster, "pod", "sick", "-n", real_ns)["status"]["containerStatuses"][0]["lastState"]
    assert last["terminated"]["exitCode"] in (137, 143)
    assert last["terminated"]["message"] == "killed after a failed liveness probe"  # the exec startup probe passed


def test_log_tail_is_the_last_80_lines_within_2048_bytes(tmp_path: Path) -> None:
    log = tmp_path / "main.log"
    log.write_text("".join(f"line {i}\n" for i in range(1, 101)))
    assert log_tail(log) == "".join(f"line {i}\n" for i in range(21, 101))
    log.write_text("a" * 3000 + "\nlast")  # no line end at the end: still a line
    assert log_tail(log) == ("a" * 3000 + "\nlast")[-2048:]
    assert log_tail(tmp_path / "absent.log") == ""


def test_the_termination_message_comes_from_its_file_or_the_log_of_a_failure(
        rcluster: LocalCluster, real_ns: str) -> None:
    volumes = [{"name": "data", "emptyDir": {}}]
    mounts = [{"name": "data", "mountPath": "/var/lib/odoo"}]
    lines = "for i in $(seq 1 100); do echo line $i; done"

    def main(script: str, **spec: Any) -> dict[str, Any]:
        return {"name": "main", "image": "busybox:1", "command": ["sh", "-c", script],
                "terminationMessagePolicy": "FallbackToLogsOnError", **spec}

    apply(rcluster,
          # The file wins over the log, even for a failure.
          pod("file", real_ns, [main(f"{lines}; printf 'upgrade failed:\\nmodule x' > /var/lib/odoo/termination-log;"
                                     " exit 4", volumeMounts=mounts,
                                     terminationMessagePath="/var/lib/odoo/termination-log")],
              securityContext=NON_ROOT, volumes=volumes),
          pod("fails", real_ns, [main(f"{lines}; exit 3")], securityContext=NON_ROOT),
          pod("works", real_ns, [main(f"{lines}; exit 0")], securityContext=NON_ROOT))

    def terminated(name: str, want: str) -> dict[str, Any]:
        return dict(wait_phase(rcluster, real_ns, name, want)["status"]["containerStatuses"][0]["state"]["terminated"])

    assert terminated("file", "Failed")["message"] == "upgrade failed:\nmodule x"
    failed = terminated("fails", "Failed")
    assert failed["exitCode"] == 3 and failed["message"] == "".join(f"line {i}\n" for i in range(21, 101))
    assert "message" not in terminated("works", "Succeeded")


def sleeping(seconds: str) -> list[int]:
    """The pids of `sleep <seconds>` processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_deleting_a_pod_kills_its_processes_after_the_grace_period(rcluster: LocalCluster, real_ns: str) -> None:
    # The shell ignores SIGTERM: only the SIGKILL at the end of the grace period stops it, children included.
    script = "trap '' TERM; sleep 4242.5 & sleep 4243.5 & wait; wait"
    apply(rcluster, pod("stubborn", real_ns, [{"name": "main", "image": "busybox:1", "command": ["sh", "-c", script]}],
                        terminationGracePeriodSeconds=2))
    wait_phase(rcluster, real_ns, "stubborn", "Running")
    wait_until(lambda: len(sleeping("4242.5")) == 1 and len(sleeping("4243.5")) == 1, 10, "both sleeps")
    rcluster.kubectl("delete", "pod", "stubborn", "-n", real_ns, "--wait=false")
    wait_until(lambda: not get_json(rcluster, "pod", "stubborn", "-n", real_ns), 30, "the pod to be gone")
    assert sleeping("4242.5") == [] and sleeping("4243.5") == []


def test_a_job_completes_and_a_failing_pod_fails(rcluster: LocalCluster, real_ns: str) -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": real_ns},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "main", "image": "busybox:1", "command": ["sh", "-c", "echo job ran"]}]}}}}
    failing = pod("fails", real_ns, [{"name": "main", "image": "busybox:1", "command": ["sh", "-c", "exit 3"]}])
    apply(rcluster, job, failing)
    wait_until(lambda: condition(get_json(rcluster, "job", "once", "-n", real_ns), "Complete").get("status") == "True",
               60, "the Job Complete")
    failed = wait_phase(rcluster, real_ns, "fails", "Failed")
    terminated = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    assert condition(failed, "Ready")["status"] == "False"


def test_the_operator_image_talks_to_the_api_with_its_service_account_token(
        rcluster: LocalCluster, real_ns: str) -> None:
    rcluster.kubectl("create", "rolebinding", "view", "--clusterrole=view", f"--serviceaccount={real_ns}:default",
                     "-n", real_ns)
    code = ("import kubernetes; kubernetes.config.load_incluster_config(); "
            f"pods = kubernetes.client.CoreV1Api().list_namespaced_pod('{real_ns}').items; "
            "print('pods:', [p.metadata.name for p in pods])")
    apply(rcluster, pod("api", real_ns, [{"name": "main", "image": OPERATOR_IMAGE, "command": ["python", "-c", code],
                                          "securityContext": {"readOnlyRootFilesystem": True}}],
                        securityContext=NON_ROOT))
    wait_phase(rcluster, real_ns, "api", "Succeeded", 60)
    assert "pods: ['api']" in log_of(rcluster, real_ns, "api")


@needs_odoo
@pytest.mark.timeout(900)
def test_a_real_odoo_initialises_its_database_then_becomes_ready(rcluster: LocalCluster, real_ns: str) -> None:
    """The operator's shapes for real: an init Job (`odoo -i base`, its own command), then a Deployment
    whose Pod goes through the image's entrypoint (HOST/PORT/USER/PASSWORD) and is Ready on /web/health."""
    assert rcluster.postgres is not None
    pg = rcluster.postgres
    role, password, database = f"odoo_{real_ns.replace('-', '_')}", uuid.uuid4().hex, f"db_{real_ns.replace('-', '_')}"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(sql.Identifier(role),
                                                                               sql.Literal(password)))
    conf = f"[options]\ndata_dir = /var/lib/odoo\ndb_name = {database}\nlist_db = False\nworkers = 0\n"
    apply(rcluster, config_map("conf", real_ns, {"odoo.conf": conf}),
          secret("db", real_ns, {"host": rcluster.pod_gateway_ip, "port": str(pg.port), "user": role,
                                 "password": password}),
          claim("filestore", real_ns))
    env = [{"name": n, "valueFrom": {"secretKeyRef": {"name": "db", "key": k}}}
           for n, k in (("HOST", "host"), ("PORT", "port"), ("USER", "user"), ("PASSWORD", "password"))]
    volumes = [{"name": "data", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "conf"}},
               {"name": "filestore", "persistentVolumeClaim": {"claimName": "filestore"}}]
    mounts = [{"name": "data", "mountPath": "/var/lib/odoo"},
              {"name": "conf", "mountPath": "/etc/odoo", "readOnly": True},
              {"name": "filestore", "mountPath": f"/var/lib/odoo/filestore/{database}"}]
    security = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}
    init = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "init", "namespace": real_ns},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "securityContext": NON_ROOT, "volumes": volumes,
                # `command` (no entrypoint), as the operator's init Job: Odoo creates the database.
                "containers": [{"name": "init", "image": "odoo:16.0", "volumeMounts": mounts,
                                "env": env + [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                                    "name": "db", "key": "password"}}}],
                                "securityContext": security,
                                "command": ["odoo", "-c", "/etc/odoo/odoo.conf", "--db_host=$(HOST)",
                                            "--db_port=$(PORT)", "--db_user=$(USER)", "-d", database, "-i", "base",
                                            "--without-demo=all", "--stop-after-init", "--no-http"]}]}}}}
    apply(rcluster, init)
    wait_until(lambda: condition(get_json(rcluster, "job", "init", "-n", real_ns), "Complete").get("status") == "True"
               or condition(get_json(rcluster, "job", "init", "-n", real_ns), "Failed").get("status") == "True",
               600, "the init Job to finish", interval=2)
    init_pod = get_json(rcluster, "pods", "-n", real_ns, "-l", "job-name=init")["items"][0]["metadata"]["name"]
    assert condition(get_json(rcluster, "job", "init", "-n", real_ns), "Complete").get("status") == "True", \
        log_of(rcluster, real_ns, init_pod, "init")[-3000:]
    labels = {"app": "odoo"}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "odoo", "namespace": real_ns},
                  "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                      "metadata": {"labels": labels},
                      "spec": {"securityContext": NON_ROOT, "volumes": volumes, "containers": [{
                          "name": "odoo", "image": "odoo:16.0", "env": env, "volumeMounts": mounts,
                          "securityContext": security, "args": ["--database", database, "--no-database-list"],
                          "ports": [{"name": "http", "containerPort": 8069}],
                          "readinessProbe": {"httpGet": {"path": "/web/health", "port": "http"}, "periodSeconds": 2},
                          "livenessProbe": {"httpGet": {"path": "/web/health", "port": "http"},
                                            "initialDelaySeconds": 60, "periodSeconds": 20}}]}}}}
    apply(rcluster, deployment)
    try:
        wait_until(lambda: (get_json(rcluster, "deployment", "odoo", "-n", real_ns).get("status") or {})
                   .get("availableReplicas") == 1, 240, "the Odoo Deployment Available", interval=2)
    finally:
        pods = get_json(rcluster, "pods", "-n", real_ns, "-l", "app=odoo")["items"]
        print(json.dumps([p["status"] for p in pods], indent=1))
        print(log_of(rcluster, real_ns, pods[0]["metadata"]["name"], "odoo")[-5000:])
    assert len(pods) == 1 and pods[0]["status"]["containerStatuses"][0]["restartCount"] == 0
    # The filestore of the database is in the claim's folder, written by Odoo's user.
    volume = get_json(rcluster, "pvc", "filestore", "-n", real_ns)["spec"]["volumeName"]
    assert (rcluster.runner_root / "volumes" / volume).is_dir()
