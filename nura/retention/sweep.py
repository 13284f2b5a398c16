"""The retention sweep: rows past their store's period are deleted (or emptied), in
bounded batches.

    report = apply_retention(engine, cfg, now=time.time())
    report.removed("call_records")  # rows deleted from nura_call_records
    apply_retention(engine, cfg, dry_run=True)  # counts only, nothing changes

Each batch is its own short transaction (at most `retention.batch_size` rows): on SQLite a
write transaction holds the database's only write lock, which the webhook receiver's
inbox writer waits for, so one DELETE of a million rows would stall acknowledgements; on
PostgreSQL short transactions keep row locks and WAL bursts small. A batch is a key range
(up to the key of the `batch_size`-th matching row), changed under the rule's condition,
so a row that no longer matches (an inbox entry redispatched, a dead letter requeued) is
left alone.

Ledger line items are not simply deleted: `roll_up_items` adds them to per-day totals in
the same transaction (`nura_bedrock_ledger_daily`), and the budget totals
(`nura_bedrock_spend`) never depend on line items. One audit row per sweep (counts only).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, delete, func, select, tuple_, update

from nura.config.schema import IntegrationsConfig
from nura.core.stores import audit
from nura.core.stores.alerts import alert_history
from nura.core.stores.config_snapshots import config_snapshots
from nura.core.stores.dead_letters import dead_letters
from nura.core.stores.health import health_checks
from nura.core.stores.inbox import inbox
from nura.core.stores.ledger import ledger, roll_up_items
from nura.core.stores.maintenance import maintenance_notices, maintenance_windows
from nura.core.stores.notifications import email_feedback, notifications, outbox
from nura.core.stores.security import security_events
from nura.core.stores.tables import call_records
from nura.retention.policy import Rule, retention_rules

logger = logging.getLogger("nura.retention")

# What an emptied inbox body holds: nothing (the column is NOT NULL).
EMPTY_BODY = b""


@dataclass(frozen=True)
class StoreResult:
    store: str
    action: str
    days: float
    cutoff: float | None  # None: kept forever (0 days)
    rows: int  # deleted / emptied / rolled up (with dry_run: that would be)


@dataclass
class RetentionReport:
    now: float
    dry_run: bool
    results: list[StoreResult] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(r.rows for r in self.results)

    def removed(self, store: str) -> int:
        return next((r.rows for r in self.results if r.store == store), 0)

    def counts(self) -> dict[str, int]:
        return {r.store: r.rows for r in self.results}

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "dry_run": self.dry_run,
            "total": self.total,
            "results": [asdict(r) for r in self.results],
        }


def _target(store: str, cutoff: float) -> tuple[Table, ColumnElement[bool]]:
    """The table a rule works on and the condition of its rows past `cutoff`."""
    i, d, o = inbox.c, dead_letters.c, outbox.c
    m, snap = maintenance_windows.c, config_snapshots.c
    targets: dict[str, tuple[Table, ColumnElement[bool]]] = {
        "call_records": (call_records, call_records.c.ts < cutoff),
        "inbox_bodies": (
            inbox,
            i.status.in_(("dispatched", "done"))
            & (i.dispatched_at < cutoff)
            & (func.length(i.body) > 0),
        ),
        "inbox_rows": (inbox, i.status.in_(("done", "failed")) & (i.finished_at < cutoff)),
        "dead_letters_settled": (
            dead_letters,
            d.status.in_(("delivered", "purged")) & (d.updated_at < cutoff),
        ),
        "dead_letters_exhausted": (
            dead_letters,
            (d.status == "exhausted") & (d.updated_at < cutoff),
        ),
        "health_checks": (health_checks, health_checks.c.ts < cutoff),
        "alert_history": (alert_history, alert_history.c.ts < cutoff),
        "notifications": (notifications, notifications.c.ts < cutoff),
        "notification_outbox": (
            outbox,
            o.status.in_(("sent", "failed", "expired"))
            & (func.coalesce(o.done_at, o.created_at) < cutoff),
        ),
        "email_feedback": (email_feedback, email_feedback.c.received_at < cutoff),
        "ledger_items": (ledger, ledger.c.ts < cutoff),
        "audit_log": (audit.audit_log, audit.audit_log.c.ts < cutoff),
        "security_events": (security_events, security_events.c.ts < cutoff),
        "maintenance": (
            maintenance_windows,
            func.coalesce(m.ended_at, m.ends_at) < cutoff,
        ),
        "maintenance_notices": (maintenance_notices, maintenance_notices.c.ts < cutoff),
        "config_snapshots": (  # the latest is the baseline the next change is compared to
            config_snapshots,
            (snap.ts < cutoff) & (snap.seq < select(func.max(snap.seq)).scalar_subquery()),
        ),
    }
    return targets[store]


def _key(table: Table) -> Any:
    cols = list(table.primary_key.columns)
    return cols[0] if len(cols) == 1 else tuple_(*cols)


def change_in_batches(
    engine: Engine, table: Table, where: ColumnElement[bool], limit: int, **values: Any
) -> int:
    """Delete the rows matching `where` (or, with `values`, update them), about `limit`
    rows per transaction; how many were changed.

    A batch is a key range: the key of the `limit`-th matching row bounds it, and the
    statement changes the matching rows up to that key (one bound parameter: a list of a
    thousand keys cost more to bind than SQLite took to delete them)."""
    cols = list(table.primary_key.columns)
    key = _key(table)
    nth = select(*cols).where(where).order_by(*cols).offset(limit - 1).limit(1)
    changed = 0
    while True:
        with engine.begin() as conn:
            bound = conn.execute(nth).first()
            stmt = update(table).values(**values) if values else delete(table)
            if bound is not None:
                last = bound[0] if len(cols) == 1 else tuple_(*bound)
                stmt = stmt.where(key <= last)
            changed += int(conn.execute(stmt.where(where)).rowcount)
        if bound is None:  # the rest fitted in this batch
            return changed


def count(engine: Engine, table: Table, where: ColumnElement[bool]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())


def _apply(engine: Engine, rule: Rule, cutoff: float, limit: int, dry_run: bool) -> int:
    table, where = _target(rule.store, cutoff)
    if dry_run:
        return count(engine, table, where)
    if rule.action == "roll_up":
        moved = 0
        while (step := roll_up_items(engine, before=cutoff, limit=limit)) > 0:
            moved += step
            if step < limit:
                break
        return moved
    if rule.action == "empty_body":
        return change_in_batches(engine, table, where, limit, body=EMPTY_BODY)
    return change_in_batches(engine, table, where, limit)


def apply_retention(
    engine: Engine,
    cfg: IntegrationsConfig,
    now: float | None = None,
    *,
    dry_run: bool = False,
    actor: str = "flow:retention",
) -> RetentionReport:
    """Apply every store's retention rule at `now`; a real sweep writes one audit row
    (counts per store, outcome `error` and the error type if a store failed)."""
    report = RetentionReport(now=time.time() if now is None else now, dry_run=dry_run)
    limit = cfg.retention.batch_size
    try:
        for rule in retention_rules(cfg):
            if rule.days == 0:
                report.results.append(StoreResult(rule.store, rule.action, 0, None, 0))
                continue
            cutoff = rule.cutoff(report.now)
            rows = _apply(engine, rule, cutoff, limit, dry_run)
            report.results.append(StoreResult(rule.store, rule.action, rule.days, cutoff, rows))
            logger.info("retention %s: %d row(s) %s", rule.store, rows, _verb(rule, dry_run))
    except Exception as exc:
        if not dry_run:
            _audit(engine, report, actor, "error", error=type(exc).__name__)
        raise
    if not dry_run:
        _audit(engine, report, actor, "ok")
    return report


def _verb(rule: Rule, dry_run: bool) -> str:
    done = {"delete": "deleted", "empty_body": "emptied", "roll_up": "rolled up"}[rule.action]
    return f"would be {done}" if dry_run else done


def _audit(engine: Engine, report: RetentionReport, actor: str, outcome: str, **extra: Any) -> None:
    detail = {"counts": report.counts(), "total": report.total, **extra}
    audit.record(
        engine,
        actor=actor,
        action="retention.sweep",
        outcome=outcome,
        detail=detail,
        now=report.now,
    )


def run_retention(dry_run: bool = False, actor: str = "flow:retention") -> RetentionReport:
    """The sweep on the configured store, now (what the `retention` deployment runs)."""
    from nura import get_config, store_url
    from nura.core.stores.db import get_engine

    cfg = get_config()
    return apply_retention(get_engine(store_url(cfg)), cfg, dry_run=dry_run, actor=actor)


def report_rows(report: RetentionReport) -> list[dict[str, Any]]:
    """One row per store, for a table artifact or the CLI."""
    return [
        {
            "store": r.store,
            "kept": "forever" if r.cutoff is None else f"{r.days:g} d",
            "action": r.action,
            "rows": r.rows,
        }
        for r in report.results
    ]
