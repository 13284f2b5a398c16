"""Durable alert state: one open alert per key, confirmed before it opens, resolved on recovery.

    change = apply_status(engine, "partner-a", "degraded", "p95 7.2 s > 5 s", severity="medium",
                          now=time.time(), reminder_seconds=3600,
                          failure_threshold=2, success_threshold=2)
    change.kind  # "opened" | "escalated" | "improved" | "reminder" | "resolved" | None

Rules (docs/health.md, "Alerts"). Every evaluation moves three streaks kept on the key's
row (consecutive bad, consecutive unhealthy, consecutive healthy evaluations), so
confirmation survives across runs and processes:
- no open alert: opens once `failure_threshold` consecutive evaluations were bad, at the
  confirmed level (unhealthy when that many were unhealthy, else degraded);
- open, worse and confirmed: escalated; open, better but still bad: improved (event only);
- open, same level: nothing, or a reminder once `reminder_seconds` have passed since the
  last notification;
- open and `success_threshold` consecutive healthy evaluations: resolved.
A level already notified for this alert is never notified again (a flap back up to it is
an event, not a page). The alert remembers the highest severity it notified, and its
recovery carries that severity, so whoever was paged hears the recovery. "unknown"
(nothing measured) changes nothing. Every change is appended to `nura_alert_history`.
The row is read and written in one transaction with a row lock on PostgreSQL, so two
monitor runs cannot both open the same alert.
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
    case,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DatabaseError, IntegrityError

from nura.core.stores.db import id_column, metadata

LEVEL_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}
SEVERITY = {"unhealthy": "high", "degraded": "medium", "healthy": "low"}
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}

alerts = Table(
    "nura_alerts",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("alert_id", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # open | resolved | none (never opened)
    Column("level", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("opened_at", Float, nullable=False),
    Column("last_notified_at", Float, nullable=False),
    Column("resolved_at", Float, nullable=True),
    Column("reminders", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
    # Confirmation streaks (consecutive evaluations) and what this alert has notified.
    Column("bad_streak", Integer, nullable=False, default=0, server_default="0"),
    Column("unhealthy_streak", Integer, nullable=False, default=0, server_default="0"),
    Column("good_streak", Integer, nullable=False, default=0, server_default="0"),
    Column("notified_rank", Integer, nullable=False, default=0, server_default="0"),
    Column("notified_severity", String(16), nullable=True),
)
# Columns added after the table first shipped: created on older tables by `_migrate`.
_ADDED = {
    "bad_streak": "INTEGER NOT NULL DEFAULT 0",
    "unhealthy_streak": "INTEGER NOT NULL DEFAULT 0",
    "good_streak": "INTEGER NOT NULL DEFAULT 0",
    "notified_rank": "INTEGER NOT NULL DEFAULT 0",
    "notified_severity": "VARCHAR(16)",
}
_migrated: set[int] = set()

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
    # Goes to people (not only an event): opened, a not-yet-notified escalation, reminder,
    # resolved.
    notify: bool = False

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ts - self.opened_at)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


def _migrate(engine: Engine) -> None:
    """Add the streak/notified columns to an alert table created before they existed."""
    if id(engine) in _migrated:
        return

    def missing() -> list[str]:
        found = inspect(engine)
        if not found.has_table(alerts.name):
            return []
        have = {col["name"] for col in found.get_columns(alerts.name)}
        return [name for name in _ADDED if name not in have]

    for name in missing():
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {alerts.name} ADD COLUMN {name} {_ADDED[name]}"))
                if name == "notified_rank":
                    # An alert open before the column existed notified its current level.
                    conn.execute(
                        update(alerts)
                        .where(alerts.c.state == "open")
                        .values(
                            notified_rank=case(
                                *[(alerts.c.level == k, v) for k, v in LEVEL_RANK.items()],
                                else_=0,
                            )
                        )
                    )
        except DatabaseError:
            if name in missing():  # otherwise another process added it first
                raise
    _migrated.add(id(engine))


def apply_status(
    engine: Engine,
    key: str,
    level: str,
    reason: str,
    *,
    severity: str | None = None,
    now: float,
    reminder_seconds: float,
    failure_threshold: int = 1,
    success_threshold: int = 1,
) -> AlertChange | None:
    """Move the alert of `key` according to its newly evaluated `level` (see the module
    docstring); `severity` defaults to the level's (unhealthy high, degraded medium)."""
    if level not in LEVEL_RANK:
        return None  # unknown / not configured: no evidence either way
    _migrate(engine)
    rules = _Rules(max(1, failure_threshold), max(1, success_threshold), reminder_seconds)
    for _ in range(3):
        try:
            with engine.begin() as conn:
                return _apply(conn, key, level, reason, severity, now, rules)
        except IntegrityError:
            continue  # a concurrent run inserted the row first: read it and decide again
    raise RuntimeError(f"alert state of {key!r} kept changing under us")


@dataclass(frozen=True)
class _Rules:
    failures: int
    successes: int
    reminder_seconds: float


