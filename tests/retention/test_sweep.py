"""The retention sweep on SQLite and PostgreSQL, with an injected clock.

Rows are written through the stores' own functions (and, where a store has no writer a test
can drive without its whole subsystem, a plain INSERT of a row shaped as the writer makes
it): older than the period -> gone, newer -> kept; inbox bodies emptied after dispatch with
the rows kept; ledger line items rolled up so spend and per-model totals do not change.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from nura.config.schema import IntegrationsConfig
from nura.core.stores import audit
from nura.core.stores import dead_letters as dl
from nura.core.stores import notifications as notes
from nura.core.stores.alerts import alert_history
from nura.core.stores.db import get_engine
from nura.core.stores.health import health_checks, record_checks
from nura.core.stores.inbox import inbox, mark_dispatched
from nura.core.stores.ledger import CostLedger, LedgerEntry, ledger, periods, to_pusd
from nura.core.stores.tables import call_records
from nura.retention import apply_retention

DAY = 86_400.0
NOW = 1_800_000_000.0  # 2027-01-15, the injected clock
OLD, RECENT = NOW - 400 * DAY, NOW - 1 * DAY  # past every default period / within all


def rows(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _call_record(engine: Engine, ts: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(call_records).values(
                ts=ts, service="s3", operation="put_object", outcome="ok",
                latency_ms=3.0, attempts=1, fallback=False,
            )
        )  # fmt: skip


def _inbox_entry(engine: Engine, delivery: str, received: float) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            insert(inbox).values(
                endpoint="github", delivery_id=delivery, event_type="push", status="accepted",
                received_at=received, body=b'{"ref": "refs/heads/main"}',
                content_type="application/json", headers="{}", attempts=0,
                next_attempt_at=received,
            )
        )  # fmt: skip
        return int(result.inserted_primary_key[0])


def _dead_letter(engine: Engine, msg: str, at: float, *, exhausted: bool) -> None:
    dl.enqueue(engine, "partner", [(msg, "x.y", "{}")], lease_seconds=60, owner="w", now=at)
    if exhausted:
        dl.mark_failed(
            engine, "partner", msg, owner="w", attempts=1, error="500", status_code=500,
            retryable=False, redrive=False, base_minutes=5, max_redrives=0, now=at,
        )  # fmt: skip
    else:
        dl.mark_delivered(engine, [("partner", msg, 1, 200)], owner="w", now=at)


def _alert(engine: Engine, ts: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(alert_history).values(
                ts=ts, key="s3", alert_id="a1", kind="open", level="unhealthy",
                severity="high", reason="down",
            )
        )  # fmt: skip


def _notification(engine: Engine, ts: float, n: int) -> None:
    notes.record_notification(
        engine, channel="email", severity="high", title="down", status="sent",
        message_id=f"ses-{n}", ts=ts,
    )  # fmt: skip
    notes.record_feedback(
        engine, sns_message_id=f"sns-{n}", ses_message_id=f"ses-{n}", kind="bounce",
        recipients=["oncall@example.com"], now=ts,
    )  # fmt: skip
    row = notes.enqueue(
        engine, dedupe_key=f"k{n}", channel="email", severity="high", title="down",
        body="s3 is down", event=None, details={}, now=ts, expires_at=ts + 3600,
    )  # fmt: skip
    assert row is not None
    notes.settle(engine, row, status="sent", now=ts)


def _ledger_call(engine: Engine, ts: float, n: int) -> None:
    entry = LedgerEntry(
        invocation_id=f"i{n}", scope="team-a", model_id="anthropic.claude", region="us-east-1",
        api="converse", input_tokens=100 + n, output_tokens=10, cost_pusd=to_pusd(Decimal("0.25")),
        cost_unknown=False, latency_ms=5.0, ts=ts, estimated=n % 2 == 0,
    )  # fmt: skip
    CostLedger(engine).record(entry, ["team-a"])


def seed(engine: Engine) -> None:
    """Two of each at OLD, one of each at RECENT."""
    for n, ts in enumerate((OLD, OLD + 60, RECENT)):
        _call_record(engine, ts)
        record_checks(engine, [{"ts": ts, "service": "s3", "kind": "aws", "ok": True}])
        _alert(engine, ts)
        _notification(engine, ts, n)
        _ledger_call(engine, ts, n)
        _dead_letter(engine, f"d{n}", ts, exhausted=False)
        _dead_letter(engine, f"e{n}", ts, exhausted=True)
        entry = _inbox_entry(engine, f"del-{n}", ts)
        mark_dispatched(engine, [(entry, "git-ingest/git-ingest", f"run-{n}")], now=ts)
    audit.record(engine, actor="cli:ops", action="breaker.reset", outcome="ok", now=OLD)


def test_old_rows_go_recent_stay_bodies_emptied_totals_kept(store_url: str) -> None:
    engine = get_engine(store_url)
    cfg = IntegrationsConfig.model_validate({"retention": {"batch_size": 1}})  # many batches
    seed(engine)
    ledger_rows = CostLedger(engine)
    old_period = periods(OLD)
    spend_before = ledger_rows.spent(["team-a"], OLD)
    by_model_before = ledger_rows.totals_by_model(OLD - DAY)

    dry = apply_retention(engine, cfg, NOW, dry_run=True)
    assert rows(engine, call_records) == 3 and rows(engine, ledger) == 3  # nothing changed
    report = apply_retention(engine, cfg, NOW, actor="test")

    assert dry.counts() == report.counts()
    assert report.counts() == {
        "call_records": 2, "inbox_bodies": 2, "inbox_rows": 0, "dead_letters_settled": 2,
        "dead_letters_exhausted": 2, "health_checks": 2, "alert_history": 2,
        "notifications": 2, "notification_outbox": 2, "email_feedback": 2,
        "ledger_items": 2, "audit_log": 1, "security_events": 0, "maintenance": 0,
        "maintenance_notices": 0, "config_snapshots": 0,
    }  # fmt: skip
    for table in (call_records, health_checks, alert_history, ledger, notes.notifications):
        assert rows(engine, table) == 1, table.name
    assert rows(engine, notes.email_feedback) == 1 and rows(engine, notes.outbox) == 1
    left = dl.list_entries(engine, statuses=list(dl.STATUSES))
    assert sorted(d["id"] for d in left) == ["d2", "e2"]
    # inbox: every row kept (dedupe), the old bodies emptied, the recent one intact
    with engine.connect() as conn:
        bodies = dict(conn.execute(select(inbox.c.delivery_id, inbox.c.body)).all())
    assert bodies == {"del-0": b"", "del-1": b"", "del-2": b'{"ref": "refs/heads/main"}'}
    # ledger: budgets read the spend totals, untouched; per-model sums come from the roll-up
    assert ledger_rows.spent(["team-a"], OLD) == spend_before
    assert spend_before[("team-a", old_period["daily"])] == 2 * to_pusd(Decimal("0.25"))
    assert ledger_rows.totals_by_model(OLD - DAY) == by_model_before
    # one audit row for the sweep, counts only
    (entry,) = audit.entries(engine, action="retention.sweep")
    assert entry["actor"] == "test" and entry["outcome"] == "ok"
    assert entry["detail"]["counts"] == report.counts() and entry["ts"] == NOW

    again = apply_retention(engine, cfg, NOW)
    assert again.total == 0


def test_finished_inbox_rows_go_after_their_own_period(store_url: str) -> None:
    engine = get_engine(store_url)
    cfg = IntegrationsConfig.model_validate({"retention": {"inbox_rows_days": 30}})
    entry = _inbox_entry(engine, "done-old", OLD)
    mark_dispatched(engine, [(entry, None, None)], now=OLD)  # no route: done at once
    fresh = _inbox_entry(engine, "done-new", RECENT)
    mark_dispatched(engine, [(fresh, None, None)], now=RECENT)
    waiting = _inbox_entry(engine, "accepted-old", OLD)  # never dispatched: kept
    report = apply_retention(engine, cfg, NOW)
    assert report.removed("inbox_rows") == 1
    with engine.connect() as conn:
        left = dict(conn.execute(select(inbox.c.id, inbox.c.body)).all())
    assert set(left) == {fresh, waiting} and left[waiting]  # an undispatched body stays


def test_zero_keeps_forever_and_health_never_inside_the_sla_window(store_url: str) -> None:
    engine = get_engine(store_url)
    cfg = IntegrationsConfig.model_validate(
        {"retention": {"call_records_days": 0, "health_checks_days": 1}}
    )
    _call_record(engine, OLD)
    for age_days in (2, 6, 9):  # a 1-day setting is raised to the 7-day SLA window (+1 h)
        record_checks(
            engine, [{"ts": NOW - age_days * DAY, "service": "s", "kind": "http", "ok": True}]
        )
    report = apply_retention(engine, cfg, NOW)
    assert report.removed("call_records") == 0 and rows(engine, call_records) == 1
    assert report.removed("health_checks") == 1 and rows(engine, health_checks) == 2
    kept = next(r for r in report.results if r.store == "call_records")
    assert kept.cutoff is None
    assert json.loads(json.dumps(report.as_dict()))["total"] == report.total


def test_config_rejects_negative_periods() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        IntegrationsConfig.model_validate({"retention": {"alert_history_days": -1}})
    with pytest.raises(ValidationError):
        IntegrationsConfig.model_validate({"retention": {"unknown_store_days": 3}})


def test_security_maintenance_and_config_history_expire_but_the_latest_snapshot_stays(
    store_url: str,
) -> None:
    from nura.core.stores.config_snapshots import config_snapshots
    from nura.core.stores.maintenance import maintenance_notices, maintenance_windows
    from nura.core.stores.security import security_events

    engine = get_engine(store_url)
    cfg = IntegrationsConfig.model_validate({})
    window = {"service": "s3", "reason": "", "actor": "ops", "starts_at": OLD - DAY}
    snapshot = {"digest": "d", "salt": "s", "entries": "{}", "source": "test"}
    with engine.begin() as conn:
        for ts in (OLD, RECENT):
            conn.execute(insert(security_events).values(ts=ts, kind="ssrf", subject="t", count=1))
            conn.execute(
                insert(maintenance_notices).values(
                    key=f"w{ts}:started", service="s3", kind="started", ts=ts
                )
            )
        conn.execute(insert(maintenance_windows).values(**window, ends_at=OLD, created_at=OLD))
        # Planned to run long, ended early: its end is when it was ended.
        conn.execute(
            insert(maintenance_windows).values(
                **window, ends_at=NOW + DAY, ended_at=OLD, created_at=OLD
            )
        )
        conn.execute(
            insert(maintenance_windows).values(**window, ends_at=NOW + DAY, created_at=RECENT)
        )  # in effect
        # Both snapshots are old; the latest is the baseline of the next change: kept.
        conn.execute(insert(config_snapshots).values(seq=1, ts=OLD - DAY, **snapshot))
        conn.execute(insert(config_snapshots).values(seq=2, ts=OLD, **snapshot))

    report = apply_retention(engine, cfg, NOW, actor="test")

    counts = report.counts()
    assert counts["security_events"] == 1 and counts["maintenance_notices"] == 1
    assert counts["maintenance"] == 2 and counts["config_snapshots"] == 1
    with engine.connect() as conn:
        assert conn.execute(select(config_snapshots.c.seq)).scalars().all() == [2]
        assert conn.execute(select(maintenance_windows.c.created_at)).scalars().all() == [RECENT]
    assert apply_retention(engine, cfg, NOW, actor="test").total == 0
