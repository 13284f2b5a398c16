"""What the fast ingress path keeps: the same answers, durable commits, one-statement marks."""

from __future__ import annotations

import asyncio
import gc
import selectors
import threading
from typing import Any

from starlette.testclient import TestClient

from nura.core.stores.db import get_engine
from nura.core.stores.inbox import (
    Delivery,
    InboxWriter,
    claim_due,
    fail_entries,
    get_entry,
    mark_dispatched,
    mark_finished,
    reschedule,
    status_counts,
)
from nura.platform.receiver_app import create_app
from tests.webhooks.helpers import (
    asgi_post,
    config,
    github_headers,
    push_payload,
    raw_headers,
    secrets,
)


def test_fast_path_answers_like_the_contract(engine):
    app = create_app(config(), engine=engine, secrets=secrets(), run_dispatcher=False)
    body = push_payload()
    with TestClient(app) as client:
        # Configured path (fast path), with and without a trailing slash.
        r = client.post("/webhooks/git", content=body, headers=github_headers(body, "f-1"))
        assert r.status_code == 202 and r.json() == {"status": "accepted", "delivery_id": "f-1"}
        assert r.headers["content-type"] == "application/json"
        r = client.post("/webhooks/git/", content=body, headers=github_headers(body, "f-1"))
        assert r.status_code == 200 and r.json()["status"] == "duplicate"
        # Rejections keep their JSON body and headers.
        bad = client.post(
            "/webhooks/git", content=body, headers=github_headers(body, "f-2", secret="x")
        )
        assert bad.status_code == 401 and bad.json()["error"] == "bad_signature"
        # Other methods on a configured path still go through the router.
        assert client.get("/webhooks/git").status_code == 405
        metrics = client.get("/metrics").text
    assert 'nura_webhook_requests_total{endpoint="git_updates",status="202"} 1' in metrics
    assert 'nura_webhook_signature_failures_total{endpoint="git_updates"} 1' in metrics
    assert get_entry(engine, "git_updates", "f-2") is None


def test_body_in_chunks_and_cut_off(engine):
    app = create_app(config(), engine=engine, secrets=secrets(), run_dispatcher=False)
    body = push_payload()
    headers = github_headers(body, "c-1")

    with TestClient(app):  # runs the lifespan (the inbox writer) around the direct calls
        half = len(body) // 2
        status, _, answer, _ = asgi_post(
            app,
            "/webhooks/git",
            raw_headers(headers),
            [
                {"type": "http.request", "body": body[:half], "more_body": True},
                {"type": "http.request", "body": body[half:], "more_body": False},
            ],
        )
        assert status == 202, answer
        status, _, answer, _ = asgi_post(
            app,
            "/webhooks/git",
            raw_headers(github_headers(body, "c-2")),
            [{"type": "http.request", "body": body[:10], "more_body": True}],
        )  # then http.disconnect
        assert status == 400 and b"client_disconnected" in answer
    assert get_entry(engine, "git_updates", "c-1") is not None
    assert get_entry(engine, "git_updates", "c-2") is None


