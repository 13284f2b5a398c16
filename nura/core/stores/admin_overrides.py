"""Operator overrides set at run time (admin API or `nura` commands), read by every process.

    set_budget(engine, "team-a", daily_usd=Decimal("5"), monthly_usd=None, actor="ops-1")
    budget_overrides(engine)       # {"team-a": {"daily_usd": Decimal("5"), "monthly_usd": None}}
    set_endpoint(engine, "partner", enabled=False, actor="ops-1")
    disabled_endpoints(engine)     # {"partner"}

Budgets and incoming webhook endpoints are otherwise only in `integrations.yaml`, which a
running stack reads at start: an operator who must stop spend or an abused endpoint now
cannot wait for a redeploy. A row here wins over the YAML until it is cleared.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Column, Engine, Float, String, Table, delete, select

from nura.core.stores.db import metadata, utcnow_ts

budget_overrides_table = Table(
    "nura_budget_overrides",
    metadata,
    Column("scope", String(200), primary_key=True),
    # Decimal USD as text (exact on both backends); NULL: no ceiling for that period.
    Column("daily_usd", String(40), nullable=True),
    Column("monthly_usd", String(40), nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

endpoint_flags = Table(
    "nura_endpoint_flags",
    metadata,
    Column("endpoint", String(200), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200), nullable=False),
)


def _upsert(engine: Engine, table: Table, key: str, values: dict[str, Any]) -> None:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    stmt = upsert(table).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[key], set_={k: v for k, v in values.items() if k != key}
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def _usd(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# -- budgets --------------------------------------------------------------------------
def set_budget(
    engine: Engine,
    scope: str,
    *,
    daily_usd: Decimal | None,
    monthly_usd: Decimal | None,
    actor: str,
    now: float | None = None,
) -> None:
    """Replace the scope's ceilings (None: no ceiling for that period)."""
    for value in (daily_usd, monthly_usd):
        if value is not None and value <= 0:
            raise ValueError("a budget ceiling must be greater than 0 (omit it for none)")
    _upsert(
        engine,
        budget_overrides_table,
        "scope",
        {
            "scope": scope,
            "daily_usd": None if daily_usd is None else str(daily_usd),
            "monthly_usd": None if monthly_usd is None else str(monthly_usd),
            "updated_at": utcnow_ts() if now is None else now,
            "updated_by": actor,
        },
    )


def clear_budget(engine: Engine, scope: str) -> bool:
    """Back to the YAML's ceilings; False when there was no override."""
    with engine.begin() as conn:
        result = conn.execute(
            delete(budget_overrides_table).where(budget_overrides_table.c.scope == scope)
        )
        return bool(result.rowcount)


def budget_overrides(engine: Engine) -> dict[str, dict[str, Any]]:
    """scope -> {daily_usd, monthly_usd (Decimal | None), updated_at, updated_by}."""
    with engine.connect() as conn:
        rows = conn.execute(select(budget_overrides_table)).all()
    return {
        r.scope: {
            "daily_usd": _usd(r.daily_usd),
            "monthly_usd": _usd(r.monthly_usd),
            "updated_at": r.updated_at,
            "updated_by": r.updated_by,
        }
        for r in rows
    }


# -- incoming webhook endpoints ---------------------------------------------------------
def set_endpoint(
    engine: Engine, endpoint: str, *, enabled: bool, actor: str, now: float | None = None
) -> None:
    _upsert(
        engine,
        endpoint_flags,
        "endpoint",
        {
            "endpoint": endpoint,
            "enabled": enabled,
            "updated_at": utcnow_ts() if now is None else now,
            "updated_by": actor,
        },
    )


def endpoint_flag_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(endpoint_flags).order_by(endpoint_flags.c.endpoint)).all()
    return [dict(r._mapping) for r in rows]


def disabled_endpoints(engine: Engine) -> set[str]:
    """Endpoints an operator disabled. A flag can only take an endpoint out of service:
    one the YAML disables stays disabled (it may have no signing secret)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(endpoint_flags.c.endpoint).where(endpoint_flags.c.enabled.is_(False))
        ).all()
    return {str(r[0]) for r in rows}
