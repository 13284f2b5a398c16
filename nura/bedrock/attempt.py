"""One model of the chain, tried once: budget holds, tokens-per-minute, the call through
the call layer, and what its failure means for the chain (see `nura.bedrock.invoke`).

    attempt = ModelCall(invoker, plan, request, messages, last, invocation_id, run_id).run()

`run()` answers (parsed answer, api, latency ms, attempts, the hold to settle) or the
`ModelAttempt` of a failure, with every other hold settled or released: attempts
abandoned on a timeout or an unreadable answer become estimated ledger rows (each settles
its own hold; a retry after one holds budget anew); the rest are released.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

from nura.bedrock.limits import TokenLeaser, tpm_service
from nura.bedrock.models import (
    BudgetExceeded,
    InvalidInvocation,
    InvocationRequest,
    Message,
    ModelAttempt,
    Outcome,
)
from nura.bedrock.pricing import BudgetGuard, Reservation, input_token_bound
from nura.bedrock.wire import (
    StreamFailed,
    Unreadable,
    adapt,
    converse_kwargs,
    invoke_body,
    parse_converse,
    parse_invoke,
    read_stream,
    supports_system,
)
from nura.config.sections.bedrock import BedrockSettings
from nura.core.errors import (
    CircuitOpen,
    ClientError,
    IntegrationError,
    RateLimited,
    ServerError,
    ServiceTimeout,
)
from nura.core.layer import CallLayer
from nura.core.stores.ledger import LedgerEntry, to_usd


class BedrockInvoker(Protocol):
    """What a model call uses of `nura.bedrock.invoke.BedrockInvoker` (no import cycle)."""

    settings: BedrockSettings
    layer: CallLayer
    guard: BudgetGuard
    tokens: TokenLeaser
    region: str

    def _service(self, model_id: str) -> str: ...
    def _client(self, max_tokens: int) -> Any: ...
    def _record(self, entry: LedgerEntry, held: Reservation | None) -> None: ...
    def _release(self, held: Reservation | None) -> None: ...


# Service errors that mean "this model, not this input": the chain moves on.
_OUTCOMES: tuple[tuple[type[IntegrationError], Outcome], ...] = (
    (RateLimited, "throttled"),
    (CircuitOpen, "circuit_open"),
    (ServiceTimeout, "timeout"),
    (ServerError, "server_error"),
)


# A ValidationException that names the model, not the request: the next model may answer.
# Permanent ones (the id will not work until the configuration changes) open the breaker.
_PERMANENT_VALIDATION = (
    "model identifier is invalid",
    "end of its life",
    "on-demand throughput",
    "inference profile",
    "access to the model",
)
_MODEL_VALIDATION = (
    "system message",
    "system prompt",
    "too long",
    "exceeds the model limit",
    "maximum tokens",
    "context length",
    "context window",
    "doesn't support",
    "does not support",
    "not supported",
)
_PERMANENT_CODES = ("AccessDeniedException", "ResourceNotFoundException")


def classify_refusal(exc: ClientError) -> str | None:
    """ "permanent" / "model" for a refusal about this model; None: about the request."""
    message = str(exc.args[0]).lower()
    if exc.code in _PERMANENT_CODES or exc.status in (403, 404):
        return "permanent"
    if exc.code != "ValidationException":
        return "model"  # other 4xx (e.g. 424 already translated): this model's problem
    if any(p in message for p in _PERMANENT_VALIDATION):
        return "permanent"
    if any(p in message for p in _MODEL_VALIDATION):
        return "model"
    return None


def model_service(model_id: str) -> str:
    return f"bedrock:{model_id}"


def _botocore_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _is_read_timeout(exc: BaseException) -> bool:
    from botocore.exceptions import ReadTimeoutError

    return isinstance(exc, ReadTimeoutError)


@dataclasses.dataclass
class Plan:
    model_id: str
    max_tokens: int
    reserve: int
    price: Any
    max_cost_pusd: int = 0  # what the budgets hold while this model is called


class ModelCall:
    """One model of the chain: budget holds, TPM, the call(s) through the layer, and the
    estimated rows of attempts abandoned on the way (timeouts, unreadable answers).

    `run()` answers (parsed, api, latency ms, attempts, hold to settle) or the ModelAttempt
    of a failure (every hold settled or released). An exception (BudgetExceeded for a
    retry's hold, InvalidInvocation, a store failure) leaves no hold behind either.
    """

    def __init__(
        self,
        invoker: BedrockInvoker,
        plan: Plan,
        request: InvocationRequest,
        messages: list[Message],
        last: bool,
        invocation_id: str,
        flow_run_id: str | None,
    ) -> None:
        self.inv, self.plan, self.request, self.last = invoker, plan, request, last
        self.invocation_id, self.flow_run_id = invocation_id, flow_run_id
        limits = invoker.settings.limits_for(plan.model_id)
        self.limits = limits
        self.messages, self.system = adapt(
            plan.model_id,
            messages,
            request.system,
            supports_system(plan.model_id, limits.system_prompt),
        )
        self.holds: list[Reservation | None] = []
        self.abandoned: list[tuple[Reservation | None, str]] = []
        self.estimated_usd = Decimal(0)
        self.tokens_reserved = 0
        self.on_text: Callable[[str], Any] | None = None

    # -- budget ------------------------------------------------------------------------
    def _hold(self) -> None:
        req = self.request
        self.holds.append(
            self.inv.guard.reserve(req.scope, self.plan.max_cost_pusd, req.budget_override)
        )

    def _abandon(self, why: str) -> None:
        """The current attempt's hold goes to an estimated ledger row (billed, probably)."""
        self.abandoned.append((self.holds[-1], why))

    def _current_hold_abandoned(self) -> bool:
        return bool(self.abandoned) and self.abandoned[-1][0] is self.holds[-1]

    def _settle_abandoned(self) -> None:
        plan = self.plan
        bound = input_token_bound(self.messages, self.system)
        limit = self.limits.max_input_tokens
        for held, why in self.abandoned:
            entry = LedgerEntry(
                invocation_id=self.invocation_id,
                scope=self.request.scope,
                model_id=plan.model_id,
                region=self.inv.region,
                api=self.request.api,
                input_tokens=min(bound, limit),
                output_tokens=plan.max_tokens,
                cost_pusd=plan.max_cost_pusd,
                cost_unknown=plan.price is None,
                latency_ms=0.0,
                flow_run_id=self.flow_run_id,
                conversation_id=self.request.conversation_id,
                over_budget=held is not None and held.over_budget,
                detail=f"estimated: {why}"[:500],
                estimated=True,
            )
            self.inv._record(entry, held)
            self.estimated_usd += to_usd(plan.max_cost_pusd)
        self.abandoned = []

    def _cleanup(self, keep: Reservation | None = None) -> None:
        """Bill the abandoned attempts, release every other hold except `keep`."""
        billed = {id(h) for h, _ in self.abandoned}
        try:
            self._settle_abandoned()
        finally:
            for held in self.holds:
                if held is not None and held is not keep and id(held) not in billed:
                    self.inv._release(held)

    # -- the call ------------------------------------------------------------------------
    def run(self) -> ModelAttempt | tuple[Any, Any, float, int, Reservation | None]:
        inv, plan = self.inv, self.plan
        model_id = plan.model_id
        tpm = self.limits.tokens_per_minute
        self._hold()
        try:
            if tpm:
                try:
                    self.tokens_reserved = inv.tokens.reserve(
                        tpm_service(model_id),
                        tpm,
                        plan.reserve,
                        timeout=inv.settings.limit_wait_seconds,
                    )
                except RateLimited as exc:
                    self._cleanup()
                    return ModelAttempt(
                        model_id=model_id,
                        outcome="rate_limited_locally",
                        detail=str(exc.args[0]),
                    )
            return self._call(tpm)
        except BaseException:
            self._cleanup()
            raise

    def _send(self, op: Any, **kwargs: Any) -> Any:
        """One attempt, inside the call layer: holds the budget again for a retry after an
        abandoned attempt, translates Bedrock's own error codes, parses the answer."""
        if self._current_hold_abandoned():
            self._hold()  # BudgetExceeded passes the layer untouched (never retried)
        model_id = self.plan.model_id
        try:
            raw = op(**kwargs)
        except Exception as exc:
            code = _botocore_code(exc)
            kw: dict[str, Any] = {"service": model_service(model_id), "code": code or None}
            if code == "ModelTimeoutException" or _is_read_timeout(exc):
                self._abandon(f"{code or 'read timeout'} after the request was sent")
                raise ServiceTimeout(
                    f"{model_id}: {code or 'read timeout'}", status=408, **kw
                ) from exc
            if code == "ModelErrorException":
                raise ServerError(f"{model_id}: model error", status=424, **kw) from exc
            raise
        try:
            if self.request.api == "invoke_model":
                return parse_invoke(model_id, raw)
            if self.request.api == "converse_stream":
                return read_stream(raw, self.on_text)
            return parse_converse(raw)
        except StreamFailed as exc:  # nothing shown yet: a failure like any other
            kw = {"service": model_service(model_id), "code": exc.code}
            if "throttl" in exc.code.lower():
                raise RateLimited(f"{model_id}: {exc}", status=429, **kw) from exc
            self._abandon(f"stream failed: {exc.code}")
            raise ServerError(f"{model_id}: stream failed: {exc}", **kw) from exc
        except Unreadable as exc:
            self._abandon(str(exc))
            raise ServerError(
                f"{model_id}: {exc}", retryable=False, service=model_service(model_id)
            ) from exc

    def _call(
        self, tpm: int | None
    ) -> ModelAttempt | tuple[Any, Any, float, int, Reservation | None]:
        inv, plan, request = self.inv, self.plan, self.request
        model_id = plan.model_id
        policy = inv.layer.policy(inv._service(model_id))
        client = inv._client(plan.max_tokens)
        # None on the last model = the service's configured retries (see module docstring).
        retries = inv.settings.last_model_retries if self.last else 0
        began = time.perf_counter()
        try:
            if request.api == "invoke_model":
                body = invoke_body(
                    model_id, self.messages, self.system, plan.max_tokens, request.temperature
                )
                res = inv.layer.call(
                    policy.name,
                    "invoke_model",
                    self._send,
                    client.invoke_model,
                    payload=body,
                    retries=retries,
                    modelId=model_id,
                    body=body,
                    contentType="application/json",
                    accept="application/json",
                )
            else:
                kwargs = converse_kwargs(
                    model_id, self.messages, self.system, plan.max_tokens, request.temperature
                )
                streaming = request.api == "converse_stream"
                res = inv.layer.call(
                    policy.name,
                    request.api,
                    self._send,
                    client.converse_stream if streaming else client.converse,
                    payload=json.dumps(kwargs["messages"]),
                    retries=retries,
                    **kwargs,
                )
        except IntegrationError as exc:
            if tpm:
                used = self.tokens_reserved if self.abandoned else 0
                inv.tokens.settle(tpm_service(model_id), tpm, self.tokens_reserved, used)
            self._cleanup()
            if isinstance(exc, InvalidInvocation | BudgetExceeded):
                raise
            return self._failed(exc, began)
        parsed = res.value
        if tpm:
            used = (
                parsed.input_tokens + parsed.output_tokens * self.limits.output_burndown
                if parsed.usage_known
                else self.tokens_reserved
            )
            inv.tokens.settle(tpm_service(model_id), tpm, self.tokens_reserved, used)
        keep = self.holds[-1]
        self._cleanup(keep=keep)
        return parsed, request.api, res.latency_ms, res.attempts, keep

    def _failed(self, exc: IntegrationError, began: float) -> ModelAttempt:
        model_id = self.plan.model_id
        outcome: Outcome
        if isinstance(exc, ClientError):
            kind = classify_refusal(exc)
            if kind is None:
                raise InvalidInvocation(
                    f"{model_id} refused the request: {exc.args[0]}",
                    status=exc.status,
                    code=exc.code,
                    attempts=exc.attempts,
                    operation=exc.operation,
                ) from exc
            if kind == "permanent":
                # Not callable until the configuration (or the account) changes: open the
                # model's breaker now so the next invocations skip it until its cool-down.
                self.inv.layer.breakers.record_failure(model_service(model_id), 1)
                outcome = "model_unavailable"
            else:
                outcome = "model_rejected"
        elif isinstance(exc, ServerError) and exc.code is None and not exc.retryable:
            outcome = "unreadable"
        else:
            outcome = next(
                (name for kind_, name in _OUTCOMES if isinstance(exc, kind_)), "unavailable"
            )
        return ModelAttempt(
            model_id=model_id,
            outcome=outcome,
            detail=f"{type(exc).__name__}: {exc.code or ''} {exc.args[0]}".strip()[:400],
            latency_ms=(time.perf_counter() - began) * 1000,
            attempts=exc.attempts,
        )
