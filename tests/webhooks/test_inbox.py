"""The durable inbox on SQLite and PostgreSQL: group commit, dedupe, lifecycle, stats."""

from __future__ import annotations

import asyncio

from nura.core.stores.db import get_engine
from nura.core.stores.inbox import (
    Delivery,
    InboxWriter,
    claim_due,
    dispatched_runs,
    get_entry,
    inbox_stats,
    mark_dispatched,
    mark_finished,
    recent_count,
    reschedule,
    status_counts,
)


def _delivery(i: int, endpoint: str = "git_updates", ts: float = 1000.0) -> Delivery:
    return Delivery(
        endpoint,
        f"d-{i}",
        "git.push",
        b'{"n": %d}' % i,
        "application/json",
        {"x-github-event": "push"},
        received_at=ts + i,
    )


def test_group_commit_dedupe_and_lifecycle(store_url):
    engine = get_engine(store_url)
    writer = InboxWriter(engine, batch_max=64).start()

    async def burst():
        # 200 concurrent writes, 50 of them repeats of earlier ids, others on a 2nd endpoint.
        items = [_delivery(i) for i in range(150)] + [_delivery(i) for i in range(50)]
        items += [_delivery(1, endpoint="other")]
        return await asyncio.gather(*(writer.write(d) for d in items))

    try:
        results = asyncio.run(burst())
    finally:
        writer.stop()
    assert results[:150] == [True] * 150
    assert results[150:200] == [False] * 50
    assert results[200] is True  # the same id on another endpoint is another delivery
    assert writer.batches < 200  # requests shared commits
    assert status_counts(engine)["accepted"] == 151
    stats = inbox_stats(engine, now=2000.0)
    assert stats == {"depth": 151, "oldest_age_s": 1000.0}
    assert recent_count(engine, "git_updates", since=1100.0) == 50

    due = claim_due(engine, 10, now=5000.0, owner="me", lease_seconds=30)
    assert [e["delivery_id"] for e in due][:3] == ["d-0", "d-1", "d-2"]
    assert due[0]["body"] == b'{"n": 0}'
    mark_dispatched(
        engine, [(due[0]["id"], "git-ingest/git-ingest", "run-0"), (due[1]["id"], None, None)]
    )
    reschedule(engine, [(due[2]["id"], 1, 9000.0, "deployment missing")], max_attempts=3)
    reschedule(engine, [(due[3]["id"], 3, 9000.0, "still missing")], max_attempts=3)
    assert get_entry(engine, "git_updates", "d-0")["status"] == "dispatched"
    assert get_entry(engine, "git_updates", "d-1")["status"] == "done"  # no route: event only
    assert get_entry(engine, "git_updates", "d-2")["next_attempt_at"] == 9000.0
    assert get_entry(engine, "git_updates", "d-3")["status"] == "failed"
    again = claim_due(engine, 500, now=5000.0, owner="other", lease_seconds=30)
    assert [e["delivery_id"] for e in again][:2] == ["d-10", "d-11"]  # d-4..d-9 are claimed
    assert "d-2" not in [e["delivery_id"] for e in again]
    assert dispatched_runs(engine) == [(due[0]["id"], "run-0")]
    mark_finished(engine, [(due[0]["id"], "done", None)])
    counts = status_counts(engine)
    assert counts == {"accepted": 148, "dispatched": 0, "done": 2, "failed": 1}


def test_empty_inbox_stats(store_url):
    assert inbox_stats(get_engine(store_url)) == {"depth": 0, "oldest_age_s": None}


def test_body_digest_dedupe_within_the_replay_window(store_url):
    """Deliveries whose id is unsigned: the same body under a new id is a duplicate within
    the window (nothing stored), a new delivery after it; other endpoints are unaffected."""
    import hashlib
    import time

    engine = get_engine(store_url)
    t0 = time.time()  # digests older than the window (by the wall clock) are pruned
    writer = InboxWriter(engine, replay_window=60).start()
    body = b'{"ref": "refs/heads/main"}'
    digest = hashlib.sha256(body).hexdigest()

    def delivery(did: str, ts: float, endpoint: str = "git_updates") -> Delivery:
        return Delivery(endpoint, did, "git.push", body, "application/json", {}, ts, digest)

    async def write(*items: Delivery) -> list[bool]:
        return list(await asyncio.gather(*(writer.write(d) for d in items)))

    try:
        assert asyncio.run(write(delivery("a", t0))) == [True]
        assert asyncio.run(write(delivery("b", t0 + 30), delivery("c", t0 + 31))) == [False, False]
        assert asyncio.run(write(delivery("a", t0 + 32))) == [False]  # the same id, as before
        assert asyncio.run(write(delivery("x", t0 + 33, "other"))) == [True]
        assert asyncio.run(write(delivery("d", t0 + 100))) == [True]  # past the window
    finally:
        writer.stop()
    assert get_entry(engine, "git_updates", "b") is None
    assert get_entry(engine, "git_updates", "d") is not None
