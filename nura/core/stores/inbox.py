"""The durable webhook inbox: every accepted delivery, stored before it is acknowledged.

Life of an entry: `accepted` (stored, 202 sent) -> `dispatched` (flow run created, id kept)
-> `done` / `failed` (the run's final state, or no route: event only). The unique key
(endpoint, delivery_id) is the dedupe: a repeated delivery inserts nothing and gets 200.
Where the sender's delivery id is not covered by its signature (GitHub, the generic
scheme's legacy body-only form) a captured request could be replayed under a new id, so
such deliveries are also deduped on the body's SHA-256 within a replay window
(`nura_webhook_body_seen`, one small row per body, in the same transaction as the insert).

Writes come from the receiver through `InboxWriter`: one thread owns one connection and
commits whatever requests arrived meanwhile in one transaction (group commit), then
answers them all. A request is acknowledged only after its batch's COMMIT returned, so a
202 always means "on disk" (SQLite: the writer's connection runs `synchronous=FULL`, an
fsync of the WAL per commit, whatever the engine's default `NORMAL`; PostgreSQL's commit).
On SQLite a second thread checkpoints the WAL into the database file, so that work (and
its fsync) is not done inside a group commit that requests are waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    func,
    select,
    update,
)

from nura.core.stores.db import MIGRATIONS, add_missing_column, id_column, metadata, utcnow_ts
from nura.errors import NuraError

logger = logging.getLogger("nura.inbox")

STATUSES = ("accepted", "dispatched", "done", "failed")

inbox = Table(
    "nura_webhook_inbox",
    metadata,
    id_column(),
    Column("endpoint", String(100), nullable=False),
    Column("delivery_id", String(200), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("status", String(16), nullable=False),  # accepted|dispatched|done|failed
    Column("received_at", Float, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("headers", Text, nullable=False),  # JSON: the headers that matter
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("deployment", String(200), nullable=True),
    Column("flow_run_id", String(64), nullable=True),
    Column("dispatched_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    # the dispatcher whose claim holds an accepted entry until next_attempt_at
    Column("claimed_by", String(64), nullable=True),
    UniqueConstraint("endpoint", "delivery_id", name="uq_nura_webhook_inbox_delivery"),
    Index("ix_nura_webhook_inbox_status", "status", "next_attempt_at"),
)

MIGRATIONS.append(
    lambda engine: add_missing_column(engine, inbox.name, "claimed_by", "VARCHAR(64)")
)

# Bodies seen per endpoint, for deliveries whose id is unsigned (the replay dedupe).
body_seen = Table(
    "nura_webhook_body_seen",
    metadata,
    Column("endpoint", String(100), primary_key=True),
    Column("body_sha256", String(64), primary_key=True),
    Column("seen_at", Float, nullable=False),
)

_COLUMNS = (
    "endpoint",
    "delivery_id",
    "event_type",
    "status",
    "received_at",
    "body",
    "content_type",
    "headers",
    "attempts",
    "next_attempt_at",
)


@dataclass
class Delivery:
    """One verified delivery, ready to store."""

    endpoint: str
    delivery_id: str
    event_type: str
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    received_at: float = 0.0
    # Set where the delivery id is unsigned: the body's SHA-256 hex, deduped within the
    # writer's replay window (an earlier delivery with this body: a duplicate).
    body_digest: str | None = None

    def row(self) -> tuple[Any, ...]:
        ts = self.received_at or utcnow_ts()
        return (
            self.endpoint,
            self.delivery_id[:200],
            self.event_type[:100],
            "accepted",
            ts,
            self.body,
            self.content_type[:100],
            orjson.dumps(self.headers, option=orjson.OPT_SORT_KEYS).decode(),
            0,
            ts,
        )


class StoreUnavailable(NuraError, RuntimeError):
    """The inbox could not commit: nothing was stored (the receiver answers 503)."""


# -- the group-commit writer ------------------------------------------------------------
def _insert_sql(dialect: str) -> str:
    cols = ", ".join(_COLUMNS)
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in _COLUMNS)
        return f"INSERT OR IGNORE INTO nura_webhook_inbox ({cols}) VALUES ({marks})"  # noqa: S608
    marks = ", ".join("%s" for _ in _COLUMNS)
    return (
        f"INSERT INTO nura_webhook_inbox ({cols}) VALUES ({marks}) "  # noqa: S608
        "ON CONFLICT (endpoint, delivery_id) DO NOTHING"
    )


def _seen_sql(dialect: str) -> str:
    """Record a body; a row counts (rowcount 1) only if new or last seen before the cutoff."""
    m = "?" if dialect == "sqlite" else "%s"
    return (
        "INSERT INTO nura_webhook_body_seen (endpoint, body_sha256, seen_at) "  # noqa: S608
        f"VALUES ({m}, {m}, {m}) ON CONFLICT (endpoint, body_sha256) "
        "DO UPDATE SET seen_at = excluded.seen_at "
        f"WHERE nura_webhook_body_seen.seen_at < {m}"
    )


# (row, body digest or None, loop, future)
_Pending = tuple[tuple[Any, ...], str | None, asyncio.AbstractEventLoop, "asyncio.Future[bool]"]


class InboxWriter:
    """One writer thread, group commit; `await writer.write(delivery)` -> inserted?

    True: stored now (answer 202). False: the (endpoint, delivery id) was already stored
    (answer 200 duplicate). Raises `StoreUnavailable` when the commit failed (503).
    """

    # SQLite checkpoints (WAL pages written back to the database file, which is fsynced).
    # Left to the writer (SQLite's default: the commit that crosses 1,000 WAL pages), one
    # group commit in every ~100 did that too: 2-7x a normal commit for every request in
    # the batch. A checkpoint beside the writer is no better during a burst, it competes
    # for the same disk. So the checkpointer waits for a gap (no commit for
    # `checkpoint_idle` s), or for `checkpoint_bytes` of rows under a steady stream; the
    # writer's own automatic checkpoint stays as a safety valve far above that.
    checkpoint_idle = 0.05
    checkpoint_bytes = 8 * 1024 * 1024
    wal_valve_pages = 10_000

    prune_interval = 300.0  # seconds between deletions of body digests past the window

    def __init__(
        self,
        engine: Engine,
        *,
        batch_max: int = 512,
        synchronous: str = "FULL",
        replay_window: float = 86400.0,
    ):
        self.engine = engine
        self.replay_window = replay_window
        self._pruned_at = 0.0
        self.dialect = engine.dialect.name
        self.batch_max = batch_max
        self.synchronous = synchronous if synchronous in ("FULL", "NORMAL") else "FULL"
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._checkpointer: threading.Thread | None = None
        self._committed = threading.Event()  # set after each commit: the WAL grew
        self._stopping = threading.Event()
        self.batches = 0
        self.rows = 0
        self.bytes = 0  # rows' size, roughly: what the WAL grew by
        self._committing = False  # a batch is being written (a slow fsync is no pause)
        self.checkpoints = 0

    def start(self) -> InboxWriter:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
            self._thread.start()
            if self.dialect == "sqlite":
                self._checkpointer = threading.Thread(
                    target=self._checkpoint_loop, name="inbox-checkpointer", daemon=True
                )
                self._checkpointer.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        if self._checkpointer is not None:
            self._stopping.set()
            self._committed.set()
            self._checkpointer.join(timeout)
            self._checkpointer = None
        self._close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def write(self, delivery: Delivery) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._queue.put((delivery.row(), delivery.body_digest, loop, fut))
        return await fut

    # -- thread side ---------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._conn is None:
            raw = self.engine.raw_connection()
            if self.dialect == "sqlite":
                raw.detach()  # its pragmas are the writer's own: never back to the pool
                cur = raw.cursor()
                cur.execute(f"PRAGMA synchronous={self.synchronous}")
                cur.execute(f"PRAGMA wal_autocheckpoint={self.wal_valve_pages}")
                cur.close()
            self._conn = raw
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: S110 - a broken connection is being discarded anyway
                pass
            self._conn = None

    def _run(self) -> None:
        sql = (_insert_sql(self.dialect), _seen_sql(self.dialect))
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(sql, batch)

    def _commit(self, sql: tuple[str, str], batch: list[_Pending]) -> None:
        self._committing = True
        try:
            self._write(sql, batch)
            self._prune()
        finally:
            self._committing = False

    def _prune(self) -> None:
        """Forget body digests older than the replay window (every `prune_interval` s)."""
        now = time.time()
        if self._conn is None or now - self._pruned_at < self.prune_interval:
            return
        self._pruned_at = now
        m = "?" if self.dialect == "sqlite" else "%s"
        try:
            cur = self._conn.cursor()
            try:
                cur.execute(
                    f"DELETE FROM nura_webhook_body_seen WHERE seen_at < {m}",  # noqa: S608
                    (now - self.replay_window,),
                )
                self._conn.commit()
            finally:
                cur.close()
        except Exception as exc:  # retried at the next interval; the dedupe is unaffected
            logger.warning("pruning body digests failed: %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                self._conn.rollback()

    def _write(self, sql: tuple[str, str], batch: list[_Pending]) -> None:
        insert_sql, seen_sql = sql
        results: list[bool] | None = None
        error: BaseException | None = None
        try:
            conn = self._connect()
            cur = conn.cursor()
            try:
                results = []
                for row, digest, _, _ in batch:
                    if digest is not None:
                        # endpoint, digest, received_at; cutoff = received_at - window
                        cur.execute(seen_sql, (row[0], digest, row[4], row[4] - self.replay_window))
                        if cur.rowcount != 1:  # this body was stored within the window
                            results.append(False)
                            continue
                    cur.execute(insert_sql, row)
                    results.append(cur.rowcount == 1)
                conn.commit()
            finally:
                cur.close()
            self.batches += 1
            self.rows += len(batch)
            self.bytes += sum(len(row[5]) + 512 for row, *_ in batch)
            self._committed.set()
        except Exception as exc:  # any driver error: nothing of this batch is stored
            logger.error("inbox commit failed: %s", type(exc).__name__)
            error = exc
            results = None
            try:
                if self._conn is not None:
                    self._conn.rollback()
            except Exception:  # noqa: S110 - reconnect below
                pass
            self._close()
        # Wake each waiting request once, on its own loop.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], Any]]] = {}
        for i, (_, _, loop, fut) in enumerate(batch):
            outcome: Any = StoreUnavailable(type(error).__name__) if results is None else results[i]
            by_loop.setdefault(loop, []).append((fut, outcome))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # the loop is closed: its requests are gone
                pass

    def _checkpoint_loop(self) -> None:
        conn: Any = None
        done_bytes = 0
        while not self._stopping.is_set():
            self._committed.wait()
            self._committed.clear()
            # Wait for the writer to pause (no batch for `checkpoint_idle` s, none being
            # written), unless the WAL has grown by enough regardless. Polled: waking on
            # every commit of a burst would cost the receiver's thread the GIL as often.
            seen = self.batches
            while not self._stopping.wait(self.checkpoint_idle):
                if self.bytes - done_bytes >= self.checkpoint_bytes:
                    break
                if self.batches == seen and not self._committing:
                    break
                seen = self.batches
            self._committed.clear()
            if self._stopping.is_set():
                break
            grown = self.bytes
            try:
                if conn is None:
                    conn = self.engine.raw_connection()
                cur = conn.cursor()
                # PASSIVE: copies what no reader still needs, never waits for a lock, and
                # the writer may append meanwhile.
                cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cur.fetchall()
                cur.close()
                self.checkpoints += 1
                done_bytes = grown
            except Exception as exc:  # the valve above takes over; retried after next commit
                logger.warning("inbox checkpoint failed: %s", type(exc).__name__)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _resolve(items: list[tuple[asyncio.Future[bool], Any]]) -> None:
    for fut, outcome in items:
        if fut.done():
            continue
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


# -- reads and state changes (dispatcher, CLI, health) ----------------------------------
def inbox_stats(engine: Engine, now: float | None = None) -> dict[str, Any]:
    """Depth (entries not yet dispatched) and the age of the oldest of them, in seconds."""
    now = utcnow_ts() if now is None else now
    with engine.connect() as conn:
        depth, oldest = conn.execute(
            select(func.count(), func.min(inbox.c.received_at)).where(inbox.c.status == "accepted")
        ).one()
    return {
        "depth": int(depth or 0),
        "oldest_age_s": None if oldest is None else max(0.0, now - float(oldest)),
    }


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(inbox.c.status, func.count()).group_by(inbox.c.status))
        counts = {s: 0 for s in STATUSES}
        counts.update({status: int(n) for status, n in rows})
    return counts


def claim_due(
    engine: Engine,
    limit: int,
    now: float | None = None,
    *,
    owner: str,
    lease_seconds: float,
) -> list[dict[str, Any]]:
    """Claim accepted entries due for a dispatch attempt, oldest first, for `owner` until
    `now + lease_seconds`: another dispatcher does not get them meanwhile.

    One statement: `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`
    on PostgreSQL (two dispatchers take disjoint rows without waiting for each other); on
    SQLite the UPDATE holds the database's write lock, which makes it atomic as well.
    """
    now = utcnow_ts() if now is None else now
    c = inbox.c
    due = (
        select(c.id)
        .where(and_(c.status == "accepted", c.next_attempt_at <= now))
        .order_by(c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if engine.dialect.name == "postgresql":
        # A CTE is evaluated once; `IN (SELECT ... LIMIT ... FOR UPDATE SKIP LOCKED)` may be
        # rescanned by the plan and then take more rows than the limit.
        picked = due.cte("due")
        chosen = c.id == picked.c.id
    else:
        chosen = c.id.in_(due.scalar_subquery())
    with engine.begin() as conn:
        rows = conn.execute(
            update(inbox)
            .where(chosen, c.status == "accepted")
            .values(claimed_by=owner, next_attempt_at=now + lease_seconds)
            .returning(*inbox.c)
        ).mappings()
        return sorted((dict(r) for r in rows), key=lambda r: int(r["id"]))


def release(engine: Engine, ids: list[int], owner: str, now: float | None = None) -> None:
    """Give back claimed entries that are still accepted (due again now)."""
    if not ids:
        return
    c = inbox.c
    with engine.begin() as conn:
        conn.execute(
            update(inbox)
            .where(c.id.in_(ids), c.status == "accepted", c.claimed_by == owner)
            .values(claimed_by=None, next_attempt_at=utcnow_ts() if now is None else now)
        )


def get_entry(engine: Engine, endpoint: str, delivery_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = (
            conn.execute(
                select(inbox).where(
                    and_(inbox.c.endpoint == endpoint, inbox.c.delivery_id == delivery_id)
                )
            )
            .mappings()
            .first()
        )
        return dict(row) if row else None


def list_entries(
    engine: Engine, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    query = select(inbox).order_by(inbox.c.id.desc()).limit(limit)
    if status:
        query = query.where(inbox.c.status == status)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# The state changes below are one UPDATE per call, however many entries: on SQLite a
# write transaction holds the database's only write lock and the receiver's inbox writer
# (every acknowledgement) waits for it. A statement per entry held it for the whole loop,
# each statement also waiting for the GIL while the receiver's event loop was busy: under
# load one cycle's marks took 85 ms and held a group commit back for 66 ms.
def _per_entry(values: dict[int, Any], column: Any) -> Any:
    """`CASE id WHEN ... THEN ... ELSE column END`: a value per entry in one statement.

    The ELSE (never taken: the WHERE names the same ids) gives PostgreSQL the column's type
    where every THEN is a NULL parameter.
    """
    return case(values, value=inbox.c.id, else_=column)


def _update_entries(
    engine: Engine, ids: list[int], in_status: str, owner: str | None, /, **values: Any
) -> None:
    """One UPDATE of the entries `ids` that are still `in_status` (a concurrent change wins)
    and, with an `owner`, still claimed by it (a claim that expired is someone else's)."""
    cond = and_(inbox.c.id.in_(ids), inbox.c.status == in_status)
    if owner is not None:
        cond = and_(cond, inbox.c.claimed_by == owner)
    with engine.begin() as conn:
        conn.execute(update(inbox).where(cond).values(**values))


def mark_dispatched(
    engine: Engine,
    items: Iterable[tuple[int, str | None, str | None]],
    now: float | None = None,
    owner: str | None = None,
) -> None:
    """(id, deployment, flow_run_id) -> dispatched; entries without a run (no route) -> done."""
    now = utcnow_ts() if now is None else now
    rows = list(items)
    if not rows:
        return
    c = inbox.c
    _update_entries(
        engine,
        [r[0] for r in rows],
        "accepted",
        owner,
        status=_per_entry({i: "dispatched" if run else "done" for i, _, run in rows}, c.status),
        deployment=_per_entry({i: dep for i, dep, _ in rows}, c.deployment),
        flow_run_id=_per_entry({i: run for i, _, run in rows}, c.flow_run_id),
        dispatched_at=now,
        finished_at=_per_entry({i: None if run else now for i, _, run in rows}, c.finished_at),
        last_error=None,
        claimed_by=None,
    )


def reschedule(
    engine: Engine,
    items: Iterable[tuple[int, int, float, str]],
    max_attempts: int | None = None,
    owner: str | None = None,
) -> None:
    """(id, attempts, next_attempt_at, error): try later, or fail past `max_attempts`."""
    rows = list(items)
    if not rows:
        return
    now = utcnow_ts()
    gone = {i for i, n, _, _ in rows if max_attempts is not None and n >= max_attempts}
    c = inbox.c
    _update_entries(
        engine,
        [r[0] for r in rows],
        "accepted",
        owner,
        status=_per_entry({i: "failed" if i in gone else "accepted" for i, *_ in rows}, c.status),
        attempts=_per_entry({i: n for i, n, _, _ in rows}, c.attempts),
        next_attempt_at=_per_entry({i: at for i, _, at, _ in rows}, c.next_attempt_at),
        last_error=_per_entry({i: err[:1000] for i, _, _, err in rows}, c.last_error),
        finished_at=_per_entry({i: now if i in gone else None for i, *_ in rows}, c.finished_at),
        claimed_by=None,
    )


def fail_entries(
    engine: Engine, items: Iterable[tuple[int, str]], owner: str | None = None
) -> None:
    rows = list(items)
    if not rows:
        return
    _update_entries(
        engine,
        [r[0] for r in rows],
        "accepted",
        owner,
        status="failed",
        last_error=_per_entry({i: err[:1000] for i, err in rows}, inbox.c.last_error),
        finished_at=utcnow_ts(),
    )


def dispatched_runs(engine: Engine, limit: int = 500) -> list[tuple[int, str]]:
    """(id, flow_run_id) of entries whose run has not been seen finishing yet."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(inbox.c.id, inbox.c.flow_run_id)
            .where(inbox.c.status == "dispatched")
            .order_by(inbox.c.id)
            .limit(limit)
        )
        return [(int(i), str(r)) for i, r in rows]


def mark_finished(engine: Engine, items: Iterable[tuple[int, str, str | None]]) -> None:
    """(id, 'done'|'failed', error) for entries whose flow run reached a final state."""
    rows = list(items)
    if not rows:
        return
    c = inbox.c
    _update_entries(
        engine,
        [r[0] for r in rows],
        "dispatched",
        None,
        status=_per_entry({i: status for i, status, _ in rows}, c.status),
        finished_at=utcnow_ts(),
        last_error=_per_entry({i: error for i, _, error in rows}, c.last_error),
    )


def recent_count(engine: Engine, endpoint: str, since: float) -> int:
    """Deliveries of `endpoint` received since `since` (seeds the rate limiter on start)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    and_(inbox.c.endpoint == endpoint, inbox.c.received_at >= since)
                )
            ).scalar_one()
        )


def dispatch_lags(engine: Engine, since: float = 0.0, limit: int = 10000) -> list[float]:
    """Seconds from receipt to flow-run creation of entries dispatched since `since`."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(inbox.c.dispatched_at - inbox.c.received_at)
            .where(and_(inbox.c.dispatched_at.is_not(None), inbox.c.dispatched_at >= since))
            .order_by(inbox.c.id.desc())
            .limit(limit)
        )
        return [float(r[0]) for r in rows]