def _streaks(row: Any, level: str) -> dict[str, int]:
    bad = row.bad_streak if row is not None else 0
    unhealthy = row.unhealthy_streak if row is not None else 0
    good = row.good_streak if row is not None else 0
    if level == "healthy":
        return {"bad_streak": 0, "unhealthy_streak": 0, "good_streak": good + 1}
    return {
        "bad_streak": bad + 1,
        "unhealthy_streak": unhealthy + 1 if level == "unhealthy" else 0,
        "good_streak": 0,
    }


def _confirmed(streaks: dict[str, int], failures: int) -> str | None:
    """The worst level seen `failures` times in a row, if any."""
    if streaks["unhealthy_streak"] >= failures:
        return "unhealthy"
    if streaks["bad_streak"] >= failures:
        return "degraded"
    return None


def _apply(conn, key, level, reason, severity, now, rules):  # type: ignore[no-untyped-def]
    row = conn.execute(select(alerts).where(alerts.c.key == key).with_for_update()).first()
    streaks = _streaks(row, level)
    confirmed = _confirmed(streaks, rules.failures)
    is_open = row is not None and row.state == "open"

    def save(**values: Any) -> None:
        values = {**streaks, "updated_at": now, **values}
        conn.execute(update(alerts).where(alerts.c.key == key).values(**values))

    if not is_open:
        if confirmed is None:
            if row is None:
                conn.execute(
                    insert(alerts).values(
                        key=key,
                        alert_id="",
                        state="none",
                        level="healthy",
                        severity="low",
                        reason=None,
                        opened_at=now,
                        last_notified_at=now,
                        reminders=0,
                        notified_rank=0,
                        **streaks,
                        updated_at=now,
                    )
                )
            else:
                save()
            return None
        sev = _severity(confirmed, level, severity)
        alert_id = uuid.uuid4().hex
        values = dict(
            alert_id=alert_id,
            state="open",
            level=confirmed,
            severity=sev,
            reason=reason,
            opened_at=now,
            last_notified_at=now,
            resolved_at=None,
            reminders=0,
            notified_rank=LEVEL_RANK[confirmed],
            notified_severity=sev,
        )
        if row is None:
            conn.execute(insert(alerts).values(key=key, **values, **streaks, updated_at=now))
        else:
            save(**values)
        return _log(
            conn, "opened", key, alert_id, confirmed, "healthy", sev, reason, now, now, True
        )

    previous = row.level
    paged = row.notified_severity or row.severity
    if level == "healthy":
        if streaks["good_streak"] < rules.successes:
            save()
            return None
        save(state="resolved", resolved_at=now, reason=reason)
        return _log(
            conn,
            "resolved",
            key,
            row.alert_id,
            level,
            previous,
            paged,
            reason,
            row.opened_at,
            now,
            True,
        )
    if LEVEL_RANK[level] < LEVEL_RANK[previous]:
        sev = _severity(level, level, severity)
        save(level=level, severity=sev, reason=reason)
        return _log(
            conn,
            "improved",
            key,
            row.alert_id,
            level,
            previous,
            sev,
            reason,
            row.opened_at,
            now,
            False,
        )
    if confirmed is not None and LEVEL_RANK[confirmed] > LEVEL_RANK[previous]:
        sev = _severity(confirmed, level, severity)
        # A level this alert already notified (it flapped down and back) is an event only.
        notify = LEVEL_RANK[confirmed] > row.notified_rank
        changed: dict[str, Any] = dict(level=confirmed, severity=sev, reason=reason)
        if notify:
            changed.update(
                last_notified_at=now,
                notified_rank=LEVEL_RANK[confirmed],
                notified_severity=_worse(paged, sev),
            )
        save(**changed)
        return _log(
            conn,
            "escalated",
            key,
            row.alert_id,
            confirmed,
            previous,
            sev,
            reason,
            row.opened_at,
            now,
            notify,
        )
    if rules.reminder_seconds > 0 and now - row.last_notified_at >= rules.reminder_seconds:
        save(last_notified_at=now, reminders=row.reminders + 1, reason=reason)
        return _log(
            conn,
            "reminder",
            key,
            row.alert_id,
            previous,
            previous,
            row.severity,
            reason,
            row.opened_at,
            now,
            True,
        )
    save(reason=reason)
    return None


def _severity(confirmed: str, level: str, given: str | None) -> str:
    """The caller's severity when it judged this very level, else the level's own."""
    if given is not None and confirmed == level:
        return given
    return SEVERITY[confirmed]


def _worse(a: str | None, b: str) -> str:
    return b if a is None or SEVERITY_RANK.get(b, 0) > SEVERITY_RANK.get(a, 0) else a


def _log(conn, kind, key, alert_id, level, previous, severity, reason, opened_at, now, notify):  # type: ignore[no-untyped-def]
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
    return AlertChange(
        kind, key, alert_id, level, previous, severity, reason, opened_at, now, notify
    )


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
