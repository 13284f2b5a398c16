"""`webhooks` section: incoming endpoints and outgoing delivery."""

from __future__ import annotations

from pydantic import Field

from config.sections.common import Section


class IncomingEndpoint(Section):
    url_path: str
    event_types: list[str] = Field(min_length=1)
    rate_limit_per_minute: int = Field(default=60, gt=0)
    enabled: bool = True


class OutgoingSettings(Section):
    retry_attempts: int = Field(default=3, ge=0, le=20)
    timeout_seconds: float = Field(default=30, gt=0)
    exponential_backoff: bool = True


class WebhooksSettings(Section):
    incoming: dict[str, IncomingEndpoint] = Field(default_factory=dict)
    outgoing: OutgoingSettings = Field(default_factory=OutgoingSettings)
