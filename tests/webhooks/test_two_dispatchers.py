"""Two dispatchers on one inbox (two receivers sharing a store): each delivery becomes one
flow-run request and one event, on PostgreSQL and on SQLite.

The Prefect API is a recording stand-in of the three calls a dispatcher makes, shaped like
Prefect's server answers them (`GET /deployments/name/{flow}/{deployment}`, `POST
/deployments/{id}/create_flow_run/bulk` -> `{"results": [{"flow_run_id", "status":
"CREATED"}]}`, `POST /events`); it counts every request per idempotency key and every event
per id, which a real server would deduplicate out of sight.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlparse

import httpx
from sqlalchemy import insert

from deployments.sandbox.base import JsonHandler, LocalServer
from nura.core.stores.db import get_engine
from nura.core.stores.inbox import claim_due, inbox, release, status_counts
from nura.webhooks.dispatcher import Dispatcher
from tests.webhooks.helpers import config

ENTRIES = 240


class _PrefectApi(LocalServer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.creates: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.runs: dict[str, str] = {}
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(JsonHandler):
    server: _PrefectApi

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = urlparse(self.path).path
        if path.endswith("/health"):
            return self._send(200, True)
        if "/deployments/name/" in path:
            return self._send(200, {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, path))})
        return self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = urlparse(self.path).path
        body = json.loads(self._read_body() or b"null")
        api = self.server
        if path.endswith("/create_flow_run/bulk"):
            time.sleep(0.02)  # a server's work: the other dispatcher runs meanwhile
            results = []
            with api.lock:
                for run in body:
                    key = run["idempotency_key"]
                    api.creates[key] += 1
                    run_id = api.runs.setdefault(key, str(uuid.uuid4()))
                    results.append({"flow_run_id": run_id, "status": "CREATED"})
            return self._send(201, {"results": results})
        if path.endswith("/events"):
            with api.lock:
                api.events.update(e["id"] for e in body)
            return self._send(204, None)
        return self._send(404, {"detail": "Not Found"})


def _fill(engine: Any, n: int) -> None:
    now = time.time() - 1
    rows = [
        {
            "endpoint": "git_updates",
            "delivery_id": f"d-{i}",
            "event_type": "git.push",
            "status": "accepted",
            "received_at": now,
            "body": json.dumps({"ref": "refs/heads/main", "n": i}).encode(),
            "content_type": "application/json",
            "headers": "{}",
            "attempts": 0,
            "next_attempt_at": now,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(insert(inbox), rows)


def _drain(dispatcher: Dispatcher, engine: Any, errors: list[BaseException]) -> None:
    async def loop() -> None:
        idle = 0
        while idle < 3:
            handled = await dispatcher.cycle()
            idle = idle + 1 if handled == 0 else 0
            if handled == 0:
                await asyncio.sleep(0.01)

    try:
        asyncio.run(loop())
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_two_dispatchers_dispatch_each_delivery_once(store_url: str) -> None:
    engine = get_engine(store_url)
    _fill(engine, ENTRIES)
    api = _PrefectApi().start()
    cfg = config(dispatcher={"batch_size": 20, "concurrency": 2})
    try:
        dispatchers = [
            Dispatcher(
                engine,
                cfg,
                client_factory=lambda: httpx.AsyncClient(base_url=f"{api.url}/api/"),
            )
            for _ in range(2)
        ]
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_drain, args=(d, engine, errors)) for d in dispatchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert all(not t.is_alive() for t in threads)
    finally:
        api.stop()
    assert status_counts(engine)["dispatched"] == ENTRIES
    assert len(api.creates) == ENTRIES and set(api.creates.values()) == {1}
    assert len(api.events) == ENTRIES and set(api.events.values()) == {1}
    assert all(d.dispatched > 0 for d in dispatchers)  # both took part


def test_a_claim_is_exclusive_until_released_or_expired(store_url: str) -> None:
    engine = get_engine(store_url)
    _fill(engine, 10)
    now = time.time()
    first = claim_due(engine, 6, now, owner="a", lease_seconds=30)
    second = claim_due(engine, 6, now, owner="b", lease_seconds=30)
    assert len(first) == 6 and len(second) == 4
    assert not {e["id"] for e in first} & {e["id"] for e in second}
    assert claim_due(engine, 6, now, owner="c", lease_seconds=30) == []
    release(engine, [e["id"] for e in first], "b", now)  # not b's: nothing happens
    assert claim_due(engine, 6, now, owner="c", lease_seconds=30) == []
    release(engine, [e["id"] for e in first], "a", now)
    assert len(claim_due(engine, 10, now, owner="c", lease_seconds=30)) == 6
    # "b" died holding its claims: they are due again once the lease ends
    later = claim_due(engine, 10, now + 31, owner="d", lease_seconds=30)
    assert {e["id"] for e in later} == {e["id"] for e in first} | {e["id"] for e in second}
