"""Outgoing deliveries that must not be lost: an outbox whose failures are dead letters.

Every delivery is written here *before* its first attempt (`in_flight`, leased until
`next_attempt_at`), so a process that dies mid-delivery loses nothing: once the lease
expires, the redrive picks the entry up again (the receiver dedupes by `webhook-id`,
which is this table's primary key). Life of an entry:

    in_flight --2xx--> delivered
    in_flight --retryable failure after the attempts--> pending (a dead letter;
              redrive n is due base * 2**n minutes later) --redrive--> in_flight ...
    pending after max_redrives failures, or a non-retryable failure --> exhausted
    pending/exhausted --operator `nura deliveries purge`--> purged

Entries of a disabled target stay `pending` and are not redriven until it is enabled.
`nura_webhook_endpoints` holds each target's failure streak for auto-disable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from nura.core.stores.db import metadata, utcnow_ts

STATUSES = ("in_flight", "pending", "delivered", "exhausted", "purged")

dead_letters = Table(
    "nura_dead_letters",
    metadata,
    Column("id", String(100), primary_key=True),  # the webhook-id, stable across retries
    Column("target", String(100), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("payload", Text, nullable=False),  # the exact JSON body that is signed and sent
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),  # HTTP attempts, all runs
    Column("redrives", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=True),  # due time (pending) / lease (in_flight)
    Column("delivered_at", Float, nullable=True),
    Index("ix_nura_dead_letters_status_next", "status", "next_attempt_at"),
    Index("ix_nura_dead_letters_target", "target"),
)

endpoints = Table(
    "nura_webhook_endpoints",
    metadata,
    Column("target", String(100), primary_key=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("disabled_reason", Text, nullable=True),
    Column("disabled_at", Float, nullable=True),
    Column("failing_since", Float, nullable=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_success_at", Float, nullable=True),
    Column("last_failure_at", Float, nullable=True),
)


# -- the outbox ----------------------------------------------------------------------------
def enqueue(
    engine: Engine,
    target: str,
    entries: Sequence[tuple[str, str, str]],
    *,
    lease_seconds: float,
    now: float | None = None,
) -> list[str]:
    """Store (id, event_type, payload) entries as `in_flight`; returns the ids that are new.

    An id already stored (the same event submitted again) is not stored twice nor sent
    again: the caller delivers only the returned ids.
    """
    now = now if now is not None else utcnow_ts()
    ids = [e[0] for e in entries]
    with engine.connect() as conn:
        existing = set()
        for chunk in _chunks(ids, 500):
            existing |= set(
                conn.execute(select(dead_letters.c.id).where(dead_letters.c.id.in_(chunk)))
                .scalars()
                .all()
            )
    rows: list[dict[str, Any]] = [
        {
            "id": i,
            "target": target,
            "event_type": t,
            "payload": p,
            "status": "in_flight",
            "attempts": 0,
            "redrives": 0,
            "created_at": now,
            "updated_at": now,
            "next_attempt_at": now + lease_seconds,
        }
        for i, t, p in entries
        if i not in existing
    ]
    if not rows:
        return []
    try:
        with engine.begin() as conn:
            conn.execute(insert(dead_letters), rows)
        return [str(r["id"]) for r in rows]
    except IntegrityError:
        # Another process stored some of these meanwhile: one by one, keep what is ours.
        fresh: list[str] = []
        for row in rows:
            try:
                with engine.begin() as conn:
                    conn.execute(insert(dead_letters).values(**row))
                fresh.append(str(row["id"]))
            except IntegrityError:
                continue
        return fresh


def mark_delivered(
    engine: Engine, results: Iterable[tuple[str, int, int]], now: float | None = None
) -> None:
    """Batch: (id, attempts made in this run, status code) of successful deliveries."""
    now = now if now is not None else utcnow_ts()
    params = [{"b_id": i, "b_attempts": a, "b_status": s, "b_now": now} for i, a, s in results]
    if not params:
        return
    stmt = (
        update(dead_letters)
        .where(dead_letters.c.id == bindparam("b_id"))
        .values(
            status="delivered",
            attempts=dead_letters.c.attempts + bindparam("b_attempts"),
            last_status=bindparam("b_status"),
            last_error=None,
            delivered_at=bindparam("b_now"),
            updated_at=bindparam("b_now"),
            next_attempt_at=None,
        )
    )
    with engine.begin() as conn:
        conn.execute(stmt, params)


def mark_failed(
    engine: Engine,
    msg_id: str,
    *,
    attempts: int,
    error: str,
    status_code: int | None,
    retryable: bool,
    redrive: bool,
    base_minutes: float,
    max_redrives: int,
    now: float | None = None,
) -> str:
    """Record a failed run of a delivery; returns the new status (pending or exhausted).

    The seed's schedule: redrive n (n = 0, 1, ...) is due `base * 2**n` minutes after the
    failure that preceded it, and after `max_redrives` redrives the entry is exhausted.
    """
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        row = conn.execute(
            select(dead_letters.c.redrives).where(dead_letters.c.id == msg_id)
        ).first()
        if row is None:
            raise KeyError(msg_id)
        redrives = row.redrives + (1 if redrive else 0)
        exhausted = not retryable or redrives >= max_redrives
        status = "exhausted" if exhausted else "pending"
        conn.execute(
            update(dead_letters)
            .where(dead_letters.c.id == msg_id)
            .values(
                status=status,
                attempts=dead_letters.c.attempts + attempts,
                redrives=redrives,
                last_error=error[:2000],
                last_status=status_code,
                updated_at=now,
                next_attempt_at=None if exhausted else now + base_minutes * 60 * 2**redrives,
            )
        )
    return status


def park(
    engine: Engine,
    msg_id: str,
    reason: str,
    *,
    attempts: int = 0,
    status_code: int | None = None,
    now: float | None = None,
) -> None:
    """Keep an entry `pending` without spending a redrive (its target is disabled)."""
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        conn.execute(
            update(dead_letters)
            .where(dead_letters.c.id == msg_id)
            .values(
                status="pending",
                attempts=dead_letters.c.attempts + attempts,
                last_error=reason[:2000],
                last_status=status_code,
                updated_at=now,
                next_attempt_at=now,
            )
        )


def due(
    engine: Engine,
    *,
    now: float | None = None,
    limit: int = 200,
    exclude_targets: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Pending entries whose time has come, and in-flight ones whose lease expired."""
    now = now if now is not None else utcnow_ts()
    query = (
        select(dead_letters)
        .where(
            dead_letters.c.status.in_(("pending", "in_flight")),
            dead_letters.c.next_attempt_at <= now,
        )
        .order_by(dead_letters.c.next_attempt_at)
        .limit(limit)
    )
    excluded = list(exclude_targets)
    if excluded:
        query = query.where(dead_letters.c.target.notin_(excluded))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query).all()]


