"""Health check results and the latest evaluated status per service.

`nura_health_checks` keeps one row per check (the measured samples the SLA windows read);
`nura_health_status` keeps the last evaluation per service for `/metrics` and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    delete,
    insert,
    select,
)

from nura.core.stores.db import id_column, metadata

health_checks = Table(
    "nura_health_checks",
    metadata,
    id_column(),
    Column("ts", Float, nullable=False),
    Column("service", String(100), nullable=False),
    Column("kind", String(32), nullable=False),  # http | aws | prefect | database | queue
    Column("ok", Boolean, nullable=False),
    Column("latency_ms", Float, nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("error_type", String(100), nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_nura_health_checks_service_ts", "service", "ts"),
    Index("ix_nura_health_checks_ts", "ts"),  # the SLA windows read by time range
)

health_status = Table(
    "nura_health_status",
    metadata,
    Column("service", String(100), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("p50_ms", Float, nullable=True),
    Column("p95_ms", Float, nullable=True),
    Column("p99_ms", Float, nullable=True),
    Column("error_rate_pct", Float, nullable=True),
    Column("availability_pct", Float, nullable=True),
    Column("fallback_rate_pct", Float, nullable=True),
    Column("breaker", String(16), nullable=True),
    Column("updated_at", Float, nullable=False),
)

CHECK_COLUMNS = ("ts", "service", "kind", "ok", "latency_ms", "status_code", "error_type", "detail")
STATUS_COLUMNS = tuple(c.name for c in health_status.columns)


def record_checks(engine: Engine, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert check results in one transaction (synchronously: the SLA reads them next)."""
    batch = [{k: row.get(k) for k in CHECK_COLUMNS} for row in rows]
    if not batch:
        return 0
    with engine.begin() as conn:
        conn.execute(insert(health_checks), batch)
    return len(batch)


def load_checks(engine: Engine, since: float) -> list[dict[str, Any]]:
    """Check results with `ts >= since`, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(health_checks).where(health_checks.c.ts >= since).order_by(health_checks.c.ts)
        ).all()
    return [dict(r._mapping) for r in rows]


def save_status(engine: Engine, rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace the latest status of the given services (delete + insert: portable upsert)."""
    batch = [{k: row.get(k) for k in STATUS_COLUMNS} for row in rows]
    if not batch:
        return
    with engine.begin() as conn:
        conn.execute(
            delete(health_status).where(health_status.c.service.in_([r["service"] for r in batch]))
        )
        conn.execute(insert(health_status), batch)


def latest_status(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(health_status).order_by(health_status.c.service)).all()
    return [dict(r._mapping) for r in rows]


def purge_checks(engine: Engine, before: float) -> int:
    """Drop check rows older than `before` (the 7 d window is the longest one read)."""
    with engine.begin() as conn:
        return conn.execute(delete(health_checks).where(health_checks.c.ts < before)).rowcount
