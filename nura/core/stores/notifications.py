"""Notification log, the outbox of undelivered notifications, channel state, SES feedback.

`nura_notifications`: one row per notify attempt on one channel, with the SES MessageId or
the Slack response, so a bounce arriving later can be matched to what we sent; the rows
of the last window are also what the per-channel rate limit counts, in a store every
process shares. Its `feedback` is the worst SES outcome reported for the message
(bounce > complaint > delivery): a Delivery arriving after a Bounce does not hide it.
`nura_email_feedback`: every SES notification that came in over SNS (Bounce, Complaint,
Delivery...), unique by the SNS MessageId (SNS redelivers; a repeat is a no-op).

`nura_notification_outbox`: one row per notification and channel until it is delivered,
expires or is refused for good; `nura.notify.dispatch` sends due rows in creation order
per channel, so a channel that comes back gets its backlog in the order it happened.
`nura_notify_channels`: a channel disabled because its endpoint is dead (a Slack webhook
answering 403/404/410), with the fingerprint of the URL that died: a new URL re-enables it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from nura.core.stores.db import id_column, metadata, utcnow_ts

notifications = Table(
    "nura_notifications",
    metadata,
    id_column(),
    Column("ts", Float, nullable=False),
    Column("channel", String(16), nullable=False),  # slack | email
    Column("severity", String(16), nullable=False),
    Column("event", String(200), nullable=True),
    Column("title", String(300), nullable=False),
    Column("status", String(16), nullable=False),  # sent | failed | rate_limited | skipped
    Column("message_id", String(200), nullable=True),  # SES MessageId
    Column("response", Text, nullable=True),  # Slack's answer, or the error
    Column("feedback", String(32), nullable=True),  # bounce | complaint | delivery
    Column("feedback_at", Float, nullable=True),
    Index("ix_nura_notifications_channel_ts", "channel", "ts"),
    Index("ix_nura_notifications_message_id", "message_id"),
)

outbox = Table(
    "nura_notification_outbox",
    metadata,
    id_column(),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("channel", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("event", String(200), nullable=True),
    Column("title", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("details", Text, nullable=True),  # JSON object
    Column("status", String(16), nullable=False),  # pending | sent | failed | expired
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("done_at", Float, nullable=True),
    Index("ix_nura_notification_outbox_status_channel", "status", "channel", "id"),
)

channel_state = Table(
    "nura_notify_channels",
    metadata,
    Column("channel", String(16), primary_key=True),
    Column("disabled_at", Float, nullable=False),
    Column("fingerprint", String(64), nullable=False),  # sha256 prefix of the dead URL
    Column("reason", Text, nullable=True),
)

# Worst SES outcome wins the `feedback` column; anything else (DeliveryDelay...) never does.
FEEDBACK_RANK = {"delivery": 1, "complaint": 2, "bounce": 3}

email_feedback = Table(
    "nura_email_feedback",
    metadata,
    id_column(),
    Column("sns_message_id", String(200), nullable=False, unique=True),
    Column("ses_message_id", String(200), nullable=True, index=True),
    Column("kind", String(32), nullable=False),  # bounce | complaint | delivery | other
    Column("sub_type", String(100), nullable=True),
    Column("recipients", Text, nullable=True),  # comma separated
    Column("received_at", Float, nullable=False),
)


def record_notification(
    engine: Engine,
    *,
    channel: str,
    severity: str,
    title: str,
    status: str,
    event: str | None = None,
    message_id: str | None = None,
    response: str | None = None,
    ts: float | None = None,
) -> int:
    """Store one channel outcome; returns its row id."""
    with engine.begin() as conn:
        result = conn.execute(
            insert(notifications).values(
                ts=ts if ts is not None else utcnow_ts(),
                channel=channel,
                severity=severity,
                event=event,
                title=title[:300],
                status=status,
                message_id=message_id,
                response=(response or "")[:2000] or None,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def sent_since(engine: Engine, channel: str, since: float) -> int:
    """Notifications actually sent on `channel` since `since` (what a rate limit counts)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(notifications)
                .where(
                    notifications.c.channel == channel,
                    notifications.c.ts >= since,
                    notifications.c.status == "sent",
                )
            ).scalar_one()
        )


