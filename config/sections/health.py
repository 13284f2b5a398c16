"""`health_monitoring` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.sections.common import Section

Severity = Literal["low", "medium", "high", "critical"]


class AlertThresholds(Section):
    response_time_seconds: float = Field(default=5.0, gt=0)
    error_rate_percentage: float = Field(default=5.0, ge=0, le=100)
    availability_percentage: float = Field(default=95.0, ge=0, le=100)


class NotificationSettings(Section):
    slack_webhook_url: str = ""
    email_alerts: bool = True
    severity_levels: list[Severity] = Field(default_factory=lambda: ["high", "critical"])


class HealthMonitoringSettings(Section):
    check_interval_minutes: float = Field(default=5, gt=0)
    alert_thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
