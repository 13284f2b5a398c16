"""Hard budgets hold under concurrency: a call reserves its maximum cost before it runs.

20 invocations start together (a barrier, no timing windows) against a daily budget that
fits exactly two calls' maximum cost: two run, eighteen get BudgetExceeded before any
model is called, spend stays within the limit, and no reservation outlives its call. Once
with threads of one process, once with two processes sharing the store.
"""

from __future__ import annotations

import multiprocessing
import threading
from decimal import Decimal
from typing import Any

import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn
from nura.bedrock.invoke import get_invoker
from nura.bedrock.models import AllModelsFailed, BudgetExceeded, InvocationRequest
from nura.bedrock.pricing import BudgetGuard
from nura.config.sections.bedrock import BedrockSettings, Budget, BudgetSettings
from nura.core.runtime import store_url as runtime_store_url
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import (
    CostLedger,
    Hold,
    Refusal,
    periods,
    to_pusd,
    to_usd,
    utcnow_ts,
)
from tests.bedrock.conftest import HAIKU, SONNET

pytestmark = pytest.mark.integration

CALLS = 20
PROMPT = "price me"
MAX_TOKENS = 64
PROBE = InvocationRequest(prompt=PROMPT, model=HAIKU, scope="team-a", max_tokens=MAX_TOKENS)


@pytest.fixture(autouse=True)
def _prefect(prefect_server):  # type: ignore[no-untyped-def]
    return prefect_server


def max_cost(model: str = HAIKU, prompt: str = PROMPT, max_tokens: int = MAX_TOKENS) -> Decimal:
    """What a call reserves: input bounded by the prompt's UTF-8 bytes (+ framing), plus
    every output token it may produce, at the model's price (written out here, so the
    test does not take the bound from the code under test)."""
    price = BedrockSettings().price_for(model, "us-east-1")
    assert price is not None
    input_bound = len(prompt.encode()) + 3 + 1
    return (input_bound * price.input_per_1k + max_tokens * price.output_per_1k) / 1000


def two_calls_budget(model: str = HAIKU) -> dict[str, Any]:
    return {"scopes": {"team-a": {"daily_usd": str(2 * max_cost(model))}}}


def ledger() -> CostLedger:
    return CostLedger(get_engine(runtime_store_url()))


def outstanding_reservations() -> tuple[int, int]:
    """(reservation rows, reserved pico-dollars on the spend totals) in the store."""
    from sqlalchemy import func, select

    from nura.core.stores.ledger import reservations, spend

    with get_engine(runtime_store_url()).connect() as conn:
        rows = conn.execute(select(func.count()).select_from(reservations)).scalar_one()
        held = conn.execute(select(func.coalesce(func.sum(spend.c.reserved_pusd), 0))).scalar_one()
    return int(rows), int(held)


def _invoke_together(barrier: Any, count: int) -> list[str]:
    """`count` threads pass `barrier`, then invoke at once; each one's outcome by name."""
    invoker = get_invoker()
    outcomes: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            invoker.invoke(PROBE)
            outcome = "ok"
        except BudgetExceeded:
            outcome = "BudgetExceeded"
        except Exception as exc:  # reported to the test, which fails on it
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def _child(barrier: Any, results: Any, count: int) -> None:
    """A second worker process (spawned: its own engine, invoker and caches)."""
    results.put(_invoke_together(barrier, count))


def _assert_two_ran_within_budget(outcomes: list[str], standin: BedrockStandIn) -> None:
    spent = ledger().spent(["team-a"])[("team-a", periods(utcnow_ts())["daily"])]
    limit = to_pusd(2 * max_cost())
    assert spent <= limit, f"spent ${to_usd(spent)} of a ${to_usd(limit)} hard budget"
    assert sorted(outcomes) == ["BudgetExceeded"] * (CALLS - 2) + ["ok"] * 2, outcomes
    assert standin.calls(HAIKU) == 2  # refused before any model was called
    assert len(ledger().calls()) == 2
    assert outstanding_reservations() == (0, 0)


def test_concurrent_threads_never_overspend_a_hard_budget(
    bedrock_config, standin: BedrockStandIn, store_url: str
) -> None:
    bedrock_config(store=store_url, budgets=two_calls_budget())
    get_invoker()  # built once, before the threads race
    outcomes = _invoke_together(threading.Barrier(CALLS), CALLS)
    _assert_two_ran_within_budget(outcomes, standin)


def test_concurrent_processes_never_overspend_a_hard_budget(
    bedrock_config, standin: BedrockStandIn, store_url: str
) -> None:
    bedrock_config(store=store_url, budgets=two_calls_budget())
    get_engine(runtime_store_url())  # tables exist before the children start
    ctx = multiprocessing.get_context("spawn")  # no forked engines or Prefect clients
    barrier = ctx.Barrier(CALLS)
    results = ctx.Queue()
    half = CALLS // 2
    children = [ctx.Process(target=_child, args=(barrier, results, half)) for _ in range(2)]
    for child in children:
        child.start()
    outcomes = [o for _ in children for o in results.get(timeout=600)]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    _assert_two_ran_within_budget(outcomes, standin)


