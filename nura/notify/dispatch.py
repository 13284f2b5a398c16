"""`notify`: one alert to every channel its severity routes to (Slack, SES email), durably.

    from nura.notify.dispatch import notify, retry_notifications
    result = notify("Budget 80 % used", "bedrock spent $80 of $100", "high",
                    event="budget.threshold", details={"spent": "$80"})
    result.channels["email"].message_id   # SES MessageId (bounces are matched to it)
    result.channels["slack"].response     # Slack's answer ("ok")
    result.failed_channels                # channels that did not get it (yet)
    retry_notifications()                 # every monitor run: resend what is still due

Routing is one rule: `health_monitoring.notifications.routing[severity]` lists the
channels; a severity not listed (or listing none) notifies nobody (`result.notified` is
False).

Delivery is durable: each (notification, channel) is a row of the outbox
(`nura.core.stores.notifications`) before it is sent. A channel that fails (Slack down,
SES throttling, an open breaker, over its rate limit) keeps the row `pending`, retried
with backoff (`notifications.retry`) by the next `notify` on that channel or the next
monitor run's `retry_notifications`, until delivered or expired. A channel's rows go out
oldest first and a failure stops the channel's queue, so a channel that comes back gets
its backlog in order (UNHEALTHY before RECOVERED). A channel that is not configured is
`skipped`; a Slack message Slack refuses as malformed (400) is `failed` for good (a bug in
our message, logged with Slack's answer); a dead Slack webhook (403/404/410) disables the
channel until its URL changes, and that is announced once by the other channels. No
outcome raises: alerting must not take down the flow that alerts. Notifications use
their own services (`slack`, `ses`), never the breaker of the service they report on.
"""

from __future__ import annotations

import html
import logging
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from nura import IntegrationError, get_config, store_url
from nura.config.sections.notifications import SEVERITY_ORDER, NotificationSettings
from nura.core.errors import InvalidInput
from nura.core.stores.db import get_engine, utcnow_ts
from nura.core.stores.notifications import (
    claim,
    disable_channel,
    disabled_channel,
    enqueue,
    pending,
    record_notification,
    sent_since,
    settle,
)
from nura.notify.ses import send_email_message
from nura.notify.slack import (
    SlackPayloadRejected,
    SlackWebhookDead,
    load_slack_url,
    post_slack,
    slack_message,
    webhook_fingerprint,
)

logger = logging.getLogger("nura.notify")

Status = Literal["sent", "pending", "failed", "rate_limited", "skipped", "disabled", "expired"]
# How long one attempt holds a row before another process may take it over.
LEASE_SECONDS = 300.0
UNDELIVERED = ("pending", "failed", "rate_limited", "disabled", "expired")


class ChannelOutcome(BaseModel):
    channel: str
    status: Status
    message_id: str | None = Field(default=None, description="SES MessageId (email).")
    response: str | None = Field(default=None, description="Slack's answer (slack).")
    error: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = Field(
        default=None, description="When a pending notification is tried again."
    )


