"""`health_monitoring.notifications`: Slack/SES channels, severity routing.

```yaml
health_monitoring:
  notifications:
    slack_webhook_url: "${SLACK_WEBHOOK_URL:-}"  # used when no slack_block is saved
    slack_block: "nura-alerts"                   # Prefect `slack-webhook` block name
    email_alerts: true
    routing: {low: [], medium: [slack], high: [slack, email], critical: [slack, email]}
    email: {sender: "noreply@nura.ai", recipients: ["oncall@nura.ai"]}
    rate_limits: {slack: {max: 20, per_seconds: 60}, email: {max: 10, per_seconds: 3600}}
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from nura.config.sections.common import Section

Severity = Literal["low", "medium", "high", "critical"]
Channel = Literal["slack", "email"]
SEVERITY_ORDER: tuple[Severity, ...] = ("low", "medium", "high", "critical")


class EmailSettings(Section):
    sender: str | None = Field(
        default=None, description="SES sender; default external_services.aws.ses.from_email."
    )
    recipients: list[str] = Field(default_factory=list)
    configuration_set: str | None = Field(
        default=None, description="SES configuration set publishing bounces/complaints to SNS."
    )
    aws_credentials_block: str | None = Field(
        default=None, description="prefect-aws `AwsCredentials` block; none = default chain."
    )
    subject_prefix: str = "[Nura]"


class ChannelLimit(Section):
    """At most `max` notifications per `per_seconds` on one channel (shared via the store)."""

    max: int = Field(default=20, gt=0)
    per_seconds: float = Field(default=60, gt=0)


def _default_limits() -> dict[Channel, ChannelLimit]:
    return {
        "slack": ChannelLimit(max=20, per_seconds=60),
        "email": ChannelLimit(max=10, per_seconds=3600),
    }


def _default_routing() -> dict[Severity, list[Channel]]:
    return {
        "low": [],
        "medium": ["slack"],
        "high": ["slack", "email"],
        "critical": ["slack", "email"],
    }


class NotificationRetry(Section):
    """Undelivered notifications are retried by every monitor run, with backoff, until
    delivered or `expire_minutes` old (durably: the outbox lives in the store)."""

    base_seconds: float = Field(default=60, gt=0, description="First retry after this.")
    max_seconds: float = Field(default=1800, gt=0, description="Longest wait between retries.")
    expire_minutes: float = Field(
        default=1440, gt=0, description="A notification still undelivered after this expires."
    )


class NotificationSettings(Section):
    """Routing is one rule: a notification of severity S goes to `routing[S]`; a severity
    that is not listed (or lists no channel) notifies nobody."""

    slack_webhook_url: str = ""
    slack_block: str | None = Field(
        default=None, description="Saved Prefect `slack-webhook` block; wins over the URL."
    )
    email_alerts: bool = True
    routing: dict[Severity, list[Channel]] = Field(
        default_factory=_default_routing,
        description="Channels per severity; a severity not listed notifies nobody.",
    )
    severity_levels: list[Severity] | None = Field(
        default=None,
        description="Deprecated (routing alone decides): severities that notify at all. When "
        "set, a listed severity without routing goes to every channel, and routing a "
        "severity it excludes is a configuration error.",
    )
    email: EmailSettings = Field(default_factory=EmailSettings)
    rate_limits: dict[Channel, ChannelLimit] = Field(default_factory=_default_limits)
    retry: NotificationRetry = Field(default_factory=NotificationRetry)
    ses_feedback_topics: list[str] = Field(
        default_factory=list,
        description="SNS topic ARNs whose SES bounce/complaint messages are accepted at "
        "POST /webhooks/ses-events (checked before any certificate download); empty = none, "
        "unless `ses_feedback_allow_any_topic`.",
    )
    ses_feedback_allow_any_topic: bool = Field(
        default=False,
        description="With no `ses_feedback_topics`, accept any topic whose AWS signature "
        "verifies. The local sandbox sets it; production lists its topics instead.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_routing_rule(cls, data: Any) -> Any:
        """Fold the deprecated `severity_levels` into `routing`, refusing contradictions."""
        if not isinstance(data, dict) or data.get("severity_levels") is None:
            return data
        levels = data["severity_levels"]
        routing = data.get("routing")
        if (
            not isinstance(levels, list)
            or not isinstance(routing, dict | None)
            or any(level not in SEVERITY_ORDER for level in levels)
        ):
            return data  # the field validators report the error (by path, not value)
        routing = dict(routing or {})
        bad = [s for s, chans in routing.items() if chans and s not in levels]
        if bad:
            raise ValueError(
                f"routing sends {', '.join(map(str, bad))} to channels but severity_levels "
                "excludes it: drop severity_levels (routing alone decides who is notified)"
            )
        for severity in levels:
            routing.setdefault(severity, ["slack", "email"])
        for severity in SEVERITY_ORDER:
            routing.setdefault(severity, [])
        return {**data, "routing": routing}

    def channels_for(self, severity: str) -> list[Channel]:
        """The one routing rule: `routing[severity]`, nobody when unlisted."""
        return list(self.routing.get(severity, []))  # type: ignore[call-overload]
