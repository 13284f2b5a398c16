"""Inputs, results and errors of a Bedrock invocation (shared by the task, flow and CLI).

BedrockError (an IntegrationError, service "bedrock")
├── InvalidInvocation   bad input, refused before any call (or a ValidationException about
│                       the request as a whole: never falls back - every model refuses it)
├── BudgetExceeded      a scope's daily/monthly budget is spent; pass `budget_override`
└── AllModelsFailed     no model of the chain answered; `.outcomes` says what happened to
                        each, `.retryable` is true only when one of them was retryable
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nura.core.errors import IntegrationError

Api = Literal["converse", "invoke_model", "converse_stream"]
Outcome = Literal[
    "ok",
    "throttled",
    "rate_limited_locally",
    "circuit_open",
    "server_error",
    "timeout",
    "unavailable",
    "rejected",
    "model_rejected",
    "model_unavailable",
    "unreadable",
    "skipped_lifecycle",
    "skipped_too_many_tokens",
]
# Outcomes after which the same invocation may succeed later (AllModelsFailed.retryable).
RETRYABLE_OUTCOMES = frozenset(
    {"throttled", "rate_limited_locally", "circuit_open", "server_error", "timeout", "unavailable"}
)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    text: str = Field(min_length=1, max_length=2_000_000)


class InvocationRequest(BaseModel):
    """One model invocation. Give `prompt` or `messages` (a conversation ending with a user turn).

    `models` overrides the configured chain (tried in order); `model` is a one-model chain.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(default=None, description="A single user message.")
    messages: list[Message] = Field(default_factory=list, max_length=1000)
    system: str | None = Field(default=None, max_length=200_000)
    model: str | None = Field(default=None, description="One model (no fallback).")
    models: list[str] | None = Field(default=None, min_length=1, max_length=10)
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)
    temperature: float = Field(default=0.5, ge=0.0, le=1.0)
    api: Api = Field(
        default="converse",
        description="converse, converse_stream (tokens as they arrive), or invoke_model bodies.",
    )
    conversation_id: str | None = Field(default=None, max_length=200)
    scope: str = Field(default="default", min_length=1, max_length=100, pattern=r"^[\w.:-]+$")
    budget_override: bool = Field(default=False, description="Call even over budget.")
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_input(self) -> InvocationRequest:
        if self.prompt is not None and self.messages:
            raise ValueError("give prompt or messages, not both")
        if self.model is not None and self.models is not None:
            raise ValueError("give model or models, not both")
        return self

    def conversation(self) -> list[Message]:
        if self.prompt is not None:
            return [Message(role="user", text=self.prompt)] if self.prompt.strip() else []
        return list(self.messages)


class ModelAttempt(BaseModel):
    """What happened when one model of the chain was tried (or skipped)."""

    model_id: str
    outcome: Outcome
    detail: str = ""
    latency_ms: float = 0.0
    attempts: int = 0


class InvocationResult(BaseModel):
    text: str
    stop_reason: str
    model_id: str
    api: Api
    input_tokens: int
    output_tokens: int
    latency_ms: float
    cost_usd: Decimal
    cost_unknown: bool = False
    # Spend recorded as an estimate for attempts abandoned on the way (timeouts, unreadable
    # answers) before this answer, and whether the answer's own cost is an estimate.
    estimated_usd: Decimal = Decimal(0)
    cost_estimated: bool = False
    over_budget: bool = False
    fallback_used: bool = False
    attempts: list[ModelAttempt] = Field(default_factory=list)
    invocation_id: str
    conversation_id: str | None = None
    scope: str = "default"
    region: str | None = None


class BedrockError(IntegrationError):
    """Base of the Bedrock invocation errors."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("service", "bedrock")
        super().__init__(message, **kw)


class InvalidInvocation(BedrockError):
    pass


class BudgetExceeded(BedrockError):
    scope = ""  # class defaults survive IntegrationError's pickling
    period = ""

    def __init__(self, message: str, *, scope: str = "", period: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.scope = scope
        self.period = period


class AllModelsFailed(BedrockError):
    retryable = False

    def __init__(self, message: str, *, outcomes: list[ModelAttempt] | None = None, **kw: Any):
        self.outcomes = list(outcomes or [])
        listing = "; ".join(f"{o.model_id}: {o.outcome} {o.detail}".strip() for o in self.outcomes)
        kw.setdefault("retryable", any(o.outcome in RETRYABLE_OUTCOMES for o in self.outcomes))
        super().__init__(f"{message} [{listing}]" if listing else message, **kw)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_all_failed, (self.args[0], self.attempts, self.outcomes))


def _rebuild_all_failed(message: str, attempts: int, outcomes: list[ModelAttempt]):  # type: ignore[no-untyped-def]
    err = AllModelsFailed.__new__(AllModelsFailed)
    retryable = any(o.outcome in RETRYABLE_OUTCOMES for o in outcomes)
    BedrockError.__init__(err, message, attempts=attempts, retryable=retryable)
    err.outcomes = outcomes
    return err
