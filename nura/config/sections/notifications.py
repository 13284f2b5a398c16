"""`health_monitoring.notifications`: Slack/SES channels, severity routing.

```yaml
health_monitoring:
  notifications:
    slack_webhook_url: "${SLACK_WEBHOOK_URL:-}"  # used when no slack_block is saved
    slack_block: "nura-alerts"                   # Prefect `slack-webhook` block name
    email_alerts: true
    severity_levels: ["high", "critical"]        # severities that notify at all
    routing: {high: [slack, email], critical: [slack, email]}
    email: {sender: "noreply@nura.ai", recipients: ["oncall@nura.ai"]}
    rate_limits: {slack: {max: 20, per_seconds: 60}, email: {max: 10, per_seconds: 3600}}
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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


class NotificationSettings(Section):
    slack_webhook_url: str = ""
    slack_block: str | None = Field(
        default=None, description="Saved Prefect `slack-webhook` block; wins over the URL."
    )
    email_alerts: bool = True
    severity_levels: list[Severity] = Field(default_factory=lambda: ["high", "critical"])  # type: ignore[arg-type]
    routing: dict[Severity, list[Channel]] = Field(
        default_factory=dict,
        description="Channels per severity; a severity not listed goes to every channel.",
    )
    email: EmailSettings = Field(default_factory=EmailSettings)
    rate_limits: dict[Channel, ChannelLimit] = Field(default_factory=_default_limits)
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
