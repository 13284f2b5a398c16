"""Security events and alerts on the store: counting windows, one alert a burst, quiet resolves.

Every test runs on SQLite and PostgreSQL (`store_url`) with an injected clock.
"""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import create_engine, select

from nura.config.sections.security import SecurityAlertSettings
from nura.core.security_events import SecurityEventBuffer, report_event
from nura.core.stores.alerts import history, open_alerts
from nura.core.stores.db import get_engine
from nura.core.stores.security import (
    auth_failures,
    clean_detail,
    counts,
    record_event,
    security_events,
    totals,
)
from nura.core.stores.tables import call_records
from nura.health.security import alert_key, evaluate

T0 = 1_800_000_000.0
MIN = 60.0


def settings(**rules: tuple[int, float]) -> SecurityAlertSettings:
    data = {k: {"threshold": n, "window_minutes": w} for k, (n, w) in rules.items()}
    return SecurityAlertSettings.model_validate(data)


def kinds(changes: list[dict]) -> list[tuple[str, str]]:
    return [(c["kind"], c["key"]) for c in changes]


def test_counts_are_per_kind_subject_and_window(store_url: str) -> None:
    engine = get_engine(store_url)
    record_event(engine, "signature_failure", "partner", now=T0, count=3)
    record_event(engine, "signature_failure", "partner", now=T0 + 100)
    record_event(engine, "signature_failure", "git", now=T0 + 100)
    record_event(engine, "stale_delivery", "partner", now=T0 + 100)
    got = counts(engine, "signature_failure", since=T0 + 1, until=T0 + 200)
    assert got == {"partner": 1, "git": 1}
    got = counts(engine, "signature_failure", since=T0, until=T0 + 200)
    assert got == {"partner": 4, "git": 1}
    assert counts(engine, "signature_failure", since=T0 + 101, until=T0 + 900) == {}
    assert totals(engine)[("signature_failure", "partner")] == 4


def test_401s_are_counted_from_the_call_records(store_url: str) -> None:
    engine = get_engine(store_url)
    rows = [
        {"service": "git", "status_code": 401, "ts": T0},
        {"service": "git", "status_code": 401, "ts": T0 + 10},
        {"service": "git", "status_code": 403, "ts": T0 + 10},
        {"service": "confluence", "status_code": 200, "ts": T0 + 10},
        {"service": "confluence", "status_code": 401, "ts": T0 - 1000},
    ]
    with engine.begin() as conn:
        conn.execute(
            call_records.insert(),
            [
                {**r, "operation": "op", "outcome": "error", "latency_ms": 1.0, "attempts": 1}
                for r in rows
            ],
        )
    assert auth_failures(engine, since=T0 - 1, until=T0 + 60) == {"git": 2}


def test_detail_keeps_codes_and_addresses_never_secrets() -> None:
    detail = clean_detail(
        {
            "errors": {"bad_signature": 3, "nested": {"x": 1}, "text": "no"},
            "clients": ["203.0.113.9"],
            "signature": "sha256=abc",
            "secret": "s3cr3t",
            "body": b"{}",
            "payload": "{}",
            "Authorization": "Bearer t0k3n",
            "api_key": "k",
            "reason": "x" * 500,
        }
    )
    assert detail == {
        "errors": {"bad_signature": 3},
        "clients": ["203.0.113.9"],
        "reason": "x" * 200,
    }


def test_one_alert_per_burst_resolved_when_quiet(store_url: str) -> None:
    engine = get_engine(store_url)
    rules = settings(signature_failure=(5, 10))
    record_event(engine, "signature_failure", "partner", now=T0, count=4)
    assert evaluate(engine, rules, now=T0 + 1) == []  # under the threshold: nothing
    record_event(
        engine, "signature_failure", "partner", {"errors": {"bad_signature": 1}}, now=T0 + 2
    )
    opened = evaluate(engine, rules, now=T0 + 3)
    key = alert_key("signature_failure", "partner")
    assert kinds(opened) == [("opened", key)]
    change = opened[0]
    assert change["severity"] == "high" and change["notify"]
    assert change["event"] == "nura.security.signature_failure"
    assert change["resource"] == "nura.security.signature_failure.partner"
    assert "5 webhook signature failures on endpoint partner" in change["reason"]
    assert "bad_signature x1" in change["reason"]
    # A second burst while open: no new notification, still one open alert.
    record_event(engine, "signature_failure", "partner", now=T0 + 5 * MIN, count=50)
    assert evaluate(engine, rules, now=T0 + 5 * MIN + 1) == []
    # Events below the threshold keep it open (not quiet yet).
    assert evaluate(engine, rules, now=T0 + 14 * MIN) == []
    assert [a["key"] for a in open_alerts(engine)] == [key]
    # A whole window without an event: resolved, once.
    resolved = evaluate(engine, rules, now=T0 + 16 * MIN)
    assert kinds(resolved) == [("resolved", key)]
    assert resolved[0]["event"] == "nura.security.resolved" and resolved[0]["notify"]
    assert resolved[0]["severity"] == "high"
    assert evaluate(engine, rules, now=T0 + 17 * MIN) == []
    # The next burst is a new alert.
    record_event(engine, "signature_failure", "partner", now=T0 + 20 * MIN, count=5)
    again = evaluate(engine, rules, now=T0 + 20 * MIN)
    assert kinds(again) == [("opened", key)] and again[0]["alert_id"] != change["alert_id"]
    assert [h["kind"] for h in history(engine, key)] == ["opened", "resolved", "opened"]


