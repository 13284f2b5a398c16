"""One pooled httpx client per process, TLS verified with `platform.tls_min_version` as the floor.

Seed defect 5 opened a new session per request. Here every task shares this client, so
connections to a service are reused; redirects are never followed (a 3xx is an answer).

`pinned_client` is the variant for destinations a partner controls (outgoing webhooks):
its transport asks a `pin` callback for the addresses of a request's host, connects to
those and nothing else, and keeps the name in the Host header and TLS SNI (httpcore's
`sni_hostname` request extension), so certificates are still verified against the name.

TLS minimum: 1.2 by default (some partners still end at 1.2), 1.3 when configured; a
server that cannot meet it is refused in the handshake (`TlsRefused` in the call layer).
The receiver serves HTTPS with the same minimum (`nura.platform.receiver_app.server_config`).
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable, Sequence

import httpx

_client: httpx.Client | None = None
_pid: int | None = None
_lock = threading.Lock()

USER_AGENT = "Nura-Integrations/0.1 (+https://github.com/nura)"
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)

# host, port -> the addresses to connect to ([] = connect to the name as usual); raises to refuse.
Pin = Callable[[str, int], Sequence[str]]


TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_tls: str | None = None  # the minimum the shared client was built with
# The process's `platform.tls_min_version`, set when its configuration loads
# (`nura.core.runtime.get_config`; this module sits below the configuration).
_tls_minimum = "1.2"


def set_tls_minimum(version: str) -> None:
    """Clients built from now on refuse TLS below `version` ("1.2" or "1.3")."""
    global _tls_minimum
    if version not in TLS_VERSIONS:
        raise ValueError(f"TLS minimum must be one of {sorted(TLS_VERSIONS)}, not {version!r}")
    _tls_minimum = version


def tls_context(minimum: str | None = None) -> ssl.SSLContext:
    """A verifying client context refusing TLS below `minimum` (default: the process's)."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = TLS_VERSIONS[minimum or _tls_minimum]
    return ctx


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error (version refused, certificate not verified) behind a transport error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def shared_client() -> httpx.Client:
    """The process-wide client (re-created after a fork, whose sockets are not ours, and
    when the configured TLS minimum changed)."""
    global _client, _pid, _tls
    minimum = _tls_minimum
    with _lock:
        if _client is None or _pid != os.getpid() or _tls != minimum:
            _tls = minimum
            _client = httpx.Client(
                verify=tls_context(minimum),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
                limits=LIMITS,
                timeout=httpx.Timeout(30.0),
            )
            _pid = os.getpid()
        return _client


class PinnedTransport(httpx.HTTPTransport):
    """Connects each request to the addresses `pin` returns for its host, in order.

    The name is resolved once, by `pin`, and the connection goes to that answer: httpx
    never resolves it a second time. The request keeps its Host header; TLS gets the name
    as SNI and for certificate checks. Pooled connections are keyed by address.
    """

    def __init__(self, pin: Pin, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._pin = pin

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = self._pin(host, port)
        if not addresses:
            return super().handle_request(request)
        failure: httpx.ConnectError | None = None
        for address in addresses:
            pinned = httpx.Request(
                request.method,
                url.copy_with(host=address.split("%", 1)[0]),
                headers=request.headers,  # Host: the name, as built from the URL
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": host},
            )
            try:
                return super().handle_request(pinned)
            except httpx.ConnectError as exc:  # the next checked address, like create_connection
                failure = exc
        assert failure is not None
        raise failure


def pinned_client(pin: Pin, *, verify: ssl.SSLContext | None = None) -> httpx.Client:
    """A pooled client whose connections go only to the addresses `pin` approves."""
    return httpx.Client(
        transport=PinnedTransport(pin, verify=verify or tls_context(), limits=LIMITS),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(30.0),
    )


def close_shared_client() -> None:
    global _client
    with _lock:
        if _client is not None:
            _client.close()
            _client = None
