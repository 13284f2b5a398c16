"""The effective rate of each service under dynamic adjustment (`nura.core.adaptive`).

One row per service that was ever throttled; no row means "at its configured rate".
Every change is one conditional UPDATE on `version`, so exactly one process makes it.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, String, Table

from nura.core.stores.db import metadata

rate_state = Table(
    "nura_rate_state",
    metadata,
    Column("service", String(100), primary_key=True),
    Column("rate_per_minute", Float, nullable=False),
    Column("ceiling_per_minute", Float, nullable=False),  # the configured rate at the change
    Column("version", Integer, nullable=False, default=0),
    Column("last_decrease_at", Float, nullable=True),
    Column("last_change_at", Float, nullable=False),
    Column("reason", String(32), nullable=False),  # 429 | latency | recovery | reset
    Column("decreases", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
)
