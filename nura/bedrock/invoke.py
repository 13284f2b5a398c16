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
   tried.

What falls through to the next model: throttling (`ThrottlingException`,
`ModelNotReadyException`), an open breaker, timeouts (`ModelTimeoutException` 408 included),
5xx and `ModelErrorException` (424), an unreadable answer, and every *model-specific*
refusal: a retired or invalid model id, access denied, "on-demand throughput isn't
supported" (a profile-only model), a system prompt or context the model cannot take. The
permanent ones (retired, invalid, no access, profile-only) also open the model's breaker
at once, so it is not called again until its cool-down. A `ValidationException` about the
request as a whole is `InvalidInvocation` (every model would refuse it); the usual ones
(roles not alternating, blank text) are caught before anything is sent. Models that
Bedrock's catalogue lists as LEGACY or not at all are skipped before the call
(`nura.bedrock.lifecycle`), with the reason in the outcomes and the run log.

Spend: a call abandoned on a timeout, or a 200 whose body cannot be read, is written to
the ledger as *estimated* spend (input bound + max output at the model's price, flagged
`estimated`), settling that attempt's budget hold, so budgets stay conservative; a retry
holds its own budget first. An answer without `usage` is `cost_unknown` and billed at the
same estimate, never $0. Each model's read timeout grows with `max_tokens`.

Retries: every model but the last is called with `retries=0`, so a throttled model hands
over to the next one at once instead of sleeping through backoff while a healthy model
waits; the last model has nothing to fall back to, so it gets the service's retries (with
the layer's jittered, Retry-After-honouring backoff), or `last_model_retries`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio

from nura.bedrock.attempt import ModelCall, Plan, classify_refusal, model_service
from nura.bedrock.lifecycle import LifecycleGate
from nura.bedrock.limits import TokenLeaser, token_leaser
from nura.bedrock.models import (
    AllModelsFailed,
    InvalidInvocation,
    InvocationRequest,
    InvocationResult,
    Message,
    ModelAttempt,
)
from nura.bedrock.prices import PriceBook
from nura.bedrock.pricing import (
    BudgetGuard,
    Reservation,
    cost_of,
    deliver_alert,
    input_token_bound,
    max_cost_pusd,
)
from nura.bedrock.wire import (
    check_conversation,
    estimate_tokens,
)
from nura.config.sections.bedrock import BedrockSettings
from nura.core.layer import CallLayer
from nura.core.stores.ledger import CostLedger, LedgerEntry, to_pusd, to_usd

