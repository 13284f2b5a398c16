"""`health_monitoring.maintenance_windows`: planned maintenance declared in the config.

    health_monitoring:
      maintenance_windows:
        - service: confluence
          start: "2026-12-12T22:00:00Z"
          end: "2026-12-12T23:30:00Z"
          reason: "Atlassian maintenance, ticket OPS-42"

Windows started from the command line (`nura maintenance start`) live in the store; both
kinds count alike (docs/health.md, "Maintenance windows").
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field, model_validator

from nura.config.sections.common import Section


class MaintenanceWindowSettings(Section):
    """One declared window: the service's alerts are held and its SLA excludes the time."""

    service: str = Field(
        min_length=1,
        description="Service name as the health report shows it (e.g. confluence, s3, a "
        "partner's name, database).",
    )
    start: AwareDatetime = Field(description="Start, ISO 8601 with a time zone (e.g. ...Z).")
    end: AwareDatetime = Field(description="End, ISO 8601 with a time zone; after start.")
    reason: str = Field(default="", description="Why; shown in notices and the report.")

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindowSettings:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self
