"""`health_monitoring.notifications`: Slack/SES channels, severity routing (issue 5 owns it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.sections.common import Section

Severity = Literal["low", "medium", "high", "critical"]


class NotificationSettings(Section):
    slack_webhook_url: str = ""
    email_alerts: bool = True
    severity_levels: list[Severity] = Field(default_factory=lambda: ["high", "critical"])
