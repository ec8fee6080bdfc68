"""Is a custom domain's DNS record in place? A small DNS client (RFC 1035 over UDP, stdlib only).

Used for DomainMapping's DNSConfigured condition, which informs and never blocks: any failure to
reach DNS is "Unknown", not "False". getaddrinfo() cannot say whether a name is a CNAME nor be
given a timeout, so the operator asks a resolver directly.
"""

from __future__ import annotations

import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
RCODE_NXDOMAIN = 3
CACHE_SECONDS = 60.0


class DNSUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Answer:
    rcode: int
    records: list[tuple[int, str]]  # (type, value): CNAME target or address


@dataclass(frozen=True)
class Result:
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


def default_server() -> tuple[str, int]:
    try:
        with open("/etc/resolv.conf") as conf:
            for line in conf:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1], 53
    except OSError:
        pass
    raise DNSUnavailable("no nameserver in /etc/resolv.conf")


def parse_server(text: str | None) -> tuple[str, int]:
    if not text:
        return default_server()
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        return host.strip("[]"), int(port)
    return text.strip("[]"), 53


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if label else b""
        if not raw or len(raw) > 63:
            raise ValueError(f"bad DNS name {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    jumped_end: int | None = None
    for _ in range(128):  # bounded: a malicious compression loop cannot hang us
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            pointer = struct.unpack_from("!H", packet, offset)[0] & 0x3FFF
            if jumped_end is None:
                jumped_end = offset + 2
            offset = pointer
            continue
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), jumped_end if jumped_end is not None else offset
        labels.append(packet[offset:offset + length].decode("ascii", "replace"))
        offset += length
    raise ValueError("DNS name too long or looping")


def build_query(name: str, qtype: int, ident: int) -> bytes:
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # recursion desired
    return header + _encode_name(name) + struct.pack("!HH", qtype, 1)


def parse_response(packet: bytes, ident: int) -> Answer:
    if len(packet) < 12:
        raise ValueError("short DNS response")
    rid, flags, qdcount, ancount, _, _ = struct.unpack_from("!HHHHHH", packet, 0)
    if rid != ident or not flags & 0x8000:
        raise ValueError("not the answer to our query")
    offset = 12
    for _ in range(qdcount):
        _, offset = _read_name(packet, offset)
        offset += 4
    records: list[tuple[int, str]] = []
    for _ in range(ancount):
        _, offset = _read_name(packet, offset)
        rtype, _, _, rdlength = struct.unpack_from("!HHIH", packet, offset)
        offset += 10
        data = packet[offset:offset + rdlength]
        if rtype == TYPE_CNAME:
            records.append((rtype, _read_name(packet, offset)[0]))
        elif rtype == TYPE_A and rdlength == 4:
            records.append((rtype, socket.inet_ntop(socket.AF_INET, data)))
        elif rtype == TYPE_AAAA and rdlength == 16:
            records.append((rtype, socket.inet_ntop(socket.AF_INET6, data)))
        offset += rdlength
    return Answer(flags & 0x000F, records)


def query(name: str, qtype: int, server: tuple[str, int], timeout: float = 1.0, attempts: int = 2) -> Answer:
    """One question to `server`; a reconcile thread waits at most timeout x attempts for it."""
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    for _ in range(attempts):
        ident = secrets.randbelow(0x10000)
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.sendto(build_query(name, qtype, ident), server)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    packet, source = sock.recvfrom(4096)
                    if source[0] != server[0]:
                        continue
                    try:
                        answer = parse_response(packet, ident)
                    except (ValueError, IndexError, struct.error):
                        continue
                    if answer.rcode in (0, RCODE_NXDOMAIN):
                        return answer
                    raise DNSUnavailable(f"the resolver answered rcode {answer.rcode}")
        except TimeoutError:
            continue
        except OSError as exc:
            raise DNSUnavailable(str(exc)) from None
    raise DNSUnavailable(f"no answer from {server[0]}:{server[1]}")


def _addresses(name: str, server: tuple[str, int]) -> set[str]:
    return {value for rtype, value in query(name, TYPE_A, server).records if rtype == TYPE_A}


def evaluate(domain: str, target: str, server: tuple[str, int]) -> Result:
    target = target.rstrip(".").lower()
    record = f"create a CNAME record {domain} -> {target} at the domain's DNS provider"
    answer = query(domain, TYPE_CNAME, server)
    cnames = [value for rtype, value in answer.records if rtype == TYPE_CNAME]
    if target in cnames:
        return Result("True", "CNAMEFound", f"{domain} is a CNAME to {target}")
    if answer.rcode == RCODE_NXDOMAIN:
        return Result("False", "RecordMissing", f"{domain} does not exist in DNS; {record}")
    mine = _addresses(domain, server)
    if not mine:
        return Result("False", "RecordMissing", f"{domain} has no address; {record}")
    expected = _addresses(target, server)
    if expected and mine & expected:
        return Result("True", "AddressMatches", f"{domain} resolves to the addresses of {target}")
    shown = ", ".join(sorted(cnames or mine)[:3])
    return Result("False", "RecordMismatch", f"{domain} points to {shown}, not to {target}; {record}")


_cache: dict[tuple[str, str, str | None], tuple[float, Result]] = {}
_cache_lock = threading.Lock()


def check(domain: str, target: str, server: str | None = None) -> Result:
    """DNSConfigured for `domain`: CNAME to `target` or the same addresses. Cached for a minute."""
    key = (domain, target, server)
    with _cache_lock:
        hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    try:
        result = evaluate(domain, target, parse_server(server))
    except DNSUnavailable as exc:
        result = Result("Unknown", "DNSUnreachable", f"could not ask DNS ({exc}); this does not block the route")
    except ValueError as exc:
        result = Result("Unknown", "DNSUnreachable", f"unexpected DNS answer ({exc})")
    with _cache_lock:
        _cache[key] = (time.monotonic(), result)
    return result
