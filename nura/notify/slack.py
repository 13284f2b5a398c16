"""Slack incoming webhooks: the URL comes from Prefect's `SlackWebhook` block.

Why not `SlackWebhook.notify()`: it goes through Apprise, outside our call layer (no rate
limit, breaker, retries or call record) and returns nothing to track. The block stays the
home of the secret URL; the POST goes through the call layer as service `slack`. The URL
holds Slack's secret token, so it never appears in operation names, logs or errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nura import get_call_layer


@dataclass(frozen=True)
class SlackResponse:
    status_code: int
    text: str
    attempts: int


def load_slack_url(block_name: str | None, fallback_url: str = "") -> str | None:
    """The webhook URL from a saved `slack-webhook` block, else the configured URL."""
    if block_name:
        from prefect.blocks.notifications import SlackWebhook

        block = SlackWebhook.load(block_name)
        return block.url.get_secret_value()  # type: ignore[union-attr]
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
    """POST one message; Slack answers 200 `ok` (errors become typed call-layer errors)."""
    result = get_call_layer().request(
        "slack", "POST", url, json=payload, operation="incoming-webhook.post"
    )
    return SlackResponse(result.value.status_code, result.value.text[:500], result.attempts)


def send_slack(url: str, payload: dict[str, Any]) -> SlackResponse:
    """Prefect task around `post_slack` (retries live in the call layer)."""
    return post_slack(url, payload)
