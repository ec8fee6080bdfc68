"""A local node: runs the Pods bound to one Node as local processes, the way a kubelet would.

`python -m odoo_operator.devtools.noderunner --kubeconfig K --node odoo-runner-0 --root DIR --bridge odoobr1
--cidr 10.89.1.0/24` (LocalCluster starts it when `with_runner=True`). It registers the Node
(labels, taint, Ready condition, a Lease in kube-node-lease renewed every 10 s), watches the Pods
whose `spec.nodeName` is that Node and, for each:

- resolves env as the kubelet does (`value` with `$(VAR)`, `secretKeyRef`, `configMapKeyRef`,
  `optional`, `fieldRef`, `envFrom`) and materialises volumes under `<root>/pods/<ns>_<pod>_<uid>/`:
  emptyDir, configMap and secret (with `items`), downwardAPI, projected (with a `serviceAccountToken`
  from the TokenRequest API), hostPath, and persistentVolumeClaim → `<root>/volumes/<pv>`, one folder
  per bound PersistentVolume that outlives Pods and is shared by every Pod mounting the claim;
  emptyDir and PVC folders go to `fsGroup` like the kubelet does;
- runs each container through `noderunner_exec` (its own cgroup, network and mount namespaces, bind
  mounts at the `mountPath`s with `readOnly` and `subPath`, the container's user, working dir) and
  writes its stdout+stderr to `<root>/pods/<ns>_<pod>_<uid>/<container>.log` (the previous run's to
  `<container>.previous.log`); logs are kept after the Pod goes;
- images (noderunner_exec.resolve_image), with Kubernetes' command/args rules: `odoo:<series>` has
  the official image's ENTRYPOINT /entrypoint.sh, CMD odoo, uid 101, ODOO_RC, its files
  (hack/odoo-image: entrypoint.sh, wait-for-psql.py, /etc/odoo/odoo.conf) and an `odoo` running the
  Odoo of that series (`--odoo-home SERIES=DIR`; another series waits in ErrImagePull /
  ImagePullBackOff); the operator's image (`--operator-image`) has its Dockerfile's entrypoint, env
  and uid with the project's Python first on PATH; any other image runs its command on the host as
  is, as root unless the Pod says otherwise. Interpreters under a folder the container's user may not
  enter (a pyenv under /root) are shown to it alone through a masking bind mount;
- network: a network namespace per Pod with a veth on the host bridge and an address of the bridge's
  /24 (status.podIP; status.hostIP is the bridge's address), so every Odoo listens on its own
  8069/8072. Pods of the operator's image and `hostNetwork` Pods share the host's network (they
  reach the API server on 127.0.0.1); their podIP is the bridge's address. KUBERNETES_SERVICE_HOST
  and _PORT name the local API server;
- status like a kubelet (through `/status`): phase, conditions, container states, restarts with
  back-off (10 s doubling to 5 min) for `Always`/`OnFailure`, init containers, startup/readiness/
  liveness probes (httpGet, tcpSocket, exec) from the host to the podIP, a failed liveness probe
  restarts the container;
- termination message (`state.terminated.message`) like the kubelet: the last 4096 bytes of the
  `terminationMessagePath` file when this run of the container wrote it, read from the host folder of
  the volume (or image volume) the path lies in; with `terminationMessagePolicy: FallbackToLogsOnError`,
  when that is empty and the exit code non-zero, the log's last 80 lines (at most 2048 bytes). When a
  failed probe had the container killed, the message starts with "killed after a failed … probe";
- deletion: SIGTERM to the container's process group, SIGKILL (the whole cgroup) after the grace
  period, network and namespaces removed, then the Pod deleted with grace 0 and a uid precondition.
  When a container's main process ends, the rest of its cgroup is killed (as a PID namespace would).
On SIGTERM (its parent's death sends one) it kills every container and removes networks, cgroups and
bridge; the next runner of the same bridge (or LocalCluster.stop) removes what a SIGKILL left.

Not done: configMap/secret volume updates after start, token refresh (tokens last ≥ 1 h), preStop and
postStart hooks, resource limits, `kubectl logs/exec` (no kubelet API; read the log files),
Service links env and resolv.conf of the Pod (/etc/hosts is written: the Pod's name → its IP), a
`terminationMessagePath` outside the container's volumes, such as the default /dev/termination-log (the
kubelet bind-mounts a file of its own there; nothing is mounted over /dev here): only the log fallback.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import kubernetes
from kubernetes.client.rest import ApiException

from odoo_operator.devtools.noderunner_exec import (
    Image,
    ImagePullError,
    ImageSettings,
    _repository_and_tag,
    container_argv,
    create_pod_network,
    delete_pod_network,
    ensure_bridge,
    expand,
    exposure_mounts,
    kill_cgroup,
    odoo_image_conf,
    remove_leftovers,
    resolve_image,
    runner_cgroup,
)

log = logging.getLogger("noderunner")
REPO_ROOT = Path(__file__).resolve().parents[3]
RUNNER_LABEL = "odoo.dbmanager.io/runner"
RUNNER_VALUE = "local"
LEASE_SECONDS = 40


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConfigError(Exception):
    """A Secret or ConfigMap (or a key) the container needs is missing: CreateContainerConfigError."""


class Runner:
    def __init__(self, api: kubernetes.client.ApiClient, node: str, root: Path, bridge: str, cidr: str,
                 images: ImageSettings, backoff: float = 10.0) -> None:
        # Plain dicts in and out: typed as Any rather than the client's models.
        self.core: Any = kubernetes.client.CoreV1Api(api)
        self.coordination: Any = kubernetes.client.CoordinationV1Api(api)
        server = urlparse(api.configuration.host)
        self.api_host, self.api_port = server.hostname or "127.0.0.1", str(server.port or 443)
        self.node, self.root, self.bridge, self.images, self.backoff = node, root, bridge, images, backoff
        self.network = ipaddress.ip_network(cidr)
        self.gateway = str(next(self.network.hosts()))
        self.used_ips: set[str] = {self.gateway}
        self.last_ip = self.gateway  # addresses are handed out round-robin, as CNI's host-local IPAM does
        self.workers: dict[str, PodWorker] = {}
        interpreters = [Path(sys.executable)] + [Path(h) / "venv" / "bin" / "python" for h in images.odoo_homes.values()
                                                 if (Path(h) / "venv" / "bin" / "python").exists()]
        self.exposures = exposure_mounts(interpreters, images.images_dir / "masks")
        self.done: set[str] = set()  # pods that ran to their end here: never started again
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.cgroup: Path | None = runner_cgroup(bridge)  # created in run(); None: no cgroup v2 here

    # ---- node ----------------------------------------------------------------------------
    def register_node(self) -> None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": {
            "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            RUNNER_LABEL: RUNNER_VALUE}},
            "spec": {"taints": [{"key": RUNNER_LABEL, "value": RUNNER_VALUE, "effect": "NoSchedule"}]}}
        try:
            self.core.create_node(node)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.update_node_status()

    def update_node_status(self) -> None:
        stamp = now()
        conditions = [{"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": stamp,
                       "lastTransitionTime": stamp} for t, r, m in (
            ("MemoryPressure", "KubeletHasSufficientMemory", "local runner"),
            ("DiskPressure", "KubeletHasNoDiskPressure", "local runner"),
            ("PIDPressure", "KubeletHasSufficientPID", "local runner"))]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                           "message": "odoo node runner is posting ready status", "lastHeartbeatTime": stamp,
                           "lastTransitionTime": stamp})
        resources = {"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        self.core.patch_node_status(self.node, {"status": {
            "conditions": conditions, "capacity": resources, "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": self.gateway}, {"type": "Hostname", "address": self.node}],
            "nodeInfo": {"kubeletVersion": "v1.36.3-odoo-runner", "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "local://1",
                         "kernelVersion": os.uname().release, "osImage": "local", "machineID": "", "systemUUID": "",
                         "bootID": ""},
        }})

    def heartbeat(self) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS}}
        beats = 0
        while not self.stopping.wait(0 if beats == 0 else 10):
            renew = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            try:
                try:
                    self.coordination.patch_namespaced_lease(self.node, "kube-node-lease",
                                                             {"spec": {"renewTime": renew}})
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    body["spec"]["renewTime"] = renew  # type: ignore[index]
                    self.coordination.create_namespaced_lease("kube-node-lease", body)
                if beats % 6 == 5:
                    self.update_node_status()
            except Exception:  # the API may be briefly away: the next beat retries
                log.exception("heartbeat failed")
            beats += 1

    # ---- pods ----------------------------------------------------------------------------
    def allocate_ip(self) -> str:
        """The next free address after the last one given: an address just released (whose old
        neighbour entries may linger on the host) is the last to be given again."""
        with self.lock:
            hosts = [str(host) for host in self.network.hosts()]
            start = hosts.index(self.last_ip) + 1
            for host in hosts[start:] + hosts[:start]:
                if host not in self.used_ips:
                    self.used_ips.add(host)
                    self.last_ip = host
                    return host
        raise RuntimeError("pod network is full")

    def release_ip(self, ip: str) -> None:
        with self.lock:
            self.used_ips.discard(ip)

    def watch_pods(self) -> None:
        selector = f"spec.nodeName={self.node}"
        while not self.stopping.is_set():
            try:
                listing = self.core.list_pod_for_all_namespaces(field_selector=selector, _preload_content=False)
                data = json.loads(listing.data)
                seen = {pod["metadata"]["uid"] for pod in data["items"]}
                for pod in data["items"]:
                    self.on_pod(pod)
                for uid in list(self.workers):
                    if uid not in seen:
                        self.workers[uid].gone()
                stream = kubernetes.watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, field_selector=selector,
                    resource_version=data["metadata"]["resourceVersion"], timeout_seconds=300)
                for event in stream:
                    if event["type"] == "ERROR":
                        break  # 410 Gone: list again
                    pod = event["raw_object"]
                    if event["type"] == "DELETED":
                        worker = self.workers.get(pod["metadata"]["uid"])
                        if worker:
                            worker.gone()
                    else:
                        self.on_pod(pod)
            except Exception:
                if not self.stopping.is_set():
                    log.exception("pod watch failed; listing again")
                    time.sleep(1)

    def on_pod(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker:
            worker.update(pod)
        elif pod["metadata"].get("deletionTimestamp"):
            self.delete_pod(pod)  # nothing of it runs here (any more)
        elif uid not in self.done and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            worker = self.workers[uid] = PodWorker(self, pod)
            worker.start()

    def delete_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(ApiException):
            # In the body: with a body, the API server ignores the query's gracePeriodSeconds.
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"],
                                            body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})

    def run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        remove_leftovers(self.bridge, with_bridge=False)  # of a killed runner of the same bridge
        ensure_bridge(self.bridge, str(self.network))
        try:
            runner_cgroup(self.bridge).mkdir(exist_ok=True)
        except OSError:
            self.cgroup = None  # processes are then killed by process group only
        self.register_node()
        threading.Thread(target=self.heartbeat, daemon=True, name="heartbeat").start()
        self.watch_pods()

    def shutdown(self) -> None:
        self.stopping.set()
        workers = list(self.workers.values())
        for worker in workers:
            worker.kill_now()
        time.sleep(0.2)  # the killed processes leave their cgroups
        remove_leftovers(self.bridge)


class Container:
    """One container's state as the kubelet reports it, and its process."""

    def __init__(self, spec: dict[str, Any], init: bool) -> None:
        self.spec, self.init, self.name = spec, init, spec["name"]
        self.state: dict[str, Any] = {"waiting": {"reason": "PodInitializing" if init else "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.restarts = 0
        self.ready = False
        self.started = False
        self.process: subprocess.Popen[bytes] | None = None
        self.cgroup: Path | None = None
        self.plan: dict[str, Any] = {}  # how its current process was started
        self.stop = threading.Event()

    def status(self, pod_uid: str) -> dict[str, Any]:
        image = self.spec.get("image", "")
        status: dict[str, Any] = {
            "name": self.name, "image": image, "imageID": f"local://{image}", "ready": self.ready,
            "restartCount": self.restarts, "started": self.started, "state": self.state, "lastState": self.last_state}
        if "waiting" not in self.state:
            status["containerID"] = f"local://{pod_uid}-{self.name}-{self.restarts}"
        return status


class PodWorker:
    def __init__(self, runner: Runner, pod: dict[str, Any]) -> None:
        self.runner, self.pod = runner, pod
        meta = pod["metadata"]
        self.uid, self.name, self.namespace = meta["uid"], meta["name"], meta["namespace"]
        self.dir = runner.root / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        spec = pod["spec"]
        self.init_containers = [Container(c, True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c, False) for c in spec["containers"]]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.lock = threading.Lock()
        self.deleting = threading.Event()
        self.initialized = not self.init_containers
        self.sandbox_ready = False
        self.volume_dirs: dict[str, tuple[Path, bool]] = {}
        self.ip = runner.gateway
        self.netns: str | None = None
        self.host_network = bool(spec.get("hostNetwork"))
        self.start_time = (pod.get("status") or {}).get("startTime") or now()
        self.transitions: dict[str, tuple[str, str]] = {}
        self.last_status = ""
        self.final = False

    # ---- events from the watch -------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self.run, daemon=True, name=f"pod-{self.name}").start()

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp") and not self.deleting.is_set():
            self.deleting.set()
            for c in self.init_containers + self.containers:
                c.stop.set()

    def gone(self) -> None:
        """Deleted without us (grace 0 by someone else): stop everything at once."""
        self.final = True
        self.update({**self.pod, "metadata": {**self.pod["metadata"], "deletionTimestamp": now(),
                                               "deletionGracePeriodSeconds": 0}})

    def kill_now(self) -> None:
        """SIGKILL to every process of the pod, without waiting (the runner is stopping)."""
        self.final = True
        for c in self.init_containers + self.containers:
            c.stop.set()
            if c.process is not None and c.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.process.pid, signal.SIGKILL)
            if c.cgroup:
                with contextlib.suppress(OSError):
                    (c.cgroup / "cgroup.kill").write_text("1")

    # ---- the pod's life ------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.sync()
            self.prepare_sandbox()
            if not self.deleting.is_set():
                self.run_init_containers()
            if self.initialized and not self.deleting.is_set():
                threads = [threading.Thread(target=self.run_container, args=(c,), daemon=True,
                                            name=f"{self.name}/{c.name}") for c in self.containers]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        except Exception:
            log.exception("pod %s/%s failed", self.namespace, self.name)
        finally:
            self.finish()

    def finish(self) -> None:
        self.teardown_network()
        if self.runner.stopping.is_set():
            return
        if self.deleting.is_set() and not self.final:
            self.sync(terminal=True)
            self.runner.delete_pod(self.pod)
        elif not self.deleting.is_set():
            self.sync()
        self.runner.done.add(self.uid)
        self.runner.workers.pop(self.uid, None)

    def prepare_sandbox(self) -> None:
        spec = self.pod["spec"]
        images = [c.get("image", "") for c in spec["containers"] + (spec.get("initContainers") or [])]
        self.host_network = self.host_network or self.runner.images.operator_image in images
        if not self.host_network:
            self.ip = self.runner.allocate_ip()
            self.netns = f"{self.runner.bridge}-{self.uid[:8]}"
            create_pod_network(self.netns, self.veth, self.runner.bridge, self.ip, self.runner.network.prefixlen,
                               self.runner.gateway)
        while not self.deleting.is_set():
            try:
                self.volume_dirs = materialise_volumes(self)
                break
            except (ConfigError, ApiException) as exc:
                log.warning("pod %s/%s: volumes not ready: %s", self.namespace, self.name, exc)
                self.deleting.wait(2)
        self.sandbox_ready = True
        self.sync()

    @property
    def veth(self) -> str:
        return "v" + self.uid.replace("-", "")[:8] + self.runner.bridge[-4:]

    def teardown_network(self) -> None:
        if self.netns:
            delete_pod_network(self.netns, self.veth)
            self.runner.release_ip(self.ip)
            self.netns = None

    def run_init_containers(self) -> None:
        for c in self.init_containers:
            if self.run_container(c) != 0:
                return  # failed for good (restartPolicy Never), or the pod is being deleted
        self.initialized = not self.deleting.is_set()
        for c in self.containers:
            if not self.deleting.is_set():
                c.state = {"waiting": {"reason": "ContainerCreating"}}
        self.sync()

    def run_container(self, c: Container) -> int | None:
        """Runs (and restarts, by the pod's policy) one container; returns its last exit code."""
        delay, code = 0.0, None
        policy = "OnFailure" if c.init and self.restart_policy == "Always" else self.restart_policy
        while not c.stop.is_set():
            try:
                image = resolve_image(c.spec.get("image", ""), self.runner.images)
                plan = exec_plan(self, c, image, container_env(self, c, image))
            except ImagePullError as exc:
                self.set_waiting(c, "ErrImagePull" if delay == 0 else "ImagePullBackOff", str(exc))
                delay = min(max(delay * 2, self.runner.backoff), 300)
                c.stop.wait(delay)
                continue
            except (ConfigError, ApiException) as exc:
                self.set_waiting(c, "CreateContainerConfigError", str(exc))
                c.stop.wait(2)
                continue
            started = time.monotonic()
            code = self.start_and_supervise(c, plan)
            if c.stop.is_set() or policy == "Never" or (policy == "OnFailure" and code == 0):
                break
            c.last_state = {"terminated": c.state["terminated"]}
            delay = 0 if time.monotonic() - started > 600 else delay
            if delay:
                self.set_waiting(c, "CrashLoopBackOff",
                                 f"back-off {delay:.0f}s restarting failed container={c.name} pod={self.name}")
            c.stop.wait(delay)
            delay = min(max(delay * 2, self.runner.backoff), 300)
            if not c.stop.is_set():
                c.restarts += 1
        return code

    def set_waiting(self, c: Container, reason: str, message: str) -> None:
        with self.lock:
            c.state, c.ready, c.started = {"waiting": {"reason": reason, "message": message}}, False, False
        self.sync()

    def start_and_supervise(self, c: Container, plan: dict[str, Any]) -> int:
        log_path = self.dir / f"{c.name}.log"
        if log_path.exists():
            log_path.replace(self.dir / f"{c.name}.previous.log")
        plan_path = self.dir / f"{c.name}.plan.json"  # holds the env (secrets): root only, removed by the helper
        c.plan = plan
        if self.runner.cgroup:
            c.cgroup = self.runner.cgroup / f"{self.uid}-{c.name}"
            c.cgroup.mkdir(exist_ok=True)
            plan["cgroup"] = str(c.cgroup)
        plan_path.touch(mode=0o600)
        plan_path.write_text(json.dumps(plan))
        message_file = termination_file(c, plan)
        message_before = _file_stamp(message_file[0]) if message_file else None
        with open(log_path, "ab") as out:
            c.process = subprocess.Popen(
                [sys.executable, "-m", "odoo_operator.devtools.noderunner_exec", str(plan_path)], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT / "operator")})
        started_at = now()
        probes = {kind: Probe(c.spec[kind]) for kind in ("startupProbe", "readinessProbe", "livenessProbe")
                  if c.spec.get(kind)}
        with self.lock:
            c.state = {"running": {"startedAt": started_at}}
            c.started = "startupProbe" not in probes
            c.ready = c.started and "readinessProbe" not in probes
        self.sync()
        reason = None
        while c.process.poll() is None:
            if c.stop.wait(0.2):
                self.kill(c, self.grace_seconds())
                break
            reason = reason or self.run_probes(c, probes)
            if reason:
                self.kill(c, int(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))
        returncode = c.process.wait()
        plan_path.unlink(missing_ok=True)
        if c.cgroup:
            kill_cgroup(c.cgroup)
        code = 128 - returncode if returncode < 0 else returncode
        # As the kubelet: the runtime's message (here: why we killed it), then ": " and the termination message.
        message = ": ".join(m for m in (reason and f"killed after a failed {reason} probe",
                                        termination_message(c, message_file, message_before, log_path, code)) if m)
        with self.lock:
            c.ready = False
            c.state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                      "startedAt": started_at, "finishedAt": now(),
                                      "containerID": f"local://{self.uid}-{c.name}-{c.restarts}"}}
            if message:
                c.state["terminated"]["message"] = message
        self.sync()
        return code

    def run_probes(self, c: Container, probes: dict[str, Probe]) -> str | None:
        """Runs the probes that are due; the failed probe's kind when the container must be restarted."""
        startup = probes.get("startupProbe")
        if startup and not c.started:
            result = startup.due_result(self, c)
            if result is True:
                c.started = True
                self.sync()
            return "startup" if result is False and startup.failed_out() else None
        changed, restart = False, None
        readiness = probes.get("readinessProbe")
        if readiness:
            result = readiness.due_result(self, c)
            if result is not None:
                if result:
                    ready = c.ready or readiness.successes >= readiness.success_threshold
                else:
                    ready = c.ready and not readiness.failed_out()
                changed, c.ready = ready != c.ready, ready
        liveness = probes.get("livenessProbe")
        if liveness and liveness.due_result(self, c) is False and liveness.failed_out():
            log.info("pod %s/%s container %s: liveness probe failed, restarting", self.namespace, self.name, c.name)
            restart = "liveness"
        if changed:
            self.sync()
        return restart

    def grace_seconds(self) -> int:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        return int(grace if grace is not None else self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def kill(self, c: Container, grace: int) -> None:
        process = c.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            if c.cgroup:
                kill_cgroup(c.cgroup)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)

    # ---- status ----------------------------------------------------------------------------
    def phase(self) -> str:
        states = [c.state for c in self.containers]
        if not self.initialized:
            failed = any(c.state.get("terminated", {}).get("exitCode", 0) != 0 for c in self.init_containers)
            if failed and (self.restart_policy == "Never" or self.deleting.is_set()):
                return "Failed"
            return "Pending"
        waiting = sum(1 for c in self.containers if "waiting" in c.state and not c.last_state)
        running = sum(1 for s in states if "running" in s)
        stopped = [c for c in self.containers if "terminated" in c.state or ("waiting" in c.state and c.last_state)]
        if waiting and not self.deleting.is_set():
            return "Pending"
        if running:
            return "Running"
        codes = [(c.state.get("terminated") or c.last_state.get("terminated") or {}).get("exitCode", 1)
                 for c in stopped]
        if self.restart_policy == "Always" and not self.deleting.is_set():
            return "Running"
        if codes and all(code == 0 for code in codes) and len(codes) == len(self.containers):
            return "Succeeded"
        return "Running" if self.restart_policy == "OnFailure" and not self.deleting.is_set() else "Failed"

    def condition(self, type_: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
        status = "True" if ok else "False"
        previous = self.transitions.get(type_)
        if previous is None or previous[0] != status:
            self.transitions[type_] = (status, now())
        cond = {"type": type_, "status": status, "lastTransitionTime": self.transitions[type_][1],
                "lastProbeTime": None}
        if reason and not ok:
            cond["reason"] = reason
        return cond

    def sync(self, terminal: bool = False) -> None:
        with self.lock:
            phase = self.phase()
            ready = all(c.ready for c in self.containers) and phase == "Running"
            scheduled = next((c for c in (self.pod.get("status") or {}).get("conditions") or []
                              if c["type"] == "PodScheduled"), {"type": "PodScheduled", "status": "True"})
            conditions = [
                self.condition("PodReadyToStartContainers", self.sandbox_ready and not terminal),
                self.condition("Initialized", self.initialized, "ContainersNotInitialized"),
                self.condition("Ready", ready, "ContainersNotReady" if phase != "Succeeded" else "PodCompleted"),
                self.condition("ContainersReady", ready, "ContainersNotReady"),
                scheduled,
            ]
            status: dict[str, Any] = {
                "phase": phase, "conditions": conditions, "hostIP": self.runner.gateway,
                "hostIPs": [{"ip": self.runner.gateway}], "startTime": self.start_time,
                "containerStatuses": [c.status(self.uid) for c in self.containers],
            }
            if self.init_containers:
                status["initContainerStatuses"] = [c.status(self.uid) for c in self.init_containers]
            if self.sandbox_ready:
                status.update(podIP=self.ip, podIPs=[{"ip": self.ip}])
            body = json.dumps(status, sort_keys=True)
            if body == self.last_status or self.final:
                return
            self.last_status = body
            try:
                self.runner.core.patch_namespaced_pod_status(self.name, self.namespace, {"status": status})
            except ApiException as exc:
                if exc.status == 404:
                    self.final = True
                    for c in self.init_containers + self.containers:
                        c.stop.set()
                else:
                    log.warning("pod %s/%s: status not written: %s", self.namespace, self.name, exc.reason)
                    self.last_status = ""


class Probe:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.period = float(spec.get("periodSeconds", 10))
        self.timeout = float(spec.get("timeoutSeconds", 1))
        self.failure_threshold = int(spec.get("failureThreshold", 3))
        self.success_threshold = int(spec.get("successThreshold", 1))
        self.next_due = time.monotonic() + float(spec.get("initialDelaySeconds", 0))
        self.successes = self.failures = 0

    def failed_out(self) -> bool:
        return self.failures >= self.failure_threshold

    def due_result(self, worker: PodWorker, c: Container) -> bool | None:
        """The result of the probe if it was due, else None."""
        if time.monotonic() < self.next_due:
            return None
        self.next_due = time.monotonic() + self.period
        ok = self.check(worker, c)
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
        return ok

    def port(self, c: Container, port: Any) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        return next(int(p["containerPort"]) for p in c.spec.get("ports") or [] if p.get("name") == port)

    def check(self, worker: PodWorker, c: Container) -> bool:
        try:
            if "httpGet" in self.spec:
                get = self.spec["httpGet"]
                host = get.get("host") or worker.ip
                conn = http.client.HTTPConnection(host, self.port(c, get["port"]), timeout=self.timeout)
                headers = {"User-Agent": "kube-probe/1.36",
                           **{h["name"]: h["value"] for h in get.get("httpHeaders") or []}}
                conn.request("GET", get.get("path", "/"), headers=headers)
                status = conn.getresponse().status
                conn.close()
                return 200 <= status < 400
            if "tcpSocket" in self.spec:
                port = self.port(c, self.spec["tcpSocket"]["port"])
                with socket.create_connection((worker.ip, port), timeout=self.timeout):
                    return True
            if "exec" in self.spec and c.process is not None:
                plan = c.plan
                argv = ["nsenter", "-t", str(c.process.pid), "-m", "-n", "-u", "-S", str(plan["uid"]),
                        "-G", str(plan["gid"]), "--", *self.spec["exec"]["command"]]
                return subprocess.run(argv, env=plan["env"], capture_output=True, timeout=self.timeout).returncode == 0
        except Exception:  # any failure of a probe is a failed probe
            return False
        return False


# ---- termination message ---------------------------------------------------------------------
MESSAGE_BYTES = 4096  # the kubelet's MaxContainerTerminationMessageLength
LOG_MESSAGE_LINES, LOG_MESSAGE_BYTES = 80, 2048  # its log tail for FallbackToLogsOnError


def termination_file(c: Container, plan: dict[str, Any]) -> tuple[Path, Path] | None:
    """The host file behind the container's terminationMessagePath, and the mounted folder it lies in; None
    when the path is in no folder mounted into the container (the default /dev/termination-log)."""
    target = PurePosixPath(os.path.normpath(c.spec.get("terminationMessagePath") or "/dev/termination-log"))
    best: tuple[PurePosixPath, Path] | None = None
    for m in plan.get("mounts") or []:
        mount = PurePosixPath(os.path.normpath(m["target"]))
        if target != mount and target.is_relative_to(mount) and Path(m["source"]).is_dir() \
                and (best is None or len(mount.parts) >= len(best[0].parts)):  # the deepest (last) mount wins
            best = (mount, Path(m["source"]))
    return (best[1] / target.relative_to(best[0]), best[1]) if best else None


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _read_message_file(path: Path, folder: Path) -> str:
    """The last MESSAGE_BYTES of the file (tail.ReadAtMost, as the kubelet). The runner is root and the file
    is the container's: a symlink out of its volume, or anything but a regular file, is not read."""
    try:
        real = path.resolve()
        if not real.is_relative_to(folder.resolve()):
            return f"Error on reading termination log {path}: it leaves its volume"
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"Error on reading termination log {path}: {exc}"
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"Error on reading termination log {path}: not a regular file"
        f.seek(max(0, st.st_size - MESSAGE_BYTES))
        return f.read(MESSAGE_BYTES).decode("utf-8", "replace")


def log_tail(path: Path) -> str:
    """The last LOG_MESSAGE_LINES lines of the log, of which the last LOG_MESSAGE_BYTES (as the kubelet)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_MESSAGE_BYTES))
            data = f.read()
    except OSError:
        return ""
    start, pos = 0, len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(LOG_MESSAGE_LINES):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            break
    else:
        start = pos + 1
    return data[start:].decode("utf-8", "replace")


def termination_message(c: Container, message_file: tuple[Path, Path] | None, before: tuple[int, int, int] | None,
                        log_path: Path, code: int) -> str:
    """The container's termination message: its terminationMessagePath file if this run wrote it (the kubelet
    gives each run a fresh file; here it is the volume's, left by an earlier run unless rewritten), else with
    FallbackToLogsOnError and a non-zero exit code the tail of its log."""
    message = ""
    if message_file and _file_stamp(message_file[0]) not in (None, before):
        message = _read_message_file(*message_file)
    if not message and code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        message = log_tail(log_path)
    return message


# ---- env and volumes ---------------------------------------------------------------------------
def _read(worker: PodWorker, kind: str, name: str, optional: bool) -> dict[str, str] | None:
    """The decoded data of a Secret or ConfigMap of the pod's namespace; None when optional and missing."""
    core = worker.runner.core
    try:
        if kind == "secret":
            obj = core.read_namespaced_secret(name, worker.namespace, _preload_content=False)
            raw = json.loads(obj.data)
            return {k: base64.b64decode(v).decode("utf-8", "surrogateescape")
                    for k, v in (raw.get("data") or {}).items()}
        obj = core.read_namespaced_config_map(name, worker.namespace, _preload_content=False)
        raw = json.loads(obj.data)
        data = dict(raw.get("data") or {})
        data.update({k: base64.b64decode(v).decode("utf-8", "surrogateescape")
                     for k, v in (raw.get("binaryData") or {}).items()})
        return data
    except ApiException as exc:
        if exc.status == 404:
            if optional:
                return None
            raise ConfigError(f'{kind} "{name}" not found') from None
        raise


def field_value(worker: PodWorker, path: str) -> str:
    meta = worker.pod["metadata"]
    simple = {"metadata.name": worker.name, "metadata.namespace": worker.namespace, "metadata.uid": worker.uid,
              "spec.nodeName": worker.runner.node,
              "spec.serviceAccountName": worker.pod["spec"].get("serviceAccountName", ""),
              "status.podIP": worker.ip, "status.podIPs": worker.ip, "status.hostIP": worker.runner.gateway,
              "status.hostIPs": worker.runner.gateway}
    if path in simple:
        return simple[path]
    for prefix, values in (("metadata.labels", meta.get("labels") or {}),
                           ("metadata.annotations", meta.get("annotations") or {})):
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        if path.startswith(prefix + "['"):
            return str(values.get(path[len(prefix) + 2:-2], ""))
    raise ConfigError(f"unsupported fieldPath {path}")


def container_env(worker: PodWorker, c: Container, image: Image) -> dict[str, str]:
    """The container's environment: the image's, the service variables, then envFrom and env."""
    base = {"KUBERNETES_SERVICE_HOST": worker.runner.api_host, "KUBERNETES_SERVICE_PORT": worker.runner.api_port,
            "KUBERNETES_SERVICE_PORT_HTTPS": worker.runner.api_port, "HOSTNAME": worker.name}
    own: dict[str, str] = {}
    for source in c.spec.get("envFrom") or []:
        kind = "secret" if "secretRef" in source else "configmap"
        ref = source.get("secretRef") or source.get("configMapRef") or {}
        found = _read(worker, kind, ref["name"], bool(ref.get("optional"))) or {}
        own.update({source.get("prefix", "") + k: v for k, v in found.items()})
    for var in c.spec.get("env") or []:
        if "valueFrom" not in var:
            own[var["name"]] = expand(str(var.get("value", "")), {**base, **own})
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            own[var["name"]] = field_value(worker, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "secret" if "secretKeyRef" in source else "configmap"
            ref = source.get("secretKeyRef") or source["configMapKeyRef"]
            data = _read(worker, kind, ref["name"], bool(ref.get("optional")))
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise ConfigError(f"couldn't find key {ref['key']} in {kind} {worker.namespace}/{ref['name']}")
            own[var["name"]] = data[ref["key"]]
        elif "resourceFieldRef" in source:
            own[var["name"]] = "0"
    return {**image.env, **base, **own}


def _write_files(directory: Path, files: dict[str, str], mode: int, gid: int | None) -> None:
    for rel, content in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, errors="surrogateescape")
        path.chmod(mode)
        if gid is not None:
            os.chown(path, 0, gid)


def _selected(data: dict[str, str], items: list[dict[str, Any]] | None, name: str) -> dict[str, str]:
    if not items:
        return data
    missing = [i["key"] for i in items if i["key"] not in data]
    if missing:
        raise ConfigError(f"configmap/secret {name}: missing keys {missing}")
    return {i["path"]: data[i["key"]] for i in items}


def _projection(worker: PodWorker, source: dict[str, Any], fs_group: int | None) -> dict[str, str]:
    """One source of a projected volume (or a whole configMap/secret/downwardAPI volume)."""
    if "serviceAccountToken" in source:
        spec = source["serviceAccountToken"]
        body: dict[str, Any] = {"spec": {
            "expirationSeconds": spec.get("expirationSeconds", 3600),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": worker.name, "uid": worker.uid}}}
        if spec.get("audience"):
            body["spec"]["audiences"] = [spec["audience"]]
        account = worker.pod["spec"].get("serviceAccountName") or "default"
        token = worker.runner.core.create_namespaced_service_account_token(account, worker.namespace, body)
        return {spec["path"]: token.status.token}
    if "downwardAPI" in source:
        return {item["path"]: field_value(worker, item["fieldRef"]["fieldPath"])
                for item in source["downwardAPI"].get("items") or [] if "fieldRef" in item}
    kind = "secret" if "secret" in source else "configmap"
    ref = source.get("secret") or source.get("configMap") or {}
    name = ref.get("secretName") or ref.get("name", "")
    data = _read(worker, kind, name, bool(ref.get("optional")))
    return {} if data is None else _selected(data, ref.get("items"), name)


def materialise_volumes(worker: PodWorker) -> dict[str, tuple[Path, bool]]:
    """Each volume as a host folder (and whether it is read-only), the way the kubelet lays them out."""
    spec = worker.pod["spec"]
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    result: dict[str, tuple[Path, bool]] = {}
    for volume in spec.get("volumes") or []:
        name = volume["name"]
        path = worker.dir / "volumes" / name
        if "persistentVolumeClaim" in volume:
            source = volume["persistentVolumeClaim"]
            claim = worker.runner.core.read_namespaced_persistent_volume_claim(source["claimName"], worker.namespace)
            if not claim.spec.volume_name or (claim.status and claim.status.phase != "Bound"):
                raise ConfigError(f"persistentvolumeclaim {source['claimName']} is not bound")
            path = worker.runner.root / "volumes" / claim.spec.volume_name
            if not path.exists():
                _provision(worker, claim, path)
            _give_to_fs_group(path, fs_group)
            result[name] = (path, bool(source.get("readOnly")))
            continue
        if "hostPath" in volume:
            result[name] = (Path(volume["hostPath"]["path"]), False)
            continue
        path.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            path.chmod(0o777)
            _give_to_fs_group(path, fs_group)
            result[name] = (path, False)
            continue
        kinds = [k for k in ("configMap", "secret", "downwardAPI", "projected") if k in volume]
        if not kinds:
            raise ConfigError(f"volume {name}: unsupported type {sorted(volume)}")
        source = volume[kinds[0]]
        sources = source.get("sources") or [] if kinds[0] == "projected" else [{kinds[0]: source}]
        files: dict[str, str] = {}
        for item in sources:
            files.update(_projection(worker, item, fs_group))
        path.chmod(0o755)
        _write_files(path, files, int(source.get("defaultMode", 0o644)) | (0o040 if fs_group is not None else 0),
                     fs_group)
        result[name] = (path, True)
    return result


def _provision(worker: PodWorker, claim: Any, path: Path) -> None:
    """A volume's folder, made on first use. A claim with a PVC `dataSource` is a clone of that claim's
    volume (what a CSI driver with volume cloning does at provisioning time): its files are copied."""
    source = claim.spec.data_source
    staging = path.with_name(path.name + ".provisioning")
    shutil.rmtree(staging, ignore_errors=True)
    if source is not None and source.kind == "PersistentVolumeClaim":
        origin = worker.runner.core.read_namespaced_persistent_volume_claim(source.name, worker.namespace)
        origin_path = worker.runner.root / "volumes" / (origin.spec.volume_name or "")
        if not origin.spec.volume_name or not origin_path.is_dir():
            raise ConfigError(f"persistentvolumeclaim {claim.metadata.name}: dataSource {source.name} has no volume")
        shutil.copytree(origin_path, staging, symlinks=True)
    else:
        staging.mkdir(parents=True)
    staging.rename(path)


def _give_to_fs_group(path: Path, fs_group: int | None) -> None:
    if fs_group is None:
        return
    stat = path.stat()
    if stat.st_gid != fs_group:
        os.chown(path, stat.st_uid, fs_group)
        path.chmod(0o2777 if stat.st_mode & 0o007 == 0o007 else 0o2775)


def exec_plan(worker: PodWorker, c: Container, image: Image, env: dict[str, str]) -> dict[str, Any]:
    """What noderunner_exec needs: namespaces, mounts, user and argv of the container."""
    pod_sc = worker.pod["spec"].get("securityContext") or {}
    sc = {**pod_sc, **(c.spec.get("securityContext") or {})}
    uid = int(sc.get("runAsUser", image.uid))
    gid = int(sc.get("runAsGroup", image.gid if uid == image.uid else 0))
    if sc.get("runAsNonRoot") and uid == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root")
    groups = [gid] + ([int(pod_sc["fsGroup"])] if "fsGroup" in pod_sc else []) + \
        [int(g) for g in pod_sc.get("supplementalGroups") or []]
    rootfs = worker.dir / "rootfs" / c.name
    mounts = [{"source": m.source, "target": m.target, "readOnly": m.read_only} for m in image.files]
    mounted = {m["mountPath"].rstrip("/") for m in c.spec.get("volumeMounts") or []}
    for target in image.volumes:
        if target in mounted:
            continue
        folder = rootfs / target.strip("/").replace("/", "_")
        if not folder.exists():
            folder.mkdir(parents=True)
            if target == "/etc/odoo":
                (folder / "odoo.conf").write_text(odoo_image_conf(_odoo_home(worker, c)))
            for child in [folder, *folder.iterdir()]:
                os.chown(child, image.uid, image.gid)
            if target == "/tmp":
                folder.chmod(0o1777)
        mounts.append({"source": str(folder), "target": target, "readOnly": False})
    for m in c.spec.get("volumeMounts") or []:
        source, read_only = worker.volume_dirs[m["name"]]
        if m.get("subPath"):
            source = source / m["subPath"]
            if not source.exists():
                source.mkdir(parents=True)
                _give_to_fs_group(source, pod_sc.get("fsGroup"))
        mounts.append({"source": str(source), "target": m["mountPath"],
                       "readOnly": read_only or bool(m.get("readOnly"))})
    if worker.netns and "/etc/hosts" not in mounted:
        # What the kubelet writes: the Pod's own name resolves to its IP (Odoo's server looks it up at
        # start; without it the lookup goes to a nameserver the pod network cannot reach, 10 s lost).
        rootfs.mkdir(parents=True, exist_ok=True)
        hosts = rootfs / "etc-hosts"
        hosts.write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                         f"{worker.ip}\t{worker.name}\n")
        hosts.chmod(0o644)
        mounts.append({"source": str(hosts), "target": "/etc/hosts", "readOnly": True})
    env = dict(env)
    argv = container_argv(c.spec, image, env)
    return {"netns": worker.netns, "premounts": worker.runner.exposures if uid != 0 else [],
            "mounts": mounts, "uid": uid, "gid": gid, "groups": groups,
            "workdir": c.spec.get("workingDir") or image.workdir, "argv": argv, "env": env,
            "hostname": worker.name, "noNewPrivs": sc.get("allowPrivilegeEscalation") is False}


def _odoo_home(worker: PodWorker, c: Container) -> Path:
    return Path(worker.runner.images.odoo_homes[_repository_and_tag(c.spec.get("image", ""))[1]])


# ---- main ------------------------------------------------------------------------------------
def parse_homes(values: list[str]) -> dict[str, Path]:
    homes = {}
    for value in values:
        series, _, folder = value.partition("=")
        homes[series] = Path(folder)
    return homes or {"16.0": REPO_ROOT / ".cache" / "odoo" / "current"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", default="odoo-runner-0")
    parser.add_argument("--root", type=Path, required=True, help="pods' logs and volumes")
    parser.add_argument("--images-dir", type=Path, default=None,
                        help="image commands, run by containers' users by host path (default ROOT/images)")
    parser.add_argument("--bridge", default="odoobr1")
    parser.add_argument("--cidr", default="10.89.1.0/24")
    parser.add_argument("--odoo-home", action="append", default=[], metavar="SERIES=DIR",
                        help="Odoo of an image series: DIR/src/odoo-bin, DIR/venv/bin/python "
                             "(default 16.0=.cache/odoo/current)")
    parser.add_argument("--operator-image", default=os.environ.get("ODOO_OPERATOR_IMAGE") or "odoo-db-operator:0.1.0")
    parser.add_argument("--backoff-seconds", type=float, default=10.0, help="first crash-loop back-off")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    api = kubernetes.config.new_client_from_config(config_file=args.kubeconfig)
    images = ImageSettings(parse_homes(args.odoo_home), args.operator_image,
                           args.images_dir or args.root / "images")
    runner = Runner(api, args.node, args.root, args.bridge, args.cidr, images, args.backoff_seconds)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        runner.run()
    finally:
        runner.shutdown()


if __name__ == "__main__":
    main()
