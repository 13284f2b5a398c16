"""`adaptive` settings of a service: how its effective rate follows the service's answers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AdaptiveRateSettings(BaseModel):
    """Additive-increase / multiplicative-decrease of a service's effective rate.

    On by default: the configured `rate_limit_per_minute` stays the ceiling, and the rate
    only goes below it while the service itself says it is overloaded (429, or latency over
    `latency_p95_ms` when set), so a service that never throttles runs at its configured rate.
    """

    # As `common.Section` (which imports this module, hence not its subclass).
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description="Lower the service's effective rate on 429s (and slow answers when "
        "`latency_p95_ms` is set), restore it as the service recovers; never above the "
        "configured rate_limit_per_minute.",
    )
    decrease_factor: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Multiplicative decrease: the effective rate is multiplied by this on a "
        "throttle signal (at most once per `cooldown_seconds`, across every process).",
    )
    increase_fraction: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Additive increase: the fraction of the configured rate added back after "
        "each `increase_interval_seconds` with successes, no throttle signal, and calls held "
        "back by the limit (a rate nobody uses is not raised).",
    )
    increase_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Length of one success window: the rate rises at most once per window.",
    )
    cooldown_seconds: float = Field(
        default=2.0,
        ge=0,
        description="After a decrease, further 429s (calls already in flight at the old rate) "
        "do not decrease again, and the rate does not rise, for this long.",
    )
    min_rate_per_minute: float = Field(
        default=6.0,
        gt=0,
        description="Floor of the effective rate (or the configured rate, if lower).",
    )
    latency_p95_ms: float | None = Field(
        default=None,
        gt=0,
        description="When set, a p95 attempt latency above it over the last "
        "`latency_window` successful calls of a process counts as a throttle signal.",
    )
    latency_window: int = Field(
        default=20,
        ge=5,
        le=1000,
        description="Number of successful calls the p95 latency is computed over.",
    )