logger = logging.getLogger("nura.bedrock")
__all__ = [
    "BedrockInvoker",
    "classify_refusal",
    "get_invoker",
    "invoke_bedrock",
    "invoke_bedrock_sync",
    "model_service",
    "publish_cost_artifact",
    "reset_invokers",
]


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
    longest = max(
        [settings.default_max_tokens]
        + [m.max_output_tokens for m in settings.model_limits.values()]
    )
    timeout = settings.read_timeout(longest, policy.timeout_seconds)
    attempt = settings.limit_wait_seconds + tries * (timeout + pause)
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
        client_for_timeout: Any = None,
        lifecycle: LifecycleGate | None = None,
    ) -> None:
        self.settings = settings
        self.layer = layer
        self.client = client
        # timeout seconds -> a runtime client reading that long (None: `client` for all).
        self.client_for_timeout = client_for_timeout
        self.lifecycle = lifecycle
        self.region = region
        self.guard = BudgetGuard(
            settings, ledger, reservation_ttl=reservation_ttl(settings, layer.policy("bedrock"))
        )
        self.prices = PriceBook(settings, ledger)
        self._clients: dict[float, Any] = {}
        self.tokens = tokens or token_leaser()

    # -- validation --------------------------------------------------------------------
    def _conversation(self, request: InvocationRequest) -> list[Message]:
        messages = request.conversation()
        problem = check_conversation(messages)
        if problem is not None:  # Bedrock would refuse it for every model: nothing is sent
            raise InvalidInvocation(problem)
        return messages

    def _plan(
        self, request: InvocationRequest, messages: list[Message]
    ) -> tuple[list[Plan], list[ModelAttempt]]:
        chain = [request.model] if request.model else (request.models or self.settings.models)
        estimate = estimate_tokens(messages, request.system)
        bound = input_token_bound(messages, request.system)
        plans: list[Plan] = []
        skipped: list[ModelAttempt] = []
        for model_id in chain:
            if not self.settings.is_known(model_id):  # noqa: SIM102 - one rule per check
                raise InvalidInvocation(
                    f"unknown model id {model_id!r}: not in the price table or model_limits"
                )
            price = self.prices.price_for(model_id, self.region)
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
            reserve = estimate + max_tokens * limits.output_burndown
            plans.append(Plan(model_id, max_tokens, reserve, price, most))
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
            limits = self.settings.limits_for(model_id)
            self.layer.policies[name] = dataclasses.replace(
                base,
                name=name,
                rate_limit_per_minute=limits.requests_per_minute or base.rate_limit_per_minute,
                # The longest answer this model may give must fit (the total deadline is
                # a multiple of this); each call reads for as long as its own max_tokens.
                timeout_seconds=self.settings.read_timeout(
                    limits.max_output_tokens, base.timeout_seconds
                ),
                # The chain is the fallback; a made-up answer never is.
                fallback_enabled=False,
            )
        return name

    def _client(self, max_tokens: int) -> Any:
        if self.client_for_timeout is None:
            return self.client
        base = self.layer.policy("bedrock").timeout_seconds
        timeout = self.settings.read_timeout(max_tokens, base)
        client = self._clients.get(timeout)
        if client is None:
            client = self._clients.setdefault(timeout, self.client_for_timeout(timeout))
        return client

    def validate(self, request: InvocationRequest) -> list[str]:
        """The models that would be tried; InvalidInvocation for input no model can take."""
        plans, _ = self._plan(request, self._conversation(request))
        return [p.model_id for p in plans]

    # -- one invocation ----------------------------------------------------------------
    def invoke(
        self,
        request: InvocationRequest,
        *,
        flow_run_id: str | None = None,
        on_text: Callable[[str], Any] | None = None,
    ) -> InvocationResult:
        """Run the chain once; with `api="converse_stream"`, `on_text` gets each piece of
        the answer as it arrives."""
        started = time.perf_counter()
        messages = self._conversation(request)
        plans, outcomes = self._plan(request, messages)
        invocation_id = uuid.uuid4().hex
        skips = self.lifecycle.skips([p.model_id for p in plans]) if self.lifecycle else {}
        live = [p for p in plans if p.model_id not in skips]
        estimated = Decimal(0)
        for plan in plans:
            finding = skips.get(plan.model_id)
            if finding is not None:
                logger.warning(
                    "bedrock model %s skipped: %s (%s)",
                    plan.model_id,
                    finding.status,
                    finding.detail,
                )
                outcomes.append(
                    ModelAttempt(
                        model_id=plan.model_id,
                        outcome="skipped_lifecycle",
                        detail=f"{finding.status}: {finding.detail}",
                    )
                )
                continue
            last = plan is live[-1]
            call = ModelCall(self, plan, request, messages, last, invocation_id, flow_run_id)
            call.on_text = on_text
            attempt = call.run()
            estimated += call.estimated_usd
            if isinstance(attempt, ModelAttempt):
                logger.warning(
                    "bedrock model %s: %s (%s); trying the next model",
                    plan.model_id,
                    attempt.outcome,
                    attempt.detail,
                )
                outcomes.append(attempt)
                continue
            parsed, api, call_ms, tries, held = attempt
            outcomes.append(
                ModelAttempt(
                    model_id=plan.model_id, outcome="ok", latency_ms=call_ms, attempts=tries
                )
            )
            if parsed.usage_known:
                cost = cost_of(plan.price, parsed.input_tokens, parsed.output_tokens)
            else:  # no usage (or a cut stream): unknown, billed at the estimate (never $0)
                cost = to_usd(plan.max_cost_pusd)
                logger.warning(
                    "bedrock model %s: %s; billed as estimated ($%s)",
                    plan.model_id,
                    "stream cut off midway" if parsed.cut else "no usage in the answer",
                    cost,
                )
            result = InvocationResult(
                text=parsed.text,
                stop_reason=parsed.stop_reason,
                model_id=plan.model_id,
                api=api,
                input_tokens=parsed.input_tokens,
                output_tokens=parsed.output_tokens,
                latency_ms=(time.perf_counter() - started) * 1000,
                cost_usd=cost,
                cost_unknown=plan.price is None or not parsed.usage_known,
                cost_estimated=not parsed.usage_known,
                estimated_usd=estimated,
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
            estimated=result.cost_estimated,
            detail=(
                ("stream cut off midway" if result.stop_reason == "cut" else "no usage reported")
                + ": estimated"
                if result.cost_estimated
                else None
            ),
        )
        self._record(entry, held)
        if self.settings.langsmith.enabled:
            from nura.bedrock.tracing import trace_invocation

            trace_invocation(self.settings.langsmith, request, result)

    def _record(self, entry: LedgerEntry, held: Reservation | None) -> None:
        try:
            crossings = self.guard.record(entry, held)
        except BaseException:
            self._release(held)  # nothing of the call was committed
            raise
        for crossing in crossings:
            deliver_alert(crossing)

    async def ainvoke(
        self,
        request: InvocationRequest,
        *,
        flow_run_id: str | None = None,
        on_text: Callable[[str], Any] | None = None,
    ) -> InvocationResult:
        """`invoke` off the event loop (boto3 blocks)."""
        return await anyio.to_thread.run_sync(
            lambda: self.invoke(request, flow_run_id=flow_run_id, on_text=on_text)
        )


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
        base_timeout = layer.policy("bedrock").timeout_seconds

        def runtime_client(timeout: float) -> Any:
            return boto_client(
                "bedrock-runtime",
                credentials=credentials,
                region=region,
                endpoint_url=endpoint,
                timeout=timeout,
            )

        gate = None
        if settings.lifecycle_check:
            control = boto_client(
                "bedrock",
                credentials=credentials,
                region=region,
                endpoint_url=endpoint,
                timeout=base_timeout,
            )
            gate = LifecycleGate(
                control, region=region, ttl=settings.lifecycle_ttl_seconds, layer=layer
            )
        invoker = BedrockInvoker(
            settings,
            layer=layer,
            client=runtime_client(base_timeout),
            client_for_timeout=runtime_client,
            lifecycle=gate,
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
async def invoke_bedrock(
    request: InvocationRequest, on_text: Callable[[str], Any] | None = None
) -> InvocationResult:
    """Invoke the model chain once (the task other flows use; async, off the event loop).
    `on_text`: with `api="converse_stream"`, called with each piece as it arrives."""
    return await get_invoker().ainvoke(request, flow_run_id=_flow_run_id(), on_text=on_text)


def invoke_bedrock_sync(
    request: InvocationRequest, on_text: Callable[[str], Any] | None = None
) -> InvocationResult:
    """The same for synchronous flows."""
    return get_invoker().invoke(request, flow_run_id=_flow_run_id(), on_text=on_text)


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
                        (
                            f"{result.cost_usd:f} (estimated)"
                            if result.cost_estimated
                            else "unknown"
                            if result.cost_unknown
                            else f"{result.cost_usd:f}"
                        )
                        if answered
                        else "estimated"
                        if attempt.outcome in ("timeout", "unreadable")
                        else "0"
                    ),
                    "latency_ms": round(attempt.latency_ms, 1),
                    "detail": attempt.detail,
                }
            )
        total += result.cost_usd + result.estimated_usd  # abandoned attempts count too
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
