"""The shared actions run locally (what `nura` commands do without --remote), on SQLite
and PostgreSQL: the store changes, one audit row per call, and the budget check reads
the store's override."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nura.admin.actions import AdminError, Context, perform
from nura.config import IntegrationsConfig
from nura.core.stores import admin_overrides, audit
from nura.core.stores.db import get_engine

CFG = IntegrationsConfig.model_validate(
    {
        "webhooks": {
            "incoming": {
                "partner": {"url_path": "/webhooks/partner", "event_types": ["x"]},
            },
            "outgoing": {
                "allow_list": ["127.0.0.1"],
                "targets": {"sandbox": {"url": "http://127.0.0.1:9/h", "secret": "x"}},
            },
        }
    }
)


def _ctx(url: str, now: float = 1_000.0) -> Context:
    return Context(get_engine(url), CFG, actor="cli:tester", now=now)


def test_audit_rows_filter_and_order(store_url: str) -> None:
    engine = get_engine(store_url)
    for i, action in enumerate(("a.one", "a.two", "a.one")):
        audit.record(engine, actor=f"t{i}", action=action, outcome="ok", now=100.0 + i)
    assert [r["actor"] for r in audit.entries(engine, action="a.one")] == ["t2", "t0"]
    assert [r["actor"] for r in audit.entries(engine, since=101.0)] == ["t2", "t1"]
    assert audit.entries(engine, actor="t1")[0]["detail"] == {}
    with pytest.raises(ValueError):
        audit.record(engine, actor="x", action="y", outcome="maybe")


def test_local_actions_change_the_store_and_audit(store_url: str) -> None:
    ctx = _ctx(store_url)
    perform("endpoints.disable", {"endpoint": "partner"}, ctx)
    assert admin_overrides.disabled_endpoints(ctx.engine) == {"partner"}
    perform("endpoints.enable", {"endpoint": "partner"}, ctx)
    assert admin_overrides.disabled_endpoints(ctx.engine) == set()
    perform("budgets.set", {"scope": "team", "monthly_usd": "12.5"}, ctx)
    override = admin_overrides.budget_overrides(ctx.engine)["team"]
    assert (override["daily_usd"], override["monthly_usd"]) == (None, Decimal("12.5"))
    with pytest.raises(AdminError) as refused:
        perform("endpoints.disable", {"endpoint": "nope"}, ctx)
    assert refused.value.status == 404
    rows = audit.entries(ctx.engine)
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("endpoints.disable", "invalid"),
        ("budgets.set", "ok"),
        ("endpoints.enable", "ok"),
        ("endpoints.disable", "ok"),
    ]
    assert {(r["actor"], r["role"], r["ts"]) for r in rows} == {("cli:tester", None, 1000.0)}
    assert rows[1]["detail"] == {"daily_usd": None, "monthly_usd": "12.5"}


def test_budget_guard_reads_the_override(store_url: str) -> None:
    from nura.bedrock.models import BudgetExceeded
    from nura.bedrock.pricing import BudgetGuard
    from nura.core.stores.ledger import CostLedger

    ctx = _ctx(store_url)
    bedrock = IntegrationsConfig.model_validate(
        {
            "external_services": {
                "aws": {"bedrock": {"budgets": {"scopes": {"team": {"daily_usd": "100"}}}}}
            }
        }
    ).external_services.aws.bedrock
    guard = BudgetGuard(bedrock, CostLedger(ctx.engine), override_sync_seconds=0)
    one_dollar = 10**12  # pico-dollars
    held = guard.reserve("team", one_dollar, override=False)
    assert held is not None and not held.over_budget
    guard.release(held)
    perform("budgets.set", {"scope": "team", "daily_usd": "0.5"}, ctx)
    with pytest.raises(BudgetExceeded):
        guard.reserve("team", one_dollar, override=False)
    perform("budgets.clear", {"scope": "team"}, ctx)
    guard.release(guard.reserve("team", one_dollar, override=False))
