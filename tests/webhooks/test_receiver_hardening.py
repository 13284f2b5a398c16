"""Security hardening of the receiver: byte-level signatures, replays, limits, secrets, /metrics.

Each test here names the defect it pins; all of them run in-process (ASGI or TestClient).
The same limits over real sockets are in test_receiver_served_limits.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from starlette.testclient import TestClient

from nura.core.stores.inbox import get_entry
from nura.platform.receiver_app import create_app
from nura.webhooks.blocks import WebhookSecret, WebhookSigner
from tests.webhooks.helpers import (
    SECRET,
    Clock,
    asgi_post,
    config,
    generic_sig,
    github_headers,
    hex_sig,
    push_payload,
    secrets,
    stored,
)


# -- item 3: a non-ASCII byte in a signature header is a 401, never a 503 ----------------
@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/webhooks/git", b"x-hub-signature-256"),
        ("/webhooks/partner", b"x-signature"),
        ("/webhooks/confluence", b"x-hub-signature"),
        ("/webhooks/std", b"webhook-signature"),
    ],
)
def test_non_ascii_signature_header_is_401_and_counted(engine, path, header):
    app = create_app(config(), engine=engine, secrets=secrets(), run_dispatcher=False)
    body = push_payload()
    raw = [
        (b"content-type", b"application/json"),
        (b"x-github-event", b"push"),
        (b"x-github-delivery", b"na-1"),
        (b"x-event-type", b"external.integration"),
        (b"x-delivery-id", b"na-1"),
        (b"x-timestamp", str(int(time.time())).encode()),
        (b"webhook-id", b"msg_na"),
        (b"webhook-timestamp", str(int(time.time())).encode()),
        (header, b"sha256=\xff\xfe" + b"a" * 62 if header != b"webhook-signature" else b"v1,\xe9"),
    ]
    status, _, answer, _ = asgi_post(
        app, path, raw, [{"type": "http.request", "body": body, "more_body": False}]
    )
    assert status == 401, answer
    assert json.loads(answer)["error"] == "bad_signature"
    receiver = app.state.receiver
    name = receiver.by_path[path][0]
    assert receiver.metrics.signature_failures[name] == 1
    assert stored(engine) == 0


def test_signer_compares_bytes_whatever_the_header_holds():
    signer = WebhookSecret(current=SecretStr(SECRET)).get_client()
    assert signer.verify_hex(b"{}", "sha256=\u00e9" + "0" * 63) is False
    assert signer.verify_standard("m", "1", b"{}", "v1,\u00e9\u0100") is False
    assert signer.verify_hex(b"{}", hex_sig(b"{}")) is True


# -- item 5: replays on the generic and GitHub schemes ------------------------------------
def test_generic_signature_covers_id_and_timestamp(engine, clock):
    app = create_app(config(), engine=engine, secrets=secrets(), clock=clock, run_dispatcher=False)
    body = json.dumps({"n": 1}).encode()
    ts = int(clock.now)
    headers = {
        "Content-Type": "application/json",
        "X-Event-Type": "external.integration",
        "X-Delivery-Id": "gen-1",
        "X-Timestamp": str(ts),
        "X-Signature": generic_sig(body, "gen-1", str(ts)),
    }
    with TestClient(app) as c:
        assert c.post("/webhooks/partner", content=body, headers=headers).status_code == 202
        # Captured and replayed 10 minutes later with a fresh timestamp and a new id: the
        # signature covers both, so it no longer verifies.
        clock.now += 600
        replay = {**headers, "X-Timestamp": str(int(clock.now)), "X-Delivery-Id": "gen-2"}
        r = c.post("/webhooks/partner", content=body, headers=replay)
        assert r.status_code == 401 and r.json()["error"] == "bad_signature"
        # The body-only signature of today is refused on an endpoint that did not opt in.
        legacy = {**replay, "X-Signature": hex_sig(body)}
        assert c.post("/webhooks/partner", content=body, headers=legacy).status_code == 401
    assert stored(engine) == 1


def test_github_replay_with_a_new_delivery_id_starts_nothing(engine, clock):
    app = create_app(config(), engine=engine, secrets=secrets(), clock=clock, run_dispatcher=False)
    body = push_payload()
    with TestClient(app) as c:
        assert (
            c.post("/webhooks/git", content=body, headers=github_headers(body, "gh-1")).status_code
            == 202
        )
        clock.now += 3600
        r = c.post("/webhooks/git", content=body, headers=github_headers(body, "gh-2"))
        assert r.status_code == 200 and r.json()["status"] == "duplicate"
        # A different body is a different delivery.
        other = push_payload(after="c" * 40)
        r = c.post("/webhooks/git", content=other, headers=github_headers(other, "gh-3"))
        assert r.status_code == 202
    assert stored(engine) == 2
    assert get_entry(engine, "git_updates", "gh-2") is None


def test_github_body_replay_after_the_window_is_a_new_delivery(engine, clock):
    cfg = config(receiver={"replay_window_seconds": 60})
    app = create_app(cfg, engine=engine, secrets=secrets(), clock=clock, run_dispatcher=False)
    body = push_payload()
    with TestClient(app) as c:
        assert (
            c.post("/webhooks/git", content=body, headers=github_headers(body, "w-1")).status_code
            == 202
        )
        clock.now += 61
        assert (
            c.post("/webhooks/git", content=body, headers=github_headers(body, "w-2")).status_code
            == 202
        )


def legacy_config() -> Any:
    return config(
        incoming={
            "confluence_updates": {
                "url_path": "/webhooks/confluence",
                "event_types": ["confluence.page.updated"],
                "scheme": "generic",
                "signature": "legacy-body-only",
                "require_timestamp": False,
                "event_map": {"page_updated": "confluence.page.updated"},
            }
        }
    )


def test_legacy_body_only_is_named_warned_and_deduped_on_the_body(engine, clock, caplog):
    app = create_app(
        legacy_config(),
        engine=engine,
        secrets={"confluence_updates": secrets()["confluence_updates"]},
        clock=clock,
        run_dispatcher=False,
    )
    body = json.dumps({"webhookEvent": "page_updated", "page": {"id": 1}}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature": hex_sig(body),
        "X-Request-Id": "c-1",
    }
    with caplog.at_level(logging.WARNING, logger="nura.receiver"), TestClient(app) as c:
        assert c.post("/webhooks/confluence", content=body, headers=headers).status_code == 202
        clock.now += 120
        replay = {**headers, "X-Request-Id": "c-2"}
        r = c.post("/webhooks/confluence", content=body, headers=replay)
        assert r.status_code == 200 and r.json()["status"] == "duplicate"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("confluence_updates" in m and "legacy-body-only" in m for m in warned), warned
    assert stored(engine) == 1


def test_legacy_body_only_refused_for_other_schemes():
    with pytest.raises(ValidationError):
        config(
            incoming={
                "x": {
                    "url_path": "/webhooks/x",
                    "event_types": ["git.push"],
                    "scheme": "github",
                    "signature": "legacy-body-only",
                }
            }
        )


def test_unsigned_event_header_never_overrides_the_body_type(engine, clock):
    app = create_app(config(), engine=engine, secrets=secrets(), clock=clock, run_dispatcher=False)
    body = json.dumps({"type": "user.activity", "n": 7}).encode()
    ts = int(clock.now)
    headers = {
        "Content-Type": "application/json",
        "X-Event-Type": "external.integration",  # not covered by the signature
        "X-Delivery-Id": "ev-1",
        "X-Timestamp": str(ts),
        "X-Signature": generic_sig(body, "ev-1", str(ts)),
    }
    with TestClient(app) as c:
        assert c.post("/webhooks/partner", content=body, headers=headers).status_code == 202
    assert get_entry(engine, "partner", "ev-1")["event_type"] == "user.activity"


# -- item 4 (in process): rate limit before the body, header limits, buffered bytes ------
def test_rate_limit_is_checked_before_the_body_is_read(engine, clock):
    cfg = config(
        incoming={
            "one": {
                "url_path": "/webhooks/one",
                "event_types": ["git.push"],
                "rate_limit_per_minute": 1,
                "scheme": "github",
            }
        }
    )
    app = create_app(
        cfg,
        engine=engine,
        secrets={"one": secrets()["git_updates"]},
        clock=clock,
        run_dispatcher=False,
    )
    body = push_payload()
    with TestClient(app) as c:
        assert (
            c.post("/webhooks/one", content=body, headers=github_headers(body, "r-1")).status_code
            == 202
        )
        raw = [(k.lower().encode(), v.encode()) for k, v in github_headers(body, "r-2").items()]
        raw.append((b"content-length", str(len(body)).encode()))
        status, headers, _, calls = asgi_post(
            app, "/webhooks/one", raw, [{"type": "http.request", "body": body, "more_body": False}]
        )
    assert status == 429 and int(headers[b"retry-after"]) >= 1
    assert calls == 0  # not a byte of the body was read (nor verified)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-big", b"a" * (1024 * 1024))],
        [(b"x-h%d" % i, b"v") for i in range(26_000)],
    ],
    ids=["1MiB-header", "26000-headers"],
)
def test_header_limits_431(engine, headers):
    app = create_app(config(), engine=engine, secrets=secrets(), run_dispatcher=False)
    body = push_payload()
    raw = [(k.lower().encode(), v.encode()) for k, v in github_headers(body, "h").items()]
    status, _, answer, calls = asgi_post(
        app, "/webhooks/git", raw + headers, [{"type": "http.request", "body": body}]
    )
    assert status == 431, answer
    assert json.loads(answer)["error"] == "headers_too_large"
    assert calls == 0
    assert stored(engine) == 0


def test_total_buffered_bytes_are_capped_503(engine):
    cfg = config(receiver={"max_buffered_bytes": 4096})
    app = create_app(cfg, engine=engine, secrets=secrets(), run_dispatcher=False)
    receiver = app.state.receiver
    body = json.dumps({"pad": "x" * 3000}).encode()
    raw = [(k.lower().encode(), v.encode()) for k, v in github_headers(body, "b").items()]
    raw.append((b"content-length", str(len(body)).encode()))
    receiver.buffered = 2000  # another request is holding 2,000 bytes meanwhile
    status, headers, answer, calls = asgi_post(
        app, "/webhooks/git", raw, [{"type": "http.request", "body": body}]
    )
    assert status == 503 and headers[b"retry-after"] and calls == 0, answer
    assert json.loads(answer)["error"] == "over_capacity"
    assert receiver.buffered == 2000  # what this request reserved was given back
    receiver.buffered = 0  # room again: read and verified (a wrong signature: 401)
    wrong = [(k, v) for k, v in raw if k != b"x-hub-signature-256"]
    wrong.append((b"x-hub-signature-256", hex_sig(body, "wrong").encode()))
    status, _, answer, calls = asgi_post(
        app, "/webhooks/git", wrong, [{"type": "http.request", "body": body}]
    )
    assert status == 401 and calls == 1 and receiver.buffered == 0, answer


# -- item 9: secrets and /metrics ---------------------------------------------------------
@pytest.mark.parametrize("bad", ["whsec_not base64!!", "whsec_", "whsec_YWJj$", ""])
def test_invalid_or_empty_secrets_are_refused(bad):
    with pytest.raises(ValidationError):
        WebhookSecret(current=SecretStr(bad))
    with pytest.raises(ValidationError):
        WebhookSecret(current=SecretStr("ok"), previous=SecretStr(bad))
    with pytest.raises(ValueError, match="secret"):
        WebhookSigner([SecretStr(bad)])


def test_valid_whsec_secret_decodes():
    signer = WebhookSecret(current=SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).get_client()
    assert len(signer.keys()[0]) == 24


class FakeLoader:
    """The Prefect API as the secret provider sees it: counts loads, a block that may go."""

    def __init__(self) -> None:
        self.calls = 0
        self.block: WebhookSecret | None = WebhookSecret(current=SecretStr(SECRET))
        self.down = False

    async def __call__(self, name: str, ep: Any) -> WebhookSecret:
        from nura.webhooks.receiver_support import SecretMissing

        self.calls += 1
        if self.down:
            raise ConnectionError("prefect api down")
        if self.block is None:
            raise SecretMissing(name)
        return self.block


def test_missing_block_is_negatively_cached():
    from nura.webhooks.receiver_support import SecretProvider

    clock = Clock()
    loader = FakeLoader()
    loader.block = None
    provider = SecretProvider(30, clock=clock, loader=loader)
    ep = config().webhooks.incoming["git_updates"]

    async def burst() -> list[Any]:
        return await asyncio.gather(*(provider.get("git_updates", ep) for _ in range(50)))

    assert asyncio.run(burst()) == [None] * 50
    assert loader.calls == 1  # not one Prefect API call per unauthenticated request
    clock.now += 31
    asyncio.run(burst())
    assert loader.calls == 2


def test_deleted_block_stops_verifying_within_the_ttl_but_an_outage_does_not():
    from nura.webhooks.receiver_support import SecretProvider

    clock = Clock()
    loader = FakeLoader()
    provider = SecretProvider(30, clock=clock, loader=loader)
    ep = config().webhooks.incoming["git_updates"]

    async def get() -> Any:
        secret = await provider.get("git_updates", ep)
        await asyncio.sleep(0)  # let a background reload finish
        await asyncio.sleep(0)
        return secret

    assert asyncio.run(get()) is not None
    loader.down = True  # Prefect unreachable: the last good secret keeps working
    clock.now += 31
    assert asyncio.run(get()) is not None
    assert asyncio.run(get()) is not None
    loader.down = False
    loader.block = None  # the block is deleted
    clock.now += 31
    assert asyncio.run(get()) is None  # within the TTL, not one request later


def test_metrics_need_the_token_behind_a_proxy(engine):
    app = create_app(
        config(receiver={"bearer_token": "tok"}),
        engine=engine,
        secrets=secrets(),
        run_dispatcher=False,
    )
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 200  # loopback, no proxy
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        assert c.get("/metrics", headers=forwarded).status_code == 401
        ok = {**forwarded, "Authorization": "Bearer tok"}
        assert c.get("/metrics", headers=ok).status_code == 200
    proxied = create_app(
        config(receiver={"bearer_token": "tok", "trusted_proxies": ["127.0.0.1"]}),
        engine=engine,
        secrets=secrets(),
        run_dispatcher=False,
    )
    with TestClient(proxied) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer tok"}).status_code == 200