def claim(engine: Engine, msg_id: str, *, lease_seconds: float, now: float | None = None) -> bool:
    """Take one due entry for an attempt; False when another process took it first."""
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        result = conn.execute(
            update(dead_letters)
            .where(
                dead_letters.c.id == msg_id,
                dead_letters.c.status.in_(("pending", "in_flight")),
                dead_letters.c.next_attempt_at <= now,
            )
            .values(status="in_flight", next_attempt_at=now + lease_seconds, updated_at=now)
        )
        return result.rowcount == 1


def get(engine: Engine, msg_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters).where(dead_letters.c.id == msg_id)).first()
    return dict(row._mapping) if row else None


def list_entries(
    engine: Engine,
    *,
    statuses: Sequence[str] = ("pending", "exhausted"),
    target: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    query = select(dead_letters).where(dead_letters.c.status.in_(list(statuses)))
    if target:
        query = query.where(dead_letters.c.target == target)
    query = query.order_by(dead_letters.c.created_at).limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query).all()]


def requeue(
    engine: Engine,
    *,
    ids: Sequence[str] = (),
    statuses: Sequence[str] = (),
    target: str | None = None,
    now: float | None = None,
) -> int:
    """Operator replay: make entries due now (exhausted ones get one more redrive)."""
    now = now if now is not None else utcnow_ts()
    conds: list[ColumnElement[bool]] = [dead_letters.c.status.in_(("pending", "exhausted"))]
    if ids:
        conds.append(dead_letters.c.id.in_(list(ids)))
    if statuses:
        conds.append(dead_letters.c.status.in_(list(statuses)))
    if target:
        conds.append(dead_letters.c.target == target)
    if not ids and not statuses and not target:
        raise ValueError("say which entries: ids, statuses or a target")
    with engine.begin() as conn:
        result = conn.execute(
            update(dead_letters)
            .where(and_(*conds))
            .values(
                status="pending",
                # an exhausted entry keeps its history but may try once more
                redrives=func.max(dead_letters.c.redrives - 1, 0)
                if engine.dialect.name == "sqlite"
                else func.greatest(dead_letters.c.redrives - 1, 0),
                next_attempt_at=now,
                updated_at=now,
            )
        )
        return int(result.rowcount)


