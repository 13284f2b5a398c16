"""The audit log: who did what to which target, when, and how it ended.

    audit.record(engine, actor="token:ops-1", role="operator", action="breaker.reset",
                 target="webhooks.partner", outcome="ok", detail={"previous": "open"})
    audit.entries(engine, action="erase", limit=50)

One row per operator action (admin API calls, `nura` commands that change state,
erasures, retention sweeps). `detail` is a small JSON object: callers never put secrets or
erased content in it. Rows are append-only; retention may delete old ones, never edit them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Engine, Float, Index, String, Table, Text, insert, select

from nura.core.stores.db import id_column, metadata

OUTCOMES = ("ok", "denied", "error", "invalid")

audit_log = Table(
    "nura_audit_log",
    metadata,
    id_column(),
    Column("ts", Float, nullable=False),
    Column("actor", String(200), nullable=False),  # token name, "cli:<user>", "flow:<name>"
    Column("role", String(32), nullable=True),  # viewer | operator | admin | None (local)
    Column("action", String(100), nullable=False),  # e.g. "deliveries.retry", "erase"
    Column("target", String(500), nullable=True),
    Column("outcome", String(16), nullable=False),  # one of OUTCOMES
    Column("detail", Text, nullable=True),  # JSON object, no secrets, no erased content
    Index("ix_nura_audit_log_ts", "ts"),
    Index("ix_nura_audit_log_action_ts", "action", "ts"),
)


def record(
    engine: Engine,
    *,
    actor: str,
    action: str,
    outcome: str,
    target: str | None = None,
    role: str | None = None,
    detail: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> int:
    """Append one audit row; returns its id."""
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {outcome!r}")
    values = {
        "ts": time.time() if now is None else now,
        "actor": actor[:200],
        "role": role,
        "action": action[:100],
        "target": None if target is None else target[:500],
        "outcome": outcome,
        "detail": None if detail is None else json.dumps(dict(detail), sort_keys=True, default=str),
    }
    with engine.begin() as conn:
        result = conn.execute(insert(audit_log).values(**values))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def entries(
    engine: Engine,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: float | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first; `detail` decoded."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    if actor is not None:
        query = query.where(audit_log.c.actor == actor)
    if since is not None:
        query = query.where(audit_log.c.ts >= since)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
    return rows
