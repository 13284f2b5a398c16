"""`health_monitoring` section."""

from __future__ import annotations

from pydantic import Field

from config.sections.common import Section
from config.sections.notifications import NotificationSettings


class AlertThresholds(Section):
    response_time_seconds: float = Field(default=5.0, gt=0)
    error_rate_percentage: float = Field(default=5.0, ge=0, le=100)
    availability_percentage: float = Field(default=95.0, ge=0, le=100)


class HealthMonitoringSettings(Section):
    check_interval_minutes: float = Field(default=5, gt=0)
    alert_thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
