"""Leader election with a coordination.k8s.io/v1 Lease, with client-go's leaderelection semantics.

kopf's peering is not leader election (see KOPF-NOTES), so `python -m odoo_operator` with
`ODOO_OPERATOR_LEADER_ELECTION=true` first acquires the Lease here and only then starts kopf in the
same process; standby processes never start kopf, so they reconcile nothing.

- Acquire: create the Lease, or update it (optimistic concurrency: the update carries the
  resourceVersion read, a 409 means someone else won) when it is free or expired. "Expired" is judged
  like client-go: by this process's own clock, `leaseDuration` after it last *saw the record change*
  (never by comparing the holder's renewTime with our clock, so clock skew does not matter).
- Renew every `retryPeriod`; if no renewal succeeded for `renewDeadline` (< leaseDuration), or the
  Lease names another holder, the process exits at once (`os._exit(1)`, like controller-runtime):
  it never goes on reconciling without the Lease; Kubernetes restarts the Pod, which stands by.
  A watchdog thread enforces the deadline even if a request hangs.
- A graceful stop (SIGTERM/SIGINT) releases the Lease (holder cleared, leaseDurationSeconds 1) once
  kopf and every reconcile thread have stopped, so a standby takes over at its next retry.
"""

from __future__ import annotations

import datetime
import http.server
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from odoo_operator import kube
from odoo_operator.api.conditions import MICROTIME_FORMAT
from odoo_operator.config import Settings
from odoo_operator.runtime import metrics

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "odoo-system"

logger = logging.getLogger("odoo_operator.leader")


def _now_microtime() -> str:
    return datetime.datetime.now(datetime.UTC).strftime(MICROTIME_FORMAT)


def default_identity() -> str:
    return f"{socket.gethostname()}-{secrets.token_hex(4)}"


def default_namespace() -> str:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


