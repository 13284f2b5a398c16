"""`notify`: one alert to every channel its severity routes to (Slack, SES email).

    from nura.notify.dispatch import notify
    result = notify("Budget 80 % used", "bedrock spent $80 of $100", "high",
                    event="budget.threshold", details={"spent": "$80"})
    result.channels["email"].message_id   # SES MessageId (bounces are matched to it)
    result.channels["slack"].response     # Slack's answer ("ok")

Routing: a severity not in `health_monitoring.notifications.severity_levels` notifies
nobody (`result.notified` is False); otherwise `routing[severity]` (default: every
channel) picks the channels. A channel that is not configured is `skipped`; one over its
rate limit (`rate_limits.<channel>`, counted in the shared store) is `rate_limited`; a
failure is `failed` with the typed error's text. Every outcome is stored (delivery
tracking) and no outcome raises: alerting must not take down the flow that alerts.
"""

from __future__ import annotations

import html
import logging
from typing import Any, Literal

from pydantic import BaseModel, Field

from nura import IntegrationError, get_config, store_url
from nura.config.sections.notifications import SEVERITY_ORDER, NotificationSettings
from nura.core.errors import InvalidInput
from nura.core.stores.db import get_engine, utcnow_ts
from nura.core.stores.notifications import record_notification, sent_since
from nura.notify.ses import send_email_message
from nura.notify.slack import load_slack_url, post_slack, slack_message

logger = logging.getLogger("nura.notify")

Status = Literal["sent", "failed", "rate_limited", "skipped"]


class ChannelOutcome(BaseModel):
    channel: str
    status: Status
    message_id: str | None = Field(default=None, description="SES MessageId (email).")
    response: str | None = Field(default=None, description="Slack's answer (slack).")
    error: str | None = None
    attempts: int = 0


class NotifyResult(BaseModel):
    title: str
    severity: str
    event: str | None = None
    notified: bool = Field(description="False when the severity is below the threshold.")
    channels: dict[str, ChannelOutcome] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing failed (sent, skipped or rate-limited channels are not failures)."""
        return all(c.status != "failed" for c in self.channels.values())

    @property
    def sent(self) -> list[str]:
        return [name for name, c in self.channels.items() if c.status == "sent"]


def _channels(settings: NotificationSettings, severity: str) -> list[str]:
    return list(settings.routing.get(severity, ["slack", "email"]))  # type: ignore[call-overload]


def _text_body(title: str, body: str, severity: str, event: str | None, details: dict) -> str:
    lines = [f"[{severity.upper()}] {title}", "", body]
    if event:
        lines += ["", f"event: {event}"]
    if details:
        lines += ["", *[f"{k}: {v}" for k, v in details.items()]]
    return "\n".join(lines) + "\n"


def _html_body(title: str, body: str, severity: str, event: str | None, details: dict) -> str:
    rows = "".join(
        f"<tr><th align='left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in details.items()
    )
    return (
        f"<html><body><h2>[{html.escape(severity.upper())}] {html.escape(title)}</h2>"
        f"<p>{html.escape(body)}</p>"
        + (f"<p>event: <code>{html.escape(event)}</code></p>" if event else "")
        + (f"<table>{rows}</table>" if rows else "")
        + "</body></html>"
    )


def _send_one(
    channel: str,
    settings: NotificationSettings,
    title: str,
    body: str,
    severity: str,
    event: str | None,
    details: dict[str, Any],
) -> ChannelOutcome:
    cfg = get_config()
    if channel == "slack":
        url = load_slack_url(settings.slack_block, settings.slack_webhook_url)
        if not url:
            return ChannelOutcome(channel=channel, status="skipped", error="slack not configured")
        answer = post_slack(url, slack_message(title, body, severity, details))
        return ChannelOutcome(
            channel=channel, status="sent", response=answer.text, attempts=answer.attempts
        )
    if channel == "email":
        email = settings.email
        if not settings.email_alerts or not email.recipients:
            return ChannelOutcome(
                channel=channel, status="skipped", error="email alerts off or no recipients"
            )
        sent = send_email_message(
            sender=email.sender or cfg.external_services.aws.ses.from_email,
            recipients=email.recipients,
            subject=f"{email.subject_prefix} [{severity.upper()}] {title}".strip(),
            text=_text_body(title, body, severity, event, details),
            html=_html_body(title, body, severity, event, details),
            configuration_set=email.configuration_set,
            credentials_block=email.aws_credentials_block,
        )
        return ChannelOutcome(
            channel=channel, status="sent", message_id=sent.message_id, attempts=sent.attempts
        )
    return ChannelOutcome(channel=channel, status="skipped", error=f"unknown channel {channel}")


def send_notification(
    title: str,
    body: str,
    severity: str,
    *,
    event: str | None = None,
    details: dict[str, Any] | None = None,
    now: float | None = None,
) -> NotifyResult:
    """The body of `notify`, callable outside a Prefect run (CLI, tests)."""
    if severity not in SEVERITY_ORDER:
        raise InvalidInput(
            f"severity must be one of {', '.join(SEVERITY_ORDER)}, not {severity!r}",
            service="notify",
        )
    settings = get_config().health_monitoring.notifications
    result = NotifyResult(
        title=title, severity=severity, event=event, notified=severity in settings.severity_levels
    )
    if not result.notified:
        return result
    engine = get_engine(store_url())
    details = dict(details or {})
    for channel in _channels(settings, severity):
        now_ts = now if now is not None else utcnow_ts()
        limit = settings.rate_limits.get(channel)  # type: ignore[call-overload]
        if limit and sent_since(engine, channel, now_ts - limit.per_seconds) >= limit.max:
            outcome = ChannelOutcome(
                channel=channel,
                status="rate_limited",
                error=f"more than {limit.max} per {limit.per_seconds:g}s",
            )
        else:
            try:
                outcome = _send_one(channel, settings, title, body, severity, event, details)
            except IntegrationError as exc:
                outcome = ChannelOutcome(
                    channel=channel, status="failed", error=f"{type(exc).__name__}: {exc}"
                )
                logger.error("notification %r on %s failed: %s", title, channel, outcome.error)
        record_notification(
            engine,
            channel=channel,
            severity=severity,
            title=title,
            status=outcome.status,
            event=event,
            message_id=outcome.message_id,
            response=outcome.response or outcome.error,
            ts=now_ts,
        )
        result.channels[channel] = outcome
    logger.info(
        "notification %r (%s): %s",
        title,
        severity,
        ", ".join(f"{k}={v.status}" for k, v in result.channels.items()) or "no channel",
    )
    return result


def notify(
    title: str,
    body: str,
    severity: str,
    *,
    event: str | None = None,
    details: dict[str, Any] | None = None,
) -> NotifyResult:
    """Send an alert to the channels its severity routes to; see the module docstring."""
    return send_notification(title, body, severity, event=event, details=details)
