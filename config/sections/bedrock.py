"""`external_services.aws.bedrock` (issue 6 owns this section)."""

from __future__ import annotations

from pydantic import Field

from config.sections.common import ServiceSettings


class BedrockSettings(ServiceSettings):
    models: list[str] = Field(
        default_factory=lambda: [
            "anthropic.claude-3-sonnet-20240229-v1:0",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "amazon.titan-text-express-v1",
        ],
        min_length=1,
    )
    endpoint_url: str | None = None