@dataclass(frozen=True)
class ElectionConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("leader election needs leaseDuration > renewDeadline > retryPeriod > 0, got "
                             f"{self.lease_duration}, {self.renew_deadline}, {self.retry_period}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ElectionConfig:
        return cls(name=settings.lease_name, namespace=settings.lease_namespace or default_namespace(),
                   identity=settings.pod_name or default_identity(), lease_duration=settings.lease_duration,
                   renew_deadline=settings.renew_deadline, retry_period=settings.retry_period)


def _die(message: str) -> None:
    """Stop reconciling *now*: no cleanup, no graceful shutdown that could still touch anything."""
    logger.critical(f"{message}; exiting so that this process never reconciles without the Lease")
    for handler in [*logger.handlers, *logging.getLogger().handlers]:
        try:
            handler.flush()
        except Exception:  # best effort before exiting
            pass
    sys.stderr.flush()
    os._exit(1)


def lease_api(api_client: kubernetes.client.ApiClient | None = None) -> kubernetes.client.CoordinationV1Api:
    """Its own client: no urllib3 retries (each attempt is bounded by our timeouts), its own pool."""
    return kubernetes.client.CoordinationV1Api(api_client or kube.api_client(retries=False))


class LeaderElector:
    def __init__(self, config: ElectionConfig, api: kubernetes.client.CoordinationV1Api,
                 on_lost: Callable[[str], None] = _die, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.api: Any = api  # dict bodies and raw responses: the client's model types do not apply
        self.on_lost = on_lost
        self.clock = clock
        self._observed: dict[str, Any] | None = None  # the last Lease spec we saw
        self._observed_at = 0.0  # our clock when it last changed
        self._leader = False
        self._valid_until = 0.0  # our clock: renewDeadline after the start of the last successful renewal
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_problem = ""

    # ---- one attempt, as client-go's tryAcquireOrRenew ------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def holder(self) -> str | None:
        return (self._observed or {}).get("holderIdentity") or None

    def _timeout(self) -> float:
        return max(0.5, min(self.config.retry_period * 2, self.config.renew_deadline / 2))

    def _read(self) -> dict[str, Any] | None:
        try:
            response = self.api.read_namespaced_lease(self.config.name, self.config.namespace,
                                                      _preload_content=False, _request_timeout=self._timeout())
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(json.loads(response.data))

    def _record(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = _now_microtime()
        spec: dict[str, Any] = {"holderIdentity": self.config.identity,
                                "leaseDurationSeconds": max(1, round(self.config.lease_duration)),
                                "renewTime": now, "acquireTime": now, "leaseTransitions": 0}
        if previous is not None:
            transitions = int(previous.get("leaseTransitions") or 0)
            if previous.get("holderIdentity") == self.config.identity:
                spec["acquireTime"] = previous.get("acquireTime") or now
                spec["leaseTransitions"] = transitions
            else:
                spec["leaseTransitions"] = transitions + 1
        return spec

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True while we hold the Lease. Errors count as a failed attempt."""
        cfg = self.config
        try:
            lease = self._read()
            if lease is None:
                spec = self._record(None)
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": cfg.name, "namespace": cfg.namespace}, "spec": spec}
                self.api.create_namespaced_lease(cfg.namespace, body, _preload_content=False,
                                                 _request_timeout=self._timeout())
                self._observe(spec)
                self._last_problem = ""
                return True
            current = lease.get("spec") or {}
            if current != self._observed:
                self._observe(current)
            holder = current.get("holderIdentity") or ""
            duration = float(current.get("leaseDurationSeconds") or cfg.lease_duration)
            if holder and holder != cfg.identity and self.clock() < self._observed_at + duration:
                return False  # held by another, not expired by our clock
            if holder and holder != cfg.identity and self._leader:
                return False  # taken from us: we lost it
            spec = self._record(current)
            lease["spec"] = spec  # metadata.resourceVersion stays: the update is conditional on it
            self.api.replace_namespaced_lease(cfg.name, cfg.namespace, lease, _preload_content=False,
                                              _request_timeout=self._timeout())
            self._observe(spec)
            self._last_problem = ""
            return True
        except ApiException as exc:
            if exc.status == 409:
                logger.debug("the Lease changed under us (409): someone else won this round")
            else:
                self._problem(f"the API server answered {exc.status} {exc.reason}")
            return False
        except Exception as exc:  # network errors, timeouts: a failed attempt
            self._problem(f"{type(exc).__name__}: {str(exc)[:200]}")
            return False

    def _problem(self, message: str) -> None:
        """A failed attempt: a warning when the problem is new, then quietly (every retryPeriod)."""
        text = f"Lease {self.config.namespace}/{self.config.name}: {message}"
        (logger.debug if text == self._last_problem else logger.warning)(text)
        self._last_problem = text

    def _observe(self, spec: dict[str, Any]) -> None:
        self._observed = dict(spec)
        self._observed_at = self.clock()

    # ---- the loops --------------------------------------------------------------------------------

    def acquire(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Block until we hold the Lease (True) or should_stop() (False). Standby meanwhile."""
        cfg = self.config
        logger.info(f"{cfg.identity}: waiting for the leader Lease {cfg.namespace}/{cfg.name}")
        reported: str | None = None
        while not should_stop():
            started = self.clock()
            if self.try_acquire_or_renew():
                self._leader = True
                self._valid_until = started + cfg.renew_deadline
                metrics.set_leader(True)
                logger.info(f"{cfg.identity}: acquired the leader Lease {cfg.namespace}/{cfg.name}; starting")
                return True
            if self.holder != reported:
                reported = self.holder
                logger.info(f"{cfg.identity}: standing by; the Lease is held by {reported}")
            # client-go adds jitter to the retry period (JitterFactor 1.2): spread competing standbys.
            deadline = self.clock() + cfg.retry_period * (1 + 0.2 * secrets.randbelow(1000) / 1000)
            while not should_stop() and self.clock() < deadline:
                time.sleep(min(0.1, max(0.0, deadline - self.clock())))
        return False

    def start_renewing(self) -> None:
        """Renew in a background thread; a watchdog exits the process past renewDeadline."""
        for target, name in ((self._renew_loop, "lease-renew"), (self._watchdog, "lease-watchdog")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _renew_loop(self) -> None:
        cfg = self.config
        while not self._stop.wait(cfg.retry_period):
            started = self.clock()
            if self.try_acquire_or_renew():
                self._valid_until = max(self._valid_until, started + cfg.renew_deadline)
                continue
            if self._stop.is_set():
                return
            if self.holder and self.holder != cfg.identity:
                self._lose(f"the Lease {cfg.namespace}/{cfg.name} is now held by {self.holder}")
                return

    def _watchdog(self) -> None:
        while not self._stop.wait(0.2):
            if self.clock() > self._valid_until:
                self._lose(f"could not renew the Lease {self.config.namespace}/{self.config.name} within "
                           f"the renew deadline ({self.config.renew_deadline:g} s)")
                return

    def _lose(self, message: str) -> None:
        if self._stop.is_set() or self._lost.is_set():
            return
        self._lost.set()
        self._leader = False
        metrics.set_leader(False)
        self.on_lost(message)

    def stop_renewing(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(self._timeout() + 1)

    def release(self) -> bool:
        """Give the Lease up (only if still ours): holder cleared, leaseDurationSeconds 1."""
        self.stop_renewing()
        if not self._leader:
            return False
        self._leader = False
        metrics.set_leader(False)
        cfg = self.config
        try:
            lease = self._read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != cfg.identity:
                return False
            spec = dict(lease.get("spec") or {})
            now = _now_microtime()
            spec.pop("holderIdentity", None)
            spec.update({"leaseDurationSeconds": 1, "renewTime": now, "acquireTime": now})
            lease["spec"] = spec
            self.api.replace_namespaced_lease(cfg.name, cfg.namespace, lease, _preload_content=False,
                                              _request_timeout=self._timeout())
        except Exception as exc:
            logger.warning(f"could not release the Lease {cfg.namespace}/{cfg.name} ({type(exc).__name__}); "
                           "it expires by itself")
            return False
        logger.info(f"{cfg.identity}: released the leader Lease {cfg.namespace}/{cfg.name}")
        return True


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"standby": true}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StandbyHealth:
    """Answers kopf's `--liveness` URL while kopf is not running (standby), so that the Pod's probes
    pass; closed right before kopf starts and binds the same address."""

    def __init__(self, liveness_url: str | None) -> None:
        self.server: http.server.ThreadingHTTPServer | None = None
        if not liveness_url:
            return
        url = urllib.parse.urlsplit(liveness_url)
        try:
            self.server = http.server.ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 80), _Healthy)
        except OSError as exc:
            logger.warning(f"cannot answer {liveness_url} while standing by: {exc}")
            return
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="standby-health", daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def liveness_url(argv: list[str]) -> str | None:
    """kopf's `--liveness URL` / `--liveness=URL` from the command line."""
    for index, arg in enumerate(argv):
        if arg.startswith("--liveness="):
            return arg.split("=", 1)[1]
        if arg == "--liveness" and index + 1 < len(argv):
            return argv[index + 1]
    return None
