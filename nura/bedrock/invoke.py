"""Bedrock invocations: a model fallback chain with limits, budgets and an exact cost ledger.

    from nura.bedrock.invoke import invoke_bedrock
    from nura.bedrock.models import InvocationRequest
    result = await invoke_bedrock(InvocationRequest(prompt="Summarise ..."))
    result.text, result.model_id, result.cost_usd, result.attempts

One invocation, in order:
1. validate before any call: non-empty conversation, every model id known and priced
   (or `allow_unpriced_models` -> `cost_unknown`), tokens within each model's limits
   (a model that cannot take the request is skipped; none left -> InvalidInvocation);
2. for each model of the chain: reserve its maximum cost on the budgets of `global` and the
   call's scope (BudgetExceeded when it does not fit, unless overridden), reserve its
   tokens-per-minute (or move on), call it through the call layer as service
   `bedrock:<model-id>` - its own breaker, its own requests-per-minute limit, its own call
   records - then settle the tokens to the reported usage; a model that did not answer
   releases its budget reservation on every path (fallback, error, exception);
3. the first answer is priced, written to the ledger in the transaction that settles its
   budget reservation, alerted on, traced and returned with the outcome of every model
   tried. ValidationException never falls back (the next model
   would refuse the same input); throttling, an open breaker, timeouts and 5xx do.

Retries: every model but the last is called with `retries=0`, so a throttled model hands
over to the next one at once instead of sleeping through backoff while a healthy model
waits; the last model has nothing to fall back to, so it gets the service's retries (with
the layer's jittered, Retry-After-honouring backoff), or `last_model_retries`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import anyio

from nura.bedrock.limits import TokenLeaser, token_leaser, tpm_service
from nura.bedrock.models import (
    AllModelsFailed,
    InvalidInvocation,
    InvocationRequest,
    InvocationResult,
    Message,
    ModelAttempt,
    Outcome,
)
from nura.bedrock.pricing import (
    BudgetGuard,
    Reservation,
    cost_of,
    deliver_alert,
    input_token_bound,
    max_cost_pusd,
)
from nura.bedrock.wire import (
    converse_kwargs,
    estimate_tokens,
    invoke_body,
    parse_converse,
    parse_invoke,
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
from nura.core.stores.ledger import CostLedger, LedgerEntry, to_pusd

logger = logging.getLogger("nura.bedrock")

# Service errors that mean "this model, not this input": the chain moves on.
_OUTCOMES: tuple[tuple[type[IntegrationError], Outcome], ...] = (
    (RateLimited, "throttled"),
    (CircuitOpen, "circuit_open"),
    (ServiceTimeout, "timeout"),
    (ServerError, "server_error"),
)


def model_service(model_id: str) -> str:
    return f"bedrock:{model_id}"


@dataclasses.dataclass
class _Plan:
    model_id: str
    max_tokens: int
    reserve: int
    price: Any
    max_cost_pusd: int = 0  # what the budgets hold while this model is called


def reservation_ttl(settings: BedrockSettings, policy: Any) -> float:
    """How long a budget reservation counts before it is presumed abandoned.

    Too short and a slow live call's hold lapses (concurrent calls could then overspend);
    too long and a killed process keeps that much budget blocked (it frees by itself).
    Overspending a hard budget is the worse failure, so: twice the longest one model's
    attempt can take (TPM wait, then every try at the full timeout with the longest
    backoff or Retry-After between), and never under 15 minutes.
    """
    tries = (settings.last_model_retries or policy.retry_attempts) + 1
    pause = max(policy.backoff_max_seconds, policy.retry_after_max_seconds)
    attempt = settings.limit_wait_seconds + tries * (policy.timeout_seconds + pause)
    return max(900.0, 2 * attempt)


class BedrockInvoker:
    """Runs invocations for one configuration; thread-safe, shared per process."""

    def __init__(
        self,
        settings: BedrockSettings,
        *,
        layer: CallLayer,
        client: Any,
        ledger: CostLedger,
        region: str,
        tokens: TokenLeaser | None = None,
    ) -> None:
        self.settings = settings
        self.layer = layer
        self.client = client
        self.region = region
        self.guard = BudgetGuard(
            settings, ledger, reservation_ttl=reservation_ttl(settings, layer.policy("bedrock"))
        )
        self.tokens = tokens or token_leaser()

    # -- validation --------------------------------------------------------------------
    def _conversation(self, request: InvocationRequest) -> list[Message]:
        messages = request.conversation()
        if not messages:
            raise InvalidInvocation("empty prompt: give a non-blank prompt or messages")
        if messages[0].role != "user" or messages[-1].role != "user":
            raise InvalidInvocation("a conversation must start and end with a user message")
        if any(not m.text.strip() for m in messages):
            raise InvalidInvocation("a message is blank")
        return messages

    def _plan(
        self, request: InvocationRequest, messages: list[Message]
    ) -> tuple[list[_Plan], list[ModelAttempt]]:
        chain = [request.model] if request.model else (request.models or self.settings.models)
        estimate = estimate_tokens(messages, request.system)
        bound = input_token_bound(messages, request.system)
        plans: list[_Plan] = []
        skipped: list[ModelAttempt] = []
        for model_id in chain:
            if not self.settings.is_known(model_id):
                raise InvalidInvocation(
                    f"unknown model id {model_id!r}: not in the price table or model_limits"
                )
            price = self.settings.price_for(model_id, self.region)
            if price is None and not self.settings.allow_unpriced_models:
                raise InvalidInvocation(f"no price configured for model {model_id!r}")
            limits = self.settings.limits_for(model_id)
            max_tokens = request.max_tokens or min(
                self.settings.default_max_tokens, limits.max_output_tokens
            )
            if max_tokens > limits.max_output_tokens or estimate > limits.max_input_tokens:
                skipped.append(
                    ModelAttempt(
                        model_id=model_id,
                        outcome="skipped_too_many_tokens",
                        detail=f"~{estimate} input (max {limits.max_input_tokens}), "
                        f"{max_tokens} output (max {limits.max_output_tokens})",
                    )
                )
                continue
            # Bedrock refuses more input than the model takes, so that caps the bound.
            most = max_cost_pusd(price, min(bound, limits.max_input_tokens), max_tokens)
            plans.append(_Plan(model_id, max_tokens, estimate + max_tokens, price, most))
        if not plans:
            raise InvalidInvocation(
                "too many tokens for every model: "
                + "; ".join(f"{s.model_id}: {s.detail}" for s in skipped)
            )
        return plans, skipped

    def _service(self, model_id: str) -> str:
        """Register `bedrock:<model>` with the layer: own breaker, RPM limit and records."""
        name = model_service(model_id)
        if name not in self.layer.policies:
            base = self.layer.policy("bedrock")
            rpm = self.settings.limits_for(model_id).requests_per_minute
            self.layer.policies[name] = dataclasses.replace(
                base,
                name=name,
                rate_limit_per_minute=rpm or base.rate_limit_per_minute,
                # The chain is the fallback; a made-up answer never is.
                fallback_enabled=False,
            )
        return name

    def validate(self, request: InvocationRequest) -> list[str]:
        """The models that would be tried; InvalidInvocation for input no model can take."""
        plans, _ = self._plan(request, self._conversation(request))
        return [p.model_id for p in plans]

    # -- one invocation ----------------------------------------------------------------
    def invoke(
        self, request: InvocationRequest, *, flow_run_id: str | None = None
    ) -> InvocationResult:
        started = time.perf_counter()
        messages = self._conversation(request)
        plans, outcomes = self._plan(request, messages)
        invocation_id = uuid.uuid4().hex
        for index, plan in enumerate(plans):
            last = index == len(plans) - 1
            held = self.guard.reserve(request.scope, plan.max_cost_pusd, request.budget_override)
            try:
                attempt = self._try(plan, request, messages, last)
            except BaseException:
                self._release(held)
                raise
            if isinstance(attempt, ModelAttempt):
                self._release(held)  # before the next model reserves its own
                outcomes.append(attempt)
                continue
            parsed, api, call_ms, tries = attempt
            outcomes.append(
                ModelAttempt(
                    model_id=plan.model_id, outcome="ok", latency_ms=call_ms, attempts=tries
                )
            )
            cost = cost_of(plan.price, parsed.input_tokens, parsed.output_tokens)
            result = InvocationResult(
                text=parsed.text,
                stop_reason=parsed.stop_reason,
                model_id=plan.model_id,
                api=api,
                input_tokens=parsed.input_tokens,
                output_tokens=parsed.output_tokens,
                latency_ms=(time.perf_counter() - started) * 1000,
                cost_usd=cost,
                cost_unknown=plan.price is None,
                over_budget=held is not None and held.over_budget,
                fallback_used=len(outcomes) > 1,  # an earlier choice was skipped or failed
                attempts=outcomes,
                invocation_id=invocation_id,
                conversation_id=request.conversation_id,
                scope=request.scope,
                region=self.region,
            )
            self._account(request, result, flow_run_id, held)
            return result
        raise AllModelsFailed("every model of the chain failed", outcomes=outcomes)

    def _release(self, held: Reservation | None) -> None:
        """Release a reservation on a failure path, never masking the failure itself: if
        the store refuses too, the hold expires after its TTL."""
        try:
            self.guard.release(held)
        except Exception:
            logger.exception("could not release a budget reservation; it lapses at its TTL")

    def _try(
        self, plan: _Plan, request: InvocationRequest, messages: list[Message], last: bool
    ) -> ModelAttempt | tuple[Any, Any, float, int]:
        model_id = plan.model_id
        limits = self.settings.limits_for(model_id)
        policy = self.layer.policy(self._service(model_id))
        tpm = limits.tokens_per_minute
        reserved = 0
        if tpm:
            try:
                reserved = self.tokens.reserve(
                    tpm_service(model_id),
                    tpm,
                    plan.reserve,
                    timeout=self.settings.limit_wait_seconds,
                )
            except RateLimited as exc:
                return ModelAttempt(
                    model_id=model_id, outcome="rate_limited_locally", detail=str(exc.args[0])
                )
        # None on the last model = the service's configured retries (see module docstring).
        retries = self.settings.last_model_retries if last else 0
        began = time.perf_counter()
        try:
            if request.api == "invoke_model":
                body = invoke_body(
                    model_id, messages, request.system, plan.max_tokens, request.temperature
                )
                res = self.layer.call(
                    policy.name,
                    "invoke_model",
                    self.client.invoke_model,
                    payload=body,
                    retries=retries,
                    modelId=model_id,
                    body=body,
                    contentType="application/json",
                    accept="application/json",
                )
                parsed = parse_invoke(model_id, res.value)
            else:
                kwargs = converse_kwargs(
                    model_id, messages, request.system, plan.max_tokens, request.temperature
                )
                res = self.layer.call(
                    policy.name,
                    "converse",
                    self.client.converse,
                    payload=json.dumps(kwargs["messages"]),
                    retries=retries,
                    **kwargs,
                )
                parsed = parse_converse(res.value)
        except IntegrationError as exc:
            if tpm:
                self.tokens.settle(tpm_service(model_id), tpm, reserved, 0)
            if isinstance(exc, InvalidInvocation):
                raise
            if isinstance(exc, ClientError) and exc.code == "ValidationException":
                raise InvalidInvocation(
                    f"{model_id} refused the request: {exc.args[0]}",
                    status=exc.status,
                    code=exc.code,
                    attempts=exc.attempts,
                    operation=exc.operation,
                ) from exc
            outcome: Outcome = next(
                (name for kind, name in _OUTCOMES if isinstance(exc, kind)),
                "rejected" if isinstance(exc, ClientError) else "unavailable",
            )
            logger.warning("bedrock model %s: %s; trying the next model", model_id, outcome)
            return ModelAttempt(
                model_id=model_id,
                outcome=outcome,
                detail=f"{type(exc).__name__}: {exc.code or exc.args[0]}",
                latency_ms=(time.perf_counter() - began) * 1000,
                attempts=exc.attempts,
            )
        if tpm:
            used = parsed.input_tokens + parsed.output_tokens
            self.tokens.settle(tpm_service(model_id), tpm, reserved, used)
        return parsed, request.api, res.latency_ms, res.attempts

    def _account(
        self,
        request: InvocationRequest,
        result: InvocationResult,
        flow_run_id: str | None,
        held: Reservation | None,
    ) -> None:
        entry = LedgerEntry(
            invocation_id=result.invocation_id,
            scope=result.scope,
            model_id=result.model_id,
            region=result.region,
            api=result.api,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cost_pusd=to_pusd(result.cost_usd),
            cost_unknown=result.cost_unknown,
            latency_ms=result.latency_ms,
            flow_run_id=flow_run_id,
            conversation_id=result.conversation_id,
            over_budget=result.over_budget,
        )
        try:
            crossings = self.guard.record(entry, held)
        except BaseException:
            self._release(held)  # nothing of the call was committed
            raise
        for crossing in crossings:
            deliver_alert(crossing)
        if self.settings.langsmith.enabled:
            from nura.bedrock.tracing import trace_invocation

            trace_invocation(self.settings.langsmith, request, result)

    async def ainvoke(
        self, request: InvocationRequest, *, flow_run_id: str | None = None
    ) -> InvocationResult:
        """`invoke` off the event loop (boto3 blocks)."""
        return await anyio.to_thread.run_sync(lambda: self.invoke(request, flow_run_id=flow_run_id))


# -- process-wide wiring ---------------------------------------------------------------
_invokers: dict[tuple[int, int], BedrockInvoker] = {}
_lock = threading.Lock()


def _credentials(settings: BedrockSettings, endpoint_url: str | None) -> tuple[Any, Any, Any]:
    """(AwsCredentials or None, region override, endpoint override) from the settings block."""
    if settings.settings_block:
        from nura.bedrock.blocks import BedrockSettings as BedrockBlock

        block: Any = BedrockBlock.load(settings.settings_block)
        return block.aws_credentials, block.region, block.endpoint_url or endpoint_url
    if endpoint_url:
        import boto3

        if boto3.session.Session().get_credentials() is None:
            # A local stand-in checks no signature: placeholder keys, never real ones.
            from prefect_aws import AwsCredentials
            from pydantic import SecretStr

            return (
                AwsCredentials(
                    aws_access_key_id="sandbox", aws_secret_access_key=SecretStr("sandbox")
                ),
                None,
                endpoint_url,
            )
    return None, None, endpoint_url


def get_invoker() -> BedrockInvoker:
    """The invoker of this process's configuration and call layer."""
    from nura.core.aws import boto_client
    from nura.core.runtime import get_call_layer, get_config, store_url
    from nura.core.stores.db import get_engine

    cfg = get_config()
    layer = get_call_layer()
    key = (id(cfg), id(layer))
    with _lock:
        invoker = _invokers.get(key)
        if invoker is not None:
            return invoker
        settings = cfg.external_services.aws.bedrock
        credentials, region, endpoint = _credentials(settings, settings.endpoint_url or None)
        region = region or settings.region or cfg.external_services.aws.region
        client = boto_client(
            "bedrock-runtime",
            credentials=credentials,
            region=region,
            endpoint_url=endpoint,
            timeout=layer.policy("bedrock").timeout_seconds,
        )
        invoker = BedrockInvoker(
            settings,
            layer=layer,
            client=client,
            ledger=CostLedger(get_engine(store_url(cfg))),
            region=region,
        )
        _invokers.clear()
        _invokers[key] = invoker
        return invoker


