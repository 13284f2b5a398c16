"""SLA figures with and without maintenance excluded, on known data: the SQL aggregation
(SQLite and PostgreSQL) and the pandas reference agree, and the report says how much
time was left out."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import insert

from nura.config.sections.health import AlertThresholds
from nura.core.stores.db import get_engine
from nura.core.stores.health import health_checks
from nura.core.stores.tables import call_records
from nura.health.aggregate import window_figures_sql
from nura.health.report import render_markdown, sla_latency_table
from nura.health.sla import STATUS, WINDOWS, evaluate

NOW = 1_900_000_000.0
LENGTHS = {STATUS: 900.0, **WINDOWS}
# alpha failed (slowly) for ten minutes, inside its maintenance window
SPANS = {"alpha": [(NOW - 1800, NOW - 1200)]}
WINDOW = {
    "service": "alpha",
    "starts_at": NOW - 1800,
    "ends_at": NOW - 1200,
    "reason": "db upgrade",
    "actor": "cli:ana",
    "source": "store",
}


def _known_rows() -> tuple[list[dict], list[dict]]:
    """One check a minute for an hour per service; alpha's checks at ages 1260..1800 s
    failed at 5000 ms (10 of 60), every other check passed at 100 ms. One traffic call a
    minute for alpha: errors inside the window, fine outside."""
    checks, calls = [], []
    for i in range(60):
        age = 60.0 * i
        bad = 1200 < age <= 1800
        for service in ("alpha", "beta"):
            failed = bad and service == "alpha"
            checks.append(
                {
                    "ts": NOW - age,
                    "service": service,
                    "kind": "http",
                    "ok": not failed,
                    "latency_ms": 5000.0 if failed else 100.0,
                }
            )
        call_bad = 1200 < age + 30 < 1800  # calls half a minute before each check
        calls.append(
            {
                "ts": NOW - age - 30,
                "service": "alpha",
                "operation": "op",
                "outcome": "error" if call_bad else "ok",
                "latency_ms": 4000.0 if call_bad else 200.0,
                "fallback": False,
                "attempts": 1,
            }
        )
    return checks, calls


def _hour(figures: dict, service: str) -> dict:
    return figures["1h"][service]


def test_sql_with_and_without_exclusion(store_url: str) -> None:
    engine = get_engine(store_url)
    checks, calls = _known_rows()
    with engine.begin() as conn:
        conn.execute(insert(health_checks), checks)
        conn.execute(insert(call_records), calls)

    plain = window_figures_sql(engine, now=NOW, windows=LENGTHS)
    alpha = _hour(plain, "alpha")
    assert alpha["checks"] == 60 and alpha["availability_pct"] == pytest.approx(50 / 60 * 100)
    assert alpha["calls"] == 60 and alpha["error_rate_pct"] == pytest.approx(10 / 60 * 100)
    assert alpha["p95_ms"] > 4000  # the slow minutes dominate the tail

    excluded = window_figures_sql(engine, now=NOW, windows=LENGTHS, exclude=SPANS)
    alpha = _hour(excluded, "alpha")
    assert alpha["checks"] == 50 and alpha["availability_pct"] == 100.0
    assert alpha["calls"] == 50 and alpha["error_rate_pct"] == 0.0
    assert alpha["p95_ms"] == 200.0 and alpha["p50_ms"] == 150.0
    # beta is not in maintenance: the same figures either way
    assert _hour(excluded, "beta") == _hour(plain, "beta")
    assert _hour(excluded, "beta")["checks"] == 60


def test_pandas_reference_agrees_and_report_says_what_was_excluded(store_url: str) -> None:
    engine = get_engine(store_url)
    checks, calls = _known_rows()
    with engine.begin() as conn:
        conn.execute(insert(health_checks), checks)
        conn.execute(insert(call_records), calls)
    sql = window_figures_sql(engine, now=NOW, windows=LENGTHS, exclude=SPANS)
    report = evaluate(
        checks, calls, [], {}, AlertThresholds(), now=NOW, status_window_s=900,
        exclude=SPANS, maintenance=[WINDOW],
    )  # fmt: skip
    rows = {(w["service"], w["window"]): w for w in report["windows"]}
    for name in WINDOWS:
        for key in ("checks", "calls", "availability_pct", "error_rate_pct", "p95_ms"):
            assert rows[("alpha", name)][key] == pytest.approx(sql[name]["alpha"][key])
    assert rows[("alpha", "1h")]["maintenance_excluded_min"] == 10
    assert rows[("beta", "1h")]["maintenance_excluded_min"] == 0
    alpha = next(s for s in report["services"] if s["service"] == "alpha")
    # the status window (last 15 min) does not reach back to the window
    assert alpha["maintenance_excluded_s"] == 0 and alpha["maintenance"]["reason"] == "db upgrade"
    assert report["maintenance"]["active"] == ["alpha"]

    md = render_markdown(report, [])
    assert "## Maintenance" in md and "**alpha** until" in md and "alerts held" in md
    assert "- alpha: maintenance excluded: 1h 10m, 24h 10m, 7d 10m" in md
    assert "beta: maintenance excluded" not in md
    latency = {(r["service"], r["window"]): r for r in sla_latency_table(report)}
    assert latency[("alpha", "24h")]["maintenance_excluded_min"] == 10
    assert latency[("beta", "24h")]["maintenance_excluded_min"] == 0


def test_without_maintenance_the_report_is_unchanged_and_silent() -> None:
    checks, calls = _known_rows()
    report = evaluate(checks, calls, [], {}, AlertThresholds(), now=NOW, status_window_s=900)
    assert report["maintenance"] == {"active": [], "windows": []}
    assert "Maintenance" not in render_markdown(report, [])
    hour = next(w for w in report["windows"] if w["service"] == "alpha" and w["window"] == "1h")
    assert hour["availability_pct"] == pytest.approx(83.333, abs=1e-3)


def test_random_spans_match_between_sql_and_pandas(store_url: str) -> None:
    """Exclusion at span edges (start inclusive, end exclusive) is the same in both."""
    rng = random.Random(7)
    engine = get_engine(store_url)
    checks = [
        {
            "ts": NOW - rng.choice([0, 100, 200, 300]) - rng.randint(0, 3) * 0.5,
            "service": rng.choice(["alpha", "beta"]),
            "kind": "http",
            "ok": rng.random() > 0.3,
            "latency_ms": float(rng.randint(1, 1000)),
        }
        for _ in range(300)
    ]
    spans = {"alpha": [(NOW - 200, NOW - 100)], "beta": [(NOW - 300, NOW - 299)]}
    with engine.begin() as conn:
        conn.execute(insert(health_checks), checks)
    sql = window_figures_sql(engine, now=NOW, windows=LENGTHS, exclude=spans)
    report = evaluate(checks, [], [], {}, AlertThresholds(), now=NOW, status_window_s=900,
                      exclude=spans)  # fmt: skip
    for w in report["windows"]:
        ref = sql[w["window"]][w["service"]]
        for key in ("checks", "availability_pct", "p50_ms", "p95_ms", "p99_ms"):
            assert w[key] == pytest.approx(ref[key], abs=1e-3), (w["service"], w["window"], key)
