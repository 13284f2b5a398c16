"""Durable alert state: one open alert per key, opened on worsening, resolved on recovery.

    change = apply_status(engine, "partner-a", "degraded", "p95 7.2 s > 5 s", severity="medium",
                          now=time.time(), reminder_seconds=3600)
    change.kind  # "opened" | "escalated" | "improved" | "reminder" | "resolved" | None

Rules (README, "Health monitoring"): no open alert + bad level -> opened; open + worse -> escalated
(notified again); open + better but still bad -> improved (event only); open + same level ->
nothing, or a reminder once `reminder_seconds` have passed since the last notification;
open + healthy -> resolved. "unknown" (nothing measured) changes nothing. Every change is
appended to `nura_alert_history`. The row is read and written in one transaction with a
row lock on PostgreSQL, so two monitor runs cannot both open the same alert.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from nura.core.stores.db import id_column, metadata

LEVEL_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}

alerts = Table(
    "nura_alerts",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("alert_id", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # open | resolved
    Column("level", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("opened_at", Float, nullable=False),
    Column("last_notified_at", Float, nullable=False),
    Column("resolved_at", Float, nullable=True),
    Column("reminders", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
)

alert_history = Table(
    "nura_alert_history",
    metadata,
    id_column(),
    Column("ts", Float, nullable=False),
    Column("key", String(100), nullable=False, index=True),
    Column("alert_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("level", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("reason", Text, nullable=True),
)


@dataclass(frozen=True)
class AlertChange:
    """One alert transition; `notify` says whether it goes to people (not only events)."""

    kind: str
    key: str
    alert_id: str
    level: str
    previous_level: str
    severity: str
    reason: str
    opened_at: float
    ts: float

    @property
    def notify(self) -> bool:
        return self.kind in ("opened", "escalated", "reminder", "resolved")

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ts - self.opened_at)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "notify": self.notify, "duration_s": self.duration_s}


def apply_status(
    engine: Engine,
    key: str,
    level: str,
    reason: str,
    *,
    severity: str,
    now: float,
    reminder_seconds: float,
) -> AlertChange | None:
    """Move the alert of `key` according to its newly evaluated `level`."""
    if level not in LEVEL_RANK:
        return None  # unknown / not configured: no evidence either way
    for _ in range(3):
        try:
            with engine.begin() as conn:
                return _apply(conn, key, level, reason, severity, now, reminder_seconds)
        except IntegrityError:
            continue  # a concurrent run inserted the row first: read it and decide again
    raise RuntimeError(f"alert state of {key!r} kept changing under us")


def _apply(conn, key, level, reason, severity, now, reminder_seconds):  # type: ignore[no-untyped-def]
    row = conn.execute(select(alerts).where(alerts.c.key == key).with_for_update()).first()
    is_open = row is not None and row.state == "open"
    if not is_open:
        if level == "healthy":
            return None
        alert_id = uuid.uuid4().hex
        values = dict(
            alert_id=alert_id,
            state="open",
            level=level,
            severity=severity,
            reason=reason,
            opened_at=now,
            last_notified_at=now,
            resolved_at=None,
            reminders=0,
            updated_at=now,
        )
        if row is None:
            conn.execute(insert(alerts).values(key=key, **values))
        else:
            conn.execute(update(alerts).where(alerts.c.key == key).values(**values))
        return _log(conn, "opened", key, alert_id, level, "healthy", severity, reason, now, now)

    previous = row.level
    if level == "healthy":
        conn.execute(
            update(alerts)
            .where(alerts.c.key == key)
            .values(state="resolved", resolved_at=now, updated_at=now, reason=reason)
        )
        return _log(
            conn,
            "resolved",
            key,
            row.alert_id,
            level,
            previous,
            row.severity,
            reason,
            row.opened_at,
            now,
        )
    if LEVEL_RANK[level] != LEVEL_RANK[previous]:
        kind = "escalated" if LEVEL_RANK[level] > LEVEL_RANK[previous] else "improved"
        values = dict(level=level, severity=severity, reason=reason, updated_at=now)
        if kind == "escalated":
            values["last_notified_at"] = now
        conn.execute(update(alerts).where(alerts.c.key == key).values(**values))
        return _log(
            conn, kind, key, row.alert_id, level, previous, severity, reason, row.opened_at, now
        )
    if reminder_seconds > 0 and now - row.last_notified_at >= reminder_seconds:
        conn.execute(
            update(alerts)
            .where(alerts.c.key == key)
            .values(
                last_notified_at=now, reminders=row.reminders + 1, reason=reason, updated_at=now
            )
        )
        return _log(
            conn,
            "reminder",
            key,
            row.alert_id,
            level,
            previous,
            row.severity,
            reason,
            row.opened_at,
            now,
        )
    conn.execute(update(alerts).where(alerts.c.key == key).values(reason=reason, updated_at=now))
    return None


def _log(conn, kind, key, alert_id, level, previous, severity, reason, opened_at, now):  # type: ignore[no-untyped-def]
    conn.execute(
        insert(alert_history).values(
            ts=now,
            key=key,
            alert_id=alert_id,
            kind=kind,
            level=level,
            severity=severity,
            reason=reason,
        )
    )
    return AlertChange(kind, key, alert_id, level, previous, severity, reason, opened_at, now)


def open_alerts(engine: Engine) -> list[dict[str, Any]]:
    """Currently open alerts, most severe level first."""
    with engine.connect() as conn:
        rows = conn.execute(select(alerts).where(alerts.c.state == "open")).all()
    out = [dict(r._mapping) for r in rows]
    out.sort(key=lambda a: (-LEVEL_RANK.get(a["level"], 0), a["opened_at"]))
    return out


def history(engine: Engine, key: str | None = None) -> list[dict[str, Any]]:
    stmt = select(alert_history).order_by(alert_history.c.id)
    if key is not None:
        stmt = stmt.where(alert_history.c.key == key)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt).all()]
