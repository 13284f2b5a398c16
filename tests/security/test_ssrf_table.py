"""SSRF guard: the table of special addresses, embedded IPv4 forms, DNS failures, pinning.

Everything that is not a globally routable unicast address is refused, whatever form it
takes (IPv4-mapped, IPv4-compatible, NAT64, 6to4), as a literal or as a DNS answer. The
connection itself goes to the checked address: a DNS answer that changes between the
check and the connect (rebinding) cannot reach a loopback server.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nura.core.errors import IntegrationError
from nura.webhooks.ssrf import SSRFGuard, SSRFRefused

SPECIAL = [
    # IPv4
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "10.0.0.1",  # RFC 1918
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "169.254.169.254",  # link-local: the cloud metadata service
    "169.254.0.1",
    "100.64.0.1",  # CGNAT 100.64/10
    "100.127.255.254",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "0.0.0.0",  # unspecified / this network
    "0.1.2.3",
    "192.0.0.8",  # IETF protocol assignments
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    # IPv6
    "::1",
    "::",
    "fc00::1",  # ULA fc00::/7
    "fd12:3456::1",
    "fe80::1",  # link-local fe80::/10
    "fec0::1",  # deprecated site-local
    "ff02::1",  # multicast
    "ff0e::1",
    "2001:db8::1",  # documentation
    "100::1",  # discard-only
    # IPv4 hidden in IPv6
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "::10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
]

PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]


def _url(ip: str) -> str:
    return f"http://[{ip}]/hook" if ":" in ip else f"http://{ip}/hook"


def table(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


@pytest.mark.parametrize("ip", SPECIAL)
def test_every_special_range_is_refused_as_a_literal(ip: str) -> None:
    with pytest.raises(SSRFRefused):
        SSRFGuard().check(_url(ip))


@pytest.mark.parametrize("ip", SPECIAL)
def test_every_special_range_is_refused_as_a_dns_answer(ip: str) -> None:
    guard = SSRFGuard(resolver=table({"evil.example": ["93.184.215.14", ip]}))
    with pytest.raises(SSRFRefused, match="evil.example"):
        guard.check("https://evil.example/hook")


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass_in_every_form(ip: str) -> None:
    guard = SSRFGuard(resolver=table({"ok.example": [ip]}))
    assert guard.check("https://ok.example/hook") == [ip]
    assert guard.check(_url(ip)) == [ip]


def test_allow_list_still_admits_loopback_in_its_ipv6_forms() -> None:
    guard = SSRFGuard(["127.0.0.1", "10.9.0.0/16"])
    for ip in ("127.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "10.9.1.1"):
        guard.check(_url(ip))
    with pytest.raises(SSRFRefused):
        guard.check(_url("127.0.0.2"))


def test_trailing_dot_is_the_same_host_and_the_name_resolved_is_the_name_connected() -> None:
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["10.0.0.1"] if host == "internal.example." else ["93.184.215.14"]

    guard = SSRFGuard(resolver=resolve, cache_seconds=0)
    with pytest.raises(SSRFRefused):
        guard.check("http://internal.example./hook")
    assert asked == ["internal.example."]  # exactly what httpx connects to
    # allow-listed by name with or without the dot
    assert SSRFGuard(["build-box."]).check("http://BUILD-BOX/x") == []
    assert SSRFGuard(["build-box"]).check("http://build-box./x") == []


@pytest.mark.parametrize(
    "exc",
    [
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        TimeoutError("timed out"),
    ],
)
def test_transient_dns_failure_is_retryable_not_a_refusal(exc: Exception) -> None:
    def flaky(host: str, port: int) -> list[str]:
        raise exc

    guard = SSRFGuard(resolver=flaky)
    with pytest.raises(IntegrationError) as info:
        guard.check("https://hooks.partner.example/x")
    assert not isinstance(info.value, SSRFRefused)
    assert info.value.retryable


def test_nxdomain_stays_a_refusal() -> None:
    with pytest.raises(SSRFRefused, match="cannot resolve") as info:
        SSRFGuard(resolver=table({})).check("https://nowhere.invalid/x")
    assert not info.value.retryable


def test_transient_failure_is_not_cached() -> None:
    calls: list[int] = []

    def once_down(host: str, port: int) -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return ["93.184.215.14"]

    guard = SSRFGuard(resolver=once_down)
    with pytest.raises(IntegrationError):
        guard.check("https://hooks.partner.example/x")
    assert guard.check("https://hooks.partner.example/x") == ["93.184.215.14"]


# -- the connection goes to the checked address ------------------------------------------
class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.headers.get("Host"))  # type: ignore[attr-defined]
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_rebinding_answer_never_reaches_the_loopback_server(loopback_server) -> None:
    port = loopback_server.server_address[1]
    answers = iter([["93.184.215.14"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers, ["127.0.0.1"])  # public to the check, loopback afterwards

    guard = SSRFGuard(resolver=rebinding, cache_seconds=0)
    url = f"http://rebind.example:{port}/hook"
    assert guard.check(url) == ["93.184.215.14"]
    with pytest.raises(SSRFRefused, match="127.0.0.1"):
        guard.client.get(url)
    assert loopback_server.hits == []  # type: ignore[attr-defined]


def test_pinned_connection_keeps_the_name_in_the_host_header(loopback_server) -> None:
    port = loopback_server.server_address[1]
    guard = SSRFGuard(["127.0.0.1"], resolver=table({"hooks.test": ["127.0.0.1"]}))
    response = guard.client.get(f"http://hooks.test:{port}/hook")
    assert response.status_code == 200
    assert loopback_server.hits == [f"hooks.test:{port}"]  # type: ignore[attr-defined]
