"""Signature schemes of incoming webhooks and what each says about a delivery.

All signatures are HMAC-SHA256 over the raw body exactly as received (seed defect 1 signed
re-serialised JSON):
- github:   `X-Hub-Signature-256: sha256=<hex>` over the body; `X-GitHub-Event`,
            `X-GitHub-Delivery` are unsigned (deduped on the body's digest as well).
- generic:  `X-Signature: sha256=<hex>` over `{X-Delivery-Id}.{X-Timestamp}.{body}` (the
            Standard Webhooks construction), `X-Event-Type`. With the endpoint's
            `signature: legacy-body-only`: over the body alone (also Confluence Data Center's
            / Bitbucket's `X-Hub-Signature: sha256=<hex>`); id and timestamp unsigned.
- standard: Standard Webhooks `webhook-id`, `webhook-timestamp`,
            `webhook-signature: v1,<base64>` over `id.timestamp.body`.
Event-type headers are never signed: a type named in the (signed) body always wins.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from nura.webhooks.blocks import WebhookSigner, generic_message

FORM_TYPE = "application/x-www-form-urlencoded"  # GitHub's form-encoded deliveries

# Confluence page events, whoever sends them: Data Center webhooks (and Cloud's Connect
# webhooks), body field `event`; Cloud Forge product events, body field `eventType`.
# Each is one of our `confluence.page.*` types; all go to the page ingest, which reads the
# page's state from Confluence (so the order of events does not matter).
CONFLUENCE_PAGE_EVENTS = {
    "page_created": "confluence.page.created",
    "blueprint_page_created": "confluence.page.created",
    "page_updated": "confluence.page.updated",
    "page_trashed": "confluence.page.trashed",
    "page_removed": "confluence.page.removed",  # purged
    "page_restored": "confluence.page.restored",
    "page_moved": "confluence.page.moved",
    "avi:confluence:created:page": "confluence.page.created",
    "avi:confluence:published:page": "confluence.page.created",  # a live doc became a page
    "avi:confluence:updated:page": "confluence.page.updated",
    "avi:confluence:trashed:page": "confluence.page.trashed",
    "avi:confluence:deleted:page": "confluence.page.removed",
    "avi:confluence:restored:page": "confluence.page.restored",
    "avi:confluence:moved:page": "confluence.page.moved",
    "avi:confluence:archived:page": "confluence.page.archived",
    "avi:confluence:unarchived:page": "confluence.page.unarchived",
}
PAGE_EVENT_TYPES = tuple(dict.fromkeys(CONFLUENCE_PAGE_EVENTS.values()))

# Sender event names that mean one of our event types, whatever the scheme.
EVENT_ALIASES = {
    "push": "git.push",  # GitHub X-GitHub-Event, GitLab object_kind
    "Push Hook": "git.push",  # GitLab X-Gitlab-Event
    **CONFLUENCE_PAGE_EVENTS,
}
# Body fields that name the event when no header does (Standard Webhooks: "type"; Forge
# product events: "eventType").
BODY_EVENT_FIELDS = ("event_type", "type", "event", "webhookEvent", "object_kind", "eventType")


class Rejection(Exception):
    """A request refused with `status`; `error` is a stable code for the JSON body."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Envelope:
    """What the headers say, once the signature verified."""

    event_name: str | None  # from an unsigned header: only used when the body names none
    delivery_id: str | None
    timestamp: float | None  # None where the scheme has no timestamp
    id_signed: bool = True  # False: the id is unsigned, dedupe on the body's digest too


