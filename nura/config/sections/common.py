"""Shared base model and the per-service resilience settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from nura.config.sections.adaptive import AdaptiveRateSettings


class Section(BaseModel):
    """Every config section rejects unknown keys: a typo must fail at load, not be ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSettings(Section):
    """Resilience settings for one external service; unset values take `api_gateway` defaults."""

    base_url: str | None = None
    rate_limit_per_minute: int | None = Field(default=None, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    circuit_breaker_threshold: int | None = Field(default=None, gt=0)
    retry_attempts: int | None = Field(default=None, ge=0, le=20)
    fallback_enabled: bool = False
    health_check_endpoint: str | None = None
    max_response_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Largest response body read from the service; past it the call fails "
        "with ResponseTooLarge (not retried). Default 16 MiB.",
    )
    deadline_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Total time for one call: every attempt, backoff wait and body read. "
        "A slow or dripping answer is cut there with DeadlineExceeded. Default 4x the timeout.",
    )
    adaptive: AdaptiveRateSettings = Field(
        default_factory=AdaptiveRateSettings,
        description="Dynamic adjustment of the effective rate below rate_limit_per_minute "
        "(docs/rate-limits.md).",
    )
