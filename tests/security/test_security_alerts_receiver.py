"""Security alerts from the webhook receiver, over real HTTP to the real app.

Bursts of badly signed, stale and replayed deliveries are sent to the receiver under
uvicorn (its clock injected); the health monitor's evaluator then opens exactly one high
alert per endpoint and burst, delivered to the Slack stand-in and as a Prefect event; a
second burst while open pages nobody; a quiet window resolves it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from deployments.sandbox.webhook_sink import WebhookSink
from nura.core.stores.db import get_engine
from nura.core.stores.security import counts, security_events
from nura.health.alerts import deliver_alert
from nura.health.security import update_security_alerts
from nura.platform.receiver_app import create_app
from tests.webhooks.conftest import ReceiverThread
from tests.webhooks.helpers import (
    SECRET,
    Clock,
    config,
    generic_headers,
    github_headers,
    push_payload,
    secrets,
)

HOOK = "/slack/T0/B0/SECURITY"
WINDOW = 10 * 60.0
BAD_SECRET = "not-the-secret"


def _receiver(engine: Any, clock: Clock) -> ReceiverThread:
    app = create_app(config(), engine=engine, secrets=secrets(), clock=clock, run_dispatcher=False)
    return ReceiverThread(app).start()


def _flush(server: ReceiverThread) -> None:
    server.app.state.receiver.security.flush()


def _bad_signature_burst(url: str, n: int, tag: str) -> list[int]:
    body = push_payload()
    with httpx.Client(base_url=url) as client:
        return [
            client.post(
                "/webhooks/git",
                content=body,
                headers=github_headers(body, f"{tag}-{i}", secret=BAD_SECRET),
            ).status_code
            for i in range(n)
        ]


def _security_config(nura_config, store_url: str, slack: WebhookSink) -> None:
    nura_config(
        {
            "external_services": {"slack": {"retry_attempts": 0}},
            "health_monitoring": {
                "notifications": {
                    "slack_webhook_url": f"{slack.url}{HOOK}",
                    "routing": {"high": ["slack"]},
                },
                "security_alerts": {"signature_failure": {"threshold": 5, "window_minutes": 10}},
            },
        },
        store=store_url,
    )


def _events(name: str, deadline: float = 15.0) -> list[dict[str, Any]]:
    from prefect.settings import PREFECT_API_URL

    end = time.monotonic() + deadline
    while True:
        body = {"filter": {"event": {"name": [name]}}, "limit": 50}
        found = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body).json()
        if found.get("events") or time.monotonic() > end:
            return found.get("events", [])
        time.sleep(0.3)  # the event persister writes asynchronously: nothing to inject


@pytest.mark.integration
def test_signature_failure_burst_pages_once_and_resolves_when_quiet(
    prefect_server, nura_config, store_url: str, slack: WebhookSink
) -> None:
    _security_config(nura_config, store_url, slack)
    engine = get_engine(store_url)
    clock = Clock()
    t0 = clock.now
    server = _receiver(engine, clock)
    try:
        assert _bad_signature_burst(server.url, 12, "a") == [401] * 12
        _flush(server)
        opened = update_security_alerts(now=t0 + 1)
        assert [(c["kind"], c["key"]) for c in opened] == [
            ("opened", "security.signature_failure.git_updates")
        ]
        assert "12 webhook signature failures on endpoint git_updates" in opened[0]["reason"]
        assert "bad_signature x12" in opened[0]["reason"] and "127.0.0.1" in opened[0]["reason"]
        delivered = deliver_alert(opened[0], now=t0 + 1)
        assert delivered["notified"] and delivered["failed"] == {}
        # A second burst while the alert is open: counted, but nobody is paged again.
        clock.now = t0 + 120
        assert _bad_signature_burst(server.url, 20, "b") == [401] * 20
        _flush(server)
        assert update_security_alerts(now=t0 + 121) == []
    finally:
        server.stop()
    # Quiet for a whole window after the last refusal: resolved, and the recovery reaches Slack.
    resolved = update_security_alerts(now=t0 + 120 + WINDOW + 1)
    assert [c["kind"] for c in resolved] == ["resolved"]
    assert deliver_alert(resolved[0], now=t0 + 120 + WINDOW + 1)["notified"]
    texts = [m["json"]["text"] for m in slack.received()["slack"]]
    firsts = [t.split("\n")[0] for t in texts]
    assert firsts == [
        ":large_orange_circle: [HIGH] SECURITY webhook signature failures on endpoint git_updates",
        ":large_orange_circle: [HIGH] RESOLVED security: webhook signature failures on "
        "endpoint git_updates",
    ]
    assert SECRET not in "".join(texts) and BAD_SECRET not in "".join(texts)
    events = _events("nura.security.signature_failure")
    ids = {e["resource"]["prefect.resource.id"] for e in events}
    assert "nura.security.signature_failure.git_updates" in ids
    assert _events("nura.security.resolved")


def test_stale_and_replayed_deliveries_are_counted_per_endpoint(tmp_path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    clock = Clock()
    server = _receiver(engine, clock)
    body = push_payload()
    try:
        with httpx.Client(base_url=server.url) as client:
            for i in range(3):  # correctly signed, but 10 minutes old
                headers = generic_headers(body, f"old-{i}", ts=clock.now - 600)
                assert (
                    client.post("/webhooks/partner", content=body, headers=headers).status_code
                    == 401
                )
            headers = github_headers(body, "dup-1")
            assert client.post("/webhooks/git", content=body, headers=headers).status_code == 202
            for _ in range(4):  # the same delivery again: a replay
                answer = client.post("/webhooks/git", content=body, headers=headers)
                assert answer.status_code == 200 and answer.json()["status"] == "duplicate"
        _flush(server)
    finally:
        server.stop()
    window = {"since": clock.now - 1, "until": clock.now + 1}
    assert counts(engine, "stale_delivery", **window) == {"partner": 3}
    assert counts(engine, "replayed_delivery", **window) == {"git_updates": 4}
    assert counts(engine, "signature_failure", **window) == {}  # the accepted one: nothing


def test_event_details_hold_no_secret_signature_or_body(tmp_path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    clock = Clock()
    server = _receiver(engine, clock)
    body = push_payload(marker="BODY-MARKER-123")
    try:
        headers = github_headers(body, "leak-1", secret=BAD_SECRET)
        httpx.post(f"{server.url}/webhooks/git", content=body, headers=headers)
        _flush(server)
    finally:
        server.stop()
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(security_events))]
    assert len(rows) == 1
    stored = json.dumps(rows[0], default=str)
    for secret in (SECRET, BAD_SECRET, headers["X-Hub-Signature-256"], "BODY-MARKER-123"):
        assert secret not in stored
    assert json.loads(rows[0]["detail"]) == {
        "errors": {"bad_signature": 1},
        "clients": ["127.0.0.1"],
    }


def test_a_broken_event_store_never_turns_a_refusal_into_a_5xx(tmp_path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    clock = Clock()
    server = _receiver(engine, clock)
    broken = create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    server.app.state.receiver.security.engine = broken
    try:
        assert _bad_signature_burst(server.url, 3, "x") == [401] * 3
        _flush(server)  # logged and dropped
        body = push_payload()
        good = httpx.post(
            f"{server.url}/webhooks/git", content=body, headers=github_headers(body, "ok-1")
        )
        assert good.status_code == 202
    finally:
        server.stop()
