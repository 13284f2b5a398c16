"""The health artifacts' content: no table wider than the Prefect UI shows (~1400 px)."""

from __future__ import annotations

import time

from nura.health.report import render_markdown, sla_latency_table, sla_table

LONG = "connect timeout after 5.0 s to https://internal.example.com/health " * 5
WINDOW = {
    "checks": 12,
    "calls": 340,
    "p50_ms": 12.5,
    "p95_ms": 80.0,
    "p99_ms": 210.25,
    "error_rate_pct": 1.5,
    "availability_pct": 98.5,
    "fallback_rate_pct": 0.0,
    "maintenance_excluded_min": 0.0,
}


def _report() -> dict:
    services = [
        {
            "service": "alpha",
            "status": "healthy",
            "latency_ms": 12.0,
            "p95_ms": 40.0,
            "error_rate_pct": 0.0,
            "availability_pct": 100.0,
            "fallback_rate_pct": 0.0,
            "breaker": "closed",
            "detail": None,
            "affects": [],
        },
        {
            "service": "beta",
            "status": "unhealthy",
            "latency_ms": None,
            "p95_ms": None,
            "error_rate_pct": 100.0,
            "availability_pct": 0.0,
            "fallback_rate_pct": None,
            "breaker": "open",
            "reason": LONG,
            "affects": ["git-ingest"],
        },
    ]
    windows = [
        {"service": s["service"], "window": w, **WINDOW}
        for s in services
        for w in ("1h", "24h", "7d")
    ]
    return {"ts": time.time(), "overall": "unhealthy", "services": services, "windows": windows}


def test_report_table_is_narrow_and_reasons_are_listed_below_it() -> None:
    md = render_markdown(_report(), [])
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 4  # header, rule, two services
    assert all(line.count("|") <= 9 for line in table)  # at most 8 columns
    assert max(len(line) for line in table) < 120  # short cells only: no free text
    assert "## Why" in md
    why = md.split("## Why", 1)[1]
    assert "- **beta**: " + LONG.strip()[:100] in why  # the reason, kept (200 chars max)
    assert "alpha" not in why.split("##", 1)[0]  # no reason, no line
    assert "- beta: git-ingest" in md


def test_sla_figures_split_in_two_narrow_tables_with_all_the_figures() -> None:
    report = _report()
    rates, latency = sla_table(report), sla_latency_table(report)
    assert len(rates) == len(latency) == len(report["windows"])
    for window, rate, lat in zip(report["windows"], rates, latency, strict=True):
        assert len(rate) <= 7 and len(lat) <= 7
        assert (rate["service"], rate["window"]) == (lat["service"], lat["window"])
        assert {**rate, **lat} == window  # nothing lost, nothing added


def test_the_report_says_which_notifications_are_not_delivered_yet() -> None:
    pending = [
        {
            "channel": "slack",
            "title": "UNHEALTHY beta",
            "attempts": 3,
            "last_error": "ServiceUnavailable: transport failure",
        }
    ]
    md = render_markdown(_report(), [], pending)
    section = md.split("## Notifications not delivered yet (1)", 1)[1]
    assert "- slack: UNHEALTHY beta (3 attempts): ServiceUnavailable" in section
    assert "not delivered yet" not in render_markdown(_report(), [])
