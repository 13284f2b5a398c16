"""`webhooks` section: incoming endpoints (issue 4 owns `IncomingEndpoint`)."""

from __future__ import annotations

from pydantic import Field

from config.sections.common import Section
from config.sections.outgoing import OutgoingSettings


class IncomingEndpoint(Section):
    url_path: str
    event_types: list[str] = Field(min_length=1)
    rate_limit_per_minute: int = Field(default=60, gt=0)
    enabled: bool = True


class WebhooksSettings(Section):
    incoming: dict[str, IncomingEndpoint] = Field(default_factory=dict)
    outgoing: OutgoingSettings = Field(default_factory=OutgoingSettings)