def record_feedback(
    engine: Engine,
    *,
    sns_message_id: str,
    ses_message_id: str | None,
    kind: str,
    sub_type: str | None = None,
    recipients: list[str] | None = None,
    now: float | None = None,
) -> bool:
    """Record one SES notification (every one is kept); the message's `feedback` becomes
    `kind` only when it is worse than what was reported before. False when this SNS
    message was already recorded."""
    now = now if now is not None else utcnow_ts()
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(email_feedback).values(
                    sns_message_id=sns_message_id,
                    ses_message_id=ses_message_id,
                    kind=kind,
                    sub_type=sub_type,
                    recipients=",".join(recipients or [])[:4000] or None,
                    received_at=now,
                )
            )
            rank = FEEDBACK_RANK.get(kind, 0)
            if ses_message_id and rank:
                current = case(
                    *[(notifications.c.feedback == k, r) for k, r in FEEDBACK_RANK.items()],
                    else_=0,
                )
                conn.execute(
                    update(notifications)
                    .where(notifications.c.message_id == ses_message_id)
                    .where(or_(notifications.c.feedback.is_(None), current < rank))
                    .values(feedback=kind, feedback_at=now)
                )
    except IntegrityError:
        return False
    return True


def notification_by_message_id(engine: Engine, message_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(notifications).where(notifications.c.message_id == message_id)
        ).first()
    return dict(row._mapping) if row else None


def feedback_for(engine: Engine, ses_message_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(email_feedback)
            .where(email_feedback.c.ses_message_id == ses_message_id)
            .order_by(email_feedback.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def recent_notifications(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(notifications).order_by(notifications.c.id.desc()).limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]


# -- outbox ------------------------------------------------------------------------------
def enqueue(
    engine: Engine,
    *,
    dedupe_key: str,
    channel: str,
    severity: str,
    title: str,
    body: str,
    event: str | None,
    details: dict[str, Any],
    now: float,
    expires_at: float,
) -> int | None:
    """Queue one notification for one channel; None when `dedupe_key` is already queued."""
    try:
        with engine.begin() as conn:
            result = conn.execute(
                insert(outbox).values(
                    dedupe_key=dedupe_key[:200],
                    channel=channel,
                    severity=severity,
                    event=event,
                    title=title[:300],
                    body=body,
                    details=json.dumps(details, default=str),
                    status="pending",
                    attempts=0,
                    created_at=now,
                    next_attempt_at=now,
                    expires_at=expires_at,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]
    except IntegrityError:
        return None


def pending(engine: Engine, channel: str | None = None) -> list[dict[str, Any]]:
    """Undelivered notifications, oldest first (per channel: the order they are sent in)."""
    stmt = select(outbox).where(outbox.c.status == "pending").order_by(outbox.c.id)
    if channel is not None:
        stmt = stmt.where(outbox.c.channel == channel)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    out = []
    for r in rows:
        row = dict(r._mapping)
        row["details"] = json.loads(row["details"] or "{}")
        out.append(row)
    return out


def claim(engine: Engine, row_id: int, seen_next: float, lease_until: float) -> bool:
    """Take a pending row for one attempt (another run holding it sees it leased)."""
    with engine.begin() as conn:
        return (
            conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == row_id,
                    outbox.c.status == "pending",
                    outbox.c.next_attempt_at == seen_next,
                )
                .values(next_attempt_at=lease_until)
            ).rowcount
            == 1
        )


def settle(
    engine: Engine,
    row_id: int,
    *,
    status: str,
    now: float,
    error: str | None = None,
    next_attempt_at: float | None = None,
) -> None:
    """Record one attempt: `sent`, `failed`/`expired` (final) or `pending` (retry later)."""
    values: dict[str, Any] = {
        "status": status,
        "attempts": outbox.c.attempts + (0 if status == "expired" else 1),
        "last_error": (error or "")[:2000] or None,
    }
    if status == "pending":
        values["next_attempt_at"] = next_attempt_at if next_attempt_at is not None else now
    else:
        values["done_at"] = now
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))


def outbox_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(outbox).order_by(outbox.c.id))]


# -- channel state -----------------------------------------------------------------------
def disable_channel(
    engine: Engine, channel: str, fingerprint: str, reason: str, now: float
) -> bool:
    """Mark `channel` dead for the endpoint `fingerprint`; False when it already was."""
    with engine.begin() as conn:
        row = conn.execute(select(channel_state).where(channel_state.c.channel == channel)).first()
        if row is not None and row.fingerprint == fingerprint:
            return False
        conn.execute(delete(channel_state).where(channel_state.c.channel == channel))
        conn.execute(
            insert(channel_state).values(
                channel=channel, disabled_at=now, fingerprint=fingerprint, reason=reason[:2000]
            )
        )
    return True


def disabled_channel(engine: Engine, channel: str, fingerprint: str) -> dict[str, Any] | None:
    """The channel's disabled state when it applies to the endpoint `fingerprint`."""
    with engine.connect() as conn:
        row = conn.execute(select(channel_state).where(channel_state.c.channel == channel)).first()
    if row is None or row.fingerprint != fingerprint:
        return None
    return dict(row._mapping)


def enable_channel(engine: Engine, channel: str) -> bool:
    with engine.begin() as conn:
        return bool(
            conn.execute(delete(channel_state).where(channel_state.c.channel == channel)).rowcount
        )