class _WatchedWriter(InboxWriter):
    """An `InboxWriter` whose checkpointer's count also sets an event to wait on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.checkpointed = threading.Event()
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def checkpoints(self) -> int:
        return self._checkpoints

    @checkpoints.setter
    def checkpoints(self, n: int) -> None:
        self._checkpoints = n
        if n:
            self.checkpointed.set()


def test_writer_commits_with_fsync_and_checkpoints_off_its_path(engine):
    writer = _WatchedWriter(engine).start()
    writer.checkpoint_idle = 0.01
    try:
        conn = writer._connect()
        cur = conn.cursor()
        # 2 = FULL: the WAL is fsynced at every commit, whatever the engine's default.
        assert cur.execute("PRAGMA synchronous").fetchone()[0] == 2
        # The writer only checkpoints as a safety valve; the checkpointer does it.
        assert cur.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == writer.wal_valve_pages
        cur.close()

        async def burst() -> list[bool]:
            return await asyncio.gather(
                *(
                    writer.write(Delivery("ep", f"k-{i}", "git.push", b"{}", "application/json"))
                    for i in range(300)
                )
            )

        assert all(asyncio.run(burst()))
        # The burst is over: the checkpointer sees the pause and checkpoints. Woken by its
        # count, not polled; the timeout only turns a checkpointer that never runs into a
        # failure instead of a hung test.
        assert writer.checkpointed.wait(timeout=120)
        assert writer.checkpoints > 0
    finally:
        writer.stop()
    assert status_counts(engine)["accepted"] == 300
    # The engine's pooled connections kept their own settings.
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000


def test_state_changes_are_per_entry_in_one_statement(store_url):
    engine = get_engine(store_url)
    writer = InboxWriter(engine).start()

    async def fill() -> None:
        await asyncio.gather(
            *(
                writer.write(
                    Delivery("ep", f"m-{i}", "git.push", b"{}", "application/json", received_at=1.0)
                )
                for i in range(120)
            )
        )

    try:
        asyncio.run(fill())
    finally:
        writer.stop()
    ids = [e["id"] for e in claim_due(engine, 200, now=10.0, owner="me", lease_seconds=30)]
    assert len(ids) == 120
    # 100 with their own run ids, 10 without a route, 5 retried, 5 failed outright.
    mark_dispatched(
        engine,
        [(i, "dep/x", f"run-{i}") for i in ids[:100]] + [(i, None, None) for i in ids[100:110]],
        now=50.0,
    )
    reschedule(engine, [(i, n + 1, 99.0 + n, f"err {n}") for n, i in enumerate(ids[110:115])], 3)
    fail_entries(engine, [(i, f"bad {i}") for i in ids[115:]])
    by_id = {e["id"]: e for e in _all(engine)}
    assert all(by_id[i]["flow_run_id"] == f"run-{i}" for i in ids[:100])
    assert all(
        by_id[i]["status"] == "dispatched" and by_id[i]["finished_at"] is None for i in ids[:100]
    )
    assert all(
        by_id[i]["status"] == "done" and by_id[i]["finished_at"] == 50.0 for i in ids[100:110]
    )
    retried = [by_id[i] for i in ids[110:115]]
    assert [(e["status"], e["attempts"], e["next_attempt_at"]) for e in retried] == [
        ("accepted", 1, 99.0),
        ("accepted", 2, 100.0),
        ("failed", 3, 101.0),
        ("failed", 4, 102.0),
        ("failed", 5, 103.0),
    ]
    assert [e["last_error"] for e in retried] == [f"err {n}" for n in range(5)]
    assert all(by_id[i]["last_error"] == f"bad {i}" for i in ids[115:])
    mark_finished(
        engine, [(i, "done" if i % 2 else "failed", None if i % 2 else "x") for i in ids[:100]]
    )
    by_id = {e["id"]: e for e in _all(engine)}
    assert all(by_id[i]["status"] == ("done" if i % 2 else "failed") for i in ids[:100])
    assert all(by_id[i]["last_error"] == (None if i % 2 else "x") for i in ids[:100])
    # An entry already past `accepted` is not marked again.
    mark_dispatched(engine, [(ids[0], "dep/y", "other-run")])
    assert {e["id"]: e for e in _all(engine)}[ids[0]]["flow_run_id"] == f"run-{ids[0]}"


def _all(engine: Any) -> list[dict[str, Any]]:
    from nura.core.stores.inbox import list_entries

    return list_entries(engine, None, 10_000)


def test_served_app_freezes_its_startup_heap(engine):
    app = create_app(
        config(), engine=engine, secrets=secrets(), run_dispatcher=False, freeze_heap=True
    )
    try:
        with TestClient(app):
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
    app = create_app(config(), engine=engine, secrets=secrets(), run_dispatcher=False)
    with TestClient(app):
        assert gc.get_freeze_count() == 0


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock: when every task waits, the clock jumps to the next
    timer instead of the loop sleeping. Timings are exact, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(selector=_TimeJumpSelector(self))

    def time(self) -> float:
        return self.now


class _TimeJumpSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    def __init__(self, loop: _VirtualTimeLoop) -> None:
        super().__init__()
        self.loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:  # nothing scheduled: only I/O can wake the loop
            return super().select(None)
        ready = super().select(0)
        if not ready:
            self.loop.now += timeout  # the next timer is due now
        return ready


def test_dispatcher_lets_a_burst_pass_but_not_for_long(engine):
    from nura.webhooks import dispatcher as dispatcher_module

    dispatcher = dispatcher_module.Dispatcher(engine, config(), client_factory=lambda: None)  # type: ignore[arg-type,return-value]
    # Virtual seconds, all multiples of 1/64 so every sum and difference is exact.
    gap, hold, every = 8 / 64, 40 / 64, 1 / 64  # pokes every 1/64 s: back to back
    dispatcher.burst_gap, dispatcher.burst_hold = gap, hold

    with asyncio.Runner(loop_factory=_VirtualTimeLoop) as runner:
        loop = runner.get_loop()
        dispatcher.monotonic = loop.time  # pokes and the hold on the loop's virtual clock

        async def poking(seconds: float, pokes: list[float]) -> None:
            end = loop.time() + seconds
            while loop.time() < end:
                dispatcher.poke()
                pokes.append(loop.time())
                await asyncio.sleep(every)

        async def waited() -> tuple[float, float]:
            """When the cycle started waiting, and when it was let through."""
            t0 = loop.time()
            await dispatcher._let_burst_pass()
            return t0, loop.time()

        short_pokes: list[float] = []
        steady_pokes: list[float] = []

        async def scenario() -> dict[str, Any]:
            seen: dict[str, Any] = {"idle": await waited()}  # nothing arrived: no wait
            # A short burst: the next cycle waits for its end plus one gap.
            sender = asyncio.create_task(poking(24 / 64, short_pokes))
            await asyncio.sleep(2 / 64)
            seen["short"] = await waited()
            await sender
            await asyncio.sleep(2 * gap)
            # A steady stream: held `burst_hold` from its start, then dispatched anyway.
            sender = asyncio.create_task(poking(2.0, steady_pokes))
            await asyncio.sleep(2 / 64)
            seen["steady"] = await waited()
            seen["again"] = await waited()  # still streaming, hold used up: no wait
            seen["streaming"] = not sender.done()
            sender.cancel()
            return seen

        seen = runner.run(scenario())

    start, end = seen["idle"]
    assert end == start
    start, end = seen["short"]
    assert short_pokes[0] < start < short_pokes[-1]  # it began waiting mid-burst
    assert short_pokes[-1] - short_pokes[0] < hold  # short: the hold is not what ended it
    assert end == short_pokes[-1] + gap  # let through one gap after the burst's last poke
    start, end = seen["steady"]
    assert steady_pokes[0] < start
    assert end == steady_pokes[0] + hold  # held from the stream's first poke, no longer
    assert seen["streaming"]  # ... while the stream went on
    start, end = seen["again"]
    assert end == start
