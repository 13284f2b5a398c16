"""What outgoing-webhook tasks take and return (pydantic, so flows and the UI show them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# deferred: refused by the target's open breaker, waits for its next probe (no attempt
# used); taken: another process holds the entry's lease (it sends it, not this run).
Status = Literal["delivered", "pending", "exhausted", "parked", "duplicate", "deferred", "taken"]


class OutgoingEvent(BaseModel):
    """One event to deliver; `id` (the webhook-id) is generated when not given."""

    type: str = Field(min_length=1, max_length=200)
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, min_length=1, max_length=100)


class DeliveryOutcome(BaseModel):
    id: str
    status: Status
    status_code: int | None = None
    attempts: int = 0
    error: str | None = None
    latency_ms: float = 0.0


class DeliverySummary(BaseModel):
    target: str
    submitted: int = 0
    delivered: int = 0
    pending: int = Field(default=0, description="Dead-lettered for the redrive.")
    exhausted: int = 0
    parked: int = Field(default=0, description="Waiting for a disabled target.")
    duplicate: int = Field(default=0, description="Already stored earlier; not sent again.")
    deferred: int = Field(
        default=0, description="Refused by the open breaker; due at its next probe."
    )
    taken: int = Field(default=0, description="Held by another process, which sends them.")
    disabled: bool = False
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    outcomes: list[DeliveryOutcome] = Field(default_factory=list)

    def add(self, outcome: DeliveryOutcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        self.outcomes.append(outcome)


class RedriveSummary(BaseModel):
    due: int = 0
    claimed: int = 0
    delivered: int = 0
    pending: int = 0
    exhausted: int = 0
    parked: int = 0
    deferred: int = 0
    taken: int = 0
    skipped_targets: list[str] = Field(default_factory=list)
    targets: dict[str, DeliverySummary] = Field(default_factory=dict)
