"""`admin`: the authenticated admin HTTP API on the receiver (off by default).

    admin:
      enabled: true
      tokens:
        - {name: ops-1, role: operator, block: nura-admin-ops-1}

Each token's value lives in a Prefect `secret` block (`prefect.blocks.system.Secret`); the
config only names it. See docs/admin.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from nura.config.sections.common import Section

Role = Literal["viewer", "operator", "admin"]


class AdminToken(Section):
    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Who the token is: the actor written in the audit log (never the token).",
    )
    role: Role = Field(description="viewer < operator < admin; each action names its minimum.")
    block: str = Field(
        min_length=1,
        description="Name of the Prefect `secret` block holding the token's value.",
    )


class AdminSettings(Section):
    enabled: bool = Field(
        default=False,
        description="Serve the admin API on the receiver under `path_prefix` (404 when off).",
    )
    path_prefix: str = Field(
        default="/admin/v1",
        description="Path prefix of the admin API; must not be under /webhooks.",
    )
    tokens: list[AdminToken] = Field(
        default_factory=list,
        description="Tokens and their roles; values are read from Prefect secret blocks.",
    )
    token_cache_seconds: float = Field(
        default=30,
        ge=0,
        description="How long loaded token digests are reused: a rotated or deleted token "
        "block takes effect within this time, without a restart.",
    )
    endpoint_flag_cache_seconds: float = Field(
        default=5,
        ge=0,
        description="How often each receiver re-reads the store's endpoint enable/disable "
        "flags (the receiver that served the change applies it at once).",
    )

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.rstrip("/")
        if not v.startswith("/") or v == "" or v.startswith("/webhooks"):
            raise ValueError("must start with / and not be under /webhooks")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> AdminSettings:
        names = [t.name for t in self.tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"token names must be unique: {', '.join(dupes)}")
        return self
