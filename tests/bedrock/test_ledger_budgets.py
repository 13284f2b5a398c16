"""Ledger and budgets on SQLite and PostgreSQL; the token leaser's accounting."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from nura.bedrock.models import BudgetExceeded
from nura.bedrock.pricing import BudgetGuard
from nura.config.sections.bedrock import BedrockSettings, Budget, BudgetSettings
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import CostLedger, LedgerEntry, periods, to_pusd, to_usd
from tests.bedrock.conftest import HAIKU


def entry(cost_usd: str, scope: str = "team-a", ts: float | None = None) -> LedgerEntry:
    return LedgerEntry(
        invocation_id="inv",
        scope=scope,
        model_id=HAIKU,
        region="us-east-1",
        api="converse",
        input_tokens=10,
        output_tokens=5,
        cost_pusd=to_pusd(Decimal(cost_usd)),
        cost_unknown=False,
        latency_ms=1.0,
        ts=ts,
    )


def test_pico_dollars_roundtrip_exactly() -> None:
    assert to_pusd(Decimal("0.0000000025")) == 2500
    assert to_usd(to_pusd(Decimal("12.345678901234"))) == Decimal("12.345678901234")


def test_ledger_totals_per_scope_and_period(store_url: str) -> None:
    ledger = CostLedger(get_engine(store_url))
    day1 = 1_700_000_000.0  # 2023-11-14
    ledger.record(entry("0.10", ts=day1), ["global", "team-a"])
    ledger.record(entry("0.25", ts=day1 + 60), ["global", "team-a"])
    ledger.record(entry("1.00", scope="team-b", ts=day1 + 86_400), ["global", "team-b"])
    k1, k2 = periods(day1), periods(day1 + 86_400)
    spent = ledger.spent(["global", "team-a"], ts=day1)
    assert spent[("global", k1["daily"])] == to_pusd(Decimal("0.35"))
    assert spent[("team-a", k1["daily"])] == to_pusd(Decimal("0.35"))
    assert ledger.spent(["global"], ts=day1 + 86_400)[("global", k2["daily"])] == to_pusd(
        Decimal("1.00")
    )
    assert ledger.spent(["global"], ts=day1)[("global", k1["monthly"])] == to_pusd(Decimal("1.35"))
    assert len(ledger.calls(since=day1)) == 3


def test_concurrent_writers_lose_no_cost(store_url: str) -> None:
    ledger = CostLedger(get_engine(store_url))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(20):
                ledger.record(entry("0.001"), ["global"])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    key = periods(__import__("time").time())["daily"]
    assert ledger.spent(["global"])[("global", key)] == to_pusd(Decimal("0.080"))


def test_a_write_failing_part_way_leaves_neither_row_nor_totals(store_url: str) -> None:
    """Row and totals commit together: the second scope's upsert fails (a value the
    driver cannot bind) after the row and the first scope's totals were written."""
    ledger = CostLedger(get_engine(store_url))
    ledger.record(entry("0.10"), ["global"])
    with pytest.raises(Exception, match="(?i)bind|adapt"):
        ledger.record(entry("0.20"), ["global", object()])  # type: ignore[list-item]
    key = periods(__import__("time").time())["daily"]
    assert ledger.spent(["global"])[("global", key)] == to_pusd(Decimal("0.10"))
    assert len(ledger.calls()) == 1
    ledger.record(entry("0.30"), ["global"])  # the pool still hands out working connections
    assert ledger.spent(["global"])[("global", key)] == to_pusd(Decimal("0.40"))


def guard(store_url: str, **budget: Any) -> BudgetGuard:
    settings = BedrockSettings(
        budgets=BudgetSettings(scopes={"team-a": Budget(daily_usd=Decimal("1.00"))}, **budget)
    )
    return BudgetGuard(settings, CostLedger(get_engine(store_url)))


def test_budget_alerts_once_at_80_and_blocks_at_100(store_url: str) -> None:
    g = guard(store_url)
    assert g.check("team-a", override=False) is False
    assert g.record(entry("0.50")) == []
    crossed = g.record(entry("0.35"))  # 0.85: crosses 80 %
    assert [(c.scope, c.period, c.threshold) for c in crossed] == [("team-a", "daily", 80)]
    assert g.record(entry("0.05")) == []  # 0.90: already alerted this period
    g.check("team-a", override=False)  # still under 100 %
    crossed = g.record(entry("0.10"))  # 1.00: crosses 100 %
    assert [c.threshold for c in crossed] == [100]
    with pytest.raises(BudgetExceeded) as err:
        g.check("team-a", override=False)
    assert err.value.scope == "team-a" and err.value.period == "daily"
    assert g.check("team-a", override=True) is True  # overridden: runs, flagged
    assert g.check("team-b", override=False) is False  # other scopes are not blocked


def test_one_call_crossing_both_thresholds_alerts_both(store_url: str) -> None:
    g = guard(store_url)
    assert sorted(c.threshold for c in g.record(entry("1.50"))) == [80, 100]


def test_budget_not_enforced_only_alerts(store_url: str) -> None:
    g = guard(store_url, enforce=False)
    g.record(entry("2.00"))
    assert g.check("team-a", override=False) is True


def test_alert_claim_is_exactly_once_across_guards(store_url: str) -> None:
    ledger = CostLedger(get_engine(store_url))
    assert ledger.claim_alert("s", "day:x", 80, 1, 2) is True
    assert CostLedger(get_engine(store_url)).claim_alert("s", "day:x", 80, 1, 2) is False
