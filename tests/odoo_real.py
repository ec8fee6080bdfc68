"""Talking to a real Odoo: through the local Ingress proxy (HTTP, JSON-RPC, the WebSocket handshake)
and directly with Odoo's own code (`odoo-bin` and its Python API from `.cache/odoo/current`)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import socket
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odoo_operator.devtools.localcluster import REPO_ROOT

ODOO_HOME = Path(os.environ.get("ODOO_HOME") or REPO_ROOT / ".cache" / "odoo" / "current")
ODOO_PYTHON = ODOO_HOME / "venv" / "bin" / "python"
ODOO_BIN = ODOO_HOME / "src" / "odoo-bin"


def odoo_series() -> str:
    """The series of the prepared Odoo (`16.0`), read from its own release module."""
    release = (ODOO_HOME / "src" / "odoo" / "release.py").read_text()
    scope: dict[str, Any] = {}
    exec(compile(release, "release.py", "exec"), scope)
    return str(scope["serie"])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def request(port: int, host: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None,
            timeout: float = 60) -> Response:
    """One HTTP request to the local proxy at 127.0.0.1:port, for the virtual host `host`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = {"Host": host, **(headers or {})}
    if cookies:
        sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        data = response.read()
        got = {k.lower(): v for k, v in response.getheaders()}
        jar: dict[str, str] = {}
        for key, value in response.getheaders():
            if key.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                jar[name.strip()] = rest.split(";", 1)[0]
        return Response(response.status, got, data, jar)
    finally:
        conn.close()


def json_rpc(port: int, host: str, path: str, params: dict[str, Any],
             cookies: dict[str, str] | None = None) -> Response:
    payload = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": params}).encode()
    return request(port, host, "POST", path, payload, {"Content-Type": "application/json"}, cookies)


def authenticate(port: int, host: str, database: str, login: str, password: str) -> tuple[dict[str, Any], Response]:
    """Odoo's own login endpoint; returns the JSON-RPC answer and the response (its session cookie)."""
    response = json_rpc(port, host, "/web/session/authenticate",
                        {"db": database, "login": login, "password": password})
    return response.json(), response


def websocket_handshake(port: int, host: str, path: str = "/websocket", timeout: float = 30) -> tuple[int, str]:
    """Opens a WebSocket through the proxy as a browser does; returns the status code and the head."""
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    head = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    text = received.decode(errors="replace")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
    return status, text


@dataclass
class DirectOdoo:
    """Odoo's own code run on this machine against a database of the test server: what an Odoo
    administrator with shell access would run (`odoo-bin`, `odoo.service.db`)."""

    host: str
    port: int
    user: str
    password: str
    data_dir: Path

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password, "PYTHONUNBUFFERED": "1"}

    def _conf(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "odoo.conf"
        conf.write_text(textwrap.dedent(f"""\
            [options]
            db_host = {self.host}
            db_port = {self.port}
            db_user = {self.user}
            db_sslmode = disable
            data_dir = {self.data_dir}
            list_db = True
            """))
        return conf

    def odoo_bin(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        # A subcommand (`neutralize`, `shell`) comes before the options, as odoo-bin parses it.
        command = [args[0]] if args and not args[0].startswith("-") else []
        options = list(args[len(command):])
        result = subprocess.run([str(ODOO_PYTHON), str(ODOO_BIN), *command, "-c", str(self._conf()), *options],
                                env=self._env(), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"odoo-bin {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def shell(self, database: str, code: str, timeout: float = 300) -> str:
        """Runs `code` in `odoo-bin shell` (`env` bound, committed at the end); returns what it printed."""
        script = textwrap.dedent(code) + "\nenv.cr.commit()\n"
        result = subprocess.run([str(ODOO_PYTHON), str(ODOO_BIN), "shell", "-c", str(self._conf()), "-d", database,
                                 "--no-http", "--log-level=warn"],
                                input=script, env=self._env(), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0 or "Traceback" in result.stdout:
            raise AssertionError(f"odoo shell failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def python(self, code: str, timeout: float = 600) -> str:
        """Runs `code` with Odoo importable and its config loaded (for `odoo.service.db`)."""
        prelude = textwrap.dedent(f"""\
            import sys
            sys.path.insert(0, {str(ODOO_HOME / 'src')!r})
            import odoo
            odoo.tools.config.parse_config(['-c', {str(self._conf())!r}])
            """)
        result = subprocess.run([str(ODOO_PYTHON), "-c", prelude + textwrap.dedent(code)], env=self._env(),
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"odoo python failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result.stdout


def volume_dir(cluster: Any, namespace: str, claim: str) -> Path:
    """The folder the node runner keeps a bound PVC's volume in (`<runner root>/volumes/<pv>`)."""
    import json as _json

    pvc = _json.loads(cluster.kubectl("get", "pvc", claim, "-n", namespace, "-o", "json").stdout)
    path = Path(cluster.runner_root) / "volumes" / pvc["spec"]["volumeName"]
    path.mkdir(parents=True, exist_ok=True)
    return path
