"""Maintenance windows started at run time, and the notices already sent for any window.

    row = add_window(engine, "confluence", starts_at=now, ends_at=now + 1800,
                     reason="upgrade", actor="cli:ana", now=now)
    active_windows(engine, now)            # rows with starts_at <= now < effective end
    end_window(engine, row["id"], actor="cli:ana", now=now)
    claim_notice(engine, "store:7", "started", service="confluence", now=now)  # True once

A window's effective end is `ended_at` when it was ended early, else `ends_at`. Windows
declared in the configuration are not stored here (the configuration is their record);
their notices are, under the key `config:<service>:<start>`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from nura.core.stores.db import id_column, metadata

maintenance_windows = Table(
    "nura_maintenance_windows",
    metadata,
    id_column(),
    Column("service", String(100), nullable=False, index=True),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("actor", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),  # set when ended before ends_at
    Column("ended_by", String(200), nullable=True),
)

maintenance_notices = Table(
    "nura_maintenance_notices",
    metadata,
    # "<window key>:<kind>", kind started | ended: the primary key makes a notice once-only
    Column("key", String(250), primary_key=True),
    Column("service", String(100), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("ts", Float, nullable=False),
)


def _effective_end() -> Any:
    c = maintenance_windows.c
    return func.coalesce(c.ended_at, c.ends_at)


def add_window(
    engine: Engine,
    service: str,
    *,
    starts_at: float,
    ends_at: float,
    reason: str,
    actor: str,
    now: float,
) -> dict[str, Any]:
    """Insert a window; returns its row."""
    values = dict(
        service=service,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        actor=actor,
        created_at=now,
        ended_at=None,
        ended_by=None,
    )
    with engine.begin() as conn:
        key = conn.execute(insert(maintenance_windows).values(**values)).inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return {"id": int(key[0]), **values}


def end_window(engine: Engine, window_id: int, *, actor: str, now: float) -> dict[str, Any] | None:
    """End a still-active window at `now`; None when it had already ended."""
    c = maintenance_windows.c
    with engine.begin() as conn:
        done = conn.execute(
            update(maintenance_windows)
            .where(c.id == window_id, c.ended_at.is_(None), c.ends_at > now)
            .values(ended_at=now, ended_by=actor)
        ).rowcount
        if not done:
            return None
        row = conn.execute(select(maintenance_windows).where(c.id == window_id)).one()
    return dict(row._mapping)


def active_windows(engine: Engine, now: float, service: str | None = None) -> list[dict[str, Any]]:
    """Windows in effect at `now` (start inclusive, end exclusive), oldest first."""
    c = maintenance_windows.c
    stmt = select(maintenance_windows).where(c.starts_at <= now, _effective_end() > now)
    if service is not None:
        stmt = stmt.where(c.service == service)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt.order_by(c.starts_at, c.id)).all()]


def windows_between(engine: Engine, since: float, until: float) -> list[dict[str, Any]]:
    """Windows that overlap `(since, until]` at all (ended ones included), oldest first."""
    c = maintenance_windows.c
    stmt = select(maintenance_windows).where(c.starts_at <= until, _effective_end() > since)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt.order_by(c.starts_at, c.id)).all()]


def upcoming_windows(engine: Engine, now: float) -> list[dict[str, Any]]:
    """Windows in effect at `now` or starting later, oldest first."""
    c = maintenance_windows.c
    stmt = select(maintenance_windows).where(_effective_end() > now)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt.order_by(c.starts_at, c.id)).all()]


def claim_notice(engine: Engine, window_key: str, kind: str, *, service: str, now: float) -> bool:
    """True for the one caller that records this window's `kind` notice first (any process)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(maintenance_notices).values(
                    key=f"{window_key}:{kind}"[:250], service=service, kind=kind, ts=now
                )
            )
    except IntegrityError:
        return False
    return True


def notices(engine: Engine, service: str | None = None) -> list[dict[str, Any]]:
    stmt = select(maintenance_notices).order_by(maintenance_notices.c.ts)
    if service is not None:
        stmt = stmt.where(maintenance_notices.c.service == service)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt).all()]


def notice_sent(engine: Engine, window_key: str, kind: str) -> bool:
    key = f"{window_key}:{kind}"[:250]
    with engine.connect() as conn:
        row = conn.execute(
            select(maintenance_notices.c.key).where(maintenance_notices.c.key == key)
        ).first()
    return row is not None


__all__ = [
    "active_windows",
    "add_window",
    "claim_notice",
    "end_window",
    "maintenance_notices",
    "maintenance_windows",
    "notice_sent",
    "notices",
    "upcoming_windows",
    "windows_between",
]
