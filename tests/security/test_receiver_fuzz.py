"""Fuzz the REAL served receiver (nura.platform.receiver_app.create_app under uvicorn, with the
settings `nura webhooks serve` uses) over raw sockets, deterministically (seeded).

Random bytes in bodies, headers and paths; oversize, chunked, lying and slow bodies; then
the replay cases. Whatever arrives: no 5xx, nothing stored without a valid signature, and
the receiver is alive after.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from nura.core.stores.db import get_engine
from nura.core.stores.inbox import list_entries
from nura.platform.receiver_app import create_app
from tests.webhooks.conftest import ReceiverThread
from tests.webhooks.helpers import (
    SECRET,
    config,
    generic_headers,
    generic_sig,
    github_headers,
    hex_sig,
    push_payload,
    secrets,
)

SEED = 20261129
REQUESTS = 1200
PATHS = [
    b"/webhooks/git",
    b"/webhooks/partner",
    b"/webhooks/std",
    b"/webhooks/confluence",
    b"/webhooks/off",
    b"/webhooks/nope",
    b"/webhooks/",
    b"/healthz",
    b"/metrics",
    b"/webhooks/git/../partner",
]
HEADER_NAMES = [
    b"Content-Type",
    b"X-Hub-Signature-256",
    b"X-Signature",
    b"X-Hub-Signature",
    b"webhook-signature",
    b"webhook-id",
    b"webhook-timestamp",
    b"X-GitHub-Event",
    b"X-GitHub-Delivery",
    b"X-Event-Type",
    b"X-Delivery-Id",
    b"X-Timestamp",
    b"X-Forwarded-For",
    b"Authorization",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[ReceiverThread]:
    cfg = config(receiver={"body_timeout_seconds": 1.0, "max_buffered_bytes": 1024 * 1024})
    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'inbox.db'}")
    app = create_app(cfg, engine=engine, secrets=secrets(), run_dispatcher=False)
    receiver = ReceiverThread(app, served=True).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def _exchange(port: int, parts: list[bytes], pause: float = 0.0, wait: float = 10.0) -> int | None:
    """Send `parts` (pausing between them), read the status line; None if closed unanswered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    try:
        for i, part in enumerate(parts):
            if i and pause:
                time.sleep(pause)
            try:
                sock.sendall(part)
            except OSError:  # the server already answered and closed: read that answer
                break
        data = b""
        while b"\r\n" not in data:
            try:
                chunk = sock.recv(4096)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data.split()[1])


def _rand_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


def _header_value(rng: random.Random) -> bytes:
    """Random bytes a header can carry on the wire (no CR/LF: those would end it)."""
    return bytes(b for b in _rand_bytes(rng, rng.randrange(0, 90)) if b not in (10, 13))


