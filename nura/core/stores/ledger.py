"""The Bedrock cost ledger: one row per model call, spend totals per scope and period.

Costs are stored as integer pico-dollars (1e-12 USD): prices have at most 9 decimals per
1,000 tokens, so tokens x price / 1000 is an exact integer there and sums never drift
(floats would, and `cost_check: exact` in the benchmark compares to the cent and below).

`nura_bedrock_spend` keeps running totals per (scope, period) updated in the same
transaction as the ledger row, so a budget check is one indexed read whatever the size of
the ledger, and every process sees the same totals. `nura_bedrock_budget_alerts` has a
unique key per (scope, period, threshold): a threshold alerts exactly once per period even
when several workers cross it at the same moment.

Hard budgets: before a model is called, `reserve` holds the call's maximum cost on every
budgeted (scope, period) row with one conditional statement per row,

    UPDATE nura_bedrock_spend SET reserved_pusd = reserved_pusd + :amount
    WHERE scope = :scope AND period = :period
      AND cost_pusd + reserved_pusd + :amount <= :limit AND cost_pusd + reserved_pusd < :limit

and checks its rowcount: the row lock (PostgreSQL) or the database write lock (SQLite)
makes check and hold one step, so concurrent calls in any process can never together
hold more than the limit. `record` settles in the ledger row's transaction (reserved -=
held, cost += real); `release` hands the hold back when no model answered. Each hold is
also a row of `nura_bedrock_budget_reservations` (token, scope, period, amount,
reserved_at, expires_at): a process killed mid-call leaves its hold there, and `sweep`
subtracts expired holds from the totals exactly once (the transaction that deletes the row
does it), so they stop counting. Every transaction touches spend rows in (scope, period)
order, so PostgreSQL writers never wait on each other in a cycle.

Durability: `record` commits the call's row and its totals in one transaction before it
returns, and the invoker returns a result only after `record` did, so spend that a caller
has seen is never lost by a crash. Not batched on purpose: a group commit after the call
returns would open a window (the batch interval) in which answered, charged calls exist
only in memory, and budgets are enforced from these totals (the reservation covers the
gap between Bedrock answering and this commit). On SQLite the store runs WAL with
`synchronous=NORMAL` (`nura.core.stores.db`): a commit survives a crash of the process,
while a power loss can drop the last commits before a checkpoint; PostgreSQL commits are
fsynced.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
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
    bindparam,
    case,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DatabaseError, IntegrityError

from nura.core.stores.db import metadata, utcnow_ts

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
    # True: not what Bedrock reported but an estimate (input + max output at the model's
    # price) - a call abandoned on timeout, an unreadable answer, a stream cut off midway.
    Column("estimated", Boolean, nullable=False, default=False, server_default=text("false")),
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
    # Maximum cost of the calls in flight (held by `reserve`, settled by `record`).
    Column("reserved_pusd", BigInteger, nullable=False, default=0, server_default="0"),
)

reservations = Table(
    "nura_bedrock_budget_reservations",
    metadata,
    Column("token", String(32), primary_key=True),
    Column("scope", String(100), primary_key=True),
    Column("period", String(16), primary_key=True),
    Column("amount_pusd", BigInteger, nullable=False),
    Column("reserved_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_nura_bedrock_reservations_expiry", "expires_at"),
)

# Prices synced from AWS's Price List API (`nura bedrock prices sync`), keyed like the
# config's price table (model id, `global.` profile, `region/model-id`); Decimals as text.
prices = Table(
    "nura_bedrock_prices",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("input_per_1k", String(40), nullable=False),
    Column("output_per_1k", String(40), nullable=False),
    Column("source", String(200), nullable=False),
    Column("effective", String(10), nullable=True),  # ISO date the price applies from
    Column("synced_at", Float, nullable=False),
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
    return dict(_periods_of_day(int(ts // 86_400)))


@functools.lru_cache(maxsize=16)
def _periods_of_day(day: int) -> tuple[tuple[str, str], ...]:
    # Epoch seconds have no leap seconds: UTC day n is [n * 86400, (n + 1) * 86400).
    moment = datetime.fromtimestamp(day * 86_400, UTC)
    return (("daily", f"day:{moment:%Y-%m-%d}"), ("monthly", f"month:{moment:%Y-%m}"))


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
    estimated: bool = False


@dataclass(frozen=True)
class Hold:
    """One (scope, period) row a reservation holds; `limit_pusd` None = hold unconditionally."""

    scope: str
    period: str  # period key, "day:2026-11-29"
    limit_pusd: int | None


@dataclass(frozen=True)
class Refusal:
    """The first row whose limit could not take a reservation, as it stood then."""

    scope: str
    period: str
    spent_pusd: int
    reserved_pusd: int
    limit_pusd: int


def _upsert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    return upsert


def _spend_upsert(dialect: str) -> Any:
    """`INSERT INTO spend .. ON CONFLICT (scope, period) DO UPDATE` adding the new row's
    cost and call to the running totals, returning the new total: an atomic increment in
    one statement, so concurrent writers never lose an addition."""
    stmt = _upsert(dialect)(spend)
    return stmt.on_conflict_do_update(
        index_elements=[spend.c.scope, spend.c.period],
        set_={
            "cost_pusd": spend.c.cost_pusd + stmt.excluded.cost_pusd,
            "calls": spend.c.calls + stmt.excluded.calls,
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(spend.c.cost_pusd)


class _Compiled:
    """A statement compiled once for a dialect, run on a DBAPI cursor with a dict of values."""

    def __init__(self, stmt: Any, dialect: Any, columns: list[str]) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=columns)
        self.sql = compiled.string
        self.order = list(compiled.positiontup or []) if compiled.positional else None

    def params(self, values: dict[str, Any]) -> Any:
        return values if self.order is None else tuple(values[k] for k in self.order)


_LEDGER_COLUMNS = [c.name for c in ledger.columns if c.name != "id"]
_SPEND_COLUMNS = ["scope", "period", "cost_pusd", "calls", "reserved_pusd", "updated_at"]
_RESERVATION_COLUMNS = [c.name for c in reservations.columns]
_ROW = (spend.c.scope == bindparam("k_scope")) & (spend.c.period == bindparam("k_period"))
_HELD = spend.c.cost_pusd + spend.c.reserved_pusd


def _hold(conditional: bool) -> Any:
    """Add `amount` to a row's reservations; conditional: only while it fits the limit."""
    stmt = update(spend).where(_ROW)
    if conditional:
        # The second term refuses even a zero-cost (unpriced) call once the budget is spent.
        stmt = stmt.where(
            _HELD + bindparam("amount") <= bindparam("limit"), _HELD < bindparam("limit")
        )
    return stmt.values(reserved_pusd=spend.c.reserved_pusd + bindparam("amount"))


