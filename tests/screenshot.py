"""A PNG of a page, taken by Debian's headless Chromium (`apt-get install -y chromium`).

    python tests/screenshot.py http://shop.odoo.localhost:8080/web/login shop-login.png

Every run gets a fresh profile (--user-data-dir), and `*.odoo.localhost` resolves to 127.0.0.1 whatever
the system resolver says. The background-networking flags matter on machines without internet access:
without them Chromium keeps trying Google's hosts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--host-resolver-rules=MAP *.odoo.localhost 127.0.0.1, MAP odoo.localhost 127.0.0.1",
]


def chromium_command(url: str, path: Path, profile: Path, width: int = 1280, height: int = 800,
                     wait_ms: int = 3000) -> list[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    return [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
            # Let the page's scripts run (virtual time) before the picture is taken.
            f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", url]


def screenshot(url: str, path: str | Path, width: int = 1280, height: int = 800, wait_ms: int = 3000,
               timeout: float = 120) -> Path:
    """Take a PNG of `url` into `path` and return its path; raises RuntimeError with Chromium's words if none."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        result = subprocess.run(chromium_command(url, path, Path(profile), width, height, wait_ms),
                                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"chromium made no screenshot of {url} (exit {result.returncode}): {result.stderr[-2000:]}")
    return path


if __name__ == "__main__":
    print(screenshot(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "screenshot.png"))
