"""Every table the platform stores, declared once on the shared metadata."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from nura.core.stores.db import id_column, metadata

breakers = Table(
    "nura_breakers",
    metadata,
    Column("service", String(100), primary_key=True),
    Column("state", String(16), nullable=False, default="closed"),
    Column("failures", Integer, nullable=False, default=0),
    Column("opened_at", Float, nullable=True),
    Column("probe_token", String(64), nullable=True),
    Column("probe_started", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    # Bumped on every open and close: results of calls admitted under an older generation
    # are stale. Tables created before it gain it in nura.core.breaker (create_all cannot).
    Column("generation", Integer, nullable=False, default=0, server_default="0"),
)

call_records = Table(
    "nura_call_records",
    metadata,
    id_column(),
    Column("ts", Float, nullable=False),
    Column("service", String(100), nullable=False),
    Column("operation", String(200), nullable=False),
    Column("outcome", String(32), nullable=False),  # ok | error | fallback | rejected
    Column("status_code", Integer, nullable=True),
    Column("error_type", String(100), nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("fallback", Boolean, nullable=False, default=False),
    Column("bytes_out", Integer, nullable=False, default=0),
    Column("bytes_in", Integer, nullable=False, default=0),
    Column("payload_sha256", String(64), nullable=True),
    Column("flow_run_id", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_nura_call_records_service_ts", "service", "ts"),
)
