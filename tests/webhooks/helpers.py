"""Signing helpers and a small config for the receiver tests."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

from pydantic import SecretStr

from nura.config import IntegrationsConfig
from nura.webhooks.blocks import WebhookSecret

SECRET = "s3cr3t-current"
OLD_SECRET = "s3cr3t-previous"
STD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def config(**overrides: Any) -> IntegrationsConfig:
    incoming = {
        "git_updates": {
            "url_path": "/webhooks/git",
            "event_types": ["git.push"],
            "rate_limit_per_minute": 1000,
            "scheme": "github",
        },
        "partner": {
            "url_path": "/webhooks/partner",
            "event_types": ["external.integration", "user.activity"],
            "rate_limit_per_minute": 1000,
            "scheme": "generic",
            "max_body_bytes": 2048,
        },
        "std": {
            "url_path": "/webhooks/std",
            "event_types": ["system.alert"],
            "rate_limit_per_minute": 1000,
            "scheme": "standard",
        },
        "confluence_updates": {  # Confluence Data Center: X-Hub-Signature over the body
            "url_path": "/webhooks/confluence",
            "event_types": ["confluence.page.updated"],
            "scheme": "generic",
            "signature": "legacy-body-only",
            "require_timestamp": False,
            "event_map": {"page_updated": "confluence.page.updated"},
        },
        "off": {"url_path": "/webhooks/off", "event_types": ["git.push"], "enabled": False},
    }
    data: dict[str, Any] = {"webhooks": {"incoming": incoming}}
    for key, value in overrides.items():
        data["webhooks"][key] = value
    return IntegrationsConfig.model_validate(data)


def secrets() -> dict[str, WebhookSecret]:
    both = {"current": SecretStr(SECRET), "previous": SecretStr(OLD_SECRET)}
    return {
        "git_updates": WebhookSecret(scheme="github", **both),
        "partner": WebhookSecret(scheme="generic", **both),
        "std": WebhookSecret(scheme="standard", current=SecretStr(STD_SECRET)),
        "confluence_updates": WebhookSecret(scheme="generic", current=SecretStr(SECRET)),
        "off": WebhookSecret(scheme="github", current=SecretStr(SECRET)),
    }


def hex_sig(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(body: bytes, delivery: str, event: str = "push", secret: str = SECRET):
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": hex_sig(body, secret),
    }


def generic_sig(body: bytes, delivery: str, ts: str, secret: str = SECRET) -> str:
    """The generic scheme: `sha256=<hex>` HMAC-SHA256 over `{id}.{timestamp}.{body}`."""
    return hex_sig(f"{delivery}.{ts}.".encode() + body, secret)


def generic_headers(
    body: bytes,
    delivery: str,
    event: str = "external.integration",
    ts: float | None = None,
    secret: str = SECRET,
):
    stamp = str(int(ts if ts is not None else time.time()))
    return {
        "Content-Type": "application/json",
        "X-Event-Type": event,
        "X-Delivery-Id": delivery,
        "X-Timestamp": stamp,
        "X-Signature": generic_sig(body, delivery, stamp, secret),
    }


def push_payload(**extra: Any) -> bytes:
    data = {
        "ref": "refs/heads/main",
        "before": "a" * 40,
        "after": "b" * 40,
        "repository": {"full_name": "octo/docs", "name": "docs", "owner": {"login": "octo"}},
        "commits": [],
    }
    data.update(extra)
    return json.dumps(data).encode()


class Clock:
    """A clock the receiver reads; tests move `now`."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def stored(engine: Any) -> int:
    """Inbox entries of every status."""
    from nura.core.stores.inbox import status_counts

    return sum(status_counts(engine).values())


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


def asgi_post(
    app: Any,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: list[dict[str, Any]],
) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """Drive the ASGI app with raw header bytes; (status, headers, body, receive calls)."""
    sent: list[dict[str, Any]] = []
    calls = 0

    async def run() -> None:
        nonlocal calls
        messages = list(chunks)

        async def receive() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, calls
