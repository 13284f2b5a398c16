"""Standard Webhooks signing of outgoing deliveries (and the seed's `X-Signature`).

`webhook-id` (stable across every retry and redrive), `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one signature per
valid `whsec_` secret during a rotation. Signing is an httpx `Auth`, so each attempt the
call layer makes is signed with a fresh timestamp.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import Any

import httpx

from nura.config.sections.outgoing import OutgoingTarget
from nura.webhooks.blocks import WebhookSecret, WebhookSigner


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def build_body(event_type: str, data: dict[str, Any], when: float | None = None) -> str:
    """The Standard Webhooks payload shape: `{"type", "timestamp", "data"}` (compact JSON)."""
    stamp = datetime.fromtimestamp(when if when is not None else time.time(), UTC)
    return json.dumps(
        {"type": event_type, "timestamp": stamp.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


class StandardWebhookAuth(httpx.Auth):
    """Signs each request (each attempt) with the target's valid secrets."""

    requires_request_body = True

    def __init__(
        self,
        signer: WebhookSigner,
        msg_id: str,
        event_type: str,
        *,
        x_signature: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer = signer
        self.msg_id = msg_id
        self.event_type = event_type
        self.x_signature = x_signature
        self.clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        ts = int(self.clock())
        body = request.content
        request.headers["webhook-id"] = self.msg_id
        request.headers["webhook-timestamp"] = str(ts)
        request.headers["webhook-signature"] = self.signer.standard_signatures(
            self.msg_id, ts, body
        )
        if self.x_signature:
            request.headers["X-Signature"] = self.signer.hex_digest(body)
            request.headers["X-Event-Type"] = self.event_type
            request.headers["X-Timestamp"] = str(ts)
            request.headers["X-Delivery-Id"] = self.msg_id
        yield request


_signers: dict[tuple[str, str | None, str], tuple[float, WebhookSigner]] = {}
_signers_lock = threading.Lock()
SIGNER_TTL = 60.0  # a rotated block is picked up within a minute, without a restart


def signer_for(name: str, target: OutgoingTarget) -> WebhookSigner:
    inline = target.secret.get_secret_value() if target.secret else ""
    # the inline secret's digest is part of the key: a reloaded config re-signs at once
    key = (name, target.secret_block, hashlib.sha256(inline.encode()).hexdigest())
    now = time.monotonic()
    with _signers_lock:
        hit = _signers.get(key)
        if hit and now - hit[0] < SIGNER_TTL:
            return hit[1]
    if target.secret_block:
        signer = WebhookSecret.load(target.secret_block).get_client()  # type: ignore[union-attr]
    else:
        assert target.secret is not None  # the config model requires one of the two
        signer = WebhookSigner([target.secret])
    with _signers_lock:
        _signers[key] = (now, signer)
    return signer
