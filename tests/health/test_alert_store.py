"""Durable alert state on SQLite and PostgreSQL: open, no repeat, remind, escalate, resolve."""

from __future__ import annotations

from nura.core.stores.alerts import apply_status, history, open_alerts
from nura.core.stores.db import get_engine, reset_engines

T0 = 1_900_000_000.0


def step(engine, level, now, reason="r", severity=None):
    sev = severity or {"unhealthy": "high", "degraded": "medium"}.get(level, "low")
    change = apply_status(
        engine, "svc", level, reason, severity=sev, now=now, reminder_seconds=3600
    )
    return change.kind if change else None


def test_lifecycle(store_url: str) -> None:
    engine = get_engine(store_url)
    assert step(engine, "healthy", T0) is None  # nothing open: nothing to resolve
    assert step(engine, "unknown", T0) is None
    assert step(engine, "degraded", T0) == "opened"
    assert step(engine, "degraded", T0 + 300) is None  # persists: not repeated
    assert step(engine, "unknown", T0 + 400) is None  # no evidence: alert stays open
    assert step(engine, "degraded", T0 + 3599) is None
    assert step(engine, "degraded", T0 + 3600) == "reminder"
    assert step(engine, "degraded", T0 + 3900) is None  # reminder clock restarted
    assert step(engine, "unhealthy", T0 + 4000) == "escalated"
    assert step(engine, "degraded", T0 + 4300) == "improved"
    [alert] = open_alerts(engine)
    assert alert["level"] == "degraded" and alert["reminders"] == 1

    # Durable: a new process (engine) sees the same open alert and resolves it.
    reset_engines()
    engine = get_engine(store_url)
    assert step(engine, "degraded", T0 + 4600) is None
    assert step(engine, "healthy", T0 + 5000) == "resolved"
    assert open_alerts(engine) == []
    assert step(engine, "degraded", T0 + 6000) == "opened"  # a new incident, a new id
    kinds = [h["kind"] for h in history(engine, "svc")]
    assert kinds == ["opened", "reminder", "escalated", "improved", "resolved", "opened"]
    ids = {h["alert_id"] for h in history(engine, "svc")}
    assert len(ids) == 2


def test_resolved_change_carries_duration_and_previous_level(store_url: str) -> None:
    engine = get_engine(store_url)
    apply_status(engine, "x", "unhealthy", "down", severity="high", now=T0, reminder_seconds=0)
    assert (
        apply_status(
            engine, "x", "unhealthy", "down", severity="high", now=T0 + 300, reminder_seconds=0
        )
        is None
    )  # reminder interval 0: never repeated
    change = apply_status(
        engine, "x", "healthy", "recovered", severity="low", now=T0 + 600, reminder_seconds=0
    )
    assert change is not None and change.kind == "resolved" and change.notify
    assert change.previous_level == "unhealthy" and change.duration_s == 600
    assert change.severity == "high"  # the recovery message goes where the alert went