def _row_order(row: tuple[Any, Any]) -> tuple[str, str]:
    return (str(row[0]), str(row[1]))


def _sorted_holds(holds: Iterable[Hold]) -> list[Hold]:
    return sorted(holds, key=lambda h: _row_order((h.scope, h.period)))


_upgraded: set[str] = set()
_upgrade_lock = threading.Lock()


_ADDED_COLUMNS = (
    (spend.name, "reserved_pusd", "BIGINT NOT NULL DEFAULT 0"),
    (ledger.name, "estimated", "BOOLEAN NOT NULL DEFAULT false"),
)


def _add_reserved_column(engine: Engine) -> None:
    """Stores created before reservations lack `nura_bedrock_spend.reserved_pusd` and
    `nura_bedrock_ledger.estimated` (the tables exist, so `create_all` skips them): add
    each column once, tolerating another process adding it at the same moment."""
    key = str(engine.url)
    with _upgrade_lock:
        if key in _upgraded:
            return
        for table, column, ddl in _ADDED_COLUMNS:
            if column in {c["name"] for c in inspect(engine).get_columns(table)}:
                continue
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
            except DatabaseError:
                if column not in {c["name"] for c in inspect(engine).get_columns(table)}:
                    raise
        _upgraded.add(key)


@dataclass
class _Transaction:
    cursor: Any  # a DBAPI cursor
    commit: bool = True


