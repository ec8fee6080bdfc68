"""The DNSConfigured check against a real DNS server (dnsmasq from Debian's packages)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from odoo_operator import dnscheck
from odoo_operator.devtools.localcluster import free_port

pytestmark = pytest.mark.integration

TARGET = "shop-db.odoo.localhost"


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(dnsmasq).exists():
        pytest.fail("dnsmasq is missing: run `make setup` (it installs Debian's dnsmasq-base)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("dnsmasq")
    proc = subprocess.Popen([
        dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces", f"--user={getpass.getuser()}",
        f"--pid-file={workdir / 'pid'}", "--local=/example.com/", "--local=/odoo.localhost/",
        f"--host-record={TARGET},10.1.2.3",
        f"--cname=good.example.com,{TARGET}",
        "--host-record=same-ip.example.com,10.1.2.3",
        "--host-record=elsewhere.example.com,192.0.2.7",
        "--cname=wrong-cname.example.com,elsewhere.example.com",
    ], stdout=open(workdir / "log", "wb"), stderr=subprocess.STDOUT)
    server = ("127.0.0.1", port)
    deadline = time.monotonic() + 10
    while True:
        try:
            dnscheck.query(TARGET, dnscheck.TYPE_A, server, timeout=0.5, attempts=1)
            break
        except dnscheck.DNSUnavailable:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"dnsmasq did not start: {(workdir / 'log').read_text()}")
            time.sleep(0.1)
    yield server
    proc.terminate()
    proc.wait(10)


def test_a_cname_to_the_database_host_is_configured(dns_server: tuple[str, int]) -> None:
    result = dnscheck.evaluate("good.example.com", TARGET, dns_server)
    assert (result.status, result.reason) == ("True", "CNAMEFound")


def test_an_a_record_with_the_same_addresses_counts_too(dns_server: tuple[str, int]) -> None:
    result = dnscheck.evaluate("same-ip.example.com", TARGET, dns_server)
    assert (result.status, result.reason) == ("True", "AddressMatches")


def test_a_missing_record_says_what_to_create(dns_server: tuple[str, int]) -> None:
    result = dnscheck.evaluate("missing.example.com", TARGET, dns_server)
    assert (result.status, result.reason) == ("False", "RecordMissing")
    assert f"CNAME record missing.example.com -> {TARGET}" in result.message


@pytest.mark.parametrize("domain", ["elsewhere.example.com", "wrong-cname.example.com"])
def test_a_record_pointing_elsewhere_is_a_mismatch(dns_server: tuple[str, int], domain: str) -> None:
    result = dnscheck.evaluate(domain, TARGET, dns_server)
    assert (result.status, result.reason) == ("False", "RecordMismatch")
    assert "elsewhere.example.com" in result.message or "192.0.2.7" in result.message


def test_unreachable_dns_is_unknown_never_false() -> None:
    closed = free_port()  # nothing listens there: ICMP port unreachable or a timeout
    result = dnscheck.check("good.example.com", TARGET, f"127.0.0.1:{closed}")
    assert (result.status, result.reason) == ("Unknown", "DNSUnreachable")


def test_a_garbage_answer_is_ignored_not_trusted() -> None:
    """A reply that is not the answer to our query (wrong id) is dropped; the check then times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

        def answer_garbage() -> None:
            data, peer = sock.recvfrom(512)
            sock.sendto(b"\x00\x00" + data[2:], peer)  # wrong id, not a response

        import threading
        threading.Thread(target=answer_garbage, daemon=True).start()
        with pytest.raises(dnscheck.DNSUnavailable):
            dnscheck.query("good.example.com", dnscheck.TYPE_A, ("127.0.0.1", port), timeout=0.5, attempts=1)


def test_server_setting_parses_host_and_port() -> None:
    assert dnscheck.parse_server("10.0.0.10:5353") == ("10.0.0.10", 5353)
    assert dnscheck.parse_server("10.0.0.10") == ("10.0.0.10", 53)
    assert dnscheck.parse_server("[fd00::1]:53") == ("fd00::1", 53)
