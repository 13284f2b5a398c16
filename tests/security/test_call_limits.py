"""Call-layer limits against real local servers: size cap, total deadline, hostile headers.

A service can answer with a body too big to hold, drip its answer a byte at a time so the
per-read timeout never fires, or send a header no parser expects. Each must end the call
with a typed `IntegrationError`, never an unbounded wait, a buffered monster or a
`ValueError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from nura.config import parse_config
from nura.core.breaker import CircuitBreakers
from nura.core.errors import (
    DeadlineExceeded,
    IntegrationError,
    RateLimited,
    ResponseTooLarge,
    ServiceTimeout,
)
from nura.core.layer import CallLayer
from nura.core.ratelimit import NoLimiter
from nura.core.stores.db import get_engine

MiB = 1024 * 1024


class _Hostile(BaseHTTPRequestHandler):
    """/declared: 32 MiB announced; /endless: no length, zeros until we hang up;
    /drip: 40 bytes announced, one every 50 ms (2 s in all)."""

    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        try:
            if self.path == "/declared":
                self._stream(32 * MiB, length=True)
            elif self.path == "/endless":
                self._stream(64 * MiB, length=False)
            elif self.path == "/drip":
                self.send_response(200)
                self.send_header("Content-Length", "40")
                self.end_headers()
                for _ in range(40):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: exactly what the layer should do

    def _stream(self, total: int, *, length: bool) -> None:
        self.send_response(200)
        if length:
            self.send_header("Content-Length", str(total))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\0" * 65536
        for _ in range(total // len(chunk)):
            self.wfile.write(chunk)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    server.hits = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


class Sleeps(list):  # backoff waits are recorded, not slept
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _layer(tmp_path: Path, partners: dict[str, Any]) -> CallLayer:
    cfg = parse_config(
        {
            "api_gateway": {"retry_default": 3, "backoff_base_seconds": 0.01},
            "external_services": {"partners": partners},
        }
    )
    return CallLayer(
        cfg.policies(),
        breakers=CircuitBreakers(get_engine(f"sqlite:///{tmp_path / 'n.db'}"), sync_seconds=0),
        limiter=NoLimiter(),
        http_client=httpx.Client(),
        sleep=Sleeps(),
    )


def _url(server: ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_declared_huge_body_is_refused_by_the_default_cap(tmp_path, hostile) -> None:
    layer = _layer(tmp_path, {"svc": {}})
    with pytest.raises(ResponseTooLarge) as info:
        layer.request("svc", "GET", _url(hostile, "/declared"))
    assert info.value.attempts == 1 and not info.value.retryable
    assert info.value.status == 200
    assert hostile.hits == 1  # type: ignore[attr-defined]


def test_streamed_body_is_cut_at_the_per_call_cap(tmp_path, hostile) -> None:
    layer = _layer(tmp_path, {"svc": {}})
    with pytest.raises(ResponseTooLarge, match="over 1048576 bytes") as info:
        layer.request("svc", "GET", _url(hostile, "/endless"), max_response_bytes=MiB)
    assert info.value.attempts == 1 and hostile.hits == 1  # type: ignore[attr-defined]


def test_dripping_body_is_cut_at_the_default_deadline(tmp_path, hostile) -> None:
    # timeout 0.25 s: every byte comes well within it; the default deadline is 4x = 1 s,
    # the whole body would take 2 s.
    layer = _layer(tmp_path, {"svc": {"timeout_seconds": 0.25}})
    with pytest.raises(ServiceTimeout) as info:
        layer.request("svc", "GET", _url(hostile, "/drip"))
    assert isinstance(info.value, DeadlineExceeded)
    assert info.value.attempts == 1 and hostile.hits == 1  # type: ignore[attr-defined]


def test_dripping_body_is_cut_at_a_per_call_deadline(tmp_path, hostile) -> None:
    layer = _layer(tmp_path, {"svc": {"timeout_seconds": 2}})
    with pytest.raises(DeadlineExceeded) as info:
        layer.request("svc", "GET", _url(hostile, "/drip"), deadline=0.5, retries=5)
    assert info.value.attempts == 1 and info.value.retryable  # a later run may succeed
    assert layer.sleep == []  # no retry was started past the deadline


def test_non_ascii_retry_after_is_a_rate_limit_not_a_value_error(tmp_path, flaky_service) -> None:
    layer = _layer(tmp_path, {"svc": {"base_url": flaky_service.url}})
    with pytest.raises(RateLimited) as info:
        layer.request("svc", "GET", "/status/429?retry_after=%C2%B2", retries=1)
    assert info.value.attempts == 2 and info.value.retry_after is None
    assert len(layer.sleep) == 1 and 0 <= layer.sleep[0] <= 0.01  # backoff, not the header


def test_only_integration_errors_leave_the_layer(tmp_path, flaky_service) -> None:
    layer = _layer(tmp_path, {"svc": {"base_url": flaky_service.url}})
    for path in ("/status/429?retry_after=%C2%B2", "/status/503?retry_after=%EF%BC%91"):
        with pytest.raises(IntegrationError):
            layer.request("svc", "GET", path, retries=0)
