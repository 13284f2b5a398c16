"""The Bedrock cost ledger: one row per model call, spend totals per scope and period.

Costs are stored as integer pico-dollars (1e-12 USD): prices have at most 9 decimals per
1,000 tokens, so tokens x price / 1000 is an exact integer there and sums never drift
(floats would, and `cost_check: exact` in the benchmark compares to the cent and below).

`nura_bedrock_spend` keeps running totals per (scope, period) updated in the same
transaction as the ledger row, so a budget check is one indexed read whatever the size of
the ledger, and every process sees the same totals. `nura_bedrock_budget_alerts` has a
unique key per (scope, period, threshold): a threshold alerts exactly once per period even
when several workers cross it at the same moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from nura.stores.db import metadata, utcnow_ts

PICO = Decimal(10) ** 12
_ID = BigInteger().with_variant(Integer, "sqlite")

ledger = Table(
    "nura_bedrock_ledger",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("flow_run_id", String(64), nullable=True),
    Column("invocation_id", String(64), nullable=False),
    Column("scope", String(100), nullable=False),
    Column("model_id", String(200), nullable=False),
    Column("region", String(40), nullable=True),
    Column("api", String(20), nullable=False),  # converse | invoke_model
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost_pusd", BigInteger, nullable=False),
    Column("cost_unknown", Boolean, nullable=False, default=False),
    Column("over_budget", Boolean, nullable=False, default=False),
    Column("latency_ms", Float, nullable=False),
    Column("conversation_id", String(200), nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_nura_bedrock_ledger_run", "flow_run_id"),
    Index("ix_nura_bedrock_ledger_scope_ts", "scope", "ts"),
)

spend = Table(
    "nura_bedrock_spend",
    metadata,
    Column("scope", String(100), primary_key=True),
    Column("period", String(16), primary_key=True),  # "day:2026-11-29" | "month:2026-11"
    Column("cost_pusd", BigInteger, nullable=False, default=0),
    Column("calls", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
)

budget_alerts = Table(
    "nura_bedrock_budget_alerts",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("scope", String(100), nullable=False),
    Column("period", String(16), nullable=False),
    Column("threshold", Integer, nullable=False),  # percent
    Column("ts", Float, nullable=False),
    Column("spent_pusd", BigInteger, nullable=False),
    Column("limit_pusd", BigInteger, nullable=False),
    UniqueConstraint("scope", "period", "threshold", name="uq_nura_bedrock_alert"),
)


def to_pusd(usd: Decimal) -> int:
    """USD -> integer pico-dollars (exact for every price the config accepts)."""
    return int((usd * PICO).to_integral_value())


def to_usd(pusd: int) -> Decimal:
    return Decimal(pusd) / PICO


def periods(ts: float) -> dict[str, str]:
    """The UTC day and month a timestamp falls in, as period keys."""
    moment = datetime.fromtimestamp(ts, UTC)
    return {"daily": f"day:{moment:%Y-%m-%d}", "monthly": f"month:{moment:%Y-%m}"}


@dataclass(frozen=True)
class LedgerEntry:
    invocation_id: str
    scope: str
    model_id: str
    region: str | None
    api: str
    input_tokens: int
    output_tokens: int
    cost_pusd: int
    cost_unknown: bool
    latency_ms: float
    flow_run_id: str | None = None
    conversation_id: str | None = None
    over_budget: bool = False
    detail: str | None = None
    ts: float | None = None


class CostLedger:
    """Write calls and read spend; one instance per engine is enough (thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, entry: LedgerEntry, scopes: Iterable[str]) -> dict[tuple[str, str], int]:
        """Insert the call and add its cost to every scope's day and month totals.

        Returns the new totals {(scope, period_key): pusd} (read in the same transaction).
        """
        ts = entry.ts if entry.ts is not None else utcnow_ts()
        row = {k: v for k, v in entry.__dict__.items() if k != "ts"}
        keys = list(periods(ts).values())
        totals: dict[tuple[str, str], int] = {}
        with self.engine.begin() as conn:
            conn.execute(insert(ledger).values(ts=ts, **row))
            for scope in dict.fromkeys(scopes):
                for key in keys:
                    totals[(scope, key)] = self._add(conn, scope, key, entry.cost_pusd, ts)
        return totals

    def _add(self, conn: Any, scope: str, key: str, pusd: int, ts: float) -> int:
        """Atomic increment, one statement: INSERT ... ON CONFLICT DO UPDATE ... RETURNING."""
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        values = upsert(spend).values(
            scope=scope, period=key, cost_pusd=pusd, calls=1, updated_at=ts
        )
        stmt = values.on_conflict_do_update(
            index_elements=[spend.c.scope, spend.c.period],
            set_={
                "cost_pusd": spend.c.cost_pusd + pusd,
                "calls": spend.c.calls + 1,
                "updated_at": ts,
            },
        ).returning(spend.c.cost_pusd)
        return int(conn.execute(stmt).scalar_one())

    def spent(self, scopes: Iterable[str], ts: float | None = None) -> dict[tuple[str, str], int]:
        """Current totals {(scope, period_key): pusd} for the periods containing `ts`."""
        keys = list(periods(ts if ts is not None else utcnow_ts()).values())
        scopes = list(dict.fromkeys(scopes))
        out = {(s, k): 0 for s in scopes for k in keys}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(spend.c.scope, spend.c.period, spend.c.cost_pusd).where(
                    spend.c.scope.in_(scopes), spend.c.period.in_(keys)
                )
            )
            for scope, key, pusd in rows:
                out[(scope, key)] = int(pusd)
        return out

    def claim_alert(
        self, scope: str, period: str, threshold: int, spent_pusd: int, limit_pusd: int
    ) -> bool:
        """True exactly once per (scope, period, threshold), across processes."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(budget_alerts).values(
                        scope=scope,
                        period=period,
                        threshold=threshold,
                        ts=utcnow_ts(),
                        spent_pusd=spent_pusd,
                        limit_pusd=limit_pusd,
                    )
                )
            return True
        except IntegrityError:
            return False

    def calls(
        self, *, flow_run_id: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Ledger rows, newest first (by run, or since a time)."""
        query = select(ledger).order_by(ledger.c.id.desc()).limit(limit)
        if flow_run_id is not None:
            query = query.where(ledger.c.flow_run_id == flow_run_id)
        if since is not None:
            query = query.where(ledger.c.ts >= since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def totals_by_model(self, since: float) -> list[dict[str, Any]]:
        query = (
            select(
                ledger.c.model_id,
                func.count().label("calls"),
                func.sum(ledger.c.input_tokens).label("input_tokens"),
                func.sum(ledger.c.output_tokens).label("output_tokens"),
                func.sum(ledger.c.cost_pusd).label("cost_pusd"),
            )
            .where(ledger.c.ts >= since)
            .group_by(ledger.c.model_id)
            .order_by(ledger.c.model_id)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
