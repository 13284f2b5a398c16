"""SSRF guard for outgoing webhooks: a target must resolve to public addresses only.

A webhook URL comes from configuration a partner may influence, and our workers sit next
to cloud metadata services and internal APIs. Every address a target's host resolves to
is checked: anything that is not a globally routable unicast address (`ip.is_global`,
minus multicast) is refused unless the host, the IP or a CIDR containing it is in
`webhooks.outgoing.allow_list`. IPv6 forms that carry an IPv4 address (IPv4-mapped
`::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
are judged by that IPv4 address, so `64:ff9b::7f00:1` is loopback.

The check and the connection cannot disagree: `SSRFGuard.client` connects only to the
addresses `SSRFGuard.addresses` has just checked, for exactly the name in the URL (a
trailing dot included), while the Host header and TLS SNI keep the name
(`nura.core.http.PinnedTransport`). A DNS answer that changes between check and connect
(rebinding with a zero TTL) therefore reaches nothing unchecked, on every retry too.
Redirects are never followed (a 3xx is a failed delivery).

A transient DNS failure (EAI_AGAIN, a timeout) is `DNSUnavailable`, retryable like any
unreachable service; a name that does not exist is a refusal.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable

import httpx

from nura.core.errors import InvalidInput, ServiceUnavailable
from nura.webhooks.errors import WebhookError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 prefixes whose low 32 bits are an IPv4 address the packet ends up at.
_IPV4_IN_LOW_BITS: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # IPv4-compatible (deprecated, still routed by some stacks)
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b::/96",  # NAT64 well-known prefix
        "64:ff9b:1::/48",  # NAT64 local-use prefix
    )
)

# Not globally reachable, yet `is_global` on the Pythons we support (their IANA tables
# differ by version): IETF assignments, the 6to4 relay anycast, benchmarking,
# documentation, SRv6 SIDs, site-local.
EXTRA_BLOCKED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.0.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fec0::/10",
    )
)

# getaddrinfo errors that say "try again", not "no such name".
_TRANSIENT_EAI = frozenset({socket.EAI_AGAIN})

Resolver = Callable[[str, int], list[str]]


class SSRFRefused(WebhookError, InvalidInput):
    """The target URL is not allowed (scheme, host, or an address in a blocked range)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"refused to deliver to {_redact(url)}: {reason}")


class DNSUnavailable(WebhookError, ServiceUnavailable):
    """The target's name could not be resolved right now (EAI_AGAIN, timeout): retryable."""


def _redact(url: str) -> str:
    """Scheme, host and port only: paths and queries can carry tokens."""
    try:
        parts = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(unparseable URL)"
    port = f":{parts.port}" if parts.port else ""
    host = f"[{parts.host}]" if ":" in parts.host else parts.host
    return f"{parts.scheme}://{host}{port}/…"


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    if int(ip) <= 1:
        return None  # :: and ::1 are themselves, not IPv4-compatible 0.0.0.0/0.0.0.1
    if any(ip in net for net in _IPV4_IN_LOW_BITS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _effective(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        return embedded_ipv4(ip) or ip
    return ip


def _host_key(host: str) -> str:
    return host.lower().rstrip(".")


class SSRFGuard:
    """Checks URLs against the blocked ranges and an allow-list; caches DNS briefly."""

    def __init__(
        self,
        allow_list: Iterable[str] = (),
        *,
        resolver: Resolver = system_resolver,
        cache_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed_hosts: set[str] = set()
        self.allowed_networks: list[Network] = []
        for item in allow_list:
            item = item.strip()
            if not item:
                continue
            try:
                self.allowed_networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.allowed_hosts.add(_host_key(item))
        self.resolver = resolver
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._client_pid: int | None = None

    @staticmethod
    def blocked(ip: IPAddress) -> bool:
        """True for anything but a globally routable unicast address (embedded IPv4 decoded)."""
        ip = _effective(ip)
        if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
            return True
        return any(ip in net for net in EXTRA_BLOCKED if net.version == ip.version)

    def _allowed_ip(self, ip: IPAddress) -> bool:
        forms = {ip, _effective(ip)}
        return any(
            form in net
            for form in forms
            for net in self.allowed_networks
            if net.version == form.version
        )

    def _resolve(self, host: str, port: int) -> list[str]:
        key = (host, port)
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < self.cache_seconds:
                return hit[1]
        url = f"http://{host}:{port}/"  # a name, never an IPv6 literal, here
        try:
            addresses = list(self.resolver(host, port))
        except socket.gaierror as exc:
            if exc.errno in _TRANSIENT_EAI:
                raise DNSUnavailable(f"cannot resolve {host} right now ({exc})") from exc
            raise SSRFRefused(url, f"cannot resolve host ({exc})") from exc
        except TimeoutError as exc:
            raise DNSUnavailable(f"resolving {host} timed out") from exc
        except (OSError, UnicodeError) as exc:
            raise SSRFRefused(url, f"cannot resolve host ({exc})") from exc
        with self._lock:
            self._cache[key] = (now, addresses)
        return addresses

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to for `host` (exactly as it will be connected).

        [] when the host is allow-listed by name (connect as usual). Raises `SSRFRefused`
        if any address is blocked, `DNSUnavailable` if DNS failed transiently.
        """
        url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
        if not host:
            raise SSRFRefused(url, "no host")
        if _host_key(host) in self.allowed_hosts:
            return []
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        addresses = [str(literal)] if literal is not None else self._resolve(host, port)
        if not addresses:
            raise SSRFRefused(url, "host resolves to no address")
        for raw in addresses:
            try:
                ip = ipaddress.ip_address(raw.split("%", 1)[0])
            except ValueError:
                raise SSRFRefused(url, f"{host} resolves to an unreadable address") from None
            if self.blocked(ip) and not self._allowed_ip(ip):
                shown = f"{ip} (= {_effective(ip)})" if _effective(ip) != ip else str(ip)
                what = shown if literal is not None else f"{host} resolves to {shown}, which"
                raise SSRFRefused(url, f"{what} is not a public address")
        return addresses

    def check(self, url: str) -> list[str]:
        """Raise `SSRFRefused` unless every address of the URL's host may be called."""
        try:
            parts = httpx.URL(url)
            host = parts.raw_host.decode("ascii")
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise SSRFRefused(url, "not a valid URL") from exc
        if parts.scheme not in ("http", "https"):
            raise SSRFRefused(url, f"scheme {parts.scheme or '(none)'} is not http(s)")
        if not host:
            raise SSRFRefused(url, "no host")
        if parts.userinfo:
            raise SSRFRefused(url, "credentials in the URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return self.addresses(host, port)

    @property
    def client(self) -> httpx.Client:
        """A pooled client that connects only to addresses this guard has checked."""
        from nura.core.http import pinned_client

        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                self._client = pinned_client(self.addresses)
                self._client_pid = os.getpid()
            return self._client
