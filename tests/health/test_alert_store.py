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


def run(engine, levels, *, start=T0, step_s=300, key="svc", failures=2, successes=2):
    """Feed one level per 5-min round; returns [(kind, severity, notify)] of the changes."""
    out = []
    for i, level in enumerate(levels):
        change = apply_status(
            engine,
            key,
            level,
            level,
            now=start + i * step_s,
            reminder_seconds=3600,
            failure_threshold=failures,
            success_threshold=successes,
        )
        if change is not None:
            out.append((change.kind, change.severity, change.notify))
    return out


def test_recovery_of_a_high_alert_healing_through_degraded_is_announced_at_high(
    store_url: str,
) -> None:
    engine = get_engine(store_url)
    changes = run(
        engine,
        ["unhealthy", "unhealthy", "unhealthy", "degraded", "degraded", "healthy", "healthy"],
    )
    assert changes == [
        ("opened", "high", True),
        ("improved", "medium", False),  # event only
        ("resolved", "high", True),  # whoever was paged hears the recovery
    ]


def test_flapping_is_confirmed_once_and_never_repages_a_notified_level(store_url: str) -> None:
    engine = get_engine(store_url)
    # Three down/up cycles in 30 min: the window keeps an "up" round degraded.
    flaps = ["unhealthy", "degraded"] * 3
    assert run(engine, flaps) == [("opened", "medium", True)]
    assert [a["level"] for a in open_alerts(engine)] == ["degraded"]
    # One single failed round never opens anything.
    assert run(engine, ["unhealthy", "healthy", "healthy"], key="blip") == []
    # Escalated once (notified), improved, escalated again: the second is an event only.
    escalations = run(
        engine,
        ["degraded", "degraded", "unhealthy", "unhealthy", "degraded", "unhealthy", "unhealthy"],
        key="again",
    )
    assert escalations == [
        ("opened", "medium", True),
        ("escalated", "high", True),
        ("improved", "medium", False),
        ("escalated", "high", False),
    ]


def test_resolution_needs_success_threshold_healthy_rounds(store_url: str) -> None:
    engine = get_engine(store_url)
    changes = run(engine, ["unhealthy"] * 2 + ["healthy", "unhealthy", "healthy", "healthy"])
    assert [c[0] for c in changes] == ["opened", "resolved"]
    # Durable across processes: the streaks live in the store.
    engine2 = get_engine(store_url)
    assert run(engine2, ["degraded"], start=T0 + 9000) == []
    reset_engines()
    assert run(get_engine(store_url), ["degraded"], start=T0 + 9300) == [("opened", "medium", True)]


def test_an_alert_table_from_before_the_streaks_gains_them(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE nura_alerts (key VARCHAR(100) PRIMARY KEY, alert_id VARCHAR(32) NOT "
            "NULL, state VARCHAR(16) NOT NULL, level VARCHAR(16) NOT NULL, severity VARCHAR(16) "
            "NOT NULL, reason TEXT, opened_at FLOAT NOT NULL, last_notified_at FLOAT NOT NULL, "
            "resolved_at FLOAT, reminders INTEGER NOT NULL, updated_at FLOAT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO nura_alerts VALUES ('svc', 'a1', 'open', 'degraded', 'medium', 'r', "
            f"{T0}, {T0}, NULL, 0, {T0})"
        )
    engine = get_engine(f"sqlite:///{path}")
    assert run(engine, ["unhealthy", "unhealthy"], start=T0 + 300) == [("escalated", "high", True)]
    assert run(engine, ["healthy", "healthy"], start=T0 + 900) == [("resolved", "high", True)]
