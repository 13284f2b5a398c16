"""A chain that falls back: model-specific refusals, timeouts, lifecycle, estimated spend.

Against the stand-in over real HTTP (it refuses what Bedrock refuses), limits on a real
Prefect server, the ledger in the test's store.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn
from nura.bedrock.invoke import get_invoker, model_service
from nura.bedrock.models import AllModelsFailed, InvalidInvocation, InvocationRequest, Message
from nura.core.runtime import get_call_layer, store_url
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import CostLedger, to_pusd
from tests.bedrock.conftest import NOVA

pytestmark = pytest.mark.integration

RETIRED = "anthropic.claude-3-haiku-20240307-v1:0"  # end of life on Bedrock 2026-09-10
MICRO = "amazon.nova-micro-v1:0"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"  # no system prompts (AWS's features table)
HIGH = {"requests_per_minute": 60000, "tokens_per_minute": 10_000_000}


def price(i: str, o: str) -> dict[str, str]:
    return {"input_per_1k": i, "output_per_1k": o}


PRICES = {
    RETIRED: price("0.00025", "0.00125"),
    MICRO: price("0.000035", "0.00014"),
    NOVA: price("0.0008", "0.0032"),
    MISTRAL: price("0.00015", "0.0002"),
}


@pytest.fixture(autouse=True)
def _prefect(prefect_server):  # type: ignore[no-untyped-def]
    return prefect_server


def configure(bedrock_config, models: list[str], **extra: Any):  # type: ignore[no-untyped-def]
    limits = {m: dict(HIGH) for m in models}
    limits.update(extra.pop("model_limits", {}))
    return bedrock_config(
        models=models,
        prices=extra.pop("prices", PRICES),
        model_limits=limits,
        lifecycle_check=extra.pop("lifecycle_check", False),
        **extra,
    )


def ledger() -> CostLedger:
    return CostLedger(get_engine(store_url()))


def test_retired_then_no_system_prompt_then_answer(
    bedrock_config, standin: BedrockStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's "Done when": the first model is retired, the second rejects a system
    prompt, the third answers; one billed ledger row; the run log says why each skipped."""
    configure(bedrock_config, [RETIRED, MICRO, NOVA])
    # Our feature table thinks Nova Micro takes system prompts; the service says no.
    standin.catalog(MICRO, system=False)
    caplog.set_level(logging.WARNING, logger="nura.bedrock")
    result = get_invoker().invoke(InvocationRequest(prompt="What is Prefect?", system="Be brief."))
    assert result.model_id == NOVA and result.fallback_used
    assert [(a.model_id, a.outcome) for a in result.attempts] == [
        (RETIRED, "model_unavailable"),
        (MICRO, "model_rejected"),
        (NOVA, "ok"),
    ]
    rows = ledger().calls()
    assert len(rows) == 1 and rows[0]["model_id"] == NOVA and not rows[0]["estimated"]
    assert rows[0]["cost_pusd"] == to_pusd(result.cost_usd) > 0
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{RETIRED}: model_unavailable" in log and "end of its life" in log
    assert f"{MICRO}: model_rejected" in log and "system" in log
    # The retired model's breaker is open: the next invocation does not call it.
    again = get_invoker().invoke(InvocationRequest(prompt="Again?", system="Be brief."))
    assert again.attempts[0].outcome == "circuit_open"
    assert standin.calls(RETIRED) == 1