def test_each_kind_and_subject_is_its_own_alert(store_url: str) -> None:
    engine = get_engine(store_url)
    rules = settings(stale_delivery=(2, 10), replayed_delivery=(3, 10), ssrf_refusal=(1, 60))
    record_event(engine, "stale_delivery", "partner", now=T0, count=2)
    record_event(engine, "replayed_delivery", "partner", now=T0, count=2)  # under 3
    record_event(engine, "replayed_delivery", "git", now=T0, count=3)
    record_event(engine, "ssrf_refusal", "sandbox", {"reason": "10.0.0.5"}, now=T0)
    got = sorted(kinds(evaluate(engine, rules, now=T0 + 1)))
    assert got == [
        ("opened", "security.replayed_delivery.git"),
        ("opened", "security.ssrf_refusal.sandbox"),
        ("opened", "security.stale_delivery.partner"),
    ]


def test_reminders_only_when_configured(store_url: str) -> None:
    engine = get_engine(store_url)
    rules = SecurityAlertSettings.model_validate(
        {"reminder_minutes": 30, "budget_refusal": {"threshold": 1, "window_minutes": 60}}
    )
    for minute in range(0, 50, 10):
        record_event(engine, "budget_refusal", "team-a", now=T0 + minute * MIN)
    assert kinds(evaluate(engine, rules, now=T0)) == [("opened", "security.budget_refusal.team-a")]
    assert evaluate(engine, rules, now=T0 + 20 * MIN) == []
    reminder = evaluate(engine, rules, now=T0 + 31 * MIN)
    assert kinds(reminder) == [("reminder", "security.budget_refusal.team-a")]
    assert reminder[0]["title"].startswith("STILL SECURITY")


def test_disabled_evaluates_nothing(store_url: str) -> None:
    engine = get_engine(store_url)
    record_event(engine, "signature_failure", "partner", now=T0, count=100)
    off = SecurityAlertSettings(enabled=False)
    assert evaluate(engine, off, now=T0) == []


def test_buffer_aggregates_and_flushes_one_row_per_subject(store_url: str) -> None:
    engine = get_engine(store_url)
    now = [T0]
    buffer = SecurityEventBuffer(engine, clock=lambda: now[0])
    for i in range(30):
        buffer.note("signature_failure", "partner", error="bad_signature", client=f"10.0.0.{i}")
    buffer.note("stale_delivery", "partner", error="stale_timestamp")
    buffer.flush()
    with engine.connect() as conn:
        rows = conn.execute(select(security_events)).all()
    assert len(rows) == 2
    sig = next(r for r in rows if r.kind == "signature_failure")
    assert sig.count == 30 and sig.ts == T0
    detail = json.loads(sig.detail)
    assert detail["errors"] == {"bad_signature": 30} and len(detail["clients"]) == 5
    buffer.flush()  # nothing new: nothing written
    with engine.connect() as conn:
        assert len(conn.execute(select(security_events)).all()) == 2


def test_buffer_thread_starts_and_stops_with_a_final_flush(store_url: str) -> None:
    engine = get_engine(store_url)
    buffer = SecurityEventBuffer(engine, flush_seconds=3600, clock=lambda: T0)
    buffer.start()
    buffer.note("replayed_delivery", "git")
    buffer.stop()
    assert buffer._thread is None
    assert counts(engine, "replayed_delivery", since=T0, until=T0) == {"git": 1}


def test_a_store_failure_is_logged_never_raised(caplog, tmp_path) -> None:
    broken = create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    caplog.set_level(logging.WARNING, logger="nura.security")
    report_event("budget_refusal", "team-a", {"period": "daily"}, engine=broken, now=T0)
    buffer = SecurityEventBuffer(broken, clock=lambda: T0)
    buffer.note("signature_failure", "partner")
    buffer.flush()
    assert "not recorded" in caplog.text
    assert buffer._tallies == {}  # dropped, not kept growing


@pytest.mark.parametrize("kind", ["signature_failure", "auth_failure"])
def test_rules_have_defaults_for_every_kind(kind: str) -> None:
    rules = SecurityAlertSettings().rules()
    assert set(rules) == {
        "signature_failure",
        "stale_delivery",
        "replayed_delivery",
        "ssrf_refusal",
        "budget_refusal",
        "auth_failure",
    }
    assert rules[kind].threshold >= 1


def test_metrics_and_report_show_events_and_open_alerts(store_url: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from nura.health.security import security_section
    from nura.platform.metrics import render_metrics

    engine = get_engine(store_url)
    rules = settings(signature_failure=(5, 10))
    record_event(engine, "signature_failure", "partner", now=T0, count=7)
    record_event(engine, "replayed_delivery", "git", now=T0, count=2)
    evaluate(engine, rules, now=T0 + 1)
    fams = {f.name: f for f in text_string_to_metric_families(render_metrics(engine))}
    events = {
        (s.labels["kind"], s.labels["subject"]): s.value
        for s in fams["nura_security_events"].samples
        if s.name == "nura_security_events_total"
    }
    assert events == {("signature_failure", "partner"): 7.0, ("replayed_delivery", "git"): 2.0}
    alerts = {s.labels["kind"]: s.value for s in fams["nura_security_alerts_open"].samples}
    assert alerts["signature_failure"] == 1.0 and alerts["auth_failure"] == 0.0
    section = security_section(engine, rules, now=T0 + 2)
    assert "## Security (last 24 h)" in section
    assert (
        "| webhook signature failures | endpoint partner | 7 | 5 in 10 min | 🔴 open |" in section
    )
    assert "| replayed webhook deliveries | endpoint git | 2 | 20 in 10 min | – |" in section
    assert "No security events." in security_section(engine, rules, now=T0 + 2 * 86400)
