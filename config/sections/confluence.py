"""`external_services.confluence` (issue 3 owns this section)."""

from __future__ import annotations

from pydantic import Field

from config.sections.common import ServiceSettings


class ConfluenceSettings(ServiceSettings):
    base_url: str | None = "https://company.atlassian.net"
    sync_interval_hours: float = Field(default=6, gt=0)
    spaces: list[str] = Field(default_factory=lambda: ["TECH", "DOCS", "ARCH"])