def purge(
    engine: Engine,
    *,
    ids: Sequence[str] = (),
    statuses: Sequence[str] = ("pending", "exhausted"),
    target: str | None = None,
    older_than: float | None = None,
    now: float | None = None,
) -> int:
    """Give up on entries (status `purged`, kept for audit until `delete_old`)."""
    now = now if now is not None else utcnow_ts()
    allowed = [s for s in statuses if s in ("pending", "exhausted")]
    conds: list[ColumnElement[bool]] = [dead_letters.c.status.in_(allowed)]
    if ids:
        conds.append(dead_letters.c.id.in_(list(ids)))
    if target:
        conds.append(dead_letters.c.target == target)
    if older_than is not None:
        conds.append(dead_letters.c.created_at <= now - older_than)
    with engine.begin() as conn:
        result = conn.execute(
            update(dead_letters).where(and_(*conds)).values(status="purged", updated_at=now)
        )
        return int(result.rowcount)


def delete_old(engine: Engine, *, before: float) -> int:
    """Remove delivered and purged rows last touched before `before` (retention)."""
    with engine.begin() as conn:
        result = conn.execute(
            delete(dead_letters).where(
                dead_letters.c.status.in_(("delivered", "purged")),
                dead_letters.c.updated_at < before,
            )
        )
        return int(result.rowcount)


def dead_letter_stats(engine: Engine, now: float | None = None) -> dict[str, Any]:
    """For the health monitor: pending dead letters (`count`), age of the oldest, and more."""
    now = now if now is not None else utcnow_ts()
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                dead_letters.c.status,
                func.count(),
                func.min(dead_letters.c.created_at),
            ).group_by(dead_letters.c.status)
        ).all()
    by_status = {r[0]: (int(r[1]), r[2]) for r in rows}
    pending, oldest = by_status.get("pending", (0, None))
    return {
        "count": pending,
        "oldest_age_s": max(0.0, now - oldest) if oldest is not None else 0.0,
        "exhausted": by_status.get("exhausted", (0, None))[0],
        "in_flight": by_status.get("in_flight", (0, None))[0],
        "delivered": by_status.get("delivered", (0, None))[0],
    }


# -- endpoint failure state (auto-disable) -------------------------------------------------
def _ensure_endpoint(conn: Any, target: str) -> None:
    """Insert the target's row unless it exists (atomic on both backends)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    conn.execute(
        upsert(endpoints)
        .values(target=target, disabled=False, consecutive_failures=0)
        .on_conflict_do_nothing(index_elements=["target"])
    )


def record_endpoint_success(engine: Engine, target: str, now: float | None = None) -> None:
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        _ensure_endpoint(conn, target)
        conn.execute(
            update(endpoints)
            .where(endpoints.c.target == target)
            .values(failing_since=None, consecutive_failures=0, last_success_at=now)
        )


def record_endpoint_failure(engine: Engine, target: str, now: float | None = None) -> float:
    """Count a failed delivery; returns for how long (seconds) the target has been failing."""
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        _ensure_endpoint(conn, target)
        conn.execute(
            update(endpoints)
            .where(endpoints.c.target == target)
            .values(
                failing_since=func.coalesce(endpoints.c.failing_since, now),
                consecutive_failures=endpoints.c.consecutive_failures + 1,
                last_failure_at=now,
            )
        )
        since = conn.execute(
            select(endpoints.c.failing_since).where(endpoints.c.target == target)
        ).scalar_one()
    return max(0.0, now - float(since))


def disable_endpoint(engine: Engine, target: str, reason: str, now: float | None = None) -> bool:
    """Disable a target; True only for the call that disabled it (alert once)."""
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        _ensure_endpoint(conn, target)
        result = conn.execute(
            update(endpoints)
            .where(endpoints.c.target == target, endpoints.c.disabled.is_(False))
            .values(disabled=True, disabled_reason=reason[:2000], disabled_at=now)
        )
        return result.rowcount == 1


def enable_endpoint(engine: Engine, target: str) -> bool:
    with engine.begin() as conn:
        result = conn.execute(
            update(endpoints)
            .where(endpoints.c.target == target)
            .values(
                disabled=False,
                disabled_reason=None,
                disabled_at=None,
                failing_since=None,
                consecutive_failures=0,
            )
        )
        return result.rowcount == 1


def disabled_targets(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(select(endpoints.c.target).where(endpoints.c.disabled.is_(True)))
            .scalars()
            .all()
        )


def endpoint_states(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(endpoints)).all()]


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


__all__ = [
    "STATUSES",
    "claim",
    "dead_letter_stats",
    "dead_letters",
    "delete_old",
    "disable_endpoint",
    "disabled_targets",
    "due",
    "enable_endpoint",
    "endpoint_states",
    "endpoints",
    "enqueue",
    "get",
    "list_entries",
    "mark_delivered",
    "mark_failed",
    "park",
    "purge",
    "record_endpoint_failure",
    "record_endpoint_success",
    "requeue",
]