def reset_invokers() -> None:
    """Forget cached invokers (tests; after a config reload `get_invoker` rebuilds anyway)."""
    with _lock:
        _invokers.clear()


def _flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


# -- Prefect tasks ---------------------------------------------------------------------
async def invoke_bedrock(request: InvocationRequest) -> InvocationResult:
    """Invoke the model chain once (the task other flows use; async, off the event loop)."""
    return await get_invoker().ainvoke(request, flow_run_id=_flow_run_id())


def invoke_bedrock_sync(request: InvocationRequest) -> InvocationResult:
    """The same for synchronous flows."""
    return get_invoker().invoke(request, flow_run_id=_flow_run_id())


def publish_cost_artifact(
    results: list[InvocationResult],
    key: str = "bedrock-costs",
    failed: list[ModelAttempt] | None = None,
) -> Decimal:
    """A table artifact of the run's model calls (every model tried) and its total cost.

    `failed`: the outcomes of an invocation that no model answered (nothing was billed).
    """
    from prefect.artifacts import create_table_artifact

    rows: list[dict[str, Any]] = []
    total = Decimal(0)
    for result in results:
        for attempt in result.attempts:
            answered = attempt.model_id == result.model_id and attempt.outcome == "ok"
            rows.append(
                {
                    "invocation": result.invocation_id[:12],
                    "model": attempt.model_id,
                    "outcome": attempt.outcome
                    + (" (fallback)" if answered and result.fallback_used else ""),
                    "input_tokens": result.input_tokens if answered else 0,
                    "output_tokens": result.output_tokens if answered else 0,
                    "cost_usd": (
                        ("unknown" if result.cost_unknown else f"{result.cost_usd:f}")
                        if answered
                        else "0"
                    ),
                    "latency_ms": round(attempt.latency_ms, 1),
                    "detail": attempt.detail,
                }
            )
        total += result.cost_usd
    for attempt in failed or []:
        rows.append(
            {
                "invocation": "FAILED",
                "model": attempt.model_id,
                "outcome": attempt.outcome,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_usd": "0",
                "latency_ms": round(attempt.latency_ms, 1),
                "detail": attempt.detail,
            }
        )
    rows.append(
        {
            "invocation": "TOTAL",
            "model": "",
            "outcome": f"{len(results)} invocation(s)",
            "input_tokens": sum(r.input_tokens for r in results),
            "output_tokens": sum(r.output_tokens for r in results),
            "cost_usd": f"{total:f}",
            "latency_ms": "",
            "detail": "",
        }
    )
    create_table_artifact(
        key=key, table=rows, description=f"Bedrock calls of this run: total ${total:f}"
    )
    return total
