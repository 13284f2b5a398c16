"""Outgoing deliveries that must not be lost: an outbox whose failures are dead letters.

An entry is identified by (target, webhook-id): one event id sent to two targets is two
deliveries. Every delivery is written here *before* its first attempt, so a process that
dies mid-delivery loses nothing. Sending needs a lease: `claim` makes the caller the
entry's `lease_owner` until `next_attempt_at`, taken per entry just before it is sent and
sized to outlive that one delivery, and only the lease holder can record its outcome
(`mark_*` match the owner). A lease that expires (the process died) lets the redrive claim
the entry again; the receiver dedupes by `webhook-id`. Life of an entry:

    in_flight --2xx--> delivered
    in_flight --retryable failure after the attempts--> pending (a dead letter;
              redrive n is due base * 2**n minutes later) --redrive--> in_flight ...
    in_flight --refused by the target's open breaker--> pending until the breaker's next
              probe time: no request left, so neither an attempt nor a redrive is used
    pending after max_redrives failures, or a non-retryable failure --> exhausted
    pending/exhausted --operator `nura deliveries purge`--> purged

Entries of a disabled target stay `pending` and are not redriven until it is enabled.
`nura_webhook_endpoints` holds each target's failure streak for auto-disable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

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
    inspect,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from nura.core.stores.db import MIGRATIONS, metadata, utcnow_ts

logger = logging.getLogger("nura.stores.dead_letters")

STATUSES = ("in_flight", "pending", "delivered", "exhausted", "purged")

Key = tuple[str, str]  # (target, webhook-id)
_T = TypeVar("_T")

dead_letters = Table(
    "nura_deliveries",
    metadata,
    Column("target", String(100), primary_key=True),
    Column("id", String(100), primary_key=True),  # the webhook-id, stable across retries
    Column("event_type", String(200), nullable=False),
    Column("payload", Text, nullable=False),  # the exact JSON body that is signed and sent
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),  # requests that left, all runs
    Column("redrives", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=True),  # due time (pending) / lease (in_flight)
    Column("delivered_at", Float, nullable=True),
    Column("lease_owner", String(64), nullable=True),  # who may record the in-flight outcome
    Index("ix_nura_deliveries_status_next", "status", "next_attempt_at"),
    Index("ix_nura_deliveries_id", "id"),
    Index("ix_nura_deliveries_lease_owner", "lease_owner"),
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

_LEGACY = "nura_dead_letters"  # keyed by webhook-id alone (before (target, id))


def _migrate_legacy(engine: Engine) -> None:
    """Move the rows of the id-keyed table of older versions into this one, once."""
    if not inspect(engine).has_table(_LEGACY):
        return
    cols = [c.name for c in dead_letters.columns if c.name != "lease_owner"]
    names = ", ".join(cols)
    # table and column names are this module's constants, nothing comes from input
    sql = (
        f"INSERT INTO {dead_letters.name} ({names}) SELECT {names} FROM {_LEGACY} "  # noqa: S608
        f"WHERE NOT EXISTS (SELECT 1 FROM {dead_letters.name} d "
        f"WHERE d.target = {_LEGACY}.target AND d.id = {_LEGACY}.id)"
    )
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
            conn.execute(text(f"DROP TABLE {_LEGACY}"))
    except DatabaseError:
        if inspect(engine).has_table(_LEGACY):  # otherwise another process moved them
            raise
    logger.info("dead letters moved from %s to %s", _LEGACY, dead_letters.name)


MIGRATIONS.append(_migrate_legacy)

_d = dead_letters.c
# Fewest redrives first: the first entry of a pass is the probe of a recovering partner's
# breaker, and a failed probe costs that entry a redrive; rotating it spreads the cost.
_FAIR = (_d.redrives, _d.next_attempt_at)


def _key(target: str, msg_id: str) -> ColumnElement[bool]:
    return and_(_d.target == target, _d.id == msg_id)


# -- the outbox ----------------------------------------------------------------------------
def enqueue(
    engine: Engine,
    target: str,
    entries: Sequence[tuple[str, str, str]],
    *,
    lease_seconds: float,
    owner: str | None = None,
    now: float | None = None,
) -> list[str]:
    """Store (id, event_type, payload) entries of `target` as `in_flight`, leased to
    `owner`; returns the ids that are new.

    An id already stored for this target (the same event submitted again) is not stored
    twice nor sent again: the caller delivers only the returned ids.
    """
    now = now if now is not None else utcnow_ts()
    ids = [e[0] for e in entries]
    with engine.connect() as conn:
        existing = set()
        for chunk in _chunks(ids, 500):
            existing |= set(
                conn.execute(select(_d.id).where(_d.target == target, _d.id.in_(chunk)))
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
            "lease_owner": owner,
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


def claim(
    engine: Engine,
    target: str,
    msg_id: str,
    *,
    owner: str,
    lease_seconds: float,
    now: float | None = None,
) -> bool:
    """Lease one entry to `owner` for a send: an entry it holds already (renewed), or a
    due one (pending, or in flight with an expired lease). False: someone else has it."""
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        result = conn.execute(
            update(dead_letters)
            .where(
                _key(target, msg_id),
                or_(
                    and_(_d.status == "in_flight", _d.lease_owner == owner),
                    and_(_d.status.in_(("pending", "in_flight")), _d.next_attempt_at <= now),
                ),
            )
            .values(
                status="in_flight",
                lease_owner=owner,
                next_attempt_at=now + lease_seconds,
                updated_at=now,
            )
        )
        return result.rowcount == 1


def renew(engine: Engine, owner: str, *, lease_seconds: float, now: float | None = None) -> int:
    """Extend every lease `owner` holds (its heartbeat while a batch is being sent)."""
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        result = conn.execute(
            update(dead_letters).where(_held(owner)).values(next_attempt_at=now + lease_seconds)
        )
        return int(result.rowcount)


def _held(owner: str) -> ColumnElement[bool]:
    return and_(_d.status == "in_flight", _d.lease_owner == owner)


def mark_delivered(
    engine: Engine,
    results: Iterable[tuple[str, str, int, int]],
    *,
    owner: str,
    now: float | None = None,
) -> int:
    """Batch: (target, id, attempts made in this run, status code) of successful
    deliveries by `owner`; returns how many it still held (the rest were not its to mark)."""
    now = now if now is not None else utcnow_ts()
    params = [
        {"b_target": t, "b_id": i, "b_attempts": a, "b_status": s, "b_now": now}
        for t, i, a, s in results
    ]
    if not params:
        return 0
    stmt = (
        update(dead_letters)
        .where(
            _d.target == bindparam("b_target"),
            _d.id == bindparam("b_id"),
            _held(owner),
        )
        .values(
            status="delivered",
            attempts=_d.attempts + bindparam("b_attempts"),
            last_status=bindparam("b_status"),
            last_error=None,
            delivered_at=bindparam("b_now"),
            updated_at=bindparam("b_now"),
            next_attempt_at=None,
            lease_owner=None,
        )
    )
    with engine.begin() as conn:
        result = conn.execute(stmt, params)
    return max(0, int(result.rowcount))


def mark_failed(
    engine: Engine,
    target: str,
    msg_id: str,
    *,
    owner: str,
    attempts: int,
    error: str,
    status_code: int | None,
    retryable: bool,
    redrive: bool,
    base_minutes: float,
    max_redrives: int,
    not_before: float | None = None,
    now: float | None = None,
) -> str | None:
    """Record a failed run of a delivery; returns the new status (pending or exhausted),
    or None when `owner` no longer holds the entry (its outcome is not recorded).

    The seed's schedule: redrive n (n = 0, 1, ...) is due `base * 2**n` minutes after the
    failure that preceded it (not before `not_before`, e.g. the breaker's next probe), and
    after `max_redrives` redrives the entry is exhausted.
    """
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        row = conn.execute(select(_d.redrives).where(_key(target, msg_id), _held(owner))).first()
        if row is None:
            return None
        redrives = row.redrives + (1 if redrive else 0)
        exhausted = not retryable or redrives >= max_redrives
        status = "exhausted" if exhausted else "pending"
        due_at = now + base_minutes * 60 * 2**redrives
        result = conn.execute(
            update(dead_letters)
            .where(_key(target, msg_id), _held(owner))
            .values(
                status=status,
                attempts=_d.attempts + attempts,
                redrives=redrives,
                last_error=error[:2000],
                last_status=status_code,
                updated_at=now,
                next_attempt_at=None if exhausted else max(due_at, not_before or 0.0),
                lease_owner=None,
            )
        )
        return status if result.rowcount == 1 else None


def defer(
    engine: Engine,
    target: str,
    msg_id: str,
    *,
    owner: str,
    until: float,
    reason: str,
    attempts: int = 0,
    status_code: int | None = None,
    now: float | None = None,
) -> bool:
    """Put a held entry back to `pending`, due at `until`, without spending a redrive (its
    target refused it: an open breaker, a disabled target). `attempts` counts requests
    that did leave in this run. False when `owner` no longer held it."""
    now = now if now is not None else utcnow_ts()
    with engine.begin() as conn:
        result = conn.execute(
            update(dead_letters)
            .where(_key(target, msg_id), _held(owner))
            .values(
                status="pending",
                attempts=_d.attempts + attempts,
                last_error=reason[:2000],
                last_status=status_code,
                updated_at=now,
                next_attempt_at=until,
                lease_owner=None,
            )
        )
        return result.rowcount == 1


def park(
    engine: Engine,
    target: str,
    msg_id: str,
    reason: str,
    *,
    owner: str,
    attempts: int = 0,
    status_code: int | None = None,
    now: float | None = None,
) -> bool:
    """Keep a held entry `pending` without spending a redrive (its target is disabled:
    the redrive skips disabled targets, so it waits for `nura deliveries enable`)."""
    now = now if now is not None else utcnow_ts()
    return defer(
        engine,
        target,
        msg_id,
        owner=owner,
        until=now,
        reason=reason,
        attempts=attempts,
        status_code=status_code,
        now=now,
    )


def due(
    engine: Engine,
    *,
    now: float | None = None,
    limit: int = 200,
    exclude_targets: Iterable[str] = (),
    target: str | None = None,
    keys: Sequence[Key] | None = None,
) -> list[dict[str, Any]]:
    """Pending entries whose time has come, and in-flight ones whose lease expired
    (of one target, or of the given keys, when asked)."""
    now = now if now is not None else utcnow_ts()
    conds: list[ColumnElement[bool]] = [
        _d.status.in_(("pending", "in_flight")),
        _d.next_attempt_at <= now,
    ]
    excluded = list(exclude_targets)
    if excluded:
        conds.append(_d.target.notin_(excluded))
    if target:
        conds.append(_d.target == target)
    rows: list[dict[str, Any]] = []
    with engine.connect() as conn:
        if keys is None:
            query = select(dead_letters).where(*conds).order_by(*_FAIR).limit(limit)
            return [dict(r._mapping) for r in conn.execute(query).all()]
        for chunk in _chunks(keys, 400):
            query = select(dead_letters).where(*conds, tuple_(_d.target, _d.id).in_(chunk))
            rows.extend(dict(r._mapping) for r in conn.execute(query).all())
    return sorted(rows, key=lambda r: (r["redrives"], r["next_attempt_at"]))[:limit]


def get(engine: Engine, msg_id: str, target: str | None = None) -> dict[str, Any] | None:
    """The entry `msg_id` of `target` (of any target when none is named: the first)."""
    query = select(dead_letters).where(_d.id == msg_id).order_by(_d.target)
    if target is not None:
        query = query.where(_d.target == target)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def list_entries(
    engine: Engine,
    *,
    statuses: Sequence[str] = ("pending", "exhausted"),
    target: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    query = select(dead_letters).where(_d.status.in_(list(statuses)))
    if target:
        query = query.where(_d.target == target)
    query = query.order_by(_d.created_at).limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query).all()]


def requeue(
    engine: Engine,
    *,
    ids: Sequence[str] = (),
    statuses: Sequence[str] = (),
    target: str | None = None,
    now: float | None = None,
) -> list[Key]:
    """Operator replay: make entries due now (exhausted ones get one more redrive);
    returns the (target, id) keys it requeued."""
    now = now if now is not None else utcnow_ts()
    conds: list[ColumnElement[bool]] = [_d.status.in_(("pending", "exhausted"))]
    if ids:
        conds.append(_d.id.in_(list(ids)))
    if statuses:
        conds.append(_d.status.in_(list(statuses)))
    if target:
        conds.append(_d.target == target)
    if not ids and not statuses and not target:
        raise ValueError("say which entries: ids, statuses or a target")
    with engine.begin() as conn:
        keys = [
            (str(t), str(i))
            for t, i in conn.execute(select(_d.target, _d.id).where(and_(*conds))).all()
        ]
        for chunk in _chunks(keys, 400):
            conn.execute(
                update(dead_letters)
                .where(and_(*conds), tuple_(_d.target, _d.id).in_(chunk))
                .values(
                    status="pending",
                    # an exhausted entry keeps its history but may try once more
                    redrives=func.max(_d.redrives - 1, 0)
                    if engine.dialect.name == "sqlite"
                    else func.greatest(_d.redrives - 1, 0),
                    next_attempt_at=now,
                    updated_at=now,
                    lease_owner=None,
                )
            )
    return keys


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
    conds: list[ColumnElement[bool]] = [_d.status.in_(allowed)]
    if ids:
        conds.append(_d.id.in_(list(ids)))
    if target:
        conds.append(_d.target == target)
    if older_than is not None:
        conds.append(_d.created_at <= now - older_than)
    with engine.begin() as conn:
        result = conn.execute(
            update(dead_letters)
            .where(and_(*conds))
            .values(status="purged", updated_at=now, lease_owner=None)
        )
        return int(result.rowcount)


def delete_old(engine: Engine, *, before: float) -> int:
    """Remove delivered and purged rows last touched before `before` (retention)."""
    with engine.begin() as conn:
        result = conn.execute(
            delete(dead_letters).where(
                _d.status.in_(("delivered", "purged")),
                _d.updated_at < before,
            )
        )
        return int(result.rowcount)


def dead_letter_stats(engine: Engine, now: float | None = None) -> dict[str, Any]:
    """For the health monitor: pending dead letters (`count`), age of the oldest, and more."""
    now = now if now is not None else utcnow_ts()
    with engine.connect() as conn:
        rows = conn.execute(
            select(_d.status, func.count(), func.min(_d.created_at)).group_by(_d.status)
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


def _chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


__all__ = [
    "STATUSES",
    "Key",
    "claim",
    "dead_letter_stats",
    "defer",
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
    "renew",
    "requeue",
]
