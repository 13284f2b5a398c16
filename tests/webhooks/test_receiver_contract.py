"""The HTTP contract of `POST /webhooks/{endpoint}`: every status, in the documented order."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from standardwebhooks import Webhook
from starlette.testclient import TestClient

from nura.core.stores.inbox import get_entry
from nura.platform.receiver_app import create_app
from tests.webhooks.helpers import (
    OLD_SECRET,
    STD_SECRET,
    config,
    generic_headers,
    github_headers,
    hex_sig,
    push_payload,
    secrets,
    stored,
)


@pytest.fixture
def client(engine, clock):
    app = create_app(config(), engine=engine, secrets=secrets(), clock=clock, run_dispatcher=False)
    with TestClient(app) as c:
        yield c


def test_github_push_accepted_then_duplicate(client, engine):
    body = push_payload()
    r = client.post("/webhooks/git", content=body, headers=github_headers(body, "d-1"))
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "accepted", "delivery_id": "d-1"}
    entry = get_entry(engine, "git_updates", "d-1")
    assert entry and entry["status"] == "accepted" and entry["event_type"] == "git.push"
    assert entry["body"] == body and "x-hub-signature-256" not in json.loads(entry["headers"])
    again = client.post("/webhooks/git", content=body, headers=github_headers(body, "d-1"))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert stored(engine) == 1


def test_github_published_test_vector(engine, clock):
    from pydantic import SecretStr

    from nura.webhooks.blocks import WebhookSecret

    secret = WebhookSecret(scheme="github", current=SecretStr("It's a Secret to Everybody"))
    app = create_app(
        config(incoming={"gh": {"url_path": "/webhooks/gh", "event_types": ["github.ping"]}}),
        engine=engine,
        secrets={"gh": secret},
        clock=clock,
        run_dispatcher=False,
    )
    body = b"Hello, World!"
    sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    with TestClient(app) as c:
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "v-1",
            "X-Hub-Signature-256": sig,
        }
        r = c.post("/webhooks/gh", content=body, headers=headers)
        # The signature verifies, so the request gets as far as JSON parsing.
        assert r.status_code == 400 and r.json()["error"] == "bad_json"
        bad = c.post(
            "/webhooks/gh", content=body, headers={**headers, "X-Hub-Signature-256": sig[:-1] + "0"}
        )
        assert bad.status_code == 401
    assert stored(engine) == 0


def test_github_form_encoding(client, engine):
    payload = push_payload().decode()
    body = urlencode({"payload": payload}).encode()
    headers = github_headers(body, "form-1")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    r = client.post("/webhooks/git", content=body, headers=headers)
    assert r.status_code == 202, r.text
    no_field = urlencode({"other": payload}).encode()
    headers = {
        **github_headers(no_field, "form-2"),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert client.post("/webhooks/git", content=no_field, headers=headers).status_code == 400


def test_previous_secret_verifies_during_rotation(client):
    body = push_payload()
    r = client.post(
        "/webhooks/git", content=body, headers=github_headers(body, "rot", secret=OLD_SECRET)
    )
    assert r.status_code == 202
    r = client.post(
        "/webhooks/git", content=body, headers=github_headers(body, "rot2", secret="nope")
    )
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"


def test_expired_previous_secret_rejected(engine, clock):
    from datetime import UTC, datetime, timedelta

    from pydantic import SecretStr

    from nura.webhooks.blocks import WebhookSecret

    s = secrets()
    s["git_updates"] = WebhookSecret(
        scheme="github",
        current=SecretStr("new"),
        previous=SecretStr(OLD_SECRET),
        previous_expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    app = create_app(config(), engine=engine, secrets=s, clock=clock, run_dispatcher=False)
    # A distinct body each: an identical GitHub body under a new id is a replay (200).
    bodies = [push_payload(n=i) for i in range(3)]
    with TestClient(app) as c:
        assert (
            c.post(
                "/webhooks/git",
                content=bodies[0],
                headers=github_headers(bodies[0], "e1", secret=OLD_SECRET),
            ).status_code
            == 202
        )
        clock.now += 2 * 3600
        assert (
            c.post(
                "/webhooks/git",
                content=bodies[1],
                headers=github_headers(bodies[1], "e2", secret=OLD_SECRET),
            ).status_code
            == 401
        )
        assert (
            c.post(
                "/webhooks/git",
                content=bodies[2],
                headers=github_headers(bodies[2], "e3", secret="new"),
            ).status_code
            == 202
        )


@pytest.mark.parametrize(
    ("path", "status"), [("/webhooks/nothing", 404), ("/webhooks/off", 404), ("/elsewhere", 404)]
)
def test_unknown_or_disabled_endpoint(client, engine, path, status):
    body = push_payload()
    r = client.post(path, content=body, headers=github_headers(body, "x"))
    assert r.status_code == status and r.json()["error"] in ("unknown_endpoint", "not_found")
    assert stored(engine) == 0


def test_body_over_limit_413(client, engine):
    body = json.dumps({"event_type": "external.integration", "pad": "x" * 4000}).encode()
    r = client.post("/webhooks/partner", content=body, headers=generic_headers(body, "big"))
    assert r.status_code == 413

    # A lying or absent Content-Length is caught while streaming too.
    def gen():
        yield body[:1500]
        yield body[1500:]

    r = client.post("/webhooks/partner", content=gen(), headers=generic_headers(body, "big2"))
    assert r.status_code == 413
    assert stored(engine) == 0


@pytest.mark.parametrize("ctype", ["text/plain", "", "application/xml", "multipart/form-data"])
def test_unsupported_media_type_415(client, engine, ctype):
    body = b'{"a": 1}'
    headers = {**generic_headers(body, "ct"), "Content-Type": ctype}
    assert client.post("/webhooks/partner", content=body, headers=headers).status_code == 415
    assert stored(engine) == 0


def test_missing_or_bad_signature_401(client, engine):
    body = b'{"a": 1}'
    headers = generic_headers(body, "s")
    del headers["X-Signature"]
    assert client.post("/webhooks/partner", content=body, headers=headers).status_code == 401
    headers["X-Signature"] = hex_sig(body + b" ")
    assert client.post("/webhooks/partner", content=body, headers=headers).status_code == 401
    assert stored(engine) == 0


def test_generic_requires_timestamp_and_rejects_replay(client, engine, clock):
    body = b'{"n": 1}'
    headers = generic_headers(body, "replay-1", ts=clock.now)
    no_ts = {k: v for k, v in headers.items() if k != "X-Timestamp"}
    r = client.post("/webhooks/partner", content=body, headers=no_ts)
    assert r.status_code == 401 and r.json()["error"] == "missing_timestamp"
    assert client.post("/webhooks/partner", content=body, headers=headers).status_code == 202
    # A request signed 5 minutes and a second ago: refused.
    signed_then = clock.now
    clock.now += 301
    headers2 = generic_headers(body, "replay-2", ts=signed_then)
    r = client.post("/webhooks/partner", content=body, headers=headers2)
    assert r.status_code == 401 and r.json()["error"] == "stale_timestamp"
    # Replayed with a fresh timestamp (and a new id): they are signed, so it fails.
    fresh = {**headers2, "X-Timestamp": str(int(clock.now)), "X-Delivery-Id": "replay-3"}
    r = client.post("/webhooks/partner", content=body, headers=fresh)
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    garbage = {**headers2, "X-Timestamp": "yesterday"}
    assert client.post("/webhooks/partner", content=body, headers=garbage).status_code == 401
    assert stored(engine) == 1


def test_standard_webhooks_and_replay(client, engine, clock):
    wh = Webhook(STD_SECRET)
    body = json.dumps({"type": "system.alert", "data": {"level": "high"}}).encode()
    from datetime import UTC, datetime

    signed_at = datetime.fromtimestamp(clock.now, UTC)
    sig = wh.sign("msg_1", signed_at, body.decode())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(clock.now)),
        "webhook-signature": sig,
    }
    assert client.post("/webhooks/std", content=body, headers=headers).status_code == 202
    assert get_entry(engine, "std", "msg_1")["event_type"] == "system.alert"
    clock.now += 301
    r = client.post("/webhooks/std", content=body, headers=headers)
    assert r.status_code == 401 and r.json()["error"] == "stale_timestamp"
    tampered = {**headers, "webhook-timestamp": str(int(clock.now))}
    assert client.post("/webhooks/std", content=body, headers=tampered).status_code == 401


def test_malformed_json_400_and_missing_event_400(client, engine):
    body = b'{"not json'
    assert (
        client.post(
            "/webhooks/partner", content=body, headers=generic_headers(body, "j")
        ).status_code
        == 400
    )
    body = b"[1, 2]"
    assert (
        client.post(
            "/webhooks/partner", content=body, headers=generic_headers(body, "j2")
        ).status_code
        == 400
    )
    body = b'{"no": "event"}'
    headers = {k: v for k, v in generic_headers(body, "j3").items() if k != "X-Event-Type"}
    r = client.post("/webhooks/partner", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "missing_event_type"
    assert stored(engine) == 0


def test_event_not_accepted_422(client, engine):
    body = push_payload()
    r = client.post(
        "/webhooks/git", content=body, headers=github_headers(body, "i", event="issues")
    )
    assert r.status_code == 422 and "github.issues" in r.json()["message"]
    assert stored(engine) == 0


def test_rate_limit_429_with_retry_after(engine, clock):
    cfg = config(
        incoming={
            "slow": {
                "url_path": "/webhooks/slow",
                "event_types": ["user.activity"],
                "rate_limit_per_minute": 2,
                "scheme": "generic",
            }
        }
    )
    s = secrets()
    app = create_app(
        cfg, engine=engine, secrets={"slow": s["partner"]}, clock=clock, run_dispatcher=False
    )
    with TestClient(app) as c:
        codes = []
        for i in range(3):
            body = json.dumps({"i": i}).encode()
            codes.append(
                c.post(
                    "/webhooks/slow",
                    content=body,
                    headers=generic_headers(body, f"r{i}", "user.activity", clock.now),
                )
            )
        assert [r.status_code for r in codes] == [202, 202, 429]
        assert int(codes[2].headers["Retry-After"]) == 30
        clock.now += 30
        body = b'{"i": 9}'
        assert (
            c.post(
                "/webhooks/slow",
                content=body,
                headers=generic_headers(body, "r9", "user.activity", clock.now),
            ).status_code
            == 202
        )
    assert stored(engine) == 3


def test_confluence_data_center_hub_signature(client, engine):
    body = json.dumps(
        {"webhookEvent": "page_updated", "page": {"id": 42, "spaceKey": "TECH"}}
    ).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Hub-Signature": hex_sig(body),
        "X-Request-Id": "conf-1",
    }
    r = client.post("/webhooks/confluence", content=body, headers=headers)
    assert r.status_code == 202, r.text
    assert (
        get_entry(engine, "confluence_updates", "conf-1")["event_type"] == "confluence.page.updated"
    )


def test_store_failure_503(client, engine):
    receiver = client.app.state.receiver
    receiver.writer.stop()

    class Broken:
        dialect = engine.dialect

        def raw_connection(self):
            raise OSError("disk gone")

    receiver.writer.engine = Broken()
    receiver.writer.start()
    body = push_payload()
    r = client.post("/webhooks/git", content=body, headers=github_headers(body, "lost?"))
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert r.json()["error"] == "store_unavailable"


def test_healthz_and_metrics(client):
    body = push_payload()
    client.post("/webhooks/git", content=body, headers=github_headers(body, "m1"))
    client.post("/webhooks/git", content=body, headers=github_headers(body, "m2", secret="bad"))
    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics").text
    assert 'nura_webhook_requests_total{endpoint="git_updates",status="202"} 1' in text
    assert 'nura_webhook_signature_failures_total{endpoint="git_updates"} 1' in text
    assert "nura_webhook_inbox_depth 1" in text


def test_metrics_need_bearer_token_off_loopback(engine, clock):
    cfg = config(receiver={"host": "0.0.0.0", "bearer_token": "tok"})
    app = create_app(cfg, engine=engine, secrets=secrets(), clock=clock, run_dispatcher=False)
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer tok"}).status_code == 200
        assert c.get("/healthz").status_code == 200
        body = push_payload()
        assert (
            c.post("/webhooks/git", content=body, headers=github_headers(body, "t")).status_code
            == 202
        )


def test_wrong_method_is_json(client):
    r = client.get("/webhooks/git")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_ses_events_route_is_mounted(client):
    r = client.post(
        "/webhooks/ses-events", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert r.status_code not in (404, 405) and r.status_code < 500