def test_lifecycle_check_skips_retired_and_legacy_models_before_any_call(
    bedrock_config, standin: BedrockStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    configure(
        bedrock_config,
        [RETIRED, MICRO, "anthropic.claude-haiku-4-5-20251001-v1:0", NOVA],
        lifecycle_check=True,
        prices={**PRICES, "anthropic.claude-haiku-4-5-20251001-v1:0": price("0.0011", "0.0055")},
    )
    standin.catalog(MICRO, lifecycle="LEGACY")
    caplog.set_level(logging.WARNING, logger="nura.bedrock")
    result = get_invoker().invoke(InvocationRequest(prompt="hello"))
    assert result.model_id == NOVA
    outcomes = [(a.model_id, a.outcome, a.detail.split(":")[0]) for a in result.attempts]
    assert outcomes[:3] == [
        (RETIRED, "skipped_lifecycle", "missing"),
        (MICRO, "skipped_lifecycle", "legacy"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "skipped_lifecycle", "on_demand_unsupported"),
    ]
    assert standin.calls(RETIRED) == standin.calls(MICRO) == 0
    assert "skipped: legacy" in caplog.text


def test_system_prompt_is_folded_for_models_without_one(bedrock_config, standin) -> None:
    configure(bedrock_config, [MISTRAL])
    with_system = get_invoker().invoke(InvocationRequest(prompt="hi", system="Answer in French."))
    plain = get_invoker().invoke(InvocationRequest(prompt="hi"))
    assert with_system.model_id == MISTRAL  # not refused: the system text went in the turn
    assert with_system.input_tokens > plain.input_tokens


def test_request_wide_faults_are_refused_before_sending(bedrock_config, standin) -> None:
    configure(bedrock_config, [NOVA])
    turns = [Message(role="user", text="a"), Message(role="user", text="b")]
    with pytest.raises(InvalidInvocation, match="alternate"):
        get_invoker().invoke(InvocationRequest(messages=turns))
    assert standin.calls() == 0


def test_timeout_408_is_retried_on_the_last_model_counted_and_estimated(
    bedrock_config, standin: BedrockStandIn
) -> None:
    configure(bedrock_config, [MICRO, NOVA], retry_attempts=1)
    standin.script(MICRO, timeout=1)
    standin.script(NOVA, timeout=1)
    result = get_invoker().invoke(InvocationRequest(prompt="slow one", max_tokens=100))
    assert [(a.model_id, a.outcome) for a in result.attempts] == [(MICRO, "timeout"), (NOVA, "ok")]
    assert result.attempts[1].attempts == 2  # the last model's 408 was retried
    layer = get_call_layer()
    assert layer.breakers.snapshot(model_service(MICRO), fresh=True).failures == 1
    rows = ledger().calls()
    estimated = [r for r in rows if r["estimated"]]
    assert len(rows) == 3 and len(estimated) == 2  # two abandoned attempts, one answer
    assert result.estimated_usd == sum(Decimal(r["cost_pusd"]) for r in estimated) / 10**12


def test_all_refusals_are_not_retryable_but_throttling_is(bedrock_config, standin) -> None:
    configure(bedrock_config, [RETIRED, NOVA])
    standin.catalog(NOVA, access=False)
    with pytest.raises(AllModelsFailed) as err:
        get_invoker().invoke(InvocationRequest(prompt="hello"))
    assert not err.value.retryable
    assert [o.outcome for o in err.value.outcomes] == ["model_unavailable", "model_unavailable"]
    configure(bedrock_config, [MICRO])
    standin.script(MICRO, throttle=-1)
    with pytest.raises(AllModelsFailed) as err:
        get_invoker().invoke(InvocationRequest(prompt="hello"))
    assert err.value.retryable


def test_unreadable_answer_and_missing_usage(bedrock_config, standin: BedrockStandIn) -> None:
    configure(bedrock_config, [MICRO, NOVA])
    standin.script(MICRO, garbled=1)
    standin.script(NOVA, no_usage=1)
    result = get_invoker().invoke(InvocationRequest(prompt="hello", max_tokens=50))
    assert [a.outcome for a in result.attempts] == ["unreadable", "ok"]
    assert result.cost_unknown and result.cost_estimated and result.cost_usd > 0
    rows = {r["model_id"]: r for r in ledger().calls()}
    assert rows[MICRO]["estimated"] and rows[MICRO]["cost_pusd"] > 0  # billed as estimated
    assert rows[NOVA]["cost_unknown"] and rows[NOVA]["cost_pusd"] == to_pusd(result.cost_usd)


def test_output_tokens_burn_the_tpm_quota_five_times(bedrock_config, standin) -> None:
    configure(bedrock_config, [NOVA], model_limits={NOVA: {**HIGH, "output_burndown": 5}})
    invoker = get_invoker()
    seen: list[tuple[str, int, int]] = []
    real = invoker.tokens

    class Recording:
        def reserve(self, service: str, tpm: float, units: int, timeout: Any = None) -> int:
            got = real.reserve(service, tpm, units, timeout=timeout)
            seen.append(("reserve", units, got))
            return got

        def settle(self, service: str, tpm: float, reserved: int, actual: int) -> None:
            seen.append(("settle", reserved, actual))
            real.settle(service, tpm, reserved, actual)

    invoker.tokens = Recording()  # type: ignore[assignment]
    result = invoker.invoke(InvocationRequest(prompt="count me", max_tokens=200))
    reserve, settle = seen
    assert reserve[1] >= 200 * 5
    assert settle[2] == result.input_tokens + 5 * result.output_tokens
