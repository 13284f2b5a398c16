"""The receiver's aggregate limits over real sockets: uvicorn serving the app as `serve()` does.

Slow bodies (slowloris) get 408, huge or countless headers 431, too many connections 503.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from nura.core.stores.db import get_engine
from nura.core.stores.inbox import status_counts
from nura.platform.receiver_app import create_app
from tests.webhooks.conftest import ReceiverThread, wait_for
from tests.webhooks.helpers import config, github_headers, push_payload, secrets


def _serve(tmp_path, **receiver: float) -> ReceiverThread:
    engine = get_engine(f"sqlite:///{tmp_path / 'inbox.db'}")
    app = create_app(
        config(receiver=receiver), engine=engine, secrets=secrets(), run_dispatcher=False
    )
    return ReceiverThread(app, served=True).start()


@pytest.fixture
def served(tmp_path) -> Iterator[ReceiverThread]:
    receiver = _serve(tmp_path, body_timeout_seconds=1.0)
    try:
        yield receiver
    finally:
        receiver.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _read_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n", 1)[0]
    return int(head.split()[1]), data


def _head(port: int, body_len: int, extra: bytes = b"") -> bytes:
    body = push_payload()
    lines = ["POST /webhooks/git HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in github_headers(body, f"s-{time.time_ns()}").items()]
    lines.append(f"Content-Length: {body_len}")
    return ("\r\n".join(lines) + "\r\n").encode() + extra + b"\r\n"


def test_a_trickling_body_is_cut_off_with_408(served):
    sock = _connect(served.port)
    try:
        sock.sendall(_head(served.port, 1000))
        started = time.monotonic()
        sock.settimeout(0.2)
        status = None
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b"{")  # one byte every 0.2 s: never finishes in time
            except OSError:
                break
            try:
                status, data = _read_status(sock)
                break
            except TimeoutError:
                continue
        assert status == 408, status
        assert json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}").get("error") in (
            "body_timeout",
            None,
        )
        assert time.monotonic() - started < 5
    finally:
        sock.close()
    assert httpx.get(f"{served.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(26_000)),
    ],
    ids=["1MiB-header", "26000-headers"],
)
def test_huge_headers_are_refused_431(served, extra):
    body = push_payload()
    sock = _connect(served.port)
    try:
        sock.sendall(_head(served.port, len(body), extra) + body)
        status, _ = _read_status(sock)
    finally:
        sock.close()
    assert status == 431
    engine = served.app.state.receiver.engine
    assert sum(status_counts(engine).values()) == 0
    assert httpx.get(f"{served.url}/healthz").status_code == 200


def test_connections_over_the_concurrency_limit_get_503(tmp_path):
    served = _serve(tmp_path, max_concurrency=8, body_timeout_seconds=30)
    # uvicorn refuses a request once open connections (its own included) reach the limit:
    # 7 held requests plus the probe make 8.
    held = [_connect(served.port) for _ in range(7)]
    try:
        for s in held:  # each holds a request open, its body not yet sent
            s.sendall(_head(served.port, 100))
        state = served.server.server_state
        wait_for(lambda: len(state.connections) >= 7 and len(state.tasks) >= 7, timeout=10)
        r = httpx.get(f"{served.url}/healthz")
        assert r.status_code == 503
    finally:
        for s in held:
            s.close()
    try:
        time.sleep(0.3)
        assert httpx.get(f"{served.url}/healthz").status_code == 200
    finally:
        served.stop()
