"""SSRF guard for outgoing webhooks: a target must resolve to public addresses only.

A webhook URL comes from configuration a partner may influence, and our workers sit next
to cloud metadata services and internal APIs. Before every delivery the host is resolved
and *every* address it resolves to is checked: loopback, private, link-local (which
holds the metadata service, 169.254.169.254), unique-local, CGNAT, multicast and
unspecified ranges are refused unless the host, the IP or a CIDR containing it is in
`webhooks.outgoing.allow_list`. Redirects are never followed (the shared HTTP client has
`follow_redirects=False` and a 3xx is a failed delivery), so a public URL cannot bounce
us to an internal one.

Limit, stated plainly: the check resolves before httpx connects, so a DNS answer that
changes between the two (rebinding with a zero TTL) is not caught here.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from nura.core.errors import InvalidInput
from nura.webhooks.errors import WebhookError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The ranges plus the ones that are never a partner: this-network, CGNAT,
# IPv6 link-local, multicast. IPv4-mapped IPv6 addresses are checked as IPv4.
BLOCKED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "0.0.0.0/8",
        "100.64.0.0/10",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::1/128",
        "::/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)

Resolver = Callable[[str, int], list[str]]


class SSRFRefused(WebhookError, InvalidInput):
    """The target URL is not allowed (scheme, host, or an address in a blocked range)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"refused to deliver to {_redact(url)}: {reason}")


def _redact(url: str) -> str:
    """Scheme, host and port only: paths and queries can carry tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/…"


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


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
                self.allowed_hosts.add(item.lower().rstrip("."))
        self.resolver = resolver
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def blocked(ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in BLOCKED if net.version == ip.version)

    def _allowed_ip(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allowed_networks if net.version == ip.version)

    def _resolve(self, host: str, port: int) -> list[str]:
        key = (host, port)
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < self.cache_seconds:
                return hit[1]
        try:
            addresses = self.resolver(host, port)
        except OSError as exc:
            raise SSRFRefused(f"http://{host}/", f"cannot resolve host ({exc})") from exc
        with self._lock:
            self._cache[key] = (now, addresses)
        return addresses

    def check(self, url: str) -> list[str]:
        """Raise `SSRFRefused` unless every address of the URL's host may be called."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise SSRFRefused(url, f"scheme {parts.scheme or '(none)'} is not http(s)")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise SSRFRefused(url, "no host")
        if parts.username or parts.password:
            raise SSRFRefused(url, "credentials in the URL")
        if host in self.allowed_hosts:
            return []
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        addresses = [str(literal)] if literal is not None else self._resolve(host, port)
        if not addresses:
            raise SSRFRefused(url, "host resolves to no address")
        for raw in addresses:
            ip = ipaddress.ip_address(raw.split("%", 1)[0])
            if self.blocked(ip) and not self._allowed_ip(ip):
                raise SSRFRefused(
                    url, f"{host} resolves to {ip}, a private/loopback/link-local address"
                )
        return addresses
