"""One pooled httpx client per process, TLS verified with TLS 1.2 as the floor.

Seed defect 5 opened a new session per request. Here every task shares this client, so
connections to a service are reused; redirects are never followed (a 3xx is an answer).
"""

from __future__ import annotations

import os
import ssl
import threading

import httpx

_client: httpx.Client | None = None
_pid: int | None = None
_lock = threading.Lock()

USER_AGENT = "Nura-Integrations/0.1 (+https://github.com/nura)"


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def shared_client() -> httpx.Client:
    """The process-wide client (re-created after a fork, whose sockets are not ours)."""
    global _client, _pid
    with _lock:
        if _client is None or _pid != os.getpid():
            _client = httpx.Client(
                verify=tls_context(),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                timeout=httpx.Timeout(30.0),
            )
            _pid = os.getpid()
        return _client


def close_shared_client() -> None:
    global _client
    with _lock:
        if _client is not None:
            _client.close()
            _client = None