class CostLedger:
    """Write calls and read spend; one instance per engine is enough (thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The write path runs once per model call, so its statements are compiled once
        # (from the tables above, for this engine's dialect) and executed on the pooled
        # DBAPI connection: SQLAlchemy's per-execute work (building `.values(**row)`,
        # cache keys, result wrapping) cost ~1 ms a call, several times the database's
        # own insert and commit (~0.1 ms on SQLite in WAL mode).
        _add_reserved_column(engine)
        dialect = engine.dialect
        self._insert = _Compiled(insert(ledger), dialect, _LEDGER_COLUMNS)
        self._upsert = _Compiled(_spend_upsert(dialect.name), dialect, _SPEND_COLUMNS)
        self._ensure = _Compiled(
            _upsert(dialect.name)(spend).on_conflict_do_nothing(), dialect, _SPEND_COLUMNS
        )
        self._hold_if_fits = _Compiled(_hold(conditional=True), dialect, [])
        self._hold_always = _Compiled(_hold(conditional=False), dialect, [])
        self._unhold = _Compiled(
            update(spend)
            .where(_ROW)
            .values(reserved_pusd=spend.c.reserved_pusd - bindparam("amount")),
            dialect,
            [],
        )
        self._insert_reservation = _Compiled(insert(reservations), dialect, _RESERVATION_COLUMNS)
        returned = (reservations.c.scope, reservations.c.period, reservations.c.amount_pusd)
        self._take_reservation = _Compiled(
            delete(reservations)
            .where(reservations.c.token == bindparam("k_token"))
            .returning(*returned),
            dialect,
            [],
        )
        self._take_expired = _Compiled(
            delete(reservations)
            .where(reservations.c.expires_at <= bindparam("k_now"))
            .returning(*returned),
            dialect,
            [],
        )

    # -- reservations ------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[_Transaction]:
        """One transaction on a raw DBAPI connection (the money path's statements are
        compiled once, no per-call SQLAlchemy execution overhead): committed when the block
        ends (rolled back instead where it set `commit = False`); an exception invalidates
        the connection, which discards the open transaction (nothing of it is committed)
        and keeps a possibly broken connection out of the pool."""
        raw = self.engine.raw_connection()
        try:
            tx = _Transaction(raw.cursor())
            yield tx
            tx.cursor.close()
            if tx.commit:
                raw.commit()
            else:
                raw.rollback()
        except BaseException:
            raw.invalidate()
            raise
        finally:
            raw.close()  # back to the pool

    def reserve(
        self,
        token: str,
        amount_pusd: int,
        holds: Sequence[Hold],
        *,
        ttl_seconds: float,
        now: float | None = None,
    ) -> Refusal | None:
        """Hold `amount_pusd` on every row of `holds` in one transaction: all or nothing.

        None when held (committed); else the Refusal of the first row whose limit it did
        not fit (nothing held). `token` names the reservation for `record` / `release`.
        """
        ts = now if now is not None else utcnow_ts()
        refused: Hold | None = None
        with self._transaction() as tx:
            cursor = tx.cursor
            for hold in _sorted_holds(holds):
                row = {"scope": hold.scope, "period": hold.period, "cost_pusd": 0, "calls": 0}
                row |= {"reserved_pusd": 0, "updated_at": ts}
                # A write first: SQLite takes its write lock here (waiting on busy_timeout),
                # never by upgrading a read lock later, which would fail instead of wait.
                cursor.execute(self._ensure.sql, self._ensure.params(row))
                values = {"k_scope": hold.scope, "k_period": hold.period, "amount": amount_pusd}
                stmt = self._hold_always
                if hold.limit_pusd is not None:
                    stmt = self._hold_if_fits
                    values["limit"] = hold.limit_pusd
                cursor.execute(stmt.sql, stmt.params(values))
                if cursor.rowcount != 1:
                    refused = hold
                    break
                reservation = {
                    "token": token,
                    "scope": hold.scope,
                    "period": hold.period,
                    "amount_pusd": amount_pusd,
                    "reserved_at": ts,
                    "expires_at": ts + ttl_seconds,
                }
                cursor.execute(
                    self._insert_reservation.sql, self._insert_reservation.params(reservation)
                )
            tx.commit = refused is None  # a refusal holds nothing: roll back
        if refused is None:
            return None
        spent, reserved = self.held([(refused.scope, refused.period)])[
            (refused.scope, refused.period)
        ]
        assert refused.limit_pusd is not None  # only conditional holds refuse
        return Refusal(refused.scope, refused.period, spent, reserved, refused.limit_pusd)

    def release(self, token: str) -> int:
        """Hand back a reservation no call will settle; the pico-dollars released."""
        with self._transaction() as tx:
            return self._take(tx.cursor, self._take_reservation, {"k_token": token})

    def sweep(self, now: float | None = None) -> int:
        """Drop expired reservations (left by killed processes) from the totals; how many
        rows. The DELETE's RETURNING hands each row to exactly one sweeper or settler."""
        ts = now if now is not None else utcnow_ts()
        with self._transaction() as tx:
            tx.cursor.execute(self._take_expired.sql, self._take_expired.params({"k_now": ts}))
            taken = tx.cursor.fetchall()
            self._unhold_rows(tx.cursor, taken)
        return len(taken)

    def _take(self, cursor: Any, stmt: _Compiled, values: dict[str, Any]) -> int:
        cursor.execute(stmt.sql, stmt.params(values))
        taken = cursor.fetchall()
        self._unhold_rows(cursor, taken)
        return sum(int(amount) for _, _, amount in taken)

    def _unhold_rows(self, cursor: Any, taken: Sequence[Any]) -> None:
        for scope, period, amount in sorted(taken, key=_row_order):
            values = {"k_scope": scope, "k_period": period, "amount": int(amount)}
            cursor.execute(self._unhold.sql, self._unhold.params(values))

    def held(self, rows: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
        """{(scope, period_key): (spent, reserved)} in pico-dollars, zeros for absent rows."""
        wanted = list(dict.fromkeys(rows))
        out = {w: (0, 0) for w in wanted}
        scopes = {s for s, _ in wanted}
        keys = {k for _, k in wanted}
        query = select(spend.c.scope, spend.c.period, spend.c.cost_pusd, spend.c.reserved_pusd)
        with self.engine.connect() as conn:
            for scope, key, pusd, reserved in conn.execute(
                query.where(spend.c.scope.in_(scopes), spend.c.period.in_(keys))
            ):
                if (scope, key) in out:
                    out[(scope, key)] = (int(pusd), int(reserved))
        return out

    def record(
        self, entry: LedgerEntry, scopes: Iterable[str], *, settle: str | None = None
    ) -> dict[tuple[str, str], int]:
        """Insert the call and add its cost to every scope's day and month totals.

        One transaction, committed before this returns: the row and the totals are durable
        together or not at all (a budget check never sees spend without its ledger row,
        nor the reverse). `settle`: the token of the call's reservation, released in the
        same transaction (reserved -= held, cost += real). Returns the new totals
        {(scope, period_key): pusd}, read in the same transaction.
        """
        ts = entry.ts if entry.ts is not None else utcnow_ts()
        row = {**vars(entry), "ts": ts}
        keys = list(periods(ts).values())
        totals: dict[tuple[str, str], int] = {}
        with self._transaction() as tx:
            cursor = tx.cursor
            # Both drivers open the transaction implicitly at the first INSERT.
            cursor.execute(self._insert.sql, self._insert.params(row))
            if settle is not None:
                self._take(cursor, self._take_reservation, {"k_token": settle})
            # (scope, period) order, as every writer of these rows (see the module docstring).
            rows = sorted(((s, k) for s in dict.fromkeys(scopes) for k in keys), key=_row_order)
            for scope, key in rows:
                values = {
                    "scope": scope,
                    "period": key,
                    "cost_pusd": entry.cost_pusd,
                    "calls": 1,
                    "reserved_pusd": 0,
                    "updated_at": ts,
                }
                cursor.execute(self._upsert.sql, self._upsert.params(values))
                returned = cursor.fetchone()
                assert returned is not None  # RETURNING answers one row per upsert
                totals[(scope, key)] = int(returned[0])
        return totals

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

    def save_prices(self, rows: Sequence[dict[str, Any]], synced_at: float | None = None) -> int:
        """Upsert synced prices (key, input_per_1k, output_per_1k, source, effective)."""
        ts = synced_at if synced_at is not None else utcnow_ts()
        upsert = _upsert(self.engine.dialect.name)
        with self.engine.begin() as conn:
            for row in rows:
                values = {**row, "synced_at": ts}
                stmt = upsert(prices).values(**values)
                update_cols = {k: stmt.excluded[k] for k in values if k != "key"}
                conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=update_cols))
        return len(rows)

    def stored_prices(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(prices).order_by(prices.c.key))]

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
                func.sum(case((ledger.c.estimated, ledger.c.cost_pusd), else_=0)).label(
                    "estimated_pusd"
                ),
            )
            .where(ledger.c.ts >= since)
            .group_by(ledger.c.model_id)
            .order_by(ledger.c.model_id)
        )
        with self.engine.connect() as conn:
            rows = {r.model_id: dict(r._mapping) for r in conn.execute(query)}
        # Line items past retention live on as per-day totals (whole days from `since`'s).
        for model, sums in rolled_up_by_model(self.engine, since).items():
            row = rows.setdefault(model, {"model_id": model} | dict.fromkeys(sums, 0))
            for name, value in sums.items():
                row[name] = int(row[name] or 0) + value
        return [rows[m] for m in sorted(rows)]


