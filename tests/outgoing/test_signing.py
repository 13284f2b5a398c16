"""Our signatures verify with the `standardwebhooks` library (not our own code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook, WebhookVerificationError

from nura.webhooks.blocks import WebhookSigner
from nura.webhooks.delivery import StandardWebhookAuth, build_body, new_message_id

CURRENT = "whsec_" + base64.b64encode(b"current-key-0123456789abcdef0123").decode()
PREVIOUS = "whsec_" + base64.b64encode(b"previous-key-0123456789abcdef012").decode()


def _send(auth: StandardWebhookAuth, body: str) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.post("https://partner.example/hook", content=body.encode(), auth=auth)
    return seen[0]


def test_standard_webhooks_signature_verifies_with_the_library() -> None:
    msg_id = new_message_id()
    body = build_body("git.push", {"repo": "nura", "ünïcode": "✓"})
    request = _send(
        StandardWebhookAuth(WebhookSigner([SecretStr(CURRENT)]), msg_id, "git.push"), body
    )
    payload = Webhook(CURRENT).verify(request.content, dict(request.headers))
    assert payload["type"] == "git.push" and payload["data"]["ünïcode"] == "✓"
    assert request.headers["webhook-id"] == msg_id
    assert "x-signature" not in request.headers
    with pytest.raises(WebhookVerificationError):
        Webhook(PREVIOUS).verify(request.content, dict(request.headers))
    tampered = request.content.replace(b"nura", b"evil")
    with pytest.raises(WebhookVerificationError):
        Webhook(CURRENT).verify(tampered, dict(request.headers))


def test_rotation_sends_one_signature_per_secret() -> None:
    signer = WebhookSigner([SecretStr(CURRENT), SecretStr(PREVIOUS)])
    body = build_body("system.alert", {"n": 1})
    request = _send(StandardWebhookAuth(signer, new_message_id(), "system.alert"), body)
    assert len(request.headers["webhook-signature"].split()) == 2
    # A partner still on the old secret and one on the new both verify.
    Webhook(CURRENT).verify(request.content, dict(request.headers))
    Webhook(PREVIOUS).verify(request.content, dict(request.headers))


def test_seed_x_signature_over_the_raw_body() -> None:
    msg_id = new_message_id()
    body = build_body("user.activity", {"user": 7})
    auth = StandardWebhookAuth(
        WebhookSigner([SecretStr(CURRENT)]),
        msg_id,
        "user.activity",
        x_signature=True,
        clock=lambda: 1_700_000_000.9,
    )
    request = _send(auth, body)
    key = base64.b64decode(CURRENT.removeprefix("whsec_"))
    assert (
        request.headers["x-signature"]
        == "sha256=" + hmac.new(key, request.content, hashlib.sha256).hexdigest()
    )
    assert request.headers["x-event-type"] == "user.activity"
    assert request.headers["x-timestamp"] == request.headers["webhook-timestamp"] == "1700000000"
    assert request.headers["x-delivery-id"] == msg_id


def test_each_attempt_is_signed_afresh_with_the_same_id() -> None:
    times = iter([1_700_000_000.0, 1_700_000_100.0])
    auth = StandardWebhookAuth(
        WebhookSigner([SecretStr(CURRENT)]), "msg_fixed", "git.push", clock=lambda: next(times)
    )
    body = build_body("git.push", {})
    first, second = _send(auth, body), _send(auth, body)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "msg_fixed"
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    assert json.loads(first.content) == json.loads(second.content)
