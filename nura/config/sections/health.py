"""`health_monitoring` section: schedule, thresholds, check timeouts, alerts, map."""

from __future__ import annotations

from pydantic import Field

from nura.config.sections.common import Section
from nura.config.sections.maintenance import MaintenanceWindowSettings
from nura.config.sections.notifications import NotificationSettings
from nura.config.sections.security import SecurityAlertSettings


class AlertThresholds(Section):
    response_time_seconds: float = Field(default=5.0, gt=0)
    error_rate_percentage: float = Field(default=5.0, ge=0, le=100)
    availability_percentage: float = Field(default=95.0, ge=0, le=100)
    min_calls: int = Field(
        default=10,
        ge=1,
        description="Traffic calls in the status window from which the error and fallback "
        "rates decide the status; below it they are shown but do not count.",
    )


class ComponentThresholds(Section):
    """Backlog limits of the platform's own queues (webhook inbox, dead letters)."""

    inbox_oldest_degraded_seconds: float = Field(default=300, gt=0)
    inbox_oldest_unhealthy_seconds: float = Field(default=1800, gt=0)
    dead_letters_degraded: int = Field(default=1, ge=1)
    dead_letters_unhealthy: int = Field(default=100, ge=1)
    database_latency_degraded_ms: float = Field(default=500, gt=0)


class HealthMonitoringSettings(Section):
    check_interval_minutes: float = Field(default=5, gt=0)
    alert_thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    # Each check's own bound: a hung service is reported as timed out after this.
    check_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Status is judged over this recent window (the 1 h / 24 h / 7 d figures are reported).
    status_window_minutes: float = Field(default=15, gt=0)
    # An alert that persists is repeated at most this often (0 = never repeat).
    reminder_interval_minutes: float = Field(default=60, ge=0)
    # Confirmation and hysteresis (Gatus' failure-threshold / success-threshold): an alert
    # opens or escalates after this many consecutive evaluations at the level, and
    # resolves after this many consecutive healthy ones.
    failure_threshold: int = Field(default=2, ge=1, le=100)
    success_threshold: int = Field(default=2, ge=1, le=100)
    component_thresholds: ComponentThresholds = Field(default_factory=ComponentThresholds)
    # Confluence: the saved ConfluenceCredentials block used for the authenticated check;
    # unset, the one the sync uses (`external_services.confluence.credentials_block`).
    confluence_block: str | None = None
    # Optional CloudWatch Logs group for the alert audit trail ("" = off).
    cloudwatch_log_group: str = ""
    publish_cloudwatch: bool = True
    # Which deployments/flows use which service: the report says what an outage affects.
    dependency_map: dict[str, list[str]] = Field(default_factory=dict)
    security_alerts: SecurityAlertSettings = Field(
        default_factory=SecurityAlertSettings,
        description="Bursts of refusals and failed logins that open a high alert "
        "(docs/health.md, Security alerts).",
    )
    maintenance_windows: list[MaintenanceWindowSettings] = Field(
        default_factory=list,
        description="Planned maintenance per service: checks still run and are recorded, "
        "alerts are held (a low-severity notice at start and end), the SLA windows exclude "
        "the time. `nura maintenance start` adds windows at run time.",
    )
