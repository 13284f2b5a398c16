"""Notification log (delivery tracking, rate limits) and SES bounce/complaint feedback.

`nura_notifications`: one row per notify attempt on one channel, with the SES MessageId or
the Slack response, so a bounce arriving later can be matched to what we sent; the rows
of the last window are also what the per-channel rate limit counts, in a store every
process shares. `nura_email_feedback`: SES bounce/complaint/delivery notifications that
came in over SNS, unique by the SNS MessageId (SNS redelivers; a repeat is a no-op).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    String,
    Table,
    Text,
    func,
    insert,
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
    """Record an SES bounce/complaint; False when this SNS message was already recorded."""
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
            if ses_message_id:
                conn.execute(
                    update(notifications)
                    .where(notifications.c.message_id == ses_message_id)
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
