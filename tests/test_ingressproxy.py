"""The local ingress proxy: routes by the cluster's Ingresses and HTTPRoutes to ready EndpointSlice endpoints.

Unit tests for the matching rules; end to end against the real API server, with selector-less Services
whose hand-made EndpointSlices point at HTTP and WebSocket servers this test runs. The API server refuses
loopback addresses in an EndpointSlice, so those servers listen in a network namespace of the test's own
(a "test host" reached over a veth pair, as the node runner's Pods are): their sockets are bound there
by a thread that joined the namespace, and served by this process."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import http.client
import json
import os
import re
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import websocket  # websocket-client, a dependency of the kubernetes client
import yaml

from conftest import apply_yaml, install_gateway_api, wait_until
from odoo_operator.devtools.ingressproxy import (
    BackendRef,
    IngressProxy,
    NoEndpoint,
    Request,
    Route,
    build_view,
    host_rank,
    normalize_host,
    parse_head,
    parse_request,
    path_rank,
    ready_endpoints,
    select_route,
    upstream_head,
)
from odoo_operator.devtools.localcluster import REPO_ROOT, LocalCluster, free_port

# ---- unit -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "exact", "path", "matches"), [
    # The table of https://kubernetes.io/docs/concepts/services-networking/ingress/#examples
    ("/", False, "/anything", True),
    ("/foo", True, "/foo", True),
    ("/foo", True, "/bar", False),
    ("/foo", True, "/foo/", False),
    ("/foo/", True, "/foo", False),
    ("/foo", False, "/foo", True),
    ("/foo", False, "/foo/", True),
    ("/foo/", False, "/foo", True),
    ("/foo/", False, "/foo/", True),
    ("/aaa/bb", False, "/aaa/bbb", False),
    ("/aaa/bbb", False, "/aaa/bbb", True),
    ("/aaa/bbb/", False, "/aaa/bbb", True),
    ("/aaa/bbb", False, "/aaa/bbb/", True),
    ("/aaa/bbb", False, "/aaa/bbb/ccc", True),
    ("/aaa/bbb", False, "/aaa/bbbxyz", False),
    ("/websocket", False, "/websocketx", False),
])
def test_kubernetes_path_matching(rule: str, exact: bool, path: str, matches: bool) -> None:
    assert (path_rank(rule, exact, path) is not None) is matches


def test_host_matching() -> None:
    assert host_rank("shop.example.com", "shop.example.com") == (2, 16)
    assert host_rank("shop.example.com", "shop.example.co") is None
    assert host_rank("*.example.com", "shop.example.com") == (1, 12)
    assert host_rank("*.example.com", "example.com") is None  # the wildcard needs a label
    assert host_rank("*.example.com", "a.shop.example.com") is None  # exactly one, for an Ingress
    assert host_rank("*.example.com", "a.shop.example.com", any_depth=True) == (1, 12)  # any, for an HTTPRoute
    assert host_rank(None, "whatever") == (0, 0)
    assert normalize_host("Shop.Odoo.Localhost:8080") == "shop.odoo.localhost"
    assert normalize_host("shop.example.com.") == "shop.example.com"
    assert normalize_host("[::1]:8080") == "::1"


def _route(source: str, host: str | None, path: str, exact: bool = False, created: str = "2026-01-01T00:00:00Z",
           any_depth: bool = False) -> Route:
    return Route(source, host, path, exact, (BackendRef("ns", source, 80),), created, wildcard_any_depth=any_depth)


def test_most_specific_route_wins() -> None:
    routes = [
        _route("catch-all", None, "/"),
        _route("wild", "*.example.com", "/"),
        _route("shop", "shop.example.com", "/"),
        _route("shop-ws", "shop.example.com", "/websocket"),
        _route("shop-exact", "shop.example.com", "/websocket/info", exact=True),
        _route("shop-prefix", "shop.example.com", "/websocket/info"),
        _route("older", "old.example.com", "/", created="2025-01-01T00:00:00Z"),
        _route("newer", "old.example.com", "/", created="2026-01-01T00:00:00Z"),
    ]

    def pick(host: str, path: str) -> str | None:
        route = select_route(routes, host, path)
        return route.source if route else None

    assert pick("shop.example.com", "/web/login") == "shop"
    assert pick("shop.example.com", "/websocket") == "shop-ws"
    assert pick("shop.example.com", "/websocket/x") == "shop-ws"
    assert pick("shop.example.com", "/websocketx") == "shop"
    assert pick("shop.example.com", "/websocket/info") == "shop-exact"  # Exact before a Prefix of equal length
    assert pick("shop.example.com", "/websocket/info/more") == "shop-prefix"
    assert pick("other.example.com", "/") == "wild"
    assert pick("a.b.example.com", "/") == "catch-all"
    assert pick("old.example.com", "/") == "older"  # equal rules: the oldest object
    assert select_route(routes[1:3], "example.org", "/") is None


def _slice(service: str, port_name: str, port: int, *endpoints: tuple[str, bool | None]) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": f"{service}-{port}",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], **({"conditions": {"ready": ready}} if ready is not None else {})}
                          for address, ready in endpoints]}


def test_backend_resolution_service_port_to_ready_endpoints() -> None:
    service = {"metadata": {"namespace": "ns", "name": "odoo"}, "spec": {"ports": [
        {"name": "http", "port": 8069, "targetPort": "http"},
        {"name": "longpolling", "port": 8072, "targetPort": "longpolling"}]}}
    view = build_view([], [], [service], [
        _slice("odoo", "http", 18069, ("10.1.0.1", True), ("10.1.0.2", False), ("10.1.0.3", None)),
        _slice("odoo", "longpolling", 18072, ("10.1.0.1", True)),
        _slice("other", "http", 9999, ("10.9.9.9", True)),
    ])
    assert ready_endpoints(view, BackendRef("ns", "odoo", 8069)) == [("10.1.0.1", 18069), ("10.1.0.3", 18069)]
    assert ready_endpoints(view, BackendRef("ns", "odoo", "longpolling")) == [("10.1.0.1", 18072)]
    with pytest.raises(NoEndpoint, match="has no port 9000"):
        ready_endpoints(view, BackendRef("ns", "odoo", 9000))
    with pytest.raises(NoEndpoint, match="service ns/missing not found"):
        ready_endpoints(view, BackendRef("ns", "missing", 80))
    unready = build_view([], [], [service], [_slice("odoo", "http", 18069, ("10.1.0.2", False))])
    with pytest.raises(NoEndpoint, match="no ready endpoint for service ns/odoo"):
        ready_endpoints(unready, BackendRef("ns", "odoo", "http"))


def test_ingress_class_filter_and_default_backend() -> None:
    def ingress(name: str, cls: str | None, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"namespace": "ns", "name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {**({"ingressClassName": cls} if cls else {}), **spec}}
    default = {"service": {"name": "fallback", "port": {"number": 80}}}
    rules = [{"host": "a.example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "a", "port": {"name": "http"}}}}]}}]
    objs = [ingress("nginx", "nginx", rules=rules), ingress("other", "other", defaultBackend=default)]
    assert [r.source for r in build_view(objs, [], [], []).routes] == ["ingress ns/nginx"]
    assert build_view(objs, [], [], []).default_backends[0].backends == (BackendRef("ns", "fallback", 80),)
    assert not build_view(objs, [], [], [], class_name="nginx").default_backends
    assert not build_view(objs, [], [], [], class_name="none").routes


def test_httproute_rules() -> None:
    route = {"metadata": {"namespace": "ns", "name": "r"}, "spec": {
        "hostnames": ["shop.example.com"],
        "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/websocket"}}],
             "backendRefs": [{"name": "odoo", "port": 8072}]},
            {"matches": [{"path": {"type": "RegularExpression", "value": ".*"}},
                         {"path": {"value": "/x"}, "headers": [{"name": "a", "value": "b"}]}],
             "backendRefs": [{"name": "unsupported", "port": 1}]},
            {"backendRefs": [{"name": "odoo", "port": 8069}, {"name": "other", "namespace": "b", "port": 80}]},
        ]}}
    routes = build_view([], [route], [], []).routes
    assert [(r.host, r.path, r.exact, [str(b) for b in r.backends]) for r in routes] == [
        ("shop.example.com", "/websocket", False, ["ns/odoo:8072"]),
        ("shop.example.com", "/", False, ["ns/odoo:8069", "b/other:80"]),
    ]


def _request(raw: bytes) -> Request:
    return parse_request(parse_head(raw))


def test_upstream_head_forwarding_headers() -> None:
    request = _request(b"GET /web/login?x=1 HTTP/1.1\r\nHost: Shop.Odoo.Localhost:8080\r\nConnection: keep-alive, "
                       b"X-Secret\r\nX-Secret: drop-me\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Host: evil\r\n"
                       b"Cookie: session_id=abc\r\n\r\n")
    assert (request.host, request.path, request.target) == ("shop.odoo.localhost", "/web/login", "/web/login?x=1")
    head = upstream_head(request, "127.0.0.1")
    assert head.start == "GET /web/login?x=1 HTTP/1.1"
    assert head.get("X-Forwarded-For") == "203.0.113.7, 127.0.0.1"
    assert head.get("X-Forwarded-Host") == "Shop.Odoo.Localhost:8080"
    assert head.get("X-Forwarded-Proto") == "http"
    assert head.get("Connection") == "close" and head.get("X-Secret") is None
    assert head.get("Cookie") == "session_id=abc"
    ws = _request(b"GET /websocket HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  b"Sec-WebSocket-Key: k\r\n\r\n")
    assert ws.websocket
    head = upstream_head(ws, "127.0.0.1")
    assert (head.get("Connection"), head.get("Upgrade"), head.get("Sec-WebSocket-Key")) == ("Upgrade", "websocket", "k")
    absolute = _request(b"GET http://b.example.com:81/p?q HTTP/1.1\r\nHost: ignored\r\n\r\n")
    assert (absolute.host, absolute.target) == ("b.example.com", "/p?q")


# ---- backends on loopback --------------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000


def listen_in(netns: str, address: str) -> socket.socket:
    """A listening socket bound inside `netns` (a socket keeps its namespace whichever thread serves it)."""
    result: dict[str, Any] = {}

    def bind() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            result["socket"] = socket.create_server((address, 0))
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=bind)  # it ends inside the namespace; nothing else runs there
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["socket"]


def _serve_on(server: socketserver.TCPServer, sock: socket.socket) -> None:
    server.socket = sock
    server.server_address = sock.getsockname()
    threading.Thread(target=server.serve_forever, daemon=True).start()


class Backend(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        super().__init__(sock.getsockname(), BackendHandler, bind_and_activate=False)
        _serve_on(self, sock)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class BackendHandler(BaseHTTPRequestHandler):
    """Echoes what it got as JSON; /big?bytes=N streams N bytes; POST answers the body's length and sha256."""

    protocol_version = "HTTP/1.1"
    server: Backend

    def do_GET(self) -> None:
        if self.path.startswith("/big"):
            size = int(self.path.split("bytes=", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            while size > 0:
                self.wfile.write(chunk[:size])
                size -= len(chunk)
            return
        self._answer({"backend": self.server.name, "path": self.path, "headers": dict(self.headers.items())})

    def do_POST(self) -> None:
        digest, remaining = hashlib.sha256(), int(self.headers["Content-Length"])
        while remaining > 0:
            data = self.rfile.read(min(remaining, 65536))
            digest.update(data)
            remaining -= len(data)
        self._answer({"backend": self.server.name, "sha256": digest.hexdigest()})

    def _answer(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class WebSocketEcho(socketserver.ThreadingTCPServer):
    """A minimal RFC 6455 server: the handshake, then every text or binary message sent back."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.getsockname(), WebSocketEchoHandler, bind_and_activate=False)
        self.seen: list[dict[str, str]] = []
        _serve_on(self, sock)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class WebSocketEchoHandler(socketserver.StreamRequestHandler):
    server: WebSocketEcho

    def handle(self) -> None:
        lines = []
        while (line := self.rfile.readline().decode("latin-1").rstrip("\r\n")):
            lines.append(line)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        self.server.seen.append(headers)
        accept = base64.b64encode(hashlib.sha1(
            (headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        while True:
            first, second = self.rfile.read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self.rfile.read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self.rfile.read(8))
            mask = self.rfile.read(4) if second & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 0x8:  # close: answer it and stop
                self.wfile.write(b"\x88" + bytes([len(payload)]) + payload)
                return
            if opcode in (0x1, 0x2):
                size = len(payload)
                header = bytes([0x80 | opcode]) + (bytes([size]) if size < 126 else
                                                   b"\x7e" + struct.pack("!H", size) if size < 65536 else
                                                   b"\x7f" + struct.pack("!Q", size))
                self.wfile.write(header + payload)


# ---- end to end -------------------------------------------------------------------------------------------

e2e = pytest.mark.e2e


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def ns(cluster: LocalCluster) -> Iterator[str]:
    name = unique("proxy")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def test_host() -> Iterator[tuple[str, str]]:
    """(netns, address): a network namespace joined to this host by a veth pair, on a /24 no interface uses."""
    used = _ip("-o", "addr")
    third = next(k for k in range(1, 250) if f" 10.90.{k}." not in used)
    suffix = uuid.uuid4().hex[:6]
    netns, outside, inside = f"oip-{suffix}", f"oiph{suffix}", f"oipp{suffix}"
    _ip("netns", "add", netns)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", netns)
        _ip("addr", "add", f"10.90.{third}.1/24", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", netns, "addr", "add", f"10.90.{third}.2/24", "dev", inside)
        _ip("-n", netns, "link", "set", inside, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        yield netns, f"10.90.{third}.2"
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


@pytest.fixture(scope="module")
def backends(test_host: tuple[str, str]) -> Iterator[dict[str, Any]]:
    netns, address = test_host
    a, b = Backend("a", listen_in(netns, address)), Backend("b", listen_in(netns, address))
    ws = WebSocketEcho(listen_in(netns, address))
    yield {"a": a, "b": b, "ws": ws, "address": address}
    for server in (a, b, ws):
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def proxy(cluster: LocalCluster) -> Iterator[IngressProxy]:
    with IngressProxy(cluster.kubeconfig) as running:
        yield running


def at(server: socketserver.TCPServer, ready: bool = True) -> tuple[str, int, bool]:
    address, port = server.server_address[:2]
    return str(address), int(port), ready


def service(cluster: LocalCluster, namespace: str, name: str, *endpoints: tuple[str, int, bool],
            port: int = 8069, target: str = "http") -> None:
    """A selector-less Service with its port named `target`, and one EndpointSlice per endpoint
    (address, port, ready), its port named as the EndpointSlice controller names them."""
    docs: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": target, "port": port, "targetPort": target}]}}]
    for i, (address, backend_port, ready) in enumerate(endpoints):
        docs.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-{i}", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": target, "port": backend_port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}]})
    apply_yaml(cluster, yaml.safe_dump_all(docs))


def ingress(cluster: LocalCluster, namespace: str, name: str, rules: list[dict[str, Any]], **spec: Any) -> None:
    def path(value: str, svc: str, port: int | str = "http", kind: str = "Prefix") -> dict[str, Any]:
        number = {"number": port} if isinstance(port, int) else {"name": port}
        return {"path": value, "pathType": kind, "backend": {"service": {"name": svc, "port": number}}}
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": namespace},
            "spec": {"rules": [{"host": rule["host"], "http": {"paths": [path(*p) for p in rule["paths"]]}}
                               for rule in rules], **spec}}
    apply_yaml(cluster, yaml.safe_dump(body))


def fetch(port: int, host: str, path: str = "/", method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.headers.items()), response.read()
    finally:
        conn.close()


def routed_to(port: int, host: str, path: str = "/") -> str | None:
    status, _, body = fetch(port, host, path)
    return json.loads(body)["backend"] if status == 200 else f"HTTP {status}"


@e2e
def test_routes_by_host_and_longest_path(cluster: LocalCluster, proxy: IngressProxy, ns: str,
                                         backends: dict[str, Any]) -> None:
    service(cluster, ns, "a", at(backends["a"], True))
    service(cluster, ns, "b", at(backends["b"], True), port=8072, target="longpolling")
    one, two, shop = (f"{unique(n)}.odoo.localhost" for n in ("one", "two", "shop"))
    ingress(cluster, ns, "hosts", [{"host": one, "paths": [("/", "a", 8069)]},
                                   {"host": two, "paths": [("/", "b", 8072)]}])
    # The shape the operator gives a database's Ingress: /websocket to longpolling, the rest to http.
    ingress(cluster, ns, "shop", [{"host": shop, "paths": [("/websocket", "b", "longpolling"), ("/", "a")]}])
    wait_until(lambda: routed_to(proxy.port, two) == "b", 10, "the second host routed")
    assert routed_to(proxy.port, f"{one}:{proxy.port}") == "a"
    assert routed_to(proxy.port, one.upper(), "/web/login") == "a"
    assert routed_to(proxy.port, shop, "/web/login") == "a"
    assert routed_to(proxy.port, shop, "/websocket") == "b"
    assert routed_to(proxy.port, shop, "/websocket/peek?x=1") == "b"
    assert routed_to(proxy.port, shop, "/websocketx") == "a"

    status, headers, body = fetch(proxy.port, "nobody.odoo.localhost", "/web")
    assert status == 404 and b"nobody.odoo.localhost" in body and headers["Connection"] == "close"


@e2e
def test_wildcard_host_and_default_backend(cluster: LocalCluster, proxy: IngressProxy, ns: str,
                                           backends: dict[str, Any]) -> None:
    service(cluster, ns, "wa", at(backends["a"], True))
    service(cluster, ns, "wb", at(backends["b"], True))
    domain = f"{unique('wild')}.test"
    ingress(cluster, ns, "wild", [{"host": f"*.{domain}", "paths": [("/", "wa")]},
                                  {"host": f"exact.{domain}", "paths": [("/", "wb")]}])
    wait_until(lambda: routed_to(proxy.port, f"x.{domain}") == "a", 10, "the wildcard host routed")
    assert routed_to(proxy.port, f"exact.{domain}") == "b"  # an exact host beats the wildcard
    assert routed_to(proxy.port, f"a.b.{domain}") == "HTTP 404"  # one label only
    assert routed_to(proxy.port, domain) == "HTTP 404"

    name = unique("default")
    apply_yaml(cluster, yaml.safe_dump({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": ns},
        "spec": {"defaultBackend": {"service": {"name": "wb", "port": {"name": "http"}}}}}))
    try:
        wait_until(lambda: routed_to(proxy.port, f"a.b.{domain}") == "b", 10, "the default backend")
        assert routed_to(proxy.port, f"x.{domain}") == "a"
    finally:
        cluster.kubectl("delete", "ingress", name, "-n", ns)
    wait_until(lambda: routed_to(proxy.port, f"a.b.{domain}") == "HTTP 404", 10, "the default backend gone")


@e2e
def test_ready_endpoints_round_robin_503_and_502(cluster: LocalCluster, proxy: IngressProxy, ns: str,
                                                 backends: dict[str, Any]) -> None:
    host = f"{unique('rr')}.odoo.localhost"
    service(cluster, ns, "rr", at(backends["a"], False))
    ingress(cluster, ns, "rr", [{"host": host, "paths": [("/", "rr")]}])
    status, _, body = wait_until(lambda: (r := fetch(proxy.port, host))[0] == 503 and r, 10, "503")
    assert body.decode().strip() == f"no ready endpoint for service {ns}/rr"

    # The endpoint becomes ready (a Pod passed its readiness probe): routable within a second or two.
    service(cluster, ns, "rr", at(backends["a"], True))
    started = time.monotonic()  # the API server has it
    wait_until(lambda: routed_to(proxy.port, host) == "a", 10, "the ready endpoint", interval=0.05)
    assert time.monotonic() - started < 2

    service(cluster, ns, "rr", at(backends["a"], True), at(backends["b"], True))
    wait_until(lambda: {routed_to(proxy.port, host) for _ in range(4)} == {"a", "b"}, 10, "both endpoints")
    seen = [routed_to(proxy.port, host) for _ in range(6)]
    assert all(seen[i] != seen[i + 1] for i in range(5)), seen  # round-robin

    closed = 9  # nothing listens there on the test host
    host2 = f"{unique('refused')}.odoo.localhost"
    service(cluster, ns, "refused", (backends["address"], closed, True))
    ingress(cluster, ns, "refused", [{"host": host2, "paths": [("/", "refused")]}])
    status, _, body = wait_until(lambda: (r := fetch(proxy.port, host2))[0] == 502 and r, 10, "502")
    assert f"connection refused by {ns}/refused {backends['address']}:{closed}" in body.decode()


@e2e
def test_forwarded_headers_and_request_body(cluster: LocalCluster, proxy: IngressProxy, ns: str,
                                            backends: dict[str, Any]) -> None:
    host = f"{unique('fwd')}.odoo.localhost"
    service(cluster, ns, "fwd", at(backends["a"], True))
    ingress(cluster, ns, "fwd", [{"host": host, "paths": [("/", "fwd")]}])
    wait_until(lambda: routed_to(proxy.port, host) == "a", 10, "routed")
    status, headers, body = fetch(proxy.port, f"{host}:{proxy.port}", "/web/login?redirect=%2Fodoo",
                                  headers={"Connection": "keep-alive", "Cookie": "session_id=s3cr3t"})
    seen = json.loads(body)
    assert status == 200 and headers["Connection"] == "close"
    assert seen["path"] == "/web/login?redirect=%2Fodoo"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert seen["headers"]["X-Forwarded-Host"] == f"{host}:{proxy.port}"
    assert seen["headers"]["X-Forwarded-Proto"] == "http"
    assert seen["headers"]["Connection"] == "close"
    assert seen["headers"]["Cookie"] == "session_id=s3cr3t"

    upload = os.urandom(3 * 1024 * 1024)
    status, _, body = fetch(proxy.port, host, "/web/binary/upload", method="POST", body=upload)
    assert status == 200 and json.loads(body)["sha256"] == hashlib.sha256(upload).hexdigest()


@e2e
def test_websocket_upgrade_is_spliced(cluster: LocalCluster, proxy: IngressProxy, ns: str,
                                      backends: dict[str, Any]) -> None:
    host = f"{unique('ws')}.odoo.localhost"
    service(cluster, ns, "ws-http", at(backends["a"], True))
    service(cluster, ns, "ws-lp", at(backends["ws"], True), port=8072, target="longpolling")
    ingress(cluster, ns, "ws", [{"host": host, "paths": [("/websocket", "ws-lp", "longpolling"), ("/", "ws-http")]}])
    wait_until(lambda: routed_to(proxy.port, host) == "a", 10, "routed")
    ws = websocket.create_connection(f"ws://127.0.0.1:{proxy.port}/websocket", host=host, timeout=10)
    try:
        for message in ("hello", "x" * 70_000):
            ws.send(message)
            assert ws.recv() == message
        ws.send_binary(b"\x00\x01\x02")
        assert ws.recv() == b"\x00\x01\x02"
    finally:
        ws.close()
    assert backends["ws"].seen[-1]["x-forwarded-host"] == host


def _memory_kib(pid: int) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


@e2e
def test_process_streams_large_bodies_and_logs_one_line_per_request(
        cluster: LocalCluster, ns: str, backends: dict[str, Any], tmp_path: Path) -> None:
    host = f"{unique('big')}.odoo.localhost"
    service(cluster, ns, "big", at(backends["a"], True))
    ingress(cluster, ns, "big", [{"host": host, "paths": [("/", "big")]}])
    port = free_port()
    stderr = tmp_path / "proxy.log"
    with open(stderr, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "odoo_operator.devtools.ingressproxy",
                                    "--kubeconfig", str(cluster.kubeconfig), "--port", str(port)],
                                   stderr=log, cwd=REPO_ROOT)
    try:
        wait_until(lambda: _connectable(port) and routed_to(port, host) == "a", 20, "the proxy process routing")
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS: measure this download's peak
        before = _memory_kib(process.pid)
        size = 20 * 1024 * 1024
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", f"/big?bytes={size}", headers={"Host": host, "Cookie": "session_id=s3cr3t"})
        response = conn.getresponse()
        received = 0
        while chunk := response.read(256 * 1024):
            received += len(chunk)
            time.sleep(0.01)  # a slower reader than the backend: the proxy must wait, not buffer
        conn.close()
        assert received == size
        growth_mib = (_memory_kib(process.pid)["VmHWM"] - before["VmRSS"]) / 1024
        print(f"proxy RSS {before['VmRSS'] / 1024:.1f} MiB, peak growth {growth_mib:.1f} MiB for a 20 MiB response")
        assert growth_mib < 5, growth_mib
    finally:
        process.terminate()
        assert process.wait(15) == 0
    text = stderr.read_text()
    assert re.search(rf"GET {re.escape(host)} /big -> {ns}/big {re.escape(backends['address'])}:\d+ 200", text), text
    assert "s3cr3t" not in text and "bytes=" not in text  # no cookies, no query strings


def _connectable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@e2e
def test_httproutes_when_gateway_api_is_installed(cluster: LocalCluster, proxy: IngressProxy, ns: str,
                                                  backends: dict[str, Any]) -> None:
    install_gateway_api(cluster)
    host = f"{unique('gw')}.odoo.localhost"
    service(cluster, ns, "gw-a", at(backends["a"], True))
    service(cluster, ns, "gw-b", at(backends["b"], True), port=8072, target="longpolling")
    apply_yaml(cluster, yaml.safe_dump({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "gw", "namespace": ns},
        "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}], "hostnames": [host, f"*.w-{host}"],
                 "rules": [
                     {"matches": [{"path": {"type": "PathPrefix", "value": "/websocket"}}],
                      "backendRefs": [{"name": "gw-b", "port": 8072}]},
                     {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                      "backendRefs": [{"name": "gw-a", "port": 8069}]}]}}))
    wait_until(lambda: routed_to(proxy.port, host) == "a", 10, "the HTTPRoute routed")
    assert routed_to(proxy.port, host, "/websocket") == "b"
    assert routed_to(proxy.port, host, "/web/login") == "a"
    assert routed_to(proxy.port, f"x.y.w-{host}") == "a"  # Gateway API wildcards span labels
    cluster.kubectl("delete", "httproute", "gw", "-n", ns)
    wait_until(lambda: routed_to(proxy.port, host) == "HTTP 404", 10, "the route removed")
