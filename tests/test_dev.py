"""`make dev`: everything comes up, kubectl works, Ctrl-C (or a kill) leaves nothing running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odoo_operator.localcluster import REPO_ROOT, kubectl_binary

pytestmark = pytest.mark.e2e


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline[:120]}")
    return found


def wait_for_output(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed; output: {''.join(seen)}")


@pytest.mark.parametrize("stop", ["ctrl-c", "kill"])
def test_dev_runs_everything_and_leaves_nothing_behind(tmp_path, stop):
    dev_dir = tmp_path / "dev"
    proc = subprocess.Popen(
        [sys.executable, "-m", "odoo_operator.dev"], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env={**os.environ, "ODOO_DEV_DIR": str(dev_dir)}, start_new_session=True,
    )
    try:
        wait_for_output(proc, "Local control plane ready", 120)
        kubeconfig = dev_dir / "kubeconfig"
        out = subprocess.run([kubectl_binary(), f"--kubeconfig={kubeconfig}", "get", "pgs", "local", "-o",
                              "jsonpath={.spec.default}"], capture_output=True, text=True, timeout=30)
        assert out.stdout == "true", out.stderr
        pg_dir = str((dev_dir / "postgres").resolve())
        assert processes_mentioning(str(dev_dir)) and processes_mentioning(pg_dir)
    finally:
        with contextlib.suppress(ProcessLookupError):
            if stop == "ctrl-c":
                os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends to the foreground group
            else:
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    deadline = time.monotonic() + 20
    while (processes_mentioning(str(dev_dir)) or processes_mentioning(pg_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_mentioning(str(dev_dir)) == [] and processes_mentioning(pg_dir) == []
