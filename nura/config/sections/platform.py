"""`platform` and `api_gateway` sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from nura.config.sections.common import Section


class PlatformSettings(Section):
    state_dir: str = ".nura"
    store_url: str = ""
    prefect_port: int = Field(default=4200, gt=0, lt=65536)
    work_pool: str = "nura-process"
    pending_recovery_seconds: float = Field(
        default=300,
        ge=0,
        description="A flow run Pending this long (its worker died before starting it) is "
        "rescheduled by the `nura-pending-recovery` automation; 0 = no automation.",
    )
    # Flow runs `nura up`'s worker runs at once (each one is a process); the sandbox's
    # first runs (9) all start together under the default.
    worker_limit: int = Field(default=12, gt=0, le=256)
    # Database of `nura up`'s Prefect server and stores. SQLite answers `database is
    # locked` under the platform's load (benchmarks/platform_startup.py compares both).
    prefect_database: Literal["embedded-postgres", "sqlite"] = "embedded-postgres"
    tls_min_version: Literal["1.2", "1.3"] = Field(
        default="1.2",
        description="Lowest TLS version of every outbound HTTPS call the call layer makes and "
        "of the receiver when it serves HTTPS; 1.2 for compatibility, 1.3 to enforce it.",
    )

    @field_validator("tls_min_version", mode="before")
    @classmethod
    def _version_as_text(cls, v: object) -> object:
        return f"{v:.1f}" if isinstance(v, float) else v  # YAML reads `1.3` as a number


class ApiGatewaySettings(Section):
    timeout_default: float = Field(default=30, gt=0)
    retry_default: int = Field(default=3, ge=0, le=20)
    circuit_breaker_threshold: int = Field(default=5, gt=0)
    circuit_breaker_cooldown_seconds: float = Field(default=300, gt=0)
    rate_limit_default: int = Field(default=100, gt=0)
    backoff_base_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30, ge=0)
    retry_after_max_seconds: float = Field(default=60, ge=0)
