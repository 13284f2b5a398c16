"""Slack incoming webhooks: the URL comes from Prefect's `SlackWebhook` block.

Why not `SlackWebhook.notify()`: it goes through Apprise, outside our call layer (no rate
limit, breaker, retries or call record) and returns nothing to track. The block stays the
home of the secret URL; the POST goes through the call layer as service `slack`. The URL
holds Slack's secret token, so it never appears in operation names, logs or errors.

Why the block is never instantiated the ordinary way: `SlackWebhook.__init__` (and
`model_validate`, which `SlackWebhook.load` uses) runs `block_initialization`, which builds
an Apprise client from the URL. Apprise's Slack plugin only parses
`https://hooks.slack.com/services/...`; any other URL (the sandbox's local stand-in, a
proxy) makes it log `ERROR apprise - Unparseable URL <the secret URL>` on every save and
load, although we never use that client. So blocks are built with `slack_webhook_block`
and read with `load_slack_url`, neither of which starts Apprise.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nura import get_call_layer
from nura.core.errors import ClientError

# The statuses Slack documents for a refused message: answers we classify, not call errors.
SLACK_REFUSALS = (400, 403, 404, 410)
DEAD_STATUSES = (403, 404, 410)

if TYPE_CHECKING:
    from prefect.blocks.notifications import SlackWebhook


@dataclass(frozen=True)
class SlackResponse:
    status_code: int
    text: str
    attempts: int


class SlackRefused(ClientError):
    """Slack refused the message; `status` and `code` (Slack's error string) say why."""

    default_service = "slack"


class SlackPayloadRejected(SlackRefused):
    """400: Slack could not take our message (`invalid_payload`...): a bug on our side."""


class SlackWebhookDead(SlackRefused):
    """403/404/410: the webhook is revoked, its channel gone or archived; nothing will go
    through until the URL is replaced."""


def webhook_fingerprint(url: str) -> str:
    """Identifies a webhook URL in the store without keeping its secret token."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def _error_code(body: str) -> str:
    """Slack's short error string; anything else is cut to printable text (no secrets
    reach Slack's error bodies, but nothing unbounded goes into our errors either)."""
    text = re.sub(r"[^\x20-\x7e]", "?", body.strip())[:200]
    return text or "(empty body)"


def slack_webhook_block(url: str) -> SlackWebhook:
    """A Prefect `SlackWebhook` block holding `url`, ready to `.save()`, without Apprise.

    For storing the URL only: its `.notify()` would fail (no Apprise client); we post
    with `post_slack`.
    """
    from prefect.blocks.notifications import SlackWebhook
    from pydantic import SecretStr

    if not url.startswith(("https://", "http://")):
        raise ValueError("a Slack incoming-webhook URL must be http(s)")
    # model_construct: the fields' defaults without __init__, so no block_initialization.
    return SlackWebhook.model_construct(url=SecretStr(url))


def load_slack_url(block_name: str | None, fallback_url: str = "") -> str | None:
    """The webhook URL from a saved `slack-webhook` block, else the configured URL.

    Reads the block document rather than `SlackWebhook.load` (which starts Apprise).
    """
    if block_name:
        from prefect.blocks.notifications import SlackWebhook
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                document = client.read_block_document_by_name(
                    name=block_name,
                    block_type_slug=SlackWebhook.get_block_type_slug(),
                    include_secrets=True,
                )
            except ObjectNotFound as exc:
                raise ValueError(f"no slack-webhook block named {block_name!r}") from exc
        url = (document.data or {}).get("url")
        if not isinstance(url, str) or not url:
            raise ValueError(f"slack-webhook block {block_name!r} has no URL")
        return url
    return fallback_url or None


def slack_message(title: str, body: str, severity: str, details: dict[str, Any] | None) -> dict:
    """Slack payload: a plain `text` (notifications, old clients) plus Block Kit blocks."""
    icon = {"critical": ":red_circle:", "high": ":large_orange_circle:"}.get(
        severity, ":large_blue_circle:"
    )
    text = f"{icon} [{severity.upper()}] {title}\n{body}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*{severity.upper()}* {body}"[:3000]},
        },
    ]
    if details:
        fields = [
            {"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in list(details.items())[:10]
        ]
        blocks.append({"type": "section", "fields": fields})
    return {"text": text[:4000], "blocks": blocks}


def post_slack(url: str, payload: dict[str, Any]) -> SlackResponse:
    """POST one message; Slack answers 200 `ok`. A refusal raises `SlackPayloadRejected`
    or `SlackWebhookDead` (see the module docstring); other failures are the call layer's
    typed errors."""
    try:
        result = get_call_layer().request(
            "slack",
            "POST",
            url,
            json=payload,
            operation="incoming-webhook.post",
            error_detail=lambda r: (_error_code(r.text), ""),  # Slack's error string
        )
    except ClientError as exc:
        if exc.status not in SLACK_REFUSALS:
            raise
        code = exc.code or ""
        dead = exc.status in DEAD_STATUSES
        kind = SlackWebhookDead if dead else SlackPayloadRejected
        what = "webhook cannot deliver" if dead else "message rejected"
        raise kind(
            f"Slack {what}: {code}",
            status=exc.status,
            code=code,
            attempts=exc.attempts,
            operation="incoming-webhook.post",
        ) from exc
    response = result.value
    return SlackResponse(response.status_code, response.text[:500], result.attempts)


def send_slack(url: str, payload: dict[str, Any]) -> SlackResponse:
    """Prefect task around `post_slack` (retries live in the call layer)."""
    return post_slack(url, payload)
