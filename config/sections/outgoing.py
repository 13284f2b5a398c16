"""`webhooks.outgoing`: signed deliveries, dead letters, redrive (issue 5 owns this section)."""

from __future__ import annotations

from pydantic import Field

from config.sections.common import Section


class OutgoingSettings(Section):
    retry_attempts: int = Field(default=3, ge=0, le=20)
    timeout_seconds: float = Field(default=30, gt=0)
    exponential_backoff: bool = True
