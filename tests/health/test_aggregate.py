"""SLA figures aggregated in SQL equal the pandas reference, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random

import pytest
from sqlalchemy import insert

from nura.config.sections.health import AlertThresholds
from nura.core.stores.db import get_engine
from nura.core.stores.health import health_checks
from nura.core.stores.tables import call_records
from nura.health.aggregate import quantile_from_ranks, window_figures_sql
from nura.health.sla import CALL_COLUMNS, CHECK_COLUMNS, STATUS, WINDOWS, _frame, window_figures

NOW = 1_900_000_000.0
WINDOW_SET = {STATUS: 900.0, **WINDOWS}
FIGURES = (
    "checks",
    "calls",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "availability_pct",
    "error_rate_pct",
    "fallback_rate_pct",
)


def _rows(rng: random.Random) -> tuple[list[dict], list[dict]]:
    checks, calls = [], []
    for service in ("alpha", "beta", "gamma"):
        for _ in range(rng.randint(30, 200)):
            age = rng.choice([rng.uniform(0, 900), rng.uniform(0, 9 * 86400)])
            checks.append(
                {
                    "ts": NOW - age,
                    "service": service,
                    "kind": "http",
                    "ok": rng.random() > 0.1,
                    "latency_ms": None if rng.random() < 0.05 else rng.uniform(1, 3000),
                }
            )
    # Edges: exactly at a window's start (outside), exactly now (inside), in the future.
    for ts in (NOW - 900, NOW - 3600, NOW, NOW + 1):
        checks.append(
            {"ts": ts, "service": "alpha", "kind": "http", "ok": False, "latency_ms": 7.0}
        )
    for service in ("alpha", "beta", "delta"):  # delta: traffic only, no checks
        for _ in range(rng.randint(50, 300)):
            outcome = rng.choice(["ok"] * 8 + ["error", "fallback", "rejected"])
            calls.append(
                {
                    "ts": NOW - rng.uniform(0, 8 * 86400),
                    "service": service,
                    "operation": rng.choice(["op", "op", "health.check"]),
                    "outcome": outcome,
                    "latency_ms": 0.0 if outcome == "rejected" else rng.uniform(1, 5000),
                    "fallback": outcome == "fallback",
                    "attempts": 1,
                }
            )
    return checks, calls


@pytest.mark.parametrize("seed", [1, 2])
def test_sql_figures_equal_the_pandas_reference(store_url: str, seed: int) -> None:
    engine = get_engine(store_url)
    checks, calls = _rows(random.Random(seed))
    with engine.begin() as conn:
        conn.execute(insert(health_checks), checks)
        conn.execute(insert(call_records), calls)
    sql = window_figures_sql(engine, now=NOW, windows=WINDOW_SET)

    checks_df = _frame(checks, CHECK_COLUMNS)
    calls_df = _frame(calls, CALL_COLUMNS)
    calls_df = calls_df[calls_df["operation"] != "health.check"]
    for name, secs in WINDOW_SET.items():
        ref = window_figures(checks_df, calls_df, now=NOW, seconds=secs).to_dict(orient="index")
        assert set(sql[name]) == set(ref), name
        for service, figs in ref.items():
            for key in FIGURES:
                want, got = figs.get(key), sql[name][service].get(key)
                if want is None or (isinstance(want, float) and math.isnan(want)):
                    assert got is None, (name, service, key, got)
                else:
                    assert got == pytest.approx(want, rel=1e-12, abs=1e-9), (name, service, key)


def test_quantile_interpolation_is_numpys_linear() -> None:
    import numpy as np

    values = sorted(random.Random(3).uniform(0, 1000) for _ in range(37))
    for q in (0.5, 0.95, 0.99, 0.0, 1.0):
        expected = float(np.quantile(values, q))
        assert quantile_from_ranks(dict(enumerate(values)), len(values), q) == expected


def test_the_report_from_the_store_uses_min_calls(store_url: str) -> None:
    """1 error in 3 calls over the store's aggregation: the service stays healthy."""
    from nura.health.sla import assemble

    engine = get_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            insert(call_records),
            [
                {
                    "ts": NOW - 10 * i,
                    "service": "a",
                    "operation": "op",
                    "outcome": outcome,
                    "latency_ms": 10.0,
                    "attempts": 1,
                    "fallback": False,
                }  # fmt: skip
                for i, outcome in enumerate(["ok", "error", "ok"], start=1)
            ],
        )
    figures = window_figures_sql(engine, now=NOW, windows=WINDOW_SET)
    report = assemble(figures, [], {}, AlertThresholds(), now=NOW)
    [a] = report["services"]
    assert a["status"] == "healthy" and a["calls"] == 3
    assert a["error_rate_pct"] == pytest.approx(33.333, abs=1e-3)
