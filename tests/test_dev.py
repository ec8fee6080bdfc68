"""`make dev`: everything comes up, kubectl works, Ctrl-C (or a kill) leaves nothing running."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odoo_operator.devtools.localcluster import REPO_ROOT, kubectl_binary

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


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# "ctrl-c-background": started as a non-interactive shell starts `make dev &` (or nohup does), with SIGINT
# ignored, which Python keeps unless told otherwise.
@pytest.mark.parametrize("stop", ["ctrl-c", "kill", "ctrl-c-background"])
def test_dev_runs_everything_and_leaves_nothing_behind(tmp_path, stop):
    dev_dir = tmp_path / "dev"
    proc = subprocess.Popen(
        [sys.executable, "-m", "odoo_operator.devtools.dev"], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env={**os.environ, "ODOO_DEV_DIR": str(dev_dir)}, start_new_session=True,
        preexec_fn=_ignore_sigint if stop == "ctrl-c-background" else None,
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
            if stop.startswith("ctrl-c"):
                os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends to the foreground group
            else:
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    deadline = time.monotonic() + 20
    while (processes_mentioning(str(dev_dir)) or processes_mentioning(pg_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_mentioning(str(dev_dir)) == [] and processes_mentioning(pg_dir) == []


@pytest.mark.timeout(1200)
def test_dev_tour_ends_on_the_real_odoo_login_page(tmp_path):
    """The README tour as a newcomer follows it: `make dev`, apply the example, open the login page of
    the real Odoo through the database's host, log in as admin with the password from `<name>-admin`.
    The screenshot in the README is the one this test takes (`.cache/screenshots/odoo-login.png`)."""
    from conftest import wait_until
    from odoo_operator.devtools.localcluster import free_port
    from odoo_real import authenticate, request
    from screenshot import screenshot

    dev_dir, port = tmp_path / "dev", free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "odoo_operator.devtools.dev"], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "ODOO_DEV_DIR": str(dev_dir), "ODOO_DEV_PROXY_PORT": str(port)},
    )
    kubeconfig = dev_dir / "kubeconfig"

    def kubectl(*args: str) -> str:
        done = subprocess.run([kubectl_binary(), f"--kubeconfig={kubeconfig}", *args], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        wait_for_output(proc, "Local control plane ready", 180)
        kubectl("apply", "-f", str(REPO_ROOT / "examples" / "odoodatabase.yaml"))
        wait_until(lambda: kubectl("get", "odb", "shop", "-o",
                                   "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "True",
                   900, "shop Ready after the real init", interval=2)
        password = base64.b64decode(kubectl("get", "secret", "shop-admin", "-o", "jsonpath={.data.password}")).decode()
        host = "shop.odoo.localhost"
        page = wait_until(lambda: (r := request(port, host, "GET", "/web/login")).status == 200 and r, 120,
                          "the login page")
        assert b'name="login"' in page.body
        answer, _ = authenticate(port, host, "shop", "admin", password)
        assert answer.get("result", {}).get("uid") == 2, answer
        png = screenshot(f"http://{host}:{port}/web/login", REPO_ROOT / ".cache" / "screenshots" / "odoo-login.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

        # The tour's next step: the template Odoo built meanwhile, then a second database copied from it.
        wait_until(lambda: kubectl("get", "pgs", "local", "-o", "jsonpath={.status.templates[*].state}") == "Ready",
                   900, "the template Ready", interval=2)
        second = (REPO_ROOT / "examples" / "odoodatabase.yaml").read_text().replace("shop", "blog")
        done = subprocess.run([kubectl_binary(), f"--kubeconfig={kubeconfig}", "apply", "-f", "-"], input=second,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_until(lambda: kubectl("get", "odb", "blog", "-o",
                                   "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "True",
                   180, "blog Ready, copied from the template", interval=1)
        assert "blog-init" not in kubectl("get", "jobs", "-o", "name")
        blog = base64.b64decode(kubectl("get", "secret", "blog-admin", "-o", "jsonpath={.data.password}")).decode()
        wait_until(lambda: request(port, "blog.odoo.localhost", "GET", "/web/login").status == 200, 120,
                   "blog's login page")
        answer, _ = authenticate(port, "blog.odoo.localhost", "blog", "admin", blog)
        assert answer.get("result", {}).get("uid") == 2, answer
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(90)
    deadline = time.monotonic() + 30
    while processes_mentioning(str(dev_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_mentioning(str(dev_dir)) == []
