"""SLA figures and status rules: pure pandas, an injected clock, no servers."""

from __future__ import annotations

import pytest

from nura.config.sections.health import AlertThresholds
from nura.health.sla import _frame as frame
from nura.health.sla import evaluate, overall_status, service_status, window_figures

NOW = 1_900_000_000.0
TH = AlertThresholds()  # 5 s, 5 %, 95 %


def checks(*rows):
    return frame(
        [{"ts": ts, "service": s, "ok": ok, "latency_ms": lat} for ts, s, ok, lat in rows],
        ["ts", "service", "ok", "latency_ms"],
    )


def calls(*rows):
    return frame(
        [
            {
                "ts": ts,
                "service": s,
                "operation": "op",
                "outcome": out,
                "latency_ms": lat,
                "fallback": out == "fallback",
            }
            for ts, s, out, lat in rows
        ],
        ["ts", "service", "operation", "outcome", "latency_ms", "fallback"],
    )


def test_window_is_half_open_now_minus_length_to_now() -> None:
    c = checks(
        (NOW - 3600, "a", False, 10.0),  # exactly 1 h old: outside (now - 1 h, now]
        (NOW - 3599, "a", True, 20.0),
        (NOW, "a", True, 30.0),  # exactly now: inside
        (NOW + 1, "a", False, 40.0),  # in the injected future: outside
    )
    fig = window_figures(c, calls(), now=NOW, seconds=3600).loc["a"]
    assert fig["checks"] == 2
    assert fig["availability_pct"] == 100.0
    assert fig["p50_ms"] == pytest.approx(25.0)


def test_windows_1h_24h_7d_see_different_samples() -> None:
    c = checks(
        (NOW - 60, "a", True, 100.0),
        (NOW - 7200, "a", False, 100.0),  # 2 h ago
        (NOW - 3 * 86400, "a", False, 100.0),  # 3 days ago
        (NOW - 8 * 86400, "a", False, 100.0),  # beyond 7 d
    )
    report = evaluate(c, calls(), [], {}, TH, now=NOW, status_window_s=900)
    avail = {w["window"]: w["availability_pct"] for w in report["windows"]}
    assert avail == {"1h": 100.0, "24h": 50.0, "7d": pytest.approx(100 / 3, abs=1e-3)}


def test_percentiles_error_and_fallback_rates_over_traffic() -> None:
    t = calls(
        *[(NOW - i, "a", "ok", float(i)) for i in range(1, 97)],
        (NOW - 97, "a", "error", 1000.0),
        (NOW - 98, "a", "fallback", 2000.0),
        (NOW - 99, "a", "rejected", 0.0),  # never reached the service: no latency sample
        (NOW - 100, "a", "ok", 5000.0),
    )
    fig = window_figures(checks(), t, now=NOW, seconds=3600).loc["a"]
    assert fig["calls"] == 100
    assert fig["error_rate_pct"] == pytest.approx(3.0)  # error + fallback + rejected
    assert fig["fallback_rate_pct"] == pytest.approx(1.0)
    assert fig["p50_ms"] == pytest.approx(50.0)
    assert fig["p99_ms"] > 1000.0
    assert pd_isna(fig["availability_pct"])  # no checks: availability unknown, not 0


def pd_isna(v) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


@pytest.mark.parametrize(
    ("figures", "latest", "breaker", "expected"),
    [
        (
            {"p95_ms": 100.0, "error_rate_pct": 0.0, "availability_pct": 100.0},
            {"ok": True},
            "closed",
            "healthy",
        ),
        # Error rate >= 2x threshold is unhealthy, even though it also exceeds the degraded
        # threshold: the seed tested degraded first and never reached unhealthy.
        ({"error_rate_pct": 10.0, "calls": 100}, {"ok": True}, None, "unhealthy"),
        ({"error_rate_pct": 6.0, "calls": 100}, {"ok": True}, None, "degraded"),
        (
            {"error_rate_pct": 5.0, "calls": 100},
            {"ok": True},
            None,
            "healthy",
        ),  # not above the threshold
        ({"p95_ms": 5001.0}, {"ok": True}, None, "degraded"),
        ({"p95_ms": 5000.0}, {"ok": True}, None, "healthy"),
        ({"availability_pct": 94.9}, {"ok": True}, None, "degraded"),
        ({"p95_ms": 9000.0}, {"ok": False, "error_type": "ServiceTimeout"}, None, "unhealthy"),
        ({}, {"ok": True}, "open", "unhealthy"),
        ({}, {"ok": True}, "half_open", "degraded"),
        ({"fallback_rate_pct": 2.0, "calls": 100}, {"ok": True}, None, "degraded"),
        ({}, {"ok": True, "level": "degraded", "detail": "rate limited (429)"}, None, "degraded"),
        ({}, {"ok": True, "level": "unhealthy", "detail": "count=500"}, None, "unhealthy"),
        ({}, None, None, "unknown"),
        ({"calls": 3}, None, None, "healthy"),
        # Below min_calls (10) a rate is shown, not judged: 1 failure in 3 calls.
        ({"error_rate_pct": 33.3, "calls": 3}, {"ok": True}, None, "healthy"),
        ({"fallback_rate_pct": 33.3, "calls": 3}, {"ok": True}, None, "healthy"),
        ({"error_rate_pct": 10.0, "calls": 10}, {"ok": True}, None, "unhealthy"),
    ],
)
def test_status_rules(figures, latest, breaker, expected) -> None:
    status, reasons = service_status(figures, latest, breaker, TH)
    assert status == expected, reasons
    assert bool(reasons) == (expected in ("degraded", "unhealthy", "unknown"))


def test_overall_is_the_worst_known_status() -> None:
    assert overall_status(["healthy", "unknown", "degraded"]) == "degraded"
    assert overall_status(["degraded", "unhealthy", "healthy"]) == "unhealthy"
    assert overall_status(["unknown"]) == "unknown"
    assert overall_status(["healthy", "unknown"]) == "healthy"


def test_evaluate_uses_the_status_window_for_status_and_counts_checks_once() -> None:
    c = checks((NOW - 1200, "a", True, 9000.0), (NOW - 60, "a", True, 50.0))
    # The health lane's own call records must not be counted again as traffic.
    t = calls((NOW - 60, "a", "ok", 50.0))
    t.loc[0, "operation"] = "health.check"
    latest = [{"service": "a", "ok": True, "latency_ms": 50.0, "configured": True}]
    report = evaluate(c, t, latest, {}, TH, now=NOW, status_window_s=900)
    a = report["services"][0]
    assert a["status"] == "healthy"  # the slow sample is 20 min old: outside 15 min
    one_hour = next(w for w in report["windows"] if w["window"] == "1h")
    assert one_hour["checks"] == 2 and one_hour["calls"] == 0
    assert one_hour["p95_ms"] > 5000


def test_one_error_in_three_calls_is_shown_but_does_not_decide() -> None:
    t = calls(
        (NOW - 30, "a", "ok", 10.0), (NOW - 20, "a", "error", 10.0), (NOW - 10, "a", "ok", 9.0)
    )
    latest = [{"service": "a", "ok": True, "latency_ms": 5.0, "configured": True}]
    report = evaluate(checks(), t, latest, {}, TH, now=NOW, status_window_s=900)
    a = report["services"][0]
    assert a["status"] == "healthy", a["reason"]
    assert a["error_rate_pct"] == pytest.approx(33.333, abs=1e-3) and a["calls"] == 3
