"""The dead-letter store on SQLite and PostgreSQL: lifecycle, schedule, stats, endpoints."""

from __future__ import annotations

import pytest

from nura.core.stores import dead_letters as dl
from nura.core.stores.db import get_engine

T0 = 1_800_000_000.0


def _entries(n: int, prefix: str = "msg_") -> list[tuple[str, str, str]]:
    return [(f"{prefix}{i}", "git.push", f'{{"n":{i}}}') for i in range(n)]


def test_enqueue_is_idempotent_by_webhook_id(store_url: str) -> None:
    engine = get_engine(store_url)
    assert dl.enqueue(engine, "t", _entries(3), lease_seconds=60, now=T0) == [
        "msg_0",
        "msg_1",
        "msg_2",
    ]
    assert dl.enqueue(engine, "t", _entries(4), lease_seconds=60, now=T0) == ["msg_3"]
    row = dl.get(engine, "msg_0")
    assert row is not None and row["status"] == "in_flight" and row["next_attempt_at"] == T0 + 60


def test_redrive_schedule_five_times_two_to_the_n_then_exhausted(store_url: str) -> None:
    engine = get_engine(store_url)
    dl.enqueue(engine, "t", _entries(1), lease_seconds=60, now=T0)
    kw = {
        "error": "ServerError",
        "status_code": 503,
        "retryable": True,
        "base_minutes": 5,
        "max_redrives": 5,
    }
    assert dl.mark_failed(engine, "msg_0", attempts=4, redrive=False, now=T0, **kw) == "pending"
    assert dl.get(engine, "msg_0")["next_attempt_at"] == T0 + 5 * 60  # type: ignore[index]
    now = T0
    for n in range(1, 5):
        now += 1000
        assert dl.mark_failed(engine, "msg_0", attempts=4, redrive=True, now=now, **kw) == "pending"
        row = dl.get(engine, "msg_0")
        assert row is not None and row["redrives"] == n
        assert row["next_attempt_at"] == now + 5 * 60 * 2**n
    assert (
        dl.mark_failed(engine, "msg_0", attempts=4, redrive=True, now=now + 1, **kw) == "exhausted"
    )
    row = dl.get(engine, "msg_0")
    assert row is not None and row["attempts"] == 24 and row["next_attempt_at"] is None


def test_non_retryable_failure_is_exhausted_at_once(store_url: str) -> None:
    engine = get_engine(store_url)
    dl.enqueue(engine, "t", _entries(1), lease_seconds=60, now=T0)
    status = dl.mark_failed(
        engine,
        "msg_0",
        attempts=1,
        error="ClientError 400",
        status_code=400,
        retryable=False,
        redrive=False,
        base_minutes=5,
        max_redrives=5,
        now=T0,
    )
    assert status == "exhausted"


def test_due_claim_and_expired_leases(store_url: str) -> None:
    engine = get_engine(store_url)
    dl.enqueue(engine, "a", _entries(2, "a"), lease_seconds=60, now=T0)
    dl.enqueue(engine, "b", _entries(1, "b"), lease_seconds=60, now=T0)
    assert dl.due(engine, now=T0 + 59) == []
    # The process holding the leases died: after the lease they are due again.
    assert {r["id"] for r in dl.due(engine, now=T0 + 61)} == {"a0", "a1", "b0"}
    assert {r["id"] for r in dl.due(engine, now=T0 + 61, exclude_targets=["b"])} == {"a0", "a1"}
    assert dl.claim(engine, "a0", lease_seconds=60, now=T0 + 61)
    assert not dl.claim(engine, "a0", lease_seconds=60, now=T0 + 61)  # someone has it now
    dl.mark_delivered(engine, [("a1", 2, 200)], now=T0 + 62)
    row = dl.get(engine, "a1")
    assert row is not None and row["status"] == "delivered" and row["attempts"] == 2


def test_stats_list_requeue_purge_and_retention(store_url: str) -> None:
    engine = get_engine(store_url)
    dl.enqueue(engine, "t", _entries(4), lease_seconds=60, now=T0)
    kw = {
        "attempts": 1,
        "error": "x",
        "status_code": 503,
        "redrive": False,
        "base_minutes": 5,
        "max_redrives": 5,
    }
    dl.mark_failed(engine, "msg_0", retryable=True, now=T0 + 10, **kw)
    dl.mark_failed(engine, "msg_1", retryable=True, now=T0 + 20, **kw)
    dl.mark_failed(engine, "msg_2", retryable=False, now=T0 + 20, **kw)
    dl.mark_delivered(engine, [("msg_3", 1, 200)], now=T0)
    stats = dl.dead_letter_stats(engine, now=T0 + 100)
    assert stats["count"] == 2 and stats["oldest_age_s"] == 100.0
    assert stats["exhausted"] == 1 and stats["delivered"] == 1
    assert [r["id"] for r in dl.list_entries(engine, statuses=["exhausted"])] == ["msg_2"]
    assert dl.requeue(engine, ids=["msg_2"], now=T0 + 200) == 1
    assert {r["id"] for r in dl.due(engine, now=T0 + 200)} == {"msg_2"}
    with pytest.raises(ValueError):
        dl.requeue(engine)
    assert dl.purge(engine, ids=["msg_0", "msg_3"], now=T0 + 300) == 1  # delivered stays
    assert dl.dead_letter_stats(engine, now=T0 + 300)["count"] == 2  # msg_1 and requeued msg_2
    assert dl.delete_old(engine, before=T0 + 301) == 2  # purged msg_0 and delivered msg_3
    assert dl.get(engine, "msg_0") is None


def test_endpoint_failure_streak_disable_and_enable(store_url: str) -> None:
    engine = get_engine(store_url)
    assert dl.record_endpoint_failure(engine, "p", now=T0) == 0
    assert dl.record_endpoint_failure(engine, "p", now=T0 + 3600) == 3600
    dl.record_endpoint_success(engine, "p", now=T0 + 3700)
    assert dl.record_endpoint_failure(engine, "p", now=T0 + 4000) == 0  # streak restarted
    assert dl.disable_endpoint(engine, "p", "410 Gone", now=T0)
    assert not dl.disable_endpoint(engine, "p", "again", now=T0)  # alert only once
    assert dl.disabled_targets(engine) == {"p"}
    assert dl.enable_endpoint(engine, "p")
    assert dl.disabled_targets(engine) == set()