def test_fallback_and_failures_release_their_reservations(
    bedrock_config, standin: BedrockStandIn, store_url: str
) -> None:
    # Each model's maximum cost fits the budget, both together do not (one pico-dollar
    # short): the throttled Sonnet must hand its reservation back before Haiku holds its own.
    limit = max_cost(SONNET) + max_cost(HAIKU) - to_usd(1)
    budget = {"scopes": {"team-a": {"daily_usd": str(limit)}}}
    bedrock_config(store=store_url, models=[SONNET, HAIKU], budgets=budget)
    probe = PROBE.model_copy(update={"model": None})
    standin.script(SONNET, throttle=1)
    result = get_invoker().invoke(probe)
    assert [a.outcome for a in result.attempts] == ["throttled", "ok"]
    assert result.model_id == HAIKU
    assert outstanding_reservations() == (0, 0)
    for model in (SONNET, HAIKU):
        standin.script(model, throttle=-1)
    with pytest.raises(AllModelsFailed):
        get_invoker().invoke(probe)
    assert outstanding_reservations() == (0, 0)
    spent = ledger().spent(["team-a"])[("team-a", periods(utcnow_ts())["daily"])]
    assert spent == to_pusd(result.cost_usd)  # failures bill nothing


def test_override_bypasses_the_hard_budget(bedrock_config, standin, store_url: str) -> None:
    bedrock_config(store=store_url, budgets=two_calls_budget())
    invoker = get_invoker()
    invoker.invoke(PROBE)
    invoker.invoke(PROBE)
    with pytest.raises(BudgetExceeded):
        invoker.invoke(PROBE)
    over = invoker.invoke(PROBE.model_copy(update={"budget_override": True}))
    assert over.over_budget
    assert standin.calls(HAIKU) == 3
    assert outstanding_reservations() == (0, 0)


def _guard(store_url: str, daily_usd: str) -> BudgetGuard:
    settings = BedrockSettings(
        budgets=BudgetSettings(scopes={"team-a": Budget(daily_usd=Decimal(daily_usd))})
    )
    return BudgetGuard(settings, CostLedger(get_engine(store_url)))


def test_a_reservation_is_all_or_nothing_across_scopes(store_url: str) -> None:
    store = CostLedger(get_engine(store_url))
    day = periods(utcnow_ts())["daily"]
    holds = [Hold("global", day, 1_000), Hold("team-a", day, 100)]
    refusal = store.reserve("t1", 150, holds, ttl_seconds=900)
    assert refusal == Refusal("team-a", day, 0, 0, 100)
    assert store.held([("global", day), ("team-a", day)]) == {
        ("global", day): (0, 0),  # held before team-a refused, rolled back with it
        ("team-a", day): (0, 0),
    }
    assert store.reserve("t2", 100, holds, ttl_seconds=900) is None  # exactly the limit fits
    assert store.held([("team-a", day)])[("team-a", day)] == (0, 100)
    assert store.release("t2") == 200  # 100 on each of the two rows
    assert store.held([("global", day), ("team-a", day)])[("global", day)] == (0, 0)


def test_an_abandoned_reservation_stops_counting_after_its_ttl(store_url: str) -> None:
    """A process killed mid-call leaves its hold; once expired, the next refusal sweeps it."""
    guard = _guard(store_url, "1.00")
    store = guard.ledger
    now = utcnow_ts()
    day = periods(now)["daily"]
    limit = to_pusd(Decimal("1.00"))
    # Reserved an hour ago with a 15-minute TTL, never settled: expired.
    dead = [Hold("team-a", day, limit)]
    assert store.reserve("dead", limit, dead, ttl_seconds=900, now=now - 3600) is None
    held = guard.reserve("team-a", to_pusd(Decimal("0.60")), override=False)
    assert held is not None and not held.over_budget
    assert store.held([("team-a", day)])[("team-a", day)] == (0, to_pusd(Decimal("0.60")))
    # A live reservation (this one) still counts: the next does not fit.
    with pytest.raises(BudgetExceeded) as err:
        guard.reserve("team-a", to_pusd(Decimal("0.50")), override=False)
    assert err.value.scope == "team-a" and err.value.period == "daily"
    over = guard.reserve("team-a", to_pusd(Decimal("0.50")), override=True)
    assert over is not None and over.over_budget  # held anyway: it is in flight
    guard.release(over)
    guard.release(held)
    assert store.held([("team-a", day)])[("team-a", day)] == (0, 0)


def test_twenty_concurrent_calls_with_one_timing_out_stay_within_budget(
    bedrock_config, standin: BedrockStandIn, store_url: str
) -> None:
    """One of 20 concurrent calls is abandoned on a read timeout: it is billed as an
    estimate (its whole reservation), its retry holds budget anew, and the ledger total
    is exactly the billed plus the estimated rows, never over the hard limit."""
    from sqlalchemy import select

    from nura.core.stores.ledger import spend

    limit = 8 * max_cost()
    bedrock_config(
        store=store_url,
        budgets={"scopes": {"team-a": {"daily_usd": str(limit)}}},
        timeout_seconds=5,  # read timeout 5 s for these short answers
        output_tokens_per_second=1e9,
        lifecycle_check=False,
    )
    get_invoker()
    standin.script(HAIKU, hang=1, hang_ms=15000)  # the first call to arrive hangs
    outcomes = _invoke_together(threading.Barrier(CALLS), CALLS)
    assert set(outcomes) <= {"ok", "BudgetExceeded"}, outcomes
    rows = ledger().calls()
    estimated = [r for r in rows if r["estimated"]]
    billed = [r for r in rows if not r["estimated"]]
    assert len(estimated) == 1 and estimated[0]["cost_pusd"] == to_pusd(max_cost())
    assert len(billed) == outcomes.count("ok")
    day = periods(utcnow_ts())["daily"]
    spent = ledger().spent(["team-a"])[("team-a", day)]
    assert spent == sum(r["cost_pusd"] for r in rows)  # billed + estimated, exactly
    assert spent <= to_pusd(limit), f"spent ${to_usd(spent)} of ${limit}"
    with get_engine(runtime_store_url()).connect() as conn:
        calls = conn.execute(
            select(spend.c.calls).where(spend.c.scope == "team-a", spend.c.period == day)
        ).scalar_one()
    assert calls == len(rows)
    assert outstanding_reservations() == (0, 0)
