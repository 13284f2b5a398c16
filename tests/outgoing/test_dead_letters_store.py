"""The dead-letter store on SQLite and PostgreSQL: lifecycle, schedule, stats, endpoints,
identity (target, id), leases and the move from the id-keyed table of older versions."""

from __future__ import annotations

import pytest

from nura.core.stores import dead_letters as dl
from nura.core.stores.db import get_engine

T0 = 1_800_000_000.0
ME = "owner-a"


def _entries(n: int, prefix: str = "msg_") -> list[tuple[str, str, str]]:
    return [(f"{prefix}{i}", "git.push", f'{{"n":{i}}}') for i in range(n)]


def test_enqueue_is_idempotent_by_webhook_id(store_url: str) -> None:
    engine = get_engine(store_url)
    assert dl.enqueue(engine, "t", _entries(3), lease_seconds=60, owner=ME, now=T0) == [
        "msg_0",
        "msg_1",
        "msg_2",
    ]
    assert dl.enqueue(engine, "t", _entries(4), lease_seconds=60, owner=ME, now=T0) == ["msg_3"]
    # the same ids to another target are other deliveries
    assert dl.enqueue(engine, "u", _entries(2), lease_seconds=60, owner=ME, now=T0) == [
        "msg_0",
        "msg_1",
    ]
    row = dl.get(engine, "msg_0")
    assert row is not None and row["status"] == "in_flight" and row["next_attempt_at"] == T0 + 60


def test_redrive_schedule_five_times_two_to_the_n_then_exhausted(store_url: str) -> None:
    engine = get_engine(store_url)
    dl.enqueue(engine, "t", _entries(1), lease_seconds=60, owner=ME, now=T0)
    kw = {
        "owner": ME,
        "error": "ServerError",
        "status_code": 503,
        "retryable": True,
        "base_minutes": 5,
        "max_redrives": 5,
    }
    assert (
        dl.mark_failed(engine, "t", "msg_0", attempts=4, redrive=False, now=T0, **kw) == "pending"
    )
    assert dl.get(engine, "msg_0")["next_attempt_at"] == T0 + 5 * 60  # type: ignore[index]
    now = T0
    for n in range(1, 5):
        now += 5 * 60 * 2**n  # when it is due
        assert dl.claim(engine, "t", "msg_0", owner=ME, lease_seconds=60, now=now)
        status = dl.mark_failed(engine, "t", "msg_0", attempts=4, redrive=True, now=now, **kw)
        assert status == "pending"
        row = dl.get(engine, "msg_0")
        assert row is not None and row["redrives"] == n
        assert row["next_attempt_at"] == now + 5 * 60 * 2**n
    now += 5 * 60 * 2**4
    assert dl.claim(engine, "t", "msg_0", owner=ME, lease_seconds=60, now=now)
    status = dl.mark_failed(engine, "t", "msg_0", attempts=4, redrive=True, now=now, **kw)
    assert status == "exhausted"
    row = dl.get(engine, "msg_0")
    assert row is not None and row["attempts"] == 24 and row["next_attempt_at"] is None


