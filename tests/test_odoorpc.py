"""odoorpc against a hostile answerer: whoever runs a Pod behind the database's Service answers the operator's
calls (the tenant can). A real HTTP server on loopback plays it: a redirect elsewhere, an endless answer, an
error text of a megabyte. The password is never sent twice, memory stays bounded, status stays small."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from odoo_operator import odoorpc


class Hostile(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, str, bytes]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        Hostile.requests.append(("GET", self.path, b""))
        self.send_response(200)
        self.end_headers()

    def do_POST(self) -> None:
        Hostile.requests.append(("POST", self.path, self._body()))
        if self.path == "/redirect/jsonrpc":
            self.send_response(302)  # followed, it would make the operator GET any address
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/elsewhere")
            self.end_headers()
        elif self.path == "/flood/jsonrpc":
            self.send_response(200)
            self.end_headers()
            chunk = b"[" * 65536
            try:
                for _ in range(odoorpc.MAX_ANSWER_BYTES // len(chunk) + 64):
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client stopped reading: what we want
        else:  # an error whose text is huge
            payload = {"jsonrpc": "2.0", "id": 1, "error": {"message": "Odoo Server Error", "data": {
                "name": "odoo.exceptions.UserError" + "X" * 10000, "message": "E" * 1_000_000}}}
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def hostile() -> Iterator[str]:
    Hostile.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_redirect_is_not_followed_and_the_password_goes_nowhere_else(hostile: str) -> None:
    with pytest.raises(odoorpc.OdooUnavailable, match="HTTP 302"):
        odoorpc.connect_admin(f"{hostile}/redirect", "shop", "s3cret-admin-password", timeout=5)
    assert [(method, path) for method, path, _ in Hostile.requests] == [("POST", "/redirect/jsonrpc")]


def test_an_endless_answer_is_not_read_into_memory(hostile: str) -> None:
    with pytest.raises(odoorpc.OdooUnavailable, match="answered more than"):
        odoorpc.connect_admin(f"{hostile}/flood", "shop", "pw", timeout=10)


def test_an_error_text_is_clipped_before_it_can_reach_a_status(hostile: str) -> None:
    with pytest.raises(odoorpc.OdooError) as refused:
        odoorpc.connect_admin(f"{hostile}/huge-error", "shop", "pw", timeout=5)
    assert len(refused.value.message) <= odoorpc.MESSAGE_MAX and len(str(refused.value)) <= odoorpc.MESSAGE_MAX + 210
    assert "pw" not in str(refused.value).replace("UserError", "")