def _first(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None


def _parse_ts(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        ts = float(raw.strip())
    except ValueError:
        raise Rejection(401, "bad_timestamp", "timestamp is not epoch seconds") from None
    if not math.isfinite(ts):
        raise Rejection(401, "bad_timestamp", "timestamp is not epoch seconds")
    return ts


def _usable_id(raw: str | None) -> bool:
    return raw is not None and 0 < len(raw) <= 200 and raw.isascii() and raw.isprintable()


def verify(
    scheme: str,
    signer: WebhookSigner,
    headers: Mapping[str, str],
    body: bytes,
    *,
    require_timestamp: bool = True,
    legacy_body_only: bool = False,
) -> Envelope:
    """Check the signature (401 `Rejection` if it does not verify)."""
    if scheme == "github":
        if not signer.verify_hex(body, headers.get("x-hub-signature-256")):
            raise Rejection(401, "bad_signature", "X-Hub-Signature-256 does not verify")
        return Envelope(
            headers.get("x-github-event"), headers.get("x-github-delivery"), None, id_signed=False
        )
    if scheme == "standard":
        msg_id = headers.get("webhook-id") or ""
        ts_raw = headers.get("webhook-timestamp") or ""
        if not signer.verify_standard(msg_id, ts_raw, body, headers.get("webhook-signature")):
            raise Rejection(401, "bad_signature", "webhook-signature does not verify")
        event = headers.get("x-event-type")
        return Envelope(event, msg_id, _parse_ts(ts_raw))
    if not legacy_body_only:
        return _verify_generic(signer, headers, body)
    # generic legacy-body-only (also Confluence DC / Bitbucket: X-Hub-Signature: sha256=...)
    signature = _first(headers, "x-signature", "x-hub-signature")
    if not signature or not signature.strip().startswith("sha256="):
        raise Rejection(401, "bad_signature", "X-Signature (sha256=<hex>) is missing")
    if not signer.verify_hex(body, signature):
        raise Rejection(401, "bad_signature", "X-Signature does not verify")
    ts = _parse_ts(headers.get("x-timestamp"))
    if ts is None and require_timestamp:
        raise Rejection(401, "missing_timestamp", "X-Timestamp is required")
    event = _first(headers, "x-event-type", "x-event-key", "x-gitlab-event")
    delivery = _first(
        headers,
        "x-delivery-id",
        "x-request-id",
        "x-atlassian-webhook-identifier",
        "x-gitlab-event-uuid",
    )
    return Envelope(event, delivery, ts, id_signed=False)


def _verify_generic(signer: WebhookSigner, headers: Mapping[str, str], body: bytes) -> Envelope:
    """`X-Signature: sha256=<hex>` over `{X-Delivery-Id}.{X-Timestamp}.{body}`."""
    signature = headers.get("x-signature")
    if not signature or not signature.strip().startswith("sha256="):
        raise Rejection(401, "bad_signature", "X-Signature (sha256=<hex>) is missing")
    ts_raw = headers.get("x-timestamp")
    if not ts_raw:
        raise Rejection(401, "missing_timestamp", "X-Timestamp is required (it is signed)")
    msg_id = headers.get("x-delivery-id")
    if not _usable_id(msg_id):
        raise Rejection(
            401, "missing_delivery_id", "X-Delivery-Id (printable ASCII, up to 200) is required"
        )
    assert msg_id is not None
    if not signer.verify_hex(generic_message(msg_id, ts_raw, body), signature):
        raise Rejection(401, "bad_signature", "X-Signature does not verify")
    event = _first(headers, "x-event-type", "x-event-key", "x-gitlab-event")
    return Envelope(event, msg_id, _parse_ts(ts_raw))


def check_timestamp(env: Envelope, now: float, tolerance: float) -> None:
    if env.timestamp is not None and abs(now - env.timestamp) > tolerance:
        raise Rejection(
            401, "stale_timestamp", f"timestamp outside ±{tolerance:g}s of the receiver's clock"
        )


def event_type(
    scheme: str, env: Envelope, payload: dict[str, Any], event_map: Mapping[str, str]
) -> str:
    """Our event type: a body field, else the header, mapped by the endpoint and the aliases.

    The body is signed, event-type headers never are: a header that could override the
    body's type would let a replayed body start a different deployment.
    """
    name: Any = None
    for key in BODY_EVENT_FIELDS:
        value = payload.get(key)
        if isinstance(value, str) and value:
            name = value
            break
    if not name:
        name = env.event_name
    if not isinstance(name, str) or not name.strip():
        raise Rejection(400, "missing_event_type", "no event type in headers or body")
    name = name.strip()
    if len(name) > 100:
        raise Rejection(400, "bad_event_type", "event type longer than 100 characters")
    if name in event_map:
        return event_map[name]
    if name in EVENT_ALIASES:
        return EVENT_ALIASES[name]
    if scheme == "github" and "." not in name:
        return f"github.{name}"
    return name


def delivery_id(env: Envelope, body: bytes) -> str:
    """The sender's delivery id; without one, the body's digest (a resend dedupes)."""
    raw = (env.delivery_id or "").strip()
    if _usable_id(raw):
        return raw
    return "sha256:" + hashlib.sha256(body).hexdigest()


# Headers stored with each delivery (never the signatures themselves: they are not needed
# to dispatch, and a stored signature plus body would let a reader replay the request).
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-event-type",
    "x-event-key",
    "x-delivery-id",
    "x-timestamp",
    "x-gitlab-event",
    "webhook-id",
    "webhook-timestamp",
)


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {h: headers[h][:500] for h in KEPT_HEADERS if h in headers}


def parse_payload(body: bytes, media: str) -> dict[str, Any]:
    """The JSON object of the body (GitHub's form encoding: its `payload` field); 400 if not."""
    raw: bytes | str = body
    if media == FORM_TYPE:
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError:
            raise Rejection(400, "bad_body", "form body is not UTF-8") from None
        if "payload" not in fields:
            raise Rejection(400, "bad_body", "form body has no payload= field")
        raw = fields["payload"][0]
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Rejection(400, "bad_json", "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise Rejection(400, "bad_json", "body must be a JSON object")
    return payload
