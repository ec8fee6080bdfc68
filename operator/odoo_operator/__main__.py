"""The process entry: `python -m odoo_operator` runs the operator against the current kubeconfig (or
in-cluster) by starting kopf on main.py; nothing about the kinds lives here.

With `ODOO_OPERATOR_LEADER_ELECTION=true` the process first acquires the leader Lease (runtime/leader.py) and
starts kopf only then; a standby never starts kopf. Losing the Lease exits the process at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

# How long a graceful stop waits for reconcile threads to finish before exiting without releasing
# the Lease (it then expires by itself; nothing runs any more either way).
DRAIN_SECONDS = 30.0


def _kopf_args(argv: list[str]) -> list[str]:
    namespace = [arg for arg in argv if arg.startswith("--namespace") or arg == "-n"]
    args = ["run", "--standalone", "-m", "odoo_operator.main", *argv]
    if not namespace:
        args.append("--all-namespaces")
    return args


def _run_kopf(argv: list[str]) -> int:
    from kopf.cli import main as kopf_main

    sys.argv = ["kopf", *_kopf_args(argv)]
    try:
        kopf_main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _configure_logging() -> logging.Logger:
    """kopf configures logging when it starts; until then (standby) the election logs on its own."""
    log = logging.getLogger("odoo_operator.leader")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)-20.20s [%(levelname)-8.8s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def run_with_leader_election(argv: list[str]) -> int:
    from odoo_operator.config import Settings
    from odoo_operator.runtime import metrics
    from odoo_operator.runtime.leader import ElectionConfig, LeaderElector, StandbyHealth, lease_api, liveness_url

    log = _configure_logging()
    settings = Settings.from_env()
    metrics.set_leader(False)
    metrics.start_server(settings.metrics_port, settings.metrics_address)  # a standby is scraped too
    elector = LeaderElector(ElectionConfig.from_settings(settings), lease_api())
    stopping = threading.Event()

    def standby_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, standby_signal)
    signal.signal(signal.SIGINT, standby_signal)
    health = StandbyHealth(liveness_url(argv))  # the Pod's probes pass while standing by
    try:
        if not elector.acquire(stopping.is_set):
            log.info("stopped while standing by; the Lease was not ours")
            return 0
    finally:
        health.close()  # kopf serves --liveness from now on

    def early_signal(signum: int, frame: FrameType | None) -> None:
        # Leader, but kopf has not installed its own handlers yet: nothing reconciles so far.
        elector.release()
        os._exit(0)

    signal.signal(signal.SIGTERM, early_signal)
    signal.signal(signal.SIGINT, early_signal)
    elector.start_renewing()
    code = _run_kopf(argv)  # kopf replaces the signal handlers: SIGTERM stops it gracefully
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from odoo_operator import loop

    log.info(f"kopf stopped (exit code {code}); waiting for running reconciles before releasing the Lease")
    if not loop.drain(DRAIN_SECONDS):
        log.warning(f"a reconcile is still running after {DRAIN_SECONDS:g} s; exiting without releasing the Lease "
                    "(it expires by itself)")
        logging.shutdown()
        os._exit(code or 1)
    elector.release()  # renewals stop first; then holder cleared so a standby takes over at once
    return code


def main() -> None:
    from odoo_operator.config import Settings

    argv = sys.argv[1:]
    if Settings.from_env().leader_election:
        code = run_with_leader_election(argv)
        logging.shutdown()
        os._exit(code)  # the Lease is released and no thread is left that matters
    sys.exit(_run_kopf(argv))


if __name__ == "__main__":
    main()
