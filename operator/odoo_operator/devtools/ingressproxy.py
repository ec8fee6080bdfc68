"""A small HTTP proxy for the local cluster: what an ingress controller does, on loopback.

It routes each request by the cluster's Ingresses (networking.k8s.io/v1) and, when the Gateway API
CRDs are installed, HTTPRoutes (gateway.networking.k8s.io/v1), to a ready endpoint of the backend
Service as its EndpointSlices publish them, so `http://shop.odoo.localhost:<port>/web/login` reaches
the Odoo process that runs the `shop` database's Pod.

Matching follows Kubernetes: hosts exact or `*.suffix` (one label for an Ingress, any number for an
HTTPRoute, as each spec says); paths `Exact` or `Prefix` (element-wise: `/web` matches `/web/login`,
not `/website`; `ImplementationSpecific` is a Prefix). Among the matches the most specific wins:
exact host over wildcard over no host, then the longest path, Exact before Prefix, then the oldest
object. Nothing matches: an Ingress's `spec.defaultBackend`, else 404.

One request per connection: the proxy sends `Connection: close` upstream and to the client, so every
request is routed on its own and the proxy never parses bodies (they are streamed as they come, in
either direction, with back-pressure — nothing is buffered whole). A WebSocket upgrade
(`Upgrade: websocket`) is forwarded, and after the backend's 101 the bytes are spliced both ways
until either side closes.

The cluster's state is listed at most every `ttl` seconds (0.5 by default), when a request needs it:
a new Pod is routable half a second after its EndpointSlice says it is ready, and an idle proxy
costs the API server nothing.

Not supported (documented, not silently wrong): HTTPRoute matches on headers, query parameters or
methods (such matches are skipped), HTTPRoute filters (ignored), TLS (this is plain HTTP for the
local cluster), Ingress `resource` backends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024  # request and response heads; the stream buffers stay within 2x this
CHUNK = 64 * 1024
HEAD_TIMEOUT = 60.0  # a browser's pre-connected socket may stay silent for a while
CONNECT_TIMEOUT = 5.0
API_TIMEOUT = 5.0
DEFAULT_TTL = 0.5

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
              "te", "trailer", "upgrade"}
FORWARDED = {"x-forwarded-host", "x-forwarded-proto", "x-forwarded-for"}


# ---- routing: pure functions of the cluster's objects ---------------------------------------------

@dataclass(frozen=True)
class BackendRef:
    namespace: str
    service: str
    port: int | str  # the Service's port, by number or by name
    weight: int = 1

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service}:{self.port}"


@dataclass(frozen=True)
class Route:
    """One (host, path) → backends rule of an Ingress or an HTTPRoute."""

    source: str  # "ingress ns/name" or "httproute ns/name", for logs and the tie-break
    host: str | None  # exact, "*.suffix", or None for any host
    path: str
    exact: bool  # Exact, else Prefix
    backends: tuple[BackendRef, ...]
    created: str = ""  # creationTimestamp (RFC 3339 sorts as text)
    index: int = 0  # position in its object: the first of two equal rules wins
    wildcard_any_depth: bool = False  # HTTPRoute: "*.example.com" matches a.b.example.com too


@dataclass
class ClusterView:
    routes: list[Route] = field(default_factory=list)
    default_backends: list[Route] = field(default_factory=list)  # Ingress spec.defaultBackend, oldest first
    services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    slices: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


def normalize_host(value: str) -> str:
    """`Shop.Example.com:8080` → `shop.example.com`; `[::1]:80` → `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit():
        value = name
    return value.rstrip(".")


def host_rank(pattern: str | None, host: str, any_depth: bool = False) -> tuple[int, int] | None:
    """How specifically `pattern` matches `host` (higher is more specific), None if it does not."""
    if not pattern:
        return (0, 0)
    pattern = pattern.lower()
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com"
        label = host[: -len(suffix)] if host.endswith(suffix) else ""
        if label and (any_depth or "." not in label):
            return (1, len(suffix))
        return None
    return (2, len(pattern)) if pattern == host else None


def path_rank(rule_path: str, exact: bool, path: str) -> tuple[int, int] | None:
    """Kubernetes path matching; the rank orders matches: longer first, Exact before Prefix."""
    if exact:
        return (len(rule_path), 1) if path == rule_path else None
    prefix = rule_path.rstrip("/")
    if not prefix or path == prefix or path.startswith(prefix + "/"):
        return (len(prefix), 0)
    return None


def select_route(routes: Iterable[Route], host: str, path: str) -> Route | None:
    best: tuple[Any, ...] | None = None
    chosen: Route | None = None
    for route in routes:
        hrank = host_rank(route.host, host, route.wildcard_any_depth)
        if hrank is None:
            continue
        prank = path_rank(route.path, route.exact, path)
        if prank is None:
            continue
        # Most specific host, then path; then the oldest object, its name, its first rule.
        key = (-hrank[0], -hrank[1], -prank[0], -prank[1], route.created, route.source, route.index)
        if best is None or key < best:
            best, chosen = key, route
    return chosen


def _meta(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "default", meta.get("name") or "", meta.get("creationTimestamp") or ""


def _ingress_backend(namespace: str, backend: dict[str, Any] | None) -> BackendRef | None:
    service = (backend or {}).get("service")
    if not service or not service.get("name"):
        return None  # a `resource` backend: not something this proxy can reach
    port = service.get("port") or {}
    number = port.get("number")
    return BackendRef(namespace, service["name"], int(number) if number else str(port.get("name") or ""))


def ingress_class(obj: dict[str, Any]) -> str | None:
    spec = obj.get("spec") or {}
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return spec.get("ingressClassName") or annotations.get("kubernetes.io/ingress.class")


def routes_from_ingress(obj: dict[str, Any]) -> tuple[list[Route], Route | None]:
    """The Ingress's rules, and its default backend as a catch-all route (or None)."""
    namespace, name, created = _meta(obj)
    spec = obj.get("spec") or {}
    source = f"ingress {namespace}/{name}"
    routes: list[Route] = []
    index = 0
    for rule in spec.get("rules") or []:
        for item in (rule.get("http") or {}).get("paths") or []:
            backend = _ingress_backend(namespace, item.get("backend"))
            if backend is None:
                continue
            routes.append(Route(source, rule.get("host") or None, item.get("path") or "/",
                                item.get("pathType") == "Exact", (backend,), created, index))
            index += 1
    default = _ingress_backend(namespace, spec.get("defaultBackend"))
    return routes, (Route(source, None, "/", False, (default,), created) if default else None)


def routes_from_httproute(obj: dict[str, Any]) -> list[Route]:
    namespace, name, created = _meta(obj)
    spec = obj.get("spec") or {}
    source = f"httproute {namespace}/{name}"
    hosts: list[str | None] = list(spec.get("hostnames") or []) or [None]
    routes: list[Route] = []
    index = 0
    for rule in spec.get("rules") or []:
        backends = tuple(
            BackendRef(ref.get("namespace") or namespace, ref["name"], int(ref.get("port") or 0),
                       int(ref.get("weight", 1)))
            for ref in rule.get("backendRefs") or []
            if ref.get("name") and (ref.get("group") or "") == "" and (ref.get("kind") or "Service") == "Service"
        )
        for match in rule.get("matches") or [{}]:
            if any(match.get(key) for key in ("headers", "queryParams", "method")):
                continue  # not supported: better no route than a wrong one
            path = match.get("path") or {}
            kind = path.get("type") or "PathPrefix"
            if kind not in ("PathPrefix", "Exact"):
                continue
            for host in hosts:
                routes.append(Route(source, host, path.get("value") or "/", kind == "Exact", backends,
                                    created, index, wildcard_any_depth=True))
            index += 1
    return routes


def build_view(ingresses: list[dict[str, Any]], httproutes: list[dict[str, Any]], services: list[dict[str, Any]],
               slices: list[dict[str, Any]], class_name: str | None = None) -> ClusterView:
    view = ClusterView()
    for ingress in ingresses:
        if class_name is not None and ingress_class(ingress) != class_name:
            continue
        routes, default = routes_from_ingress(ingress)
        view.routes.extend(routes)
        if default:
            view.default_backends.append(default)
    view.default_backends.sort(key=lambda r: (r.created, r.source))
    for route in httproutes:
        view.routes.extend(routes_from_httproute(route))
    for service in services:
        namespace, name, _ = _meta(service)
        view.services[(namespace, name)] = service
    for eps in slices:
        namespace, _, _ = _meta(eps)
        owner = ((eps.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name")
        if owner:
            view.slices.setdefault((namespace, owner), []).append(eps)
    return view


class NoEndpoint(Exception):
    """The backend has nothing to send the request to (503)."""


def ready_endpoints(view: ClusterView, ref: BackendRef) -> list[tuple[str, int]]:
    """The (address, port) pairs the request may go to: Service port → targetPort → ready endpoints."""
    service = view.services.get((ref.namespace, ref.service))
    if service is None:
        raise NoEndpoint(f"service {ref.namespace}/{ref.service} not found")
    ports = (service.get("spec") or {}).get("ports") or []
    port = next((p for p in ports if (p.get("name") == ref.port if isinstance(ref.port, str) else
                                      p.get("port") == ref.port)), None)
    if port is None:
        raise NoEndpoint(f"service {ref.namespace}/{ref.service} has no port {ref.port}")
    port_name = port.get("name") or ""
    target = port.get("targetPort", port.get("port"))
    found: set[tuple[str, int]] = set()
    for eps in view.slices.get((ref.namespace, ref.service), []):
        if eps.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
            continue
        # An EndpointSlice names its ports after the Service's; the number is the Pod's own.
        number = next((p.get("port") for p in eps.get("ports") or [] if (p.get("name") or "") == port_name), None)
        if number is None and isinstance(target, int):
            number = target
        if not number:
            continue
        for endpoint in eps.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:  # unset means ready
                continue
            addresses = endpoint.get("addresses") or []
            if addresses:
                found.add((addresses[0], int(number)))
    if not found:
        raise NoEndpoint(f"no ready endpoint for service {ref.namespace}/{ref.service}")
    return sorted(found)


# ---- HTTP heads -------------------------------------------------------------------------------------

class BadRequest(Exception):
    pass


@dataclass
class Head:
    start: str  # request line or status line
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    def tokens(self, name: str) -> set[str]:
        name = name.lower()
        return {token.strip().lower() for key, value in self.headers if key.lower() == name
                for token in value.split(",") if token.strip()}

    def encode(self) -> bytes:
        lines = [self.start, *(f"{key}: {value}" for key, value in self.headers), "", ""]
        return "\r\n".join(lines).encode("latin-1")


def parse_head(data: bytes) -> Head:
    lines = data.decode("latin-1").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or key != key.strip() or " " in key or line[0] in " \t":
            raise BadRequest(f"malformed header line {line[:40]!r}")
        headers.append((key, value.strip()))
    return Head(lines[0], headers)


def _status_line(status: int) -> str:
    reasons = {400: "Bad Request", 404: "Not Found", 431: "Request Header Fields Too Large",
               502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
    return f"HTTP/1.1 {status} {reasons.get(status, 'Error')}"


def error_response(status: int, text: str, head_only: bool = False) -> bytes:
    body = (text + "\n").encode()
    head = Head(_status_line(status), [("Content-Type", "text/plain; charset=utf-8"),
                                       ("Content-Length", str(len(body))), ("Connection", "close")])
    return head.encode() + (b"" if head_only else body)


@dataclass
class Request:
    method: str
    target: str  # origin-form
    version: str
    host: str  # normalized
    raw_host: str
    path: str
    head: Head
    websocket: bool


def parse_request(head: Head) -> Request:
    parts = head.start.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("malformed request line")
    method, target, version = parts
    hosts = [value for key, value in head.headers if key.lower() == "host"]
    if len(hosts) > 1:
        raise BadRequest("more than one Host header")
    raw_host = hosts[0] if hosts else ""
    if target.startswith(("http://", "https://")):  # absolute-form: its authority is the host
        split = urlsplit(target)
        raw_host = split.netloc
        target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    if not raw_host:
        raise BadRequest("no Host header")
    path = target.split("?", 1)[0]
    websocket = "websocket" in head.tokens("upgrade") and "upgrade" in head.tokens("connection")
    return Request(method, target, version, normalize_host(raw_host), raw_host, path if path.startswith("/") else "/",
                   head, websocket)


def upstream_head(request: Request, client_ip: str) -> Head:
    """The request as the backend gets it: hop-by-hop headers replaced, X-Forwarded-* added."""
    named = request.head.tokens("connection")
    headers: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    for key, value in request.head.headers:
        lower = key.lower()
        if lower == "x-forwarded-for":
            forwarded_for.append(value)
        elif lower not in HOP_BY_HOP and lower not in named and lower not in FORWARDED:
            headers.append((key, value))
    forwarded_for.append(client_ip)
    headers += [("X-Forwarded-For", ", ".join(forwarded_for)), ("X-Forwarded-Host", request.raw_host),
                ("X-Forwarded-Proto", "http")]
    if request.websocket:
        headers += [("Connection", "Upgrade"), ("Upgrade", "websocket")]
    else:
        headers.append(("Connection", "close"))
    return Head(f"{request.method} {request.target} {request.version}", headers)


def downstream_head(response: Head) -> Head:
    named = response.tokens("connection")
    headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP and k.lower() not in named]
    return Head(response.start, [*headers, ("Connection", "close")])


def response_status(head: Head) -> int:
    parts = head.start.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise BadRequest("malformed status line")
    return int(parts[1])


# ---- the cluster's state ------------------------------------------------------------------------------

LISTS = {
    "ingresses": "/apis/networking.k8s.io/v1/ingresses",
    "httproutes": "/apis/gateway.networking.k8s.io/v1/httproutes",
    "services": "/api/v1/services",
    "slices": "/apis/discovery.k8s.io/v1/endpointslices",
}


class ClusterState:
    """Lists what routing needs, at most every `ttl` seconds, on demand (blocking: run it off the loop)."""

    def __init__(self, kubeconfig: Path, class_name: str | None = None) -> None:
        self.api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.class_name = class_name

    def _list(self, path: str) -> list[dict[str, Any]]:
        method, url, headers, body, _ = self.api.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(method, url, header_params=headers, body=body,
                                         _request_timeout=API_TIMEOUT)
        except ApiException as exc:
            status = exc.status
        else:
            status = response.status
            data = response.read()
            if 200 <= status < 300:
                return list(json.loads(data).get("items") or [])
        if status == 404 and path == LISTS["httproutes"]:
            return []  # the Gateway API CRDs are not installed
        raise RuntimeError(f"listing {path}: HTTP {status}")

    def fetch(self) -> ClusterView:
        lists = {name: self._list(path) for name, path in LISTS.items()}
        return build_view(lists["ingresses"], lists["httproutes"], lists["services"], lists["slices"],
                          self.class_name)


# ---- the proxy ------------------------------------------------------------------------------------------

class IngressProxy:
    """`start()` binds and serves in a background thread (an asyncio loop); `stop()` ends every connection."""

    def __init__(self, kubeconfig: Path, address: str = "127.0.0.1", port: int = 0,
                 ingress_class: str | None = None, ttl: float = DEFAULT_TTL) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.address = address
        self.port = port
        self.ingress_class = ingress_class
        self.ttl = ttl
        self._state: ClusterState | None = None
        self._view: ClusterView | None = None
        self._fetched = -1e9
        self._refresh_lock: asyncio.Lock | None = None
        self._counters: dict[BackendRef, itertools.count[int]] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._api_failing = False

    # -- lifecycle
    def start(self) -> IngressProxy:
        self._state = ClusterState(self.kubeconfig, self.ingress_class)
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.create_server((self.address, self.port), family=family)  # a port taken raises here
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sock, ready), name="ingress-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        if self._loop and self._stopping and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(30)

    def __enter__(self) -> IngressProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            self._refresh_lock = asyncio.Lock()
            server = await asyncio.start_server(self._connection, sock=sock, limit=HEAD_LIMIT)
            ready.set()
            await self._stopping.wait()
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

        try:
            asyncio.run(main())
        finally:
            ready.set()
            sock.close()

    # -- the cluster's view
    async def view(self) -> ClusterView:
        assert self._refresh_lock is not None and self._state is not None
        async with self._refresh_lock:
            if time.monotonic() - self._fetched >= self.ttl:
                try:
                    self._view = await asyncio.get_running_loop().run_in_executor(None, self._state.fetch)
                    if self._api_failing:
                        log.info("ingress proxy: the API server answers again")
                    self._api_failing = False
                except Exception as exc:  # keep routing with what we had
                    if not self._api_failing:
                        log.warning("ingress proxy: cannot list the cluster's routes: %s", exc)
                    self._api_failing = True
                self._fetched = time.monotonic()
            if self._view is None:
                raise NoEndpoint("the cluster's routes are not known yet (API server unreachable)")
            return self._view

    def _next(self, ref: BackendRef, count: int) -> int:
        counter = self._counters.setdefault(ref, itertools.count())
        return next(counter) % count

    # -- one connection, one request
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else "unknown"
        try:
            await self._serve(reader, writer, client_ip)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("ingress proxy: unexpected error")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_ip: str) -> None:
        try:
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.IncompleteReadError:
            return  # the client left without asking anything (a pre-connected socket)
        except asyncio.LimitOverrunError:
            writer.write(error_response(431, "request head too large"))
            await writer.drain()
            return
        try:
            request = parse_request(parse_head(data))
        except BadRequest as exc:
            writer.write(error_response(400, str(exc)))
            await writer.drain()
            return

        async def fail(status: int, text: str, backend: str = "-") -> None:
            writer.write(error_response(status, text, head_only=request.method == "HEAD"))
            await writer.drain()
            self._log(request, backend, status)

        try:
            view = await self.view()
        except NoEndpoint as exc:
            await fail(503, str(exc))
            return
        route = select_route(view.routes, request.host, request.path)
        if route is None and view.default_backends:
            route = view.default_backends[0]
        if route is None:
            await fail(404, f"no route for host {request.host}")
            return
        backends = [b for b in route.backends if b.weight > 0]
        if not backends:
            await fail(503, f"no backend for {route.source}")
            return
        ref = random.choices(backends, weights=[b.weight for b in backends])[0] if len(backends) > 1 else backends[0]
        try:
            endpoints = ready_endpoints(view, ref)
        except NoEndpoint as exc:
            await fail(503, str(exc), str(ref))
            return

        # Round-robin; an endpoint that refuses the connection gives way to the next one.
        first = self._next(ref, len(endpoints))
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        problem = ""
        status_on_failure = 502
        for i in range(len(endpoints)):
            address, port = endpoints[(first + i) % len(endpoints)]
            target = f"{ref.namespace}/{ref.service} {_hostport(address, port)}"
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(address, port, limit=HEAD_LIMIT),
                                                  CONNECT_TIMEOUT)
                break
            except ConnectionRefusedError:
                problem = f"connection refused by {target}"
            except TimeoutError:
                problem, status_on_failure = f"connection to {target} timed out", 504
            except OSError as exc:
                problem = f"cannot connect to {target}: {exc.strerror or exc}"
        if upstream is None:
            await fail(status_on_failure, problem, str(ref))
            return
        backend_reader, backend_writer = upstream
        try:
            await self._exchange(request, client_ip, reader, writer, backend_reader, backend_writer, target)
        finally:
            backend_writer.close()
            with contextlib.suppress(Exception):
                await backend_writer.wait_closed()

    async def _exchange(self, request: Request, client_ip: str, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, backend_reader: asyncio.StreamReader,
                        backend_writer: asyncio.StreamWriter, target: str) -> None:
        backend_writer.write(upstream_head(request, client_ip).encode())
        await backend_writer.drain()
        # The request body (whatever its framing) flows up while the response comes back.
        upload = asyncio.create_task(_pump(reader, backend_writer))
        status = 502
        try:
            while True:
                try:
                    data = await backend_reader.readuntil(b"\r\n\r\n")
                    response = parse_head(data)
                    status = response_status(response)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, BadRequest) as exc:
                    reason = "closed the connection" if isinstance(exc, asyncio.IncompleteReadError) else \
                        "sent a malformed response"
                    writer.write(error_response(502, f"{target} {reason}"))
                    await writer.drain()
                    status = 502
                    return
                if status == 101 and request.websocket:
                    writer.write(data)
                    await writer.drain()
                    download = asyncio.create_task(_pump(backend_reader, writer))
                    # Until either side closes: both directions end together.
                    await asyncio.wait({upload, download}, return_when=asyncio.FIRST_COMPLETED)
                    download.cancel()
                    await asyncio.gather(download, return_exceptions=True)
                    return
                if 100 <= status < 200:  # 100 Continue and friends: passed on as they are
                    writer.write(data)
                    await writer.drain()
                    continue
                writer.write(downstream_head(response).encode())
                await writer.drain()
                await _pump(backend_reader, writer)
                return
        finally:
            upload.cancel()
            await asyncio.gather(upload, return_exceptions=True)
            self._log(request, target, status)

    def _log(self, request: Request, backend: str, status: int) -> None:
        # The path only: query strings may carry tokens; headers and cookies are never logged.
        log.info("%s %s %s -> %s %d", request.method, request.host, request.path, backend, status)


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, a chunk at a time, waiting for the other side to take each (back-pressure)."""
    while True:
        data = await reader.read(CHUNK)
        if not data:
            return
        writer.write(data)
        await writer.drain()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m odoo_operator.devtools.ingressproxy",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", type=Path,
                        default=Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config"))
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ingress-class", default=None, help="only Ingresses of this class (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    proxy = IngressProxy(args.kubeconfig, args.address, args.port, ingress_class=args.ingress_class).start()
    log.info("ingress proxy listening on http://%s", _hostport(args.address, proxy.port))
    try:
        done.wait()
    finally:
        proxy.stop()


if __name__ == "__main__":
    main()