def _request(rng: random.Random, port: int) -> tuple[list[bytes], float, str]:
    kind = rng.choice(["random"] * 6 + ["signed", "oversize", "chunked", "lying", "path"])
    path = rng.choice(PATHS)
    body = rng.choice(
        [_rand_bytes(rng, rng.randrange(0, 3000)), push_payload(n=rng.random()), b"{}"]
    )
    headers: list[tuple[bytes, bytes]] = [
        (rng.choice(HEADER_NAMES), _header_value(rng)) for _ in range(rng.randrange(0, 8))
    ]
    if rng.random() < 0.7:
        headers.append((b"Content-Type", b"application/json"))
    if kind == "signed":  # signed with the right secret, then a header or the body disturbed
        path = rng.choice([b"/webhooks/git", b"/webhooks/partner", b"/webhooks/confluence"])
        did = f"fz-{rng.getrandbits(40)}"
        if path == b"/webhooks/partner":
            signed = generic_headers(body, did)
        elif path == b"/webhooks/git":
            signed = github_headers(body, did)
        else:
            signed = {"Content-Type": "application/json", "X-Hub-Signature": hex_sig(body)}
        headers = [(k.encode(), v.encode()) for k, v in signed.items()]
        covered = {b"X-Hub-Signature-256", b"X-Signature", b"X-Hub-Signature"}
        if path == b"/webhooks/partner":
            covered |= {b"X-Delivery-Id", b"X-Timestamp"}
        if rng.random() < 0.3:  # the body changed after signing
            body = body + b" "
        else:  # a signed header's last byte replaced by any other byte (non-ASCII too)
            i = rng.choice([j for j, (k, _) in enumerate(headers) if k in covered])
            name, value = headers[i]
            other = rng.choice([b for b in range(256) if b not in (10, 13, value[-1])])
            headers[i] = (name, value[:-1] + bytes([other]))
    if kind == "path":
        path = b"/webhooks/" + bytes(rng.randrange(33, 256) for _ in range(rng.randrange(1, 30)))
    head = b"POST " + path + b" HTTP/1.1\r\nHost: fuzz\r\n"
    head += b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    if kind == "chunked":
        cuts = sorted(rng.sample(range(len(body) + 1), min(3, len(body) + 1)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
        return [head + b"Transfer-Encoding: chunked\r\n\r\n", chunked], 0.0, kind
    if kind == "oversize":
        return [head + b"Content-Length: %d\r\n\r\n" % (30 * 1024 * 1024), body], 0.0, kind
    if kind == "lying":  # declares more than it sends: cut off by the body timeout (408)
        return [head + b"Content-Length: %d\r\n\r\n" % (len(body) + 10), body], 0.0, kind
    return [head + b"Content-Length: %d\r\n\r\n" % len(body), body], 0.0, kind


def _slow(port: int) -> list[bytes]:
    body = push_payload(slow=True)
    headers = b"".join(f"{k}: {v}\r\n".encode() for k, v in github_headers(body, "slow").items())
    head = b"POST /webhooks/git HTTP/1.1\r\nHost: fuzz\r\n" + headers
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    return [head, *(body[i : i + 1] for i in range(40))]  # 40 bytes at 0.1 s: never done


def test_fuzzed_requests_never_5xx_and_store_nothing_unsigned(served):
    rng = random.Random(SEED)
    port = served.port
    engine = served.app.state.receiver.engine
    requests = [_request(rng, port) for _ in range(REQUESTS)]
    statuses: dict[str, list[int | None]] = {}

    def run(item: tuple[list[bytes], float, str]) -> tuple[str, int | None]:
        parts, pause, kind = item
        return kind, _exchange(port, parts, pause)

    with ThreadPoolExecutor(8) as pool:
        slow = [pool.submit(_exchange, port, _slow(port), 0.1) for _ in range(3)]
        for kind, status in pool.map(run, requests):
            statuses.setdefault(kind, []).append(status)
        slow_statuses = [f.result() for f in slow]

    every = [s for ss in statuses.values() for s in ss] + slow_statuses
    assert not [s for s in every if s is not None and s >= 500], statuses
    assert slow_statuses == [408, 408, 408]
    # 400: a request the HTTP parser itself refuses (a random header broke its framing).
    assert set(statuses.get("oversize", [])) <= {400, 404, 405, 413, 429}
    assert set(statuses.get("lying", [])) <= {400, 401, 404, 405, 408, 413, 415, 422, 429}
    # Well-formed requests are all answered (only garbage request lines may be dropped).
    assert all(s is not None for k, ss in statuses.items() if k != "path" for s in ss), statuses
    # Every fuzzed request was disturbed after signing: nothing may have been stored.
    assert list_entries(engine, limit=10) == []
    assert httpx.get(f"{served.url}/healthz").json()["status"] == "ok"


def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=10)


def test_replays_on_the_served_receiver(served):
    engine = served.app.state.receiver.engine
    before = len(list_entries(engine, limit=1000))
    base = served.url
    # generic: id and timestamp are signed; a replay with fresh ones does not verify.
    body = json.dumps({"replay": "generic"}).encode()
    headers = generic_headers(body, "rp-1")
    assert _post(f"{base}/webhooks/partner", body, headers).status_code == 202
    fresh = {**headers, "X-Delivery-Id": "rp-2", "X-Timestamp": str(int(time.time()) + 1)}
    r = _post(f"{base}/webhooks/partner", body, fresh)
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    resigned_body = {**fresh, "X-Signature": generic_sig(body, "rp-1", fresh["X-Timestamp"])}
    assert _post(f"{base}/webhooks/partner", body, resigned_body).status_code == 401
    # github: the id is unsigned; the same body under a new id starts nothing.
    push = push_payload(replay="github")
    assert _post(f"{base}/webhooks/git", push, github_headers(push, "gh-rp-1")).status_code == 202
    r = _post(f"{base}/webhooks/git", push, github_headers(push, "gh-rp-2"))
    assert r.status_code == 200 and r.json()["status"] == "duplicate"
    # legacy body-only (Confluence DC): likewise deduped on the body.
    page = json.dumps({"webhookEvent": "page_updated", "page": {"id": 9}}).encode()
    legacy: dict[str, Any] = {"Content-Type": "application/json", "X-Hub-Signature": hex_sig(page)}
    assert (
        _post(f"{base}/webhooks/confluence", page, {**legacy, "X-Request-Id": "c1"}).status_code
        == 202
    )
    r = _post(f"{base}/webhooks/confluence", page, {**legacy, "X-Request-Id": "c2"})
    assert r.status_code == 200
    # the unsigned event header never overrides the signed body's type
    typed = json.dumps({"type": "user.activity"}).encode()
    h = generic_headers(typed, "rp-typed", event="external.integration")
    assert _post(f"{base}/webhooks/partner", typed, h).status_code == 202
    entries = list_entries(engine, limit=1000)
    assert len(entries) == before + 4
    assert {e["event_type"] for e in entries if e["delivery_id"] == "rp-typed"} == {"user.activity"}
    assert SECRET not in json.dumps([e["headers"] for e in entries])
    assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