# -- retention: line items rolled up into per-day totals (nura.retention) ----------------
ledger_daily = Table(
    "nura_bedrock_ledger_daily",
    metadata,
    Column("day", String(10), primary_key=True),  # UTC date, "2026-11-29"
    Column("scope", String(100), primary_key=True),
    Column("model_id", String(200), primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost_pusd", BigInteger, nullable=False),
    Column("estimated_pusd", BigInteger, nullable=False),
)

_SUMMED = ("calls", "input_tokens", "output_tokens", "cost_pusd", "estimated_pusd")


def _day(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts // 86_400 * 86_400, UTC):%Y-%m-%d}"


def roll_up_items(engine: Engine, *, before: float, limit: int) -> int:
    """Move up to `limit` line items older than `before` into `nura_bedrock_ledger_daily`
    (added to the day's totals and deleted in one transaction); how many were moved.
    The spend totals that budgets read (`nura_bedrock_spend`) are not touched."""
    c = ledger.c
    wanted = select(c.id, c.ts, c.scope, c.model_id, c.input_tokens, c.output_tokens)
    wanted = wanted.add_columns(c.cost_pusd, c.estimated).where(c.ts < before)
    with engine.begin() as conn:
        # FOR UPDATE (PostgreSQL): a concurrent sweep waits, then finds these rows gone.
        rows = conn.execute(wanted.order_by(c.id).limit(limit).with_for_update()).all()
        sums: dict[tuple[str, str, str], list[int]] = {}
        for r in rows:
            total = sums.setdefault((_day(r.ts), r.scope, r.model_id), [0] * len(_SUMMED))
            est = int(r.cost_pusd) if r.estimated else 0
            for i, n in enumerate((1, r.input_tokens, r.output_tokens, r.cost_pusd, est)):
                total[i] += int(n)
        stmt = _upsert(engine.dialect.name)(ledger_daily)
        add = {k: ledger_daily.c[k] + stmt.excluded[k] for k in _SUMMED}
        stmt = stmt.on_conflict_do_update(index_elements=["day", "scope", "model_id"], set_=add)
        for (day, scope, model), values in sorted(sums.items()):
            summed = dict(zip(_SUMMED, values, strict=True))
            conn.execute(stmt.values(day=day, scope=scope, model_id=model, **summed))
        if rows:
            conn.execute(delete(ledger).where(c.id.in_([r.id for r in rows])))
    return len(rows)


def rolled_up_by_model(engine: Engine, since: float) -> dict[str, dict[str, int]]:
    """Per-model sums of the rolled-up days from the day of `since` on."""
    d = ledger_daily.c
    query = (
        select(d.model_id, *(func.sum(d[k]).label(k) for k in _SUMMED))
        .where(d.day >= _day(since))
        .group_by(d.model_id)
    )
    with engine.connect() as conn:
        return {r.model_id: {k: int(r._mapping[k]) for k in _SUMMED} for r in conn.execute(query)}