class NotifyResult(BaseModel):
    title: str
    severity: str
    event: str | None = None
    notified: bool = Field(description="False when the severity routes to no channel.")
    channels: dict[str, ChannelOutcome] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing is undelivered (skipped channels, not configured, are not failures)."""
        return all(c.status not in UNDELIVERED for c in self.channels.values())

    @property
    def delivered(self) -> bool:
        """Routed, at least one channel sent, and no channel left undelivered."""
        return self.notified and bool(self.sent) and self.ok

    @property
    def sent(self) -> list[str]:
        return [name for name, c in self.channels.items() if c.status == "sent"]

    @property
    def failed_channels(self) -> dict[str, str]:
        """Channel -> why it did not get the notification (yet)."""
        return {
            name: f"{c.status}: {c.error or ''}".strip().rstrip(":")
            for name, c in self.channels.items()
            if c.status in UNDELIVERED
        }


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


def _configured(channel: str, settings: NotificationSettings) -> str | None:
    """Why `channel` cannot be used at all (None: it can)."""
    if channel == "slack":
        return None if settings.slack_block or settings.slack_webhook_url else "not configured"
    if channel == "email":
        if settings.email_alerts and settings.email.recipients:
            return None
        return "email alerts off or no recipients"
    return f"unknown channel {channel}"


def _send_one(channel: str, settings: NotificationSettings, row: dict[str, Any]) -> ChannelOutcome:
    """One delivery attempt; raises the channel's typed error."""
    title, body, severity = row["title"], row["body"], row["severity"]
    event, details = row["event"], dict(row["details"] or {})
    if channel == "slack":
        url = _slack_url(settings)
        answer = post_slack(url, slack_message(title, body, severity, details))
        return ChannelOutcome(
            channel=channel, status="sent", response=answer.text, attempts=answer.attempts
        )
    email = settings.email
    sent = send_email_message(
        sender=email.sender or get_config().external_services.aws.ses.from_email,
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


def _slack_url(settings: NotificationSettings) -> str:
    try:
        url = load_slack_url(settings.slack_block, settings.slack_webhook_url)
    except ValueError as exc:  # a missing block: a configuration problem, retried later
        raise IntegrationError(str(exc), service="slack") from exc
    if not url:
        raise IntegrationError("no Slack webhook URL", service="slack")
    return url


def _backoff(settings: NotificationSettings, attempts: int) -> float:
    retry = settings.retry
    return float(min(retry.max_seconds, retry.base_seconds * 2 ** max(0, attempts - 1)))


def _slack_fingerprint(settings: NotificationSettings) -> str | None:
    try:
        return webhook_fingerprint(_slack_url(settings))
    except IntegrationError:
        return None


def _attempt(
    engine: Any, settings: NotificationSettings, row: dict[str, Any], now: float
) -> ChannelOutcome:
    """Send one outbox row and settle it; returns what happened."""
    channel = row["channel"]
    limit = settings.rate_limits.get(channel)  # type: ignore[call-overload]
    if limit and sent_since(engine, channel, now - limit.per_seconds) >= limit.max:
        outcome = ChannelOutcome(
            channel=channel,
            status="rate_limited",
            error=f"more than {limit.max} per {limit.per_seconds:g}s",
            next_attempt_at=now + limit.per_seconds,
        )
        settle(
            engine,
            row["id"],
            status="pending",
            now=now,
            error=outcome.error,
            next_attempt_at=outcome.next_attempt_at,
        )
        return _logged(engine, row, outcome, now)
    try:
        outcome = _send_one(channel, settings, row)
    except SlackPayloadRejected as exc:
        # Our message is malformed: resending the same bytes cannot help.
        outcome = ChannelOutcome(channel=channel, status="failed", error=f"{exc}")
        settle(engine, row["id"], status="failed", now=now, error=outcome.error)
        logger.error("Slack rejected notification %r as malformed: %s", row["title"], exc)
        return _logged(engine, row, outcome, now)
    except SlackWebhookDead as exc:
        outcome = ChannelOutcome(channel=channel, status="disabled", error=f"{exc}")
        # Kept pending: delivered once the webhook URL is replaced (or expired).
        settle(engine, row["id"], status="pending", now=now, error=outcome.error)
        _disable_slack(engine, settings, exc, now)
        return _logged(engine, row, outcome, now)
    except IntegrationError as exc:
        wait = _backoff(settings, int(row["attempts"]) + 1)
        outcome = ChannelOutcome(
            channel=channel,
            status="pending",
            error=f"{type(exc).__name__}: {exc}",
            next_attempt_at=now + wait,
        )
        settle(
            engine,
            row["id"],
            status="pending",
            now=now,
            error=outcome.error,
            next_attempt_at=now + wait,
        )
        logger.error(
            "notification %r on %s failed (retry in %.0fs): %s",
            row["title"],
            channel,
            wait,
            outcome.error,
        )
        return _logged(engine, row, outcome, now)
    settle(engine, row["id"], status="sent", now=now)
    return _logged(engine, row, outcome, now)


def _logged(
    engine: Any, row: dict[str, Any], outcome: ChannelOutcome, now: float
) -> ChannelOutcome:
    """Every attempt goes to the delivery log (what rate limits count, bounces match)."""
    status = "failed" if outcome.status == "pending" else outcome.status
    record_notification(
        engine,
        channel=row["channel"],
        severity=row["severity"],
        title=row["title"],
        status=status,
        event=row["event"],
        message_id=outcome.message_id,
        response=outcome.response or outcome.error,
        ts=now,
    )
    return outcome


def _disable_slack(
    engine: Any, settings: NotificationSettings, exc: SlackWebhookDead, now: float
) -> None:
    """Disable Slack for this webhook URL and say so once, by every other channel."""
    fingerprint = _slack_fingerprint(settings)
    if fingerprint is None or not disable_channel(engine, "slack", fingerprint, str(exc), now):
        return
    logger.error("Slack webhook is dead (%s): Slack alerts are off until its URL changes", exc)
    others = [c for c in ("email",) if _configured(c, settings) is None]
    if others:
        _send(
            "Slack alerts are not being delivered",
            f"Slack refused our webhook ({exc.status} {exc.code}). Slack notifications are "
            "held until the webhook URL (slack_block / slack_webhook_url) is replaced; "
            "they are delivered then, unless they expire first.",
            "high",
            event="nura.notify.channel_disabled",
            details={"channel": "slack", "status": exc.status, "code": exc.code},
            now=now,
            dedupe_key=f"slack-disabled:{fingerprint}",
            channels=others,
        )


def _drain(
    engine: Any, settings: NotificationSettings, channel: str, now: float, *, force: bool
) -> dict[int, ChannelOutcome]:
    """Send `channel`'s pending rows oldest first; stop at the first one not delivered.

    Without `force` the channel is only tried once its oldest row is due (its backoff)."""
    rows = pending(engine, channel)
    out: dict[int, ChannelOutcome] = {}
    if not rows or (not force and rows[0]["next_attempt_at"] > now):
        return out
    if channel == "slack":
        fingerprint = _slack_fingerprint(settings)
        dead = fingerprint and disabled_channel(engine, "slack", fingerprint)
        if dead:
            for row in rows:
                out[row["id"]] = ChannelOutcome(
                    channel=channel, status="disabled", error=f"webhook dead: {dead['reason']}"
                )
            return out
    for row in rows:
        if row["expires_at"] <= now:
            settle(engine, row["id"], status="expired", now=now, error=row["last_error"])
            logger.error("notification %r on %s expired undelivered", row["title"], channel)
            out[row["id"]] = ChannelOutcome(
                channel=channel, status="expired", error=row["last_error"]
            )
            continue
        if not claim(engine, row["id"], row["next_attempt_at"], now + LEASE_SECONDS):
            break  # another run is sending this channel's queue right now
        outcome = _attempt(engine, settings, row, now)
        out[row["id"]] = outcome
        if outcome.status not in ("sent", "failed"):
            break  # keep the order: later rows wait behind this one
    return out


def _send(
    title: str,
    body: str,
    severity: str,
    *,
    event: str | None,
    details: dict[str, Any],
    now: float,
    dedupe_key: str,
    channels: Sequence[str],
) -> NotifyResult:
    settings = get_config().health_monitoring.notifications
    result = NotifyResult(title=title, severity=severity, event=event, notified=bool(channels))
    engine = get_engine(store_url())
    expires = now + settings.retry.expire_minutes * 60
    for channel in channels:
        why_not = _configured(channel, settings)
        if why_not is not None:
            result.channels[channel] = ChannelOutcome(
                channel=channel, status="skipped", error=why_not
            )
            record_notification(
                engine,
                channel=channel,
                severity=severity,
                title=title,
                status="skipped",
                event=event,
                response=why_not,
                ts=now,
            )
            continue
        row_id = enqueue(
            engine,
            dedupe_key=f"{dedupe_key}:{channel}",
            channel=channel,
            severity=severity,
            title=title,
            body=body,
            event=event,
            details=details,
            now=now,
            expires_at=expires,
        )
        if row_id is None:
            result.channels[channel] = ChannelOutcome(
                channel=channel, status="skipped", error="already queued (same notification)"
            )
            continue
        outcomes = _drain(engine, settings, channel, now, force=True)
        result.channels[channel] = outcomes.get(row_id) or ChannelOutcome(
            channel=channel, status="pending", error="queued behind earlier notifications"
        )
    logger.info(
        "notification %r (%s): %s",
        title,
        severity,
        ", ".join(f"{k}={v.status}" for k, v in result.channels.items()) or "no channel",
    )
    return result


def send_notification(
    title: str,
    body: str,
    severity: str,
    *,
    event: str | None = None,
    details: dict[str, Any] | None = None,
    now: float | None = None,
    dedupe_key: str | None = None,
) -> NotifyResult:
    """The body of `notify`, callable outside a Prefect run (CLI, tests).

    `dedupe_key` makes a repeated call (a retried task) a no-op instead of a second send.
    """
    if severity not in SEVERITY_ORDER:
        raise InvalidInput(
            f"severity must be one of {', '.join(SEVERITY_ORDER)}, not {severity!r}",
            service="notify",
        )
    settings = get_config().health_monitoring.notifications
    return _send(
        title,
        body,
        severity,
        event=event,
        details=dict(details or {}),
        now=now if now is not None else utcnow_ts(),
        dedupe_key=dedupe_key or uuid.uuid4().hex,
        channels=list(settings.channels_for(severity)),
    )


def retry_notifications(now: float | None = None) -> dict[str, Any]:
    """Send every channel's due undelivered notifications (oldest first); the summary
    counts outcomes and lists what is still pending per channel."""
    settings = get_config().health_monitoring.notifications
    engine = get_engine(store_url())
    now = now if now is not None else utcnow_ts()
    counts: dict[str, int] = {}
    for channel in ("slack", "email"):
        for outcome in _drain(engine, settings, channel, now, force=False).values():
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
    waiting: dict[str, int] = {}
    for row in pending(engine):
        waiting[row["channel"]] = waiting.get(row["channel"], 0) + 1
    if counts:
        logger.info("notification retries: %s; still pending: %s", counts, waiting or "none")
    return {"attempted": counts, "pending": waiting}


def notify(
    title: str,
    body: str,
    severity: str,
    *,
    event: str | None = None,
    details: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> NotifyResult:
    """Send an alert to the channels its severity routes to; see the module docstring."""
    return send_notification(
        title, body, severity, event=event, details=details, dedupe_key=dedupe_key
    )