def test_non_retryable_failure_is_exhausted_at_once(store_url: str) -> None:
    engine = get_engine(store_url)
    dl.enqueue(engine, "t", _entries(1), lease_seconds=60, owner=ME, now=T0)
    status = dl.mark_failed(
        engine,
        "t",
        "msg_0",
        owner=ME,
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
    dl.enqueue(engine, "a", _entries(2, "a"), lease_seconds=60, owner="dead", now=T0)
    dl.enqueue(engine, "b", _entries(1, "b"), lease_seconds=60, owner="dead", now=T0)
    assert dl.due(engine, now=T0 + 59) == []
    assert not dl.claim(engine, "a", "a0", owner=ME, lease_seconds=60, now=T0 + 59)  # leased
    # The process holding the leases died: after the lease they are due again.
    assert {r["id"] for r in dl.due(engine, now=T0 + 61)} == {"a0", "a1", "b0"}
    assert {r["id"] for r in dl.due(engine, now=T0 + 61, exclude_targets=["b"])} == {"a0", "a1"}
    assert {r["id"] for r in dl.due(engine, now=T0 + 61, keys=[("b", "b0"), ("a", "b0")])} == {"b0"}
    assert dl.claim(engine, "a", "a0", owner=ME, lease_seconds=60, now=T0 + 61)
    assert not dl.claim(engine, "a", "a0", owner="other", lease_seconds=60, now=T0 + 61)
    assert dl.claim(engine, "a", "a0", owner=ME, lease_seconds=60, now=T0 + 62)  # renewed
    # Only the lease holder records an outcome: the dead owner's late mark is ignored.
    assert dl.mark_delivered(engine, [("a", "a0", 1, 200)], owner="dead", now=T0 + 62) == 0
    assert dl.get(engine, "a0")["status"] == "in_flight"  # type: ignore[index]
    assert dl.claim(engine, "a", "a1", owner=ME, lease_seconds=60, now=T0 + 61)
    assert dl.mark_delivered(engine, [("a", "a1", 2, 200)], owner=ME, now=T0 + 62) == 1
    row = dl.get(engine, "a1")
    assert row is not None and row["status"] == "delivered" and row["attempts"] == 2
    assert row["lease_owner"] is None


def test_a_heartbeat_keeps_a_lease_and_a_refusal_uses_no_redrive(store_url: str) -> None:
    engine = get_engine(store_url)
    dl.enqueue(engine, "t", _entries(2), lease_seconds=10, owner=ME, now=T0)
    assert dl.renew(engine, ME, lease_seconds=10, now=T0 + 9) == 2
    assert dl.due(engine, now=T0 + 15) == []  # renewed at T0 + 9 until T0 + 19
    assert not dl.claim(engine, "t", "msg_0", owner="other", lease_seconds=10, now=T0 + 15)
    # The open breaker refused it: pending until its probe time, attempts and redrives kept.
    assert dl.defer(engine, "t", "msg_0", owner=ME, until=T0 + 300, reason="open", now=T0 + 15)
    row = dl.get(engine, "msg_0")
    assert row is not None and row["status"] == "pending" and row["next_attempt_at"] == T0 + 300
    assert row["attempts"] == 0 and row["redrives"] == 0 and row["lease_owner"] is None
    assert not dl.defer(engine, "t", "msg_0", owner=ME, until=T0, reason="again", now=T0 + 16)
    # A failure never makes an entry due before the breaker's next probe.
    status = dl.mark_failed(
        engine,
        "t",
        "msg_1",
        owner=ME,
        attempts=1,
        error="503",
        status_code=503,
        retryable=True,
        redrive=True,
        base_minutes=0.001,
        max_redrives=5,
        not_before=T0 + 300,
        now=T0 + 16,
    )
    assert status == "pending"
    assert dl.get(engine, "msg_1")["next_attempt_at"] == T0 + 300  # type: ignore[index]


def test_rows_of_the_id_keyed_table_move_over(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine, text

    from nura.core.stores.db import reset_engines

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    with old.begin() as conn:  # the table as versions before (target, id) created it
        conn.execute(
            text(
                "CREATE TABLE nura_dead_letters (id VARCHAR(100) PRIMARY KEY, target VARCHAR(100)"
                " NOT NULL, event_type VARCHAR(200) NOT NULL, payload TEXT NOT NULL, status"
                " VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, redrives INTEGER NOT NULL,"
                " last_error TEXT, last_status INTEGER, created_at FLOAT NOT NULL, updated_at"
                " FLOAT NOT NULL, next_attempt_at FLOAT, delivered_at FLOAT)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO nura_dead_letters VALUES ('m1', 'p', 'git.push', '{}', 'pending',"
                " 3, 1, '503', 503, 1.0, 2.0, 3.0, NULL)"
            )
        )
    old.dispose()
    reset_engines()
    engine = get_engine(url)
    row = dl.get(engine, "m1", "p")
    assert row is not None and row["status"] == "pending" and row["attempts"] == 3
    from sqlalchemy import inspect

    assert not inspect(engine).has_table("nura_dead_letters")
    reset_engines()


def test_stats_list_requeue_purge_and_retention(store_url: str) -> None:
    engine = get_engine(store_url)
    dl.enqueue(engine, "t", _entries(4), lease_seconds=60, owner=ME, now=T0)
    kw = {
        "owner": ME,
        "attempts": 1,
        "error": "x",
        "status_code": 503,
        "redrive": False,
        "base_minutes": 5,
        "max_redrives": 5,
    }
    dl.mark_failed(engine, "t", "msg_0", retryable=True, now=T0 + 10, **kw)
    dl.mark_failed(engine, "t", "msg_1", retryable=True, now=T0 + 20, **kw)
    dl.mark_failed(engine, "t", "msg_2", retryable=False, now=T0 + 20, **kw)
    dl.mark_delivered(engine, [("t", "msg_3", 1, 200)], owner=ME, now=T0)
    stats = dl.dead_letter_stats(engine, now=T0 + 100)
    assert stats["count"] == 2 and stats["oldest_age_s"] == 100.0
    assert stats["exhausted"] == 1 and stats["delivered"] == 1
    assert [r["id"] for r in dl.list_entries(engine, statuses=["exhausted"])] == ["msg_2"]
    assert dl.requeue(engine, ids=["msg_2"], now=T0 + 200) == [("t", "msg_2")]
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
