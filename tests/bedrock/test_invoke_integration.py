"""The invocation path against the stand-in over real HTTP, limits on a real Prefect server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn
from nura.bedrock.invoke import get_invoker
from nura.bedrock.models import (
    AllModelsFailed,
    BudgetExceeded,
    InvalidInvocation,
    InvocationRequest,
    Message,
)
from nura.config.sections.bedrock import BedrockSettings
from nura.core.runtime import get_call_layer, store_url
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import CostLedger, to_pusd
from tests.bedrock.conftest import HAIKU, SONNET, TITAN

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _prefect(prefect_server):  # type: ignore[no-untyped-def]
    return prefect_server


def ledger() -> CostLedger:
    return CostLedger(get_engine(store_url()))


def test_first_model_answers_with_reported_tokens_and_exact_cost(bedrock_config, standin) -> None:
    bedrock_config()
    result = get_invoker().invoke(InvocationRequest(prompt="What is Prefect?", max_tokens=200))
    assert result.model_id == SONNET and not result.fallback_used
    assert result.input_tokens > 0 and result.output_tokens > 0
    assert (
        result.cost_usd
        == (
            Decimal(result.input_tokens) * Decimal("0.003")
            + Decimal(result.output_tokens) * Decimal("0.015")
        )
        / 1000
    )
    assert [a.outcome for a in result.attempts] == ["ok"]
    rows = ledger().calls()
    assert len(rows) == 1 and rows[0]["cost_pusd"] == to_pusd(result.cost_usd)
    assert standin.calls(SONNET) == 1


def test_throttled_model_falls_back_at_once(bedrock_config, standin: BedrockStandIn) -> None:
    bedrock_config()
    standin.script(SONNET, throttle=-1)
    result = get_invoker().invoke(InvocationRequest(prompt="hello"))
    assert result.model_id == HAIKU and result.fallback_used
    assert [(a.model_id, a.outcome) for a in result.attempts] == [
        (SONNET, "throttled"),
        (HAIKU, "ok"),
    ]
    assert standin.calls(SONNET) == 1  # retries=0 before a fallback: no backoff sleep
    assert [r["model_id"] for r in ledger().calls()] == [HAIKU]  # throttles bill nothing


def test_throttling_everywhere_lists_each_models_outcome(bedrock_config, standin) -> None:
    bedrock_config()
    standin.script("*", throttle=-1)
    with pytest.raises(AllModelsFailed) as err:
        get_invoker().invoke(InvocationRequest(prompt="hello"))
    outcomes = [(o.model_id, o.outcome) for o in err.value.outcomes]
    assert outcomes == [(SONNET, "throttled"), (HAIKU, "throttled"), (TITAN, "throttled")]
    for model in (SONNET, HAIKU, TITAN):
        assert model in str(err.value)
    # Only the last model is retried (retry_attempts: 1 in this config).
    # Only the last model is retried (its 429s by the call layer's own throttling budget).
    assert (standin.calls(SONNET), standin.calls(HAIKU)) == (1, 1) and standin.calls(TITAN) >= 2
    assert ledger().calls() == []


def test_validation_error_does_not_fall_back(bedrock_config, standin) -> None:
    bedrock_config()
    standin.script(SONNET, validation=1)
    with pytest.raises(InvalidInvocation) as err:
        get_invoker().invoke(InvocationRequest(prompt="hello"))
    assert err.value.code == "ValidationException"
    assert standin.calls(SONNET) == 1 and standin.calls(HAIKU) == 0


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"prompt": "   "},
        {"prompt": "hi", "model": SONNET, "max_tokens": 5000},
        {"prompt": "x" * 40_000, "model": TITAN},
        {"prompt": "hi", "model": "anthropic.claude-9-imaginary-v1:0"},
        {"messages": [Message(role="assistant", text="hi")]},
    ],
    ids=["empty", "max-tokens", "input-too-long", "unknown-model", "no-user-turn"],
)
def test_bad_input_is_refused_before_any_call(bedrock_config, standin, request_kwargs) -> None:
    bedrock_config()
    with pytest.raises(InvalidInvocation):
        get_invoker().invoke(InvocationRequest(**request_kwargs))
    assert standin.calls() == 0


def test_model_that_cannot_take_the_request_is_skipped(bedrock_config, standin) -> None:
    bedrock_config(models=[TITAN, HAIKU])
    result = get_invoker().invoke(InvocationRequest(prompt="x" * 40_000, max_tokens=100))
    assert result.model_id == HAIKU and result.fallback_used
    assert result.attempts[0].outcome == "skipped_too_many_tokens"
    assert standin.calls(TITAN) == 0


def test_open_breaker_skips_the_model_without_calling_it(bedrock_config, standin) -> None:
    bedrock_config(circuit_breaker_threshold=1)
    standin.script(SONNET, server_error=-1)
    first = get_invoker().invoke(InvocationRequest(prompt="one"))
    assert first.attempts[0].outcome == "server_error" and first.model_id == HAIKU
    second = get_invoker().invoke(InvocationRequest(prompt="two"))
    assert second.attempts[0].outcome == "circuit_open"
    assert standin.calls(SONNET) == 1  # the open breaker kept the second call off the wire
    assert get_call_layer().breakers.snapshot(f"bedrock:{SONNET}", fresh=True).state == "open"
    assert get_call_layer().breakers.snapshot(f"bedrock:{HAIKU}", fresh=True).state == "closed"


@pytest.mark.parametrize("model", [SONNET, TITAN])
def test_invoke_model_bodies_through_the_wire(bedrock_config, standin, model) -> None:
    bedrock_config()
    result = get_invoker().invoke(
        InvocationRequest(prompt="Tell me about budgets", model=model, api="invoke_model")
    )
    assert result.api == "invoke_model" and result.model_id == model
    assert result.input_tokens > 0 and result.output_tokens > 0
    assert result.stop_reason in ("end_turn", "FINISH")


def test_ledger_matches_tokens_times_prices_exactly(bedrock_config, standin, store_url) -> None:
    bedrock_config(store=store_url)
    standin.script(SONNET, throttle=3)
    prices = BedrockSettings()
    expected = Decimal(0)
    for i in range(8):
        r = get_invoker().invoke(InvocationRequest(prompt=f"question {i} " * (i + 1)))
        price = prices.price_for(r.model_id, "us-east-1")
        assert price is not None
        expected += (
            r.input_tokens * price.input_per_1k + r.output_tokens * price.output_per_1k
        ) / 1000
    rows = ledger().calls()
    assert len(rows) == 8
    assert sum(row["cost_pusd"] for row in rows) == to_pusd(expected)
    assert {row["model_id"] for row in rows} == {SONNET, HAIKU}


def test_budget_alerts_at_80_then_blocks_until_overridden(bedrock_config, standin) -> None:
    from nura.core.stores.notifications import recent_notifications

    probe = InvocationRequest(prompt="price me", model=HAIKU, scope="team-a", max_tokens=64)
    bedrock_config()
    one = get_invoker().invoke(probe).cost_usd  # one call's cost (answers are deterministic)
    # A budget of 2.4 calls from now on: call 1 reaches 42 %, call 2 83 %; a third call's
    # maximum cost (reserved before it runs) no longer fits, so only an override runs it.
    bedrock_config(budgets={"scopes": {"team-a": {"daily_usd": str(one * Decimal("2.4"))}}})
    invoker = get_invoker()

    def alerts() -> list[str]:
        rows = recent_notifications(get_engine(store_url()))
        return sorted({n["title"] for n in rows if n["event"] == "nura.budget.threshold"})

    invoker.invoke(probe)
    assert alerts() == []
    invoker.invoke(probe)
    assert alerts() == ["Bedrock budget 80% reached: team-a (daily)"]
    calls_before = standin.calls()
    with pytest.raises(BudgetExceeded):
        invoker.invoke(probe)  # a hard budget is never overspent: blocked before any call
    assert standin.calls() == calls_before
    over = invoker.invoke(probe.model_copy(update={"budget_override": True}))  # 125 %
    assert over.over_budget and standin.calls() == calls_before + 1
    assert alerts() == [
        "Bedrock budget 100% reached: team-a (daily)",
        "Bedrock budget 80% reached: team-a (daily)",
    ]
    with pytest.raises(BudgetExceeded):
        invoker.invoke(probe)
    assert len(alerts()) == 2  # each threshold alerts once per period
    # Another scope is not blocked by team-a's budget.
    assert invoker.invoke(probe.model_copy(update={"scope": "team-b"})).model_id == HAIKU


def test_limits_are_global_concurrency_limits_and_tpm_saturation_falls_back(
    bedrock_config, standin, prefect_server
) -> None:
    import httpx

    # An inference-profile id of its own: limits of other tests (same server) do not carry over.
    profile = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    bedrock_config(
        models=[profile, HAIKU],
        limit_wait_seconds=0.5,
        model_limits={
            profile: {"requests_per_minute": 600, "tokens_per_minute": 1200},  # burst 200 tokens
            HAIKU: {"requests_per_minute": 60000, "tokens_per_minute": 10_000_000},
        },
    )
    invoker = get_invoker()
    first = invoker.invoke(InvocationRequest(prompt="a" * 200, max_tokens=150))
    assert first.model_id == profile
    second = invoker.invoke(InvocationRequest(prompt="b" * 200, max_tokens=150))
    assert second.model_id == HAIKU
    assert second.attempts[0].outcome == "rate_limited_locally"
    assert standin.calls(profile) == 1
    api = prefect_server.api_url
    tpm = httpx.get(f"{api}/v2/concurrency_limits/nura-rate-bedrock-tpm:{profile}").json()
    rpm = httpx.get(f"{api}/v2/concurrency_limits/nura-rate-bedrock:{profile}").json()
    assert tpm["slot_decay_per_second"] == pytest.approx(1200 / 60 * 100)
    assert tpm["limit"] == 200 * 100
    assert rpm["slot_decay_per_second"] == pytest.approx(600 / 60 * 100)
