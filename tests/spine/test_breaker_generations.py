"""Only the current probe closes a breaker; stale results of calls in flight are ignored.

Calls go through the call layer to a fake service whose every request waits until the
test answers it, so "in flight while the breaker opened" is an ordering the test sets,
not a race it hopes for. The breaker's clock is injected; nothing sleeps.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import inspect, text

from nura.config import parse_config
from nura.core.breaker import BreakerState, CircuitBreakers
from nura.core.errors import CircuitOpen, ServiceUnavailable
from nura.core.layer import CallLayer
from nura.core.ratelimit import NoLimiter
from nura.core.stores.db import get_engine

BASE = "https://svc.example.com"
T0 = 1_000.0
WAIT = 60  # a guard against a hung test, never a timing assumption


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class HeldService:
    """Each request (keyed by path) signals its arrival, then waits for the test's answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, tuple[threading.Event, queue.Queue[int]]] = {}

    def _slot(self, path: str) -> tuple[threading.Event, queue.Queue[int]]:
        with self._lock:
            return self._slots.setdefault(path, (threading.Event(), queue.Queue()))

    def handler(self, request: httpx.Request) -> httpx.Response:
        arrived, answers = self._slot(request.url.path)
        arrived.set()
        return httpx.Response(answers.get(timeout=WAIT))

    def wait_arrived(self, path: str) -> None:
        assert self._slot(path)[0].wait(WAIT), f"{path} never reached the service"

    def answer(self, path: str, status: int) -> None:
        self._slot(path)[1].put(status)

    def release_all(self) -> None:
        """Answer whatever still waits (a failed test must not hang its teardown)."""
        with self._lock:
            slots = list(self._slots.values())
        for _arrived, answers in slots:
            answers.put(200)


class World:
    def __init__(self, store_url: str, *, threshold: int) -> None:
        self.clock = Clock()
        self.service = HeldService()
        cfg = parse_config(
            {
                "api_gateway": {
                    "retry_default": 0,
                    "circuit_breaker_threshold": threshold,
                    "circuit_breaker_cooldown_seconds": 60,
                },
                "external_services": {"partners": {"svc": {"base_url": BASE}}},
            }
        )
        self.breakers = CircuitBreakers(
            get_engine(store_url), clock=self.clock, sync_seconds=0, probe_timeout=10
        )
        self.layer = CallLayer(
            cfg.policies(),
            breakers=self.breakers,
            limiter=NoLimiter(),
            http_client=httpx.Client(transport=httpx.MockTransport(self.service.handler)),
            sleep=lambda _seconds: None,
        )
        self.pool = ThreadPoolExecutor(max_workers=16)
        self._probes = 0

    def start(self, path: str) -> Future[object]:
        """A call that is admitted and in flight when this returns."""
        future = self.pool.submit(self.layer.request, "svc", "GET", path)
        self.service.wait_arrived(path)
        return future

    def finish(self, future: Future[object], path: str, status: int) -> None:
        self.service.answer(path, status)
        if status >= 500:
            with pytest.raises(ServiceUnavailable):
                future.result(WAIT)
        else:
            future.result(WAIT)

    def rejected(self) -> bool:
        """Is a new call turned away? (If admitted, it is answered at once.)"""
        self._probes += 1
        path = f"/new{self._probes}"
        self.service.answer(path, 200)
        try:
            self.layer.request("svc", "GET", path)
        except CircuitOpen:
            return True
        return False

    def state(self) -> tuple[BreakerState, float | None]:
        snap = self.breakers.snapshot("svc", fresh=True)
        return snap.state, snap.opened_at

    def close(self) -> None:
        self.service.release_all()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.layer.close()


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    built = World(store_url, threshold=3)
    yield built
    built.close()


@pytest.fixture
def world1(store_url: str) -> Iterator[World]:
    """Threshold 1: one failure opens the breaker."""
    built = World(store_url, threshold=1)
    yield built
    built.close()


def test_in_flight_successes_do_not_close_an_open_breaker(world: World) -> None:
    calls = {f"/c{i}": world.start(f"/c{i}") for i in range(8)}  # all admitted while closed
    for path in ["/c0", "/c1", "/c2"]:
        world.finish(calls.pop(path), path, 503)
    assert world.state() == (BreakerState.OPEN, T0)
    world.clock.now += 1
    for path, future in calls.items():  # the other five answer after it opened
        world.finish(future, path, 200)
    assert world.state() == (BreakerState.OPEN, T0)
    assert world.rejected()


def test_late_failures_neither_move_opened_at_nor_reopen_a_recovered_breaker(
    world1: World,
) -> None:
    w = world1
    calls = {f"/c{i}": w.start(f"/c{i}") for i in range(3)}
    w.finish(calls["/c0"], "/c0", 503)
    assert w.state() == (BreakerState.OPEN, T0)
    w.clock.now += 5
    w.finish(calls["/c1"], "/c1", 503)  # admitted while closed, fails after it opened
    assert w.state() == (BreakerState.OPEN, T0)
    w.clock.now = T0 + 61
    w.finish(w.start("/probe"), "/probe", 200)
    assert w.state() == (BreakerState.CLOSED, None)
    w.finish(calls["/c2"], "/c2", 503)  # from the closed period before it opened
    assert w.state() == (BreakerState.CLOSED, None)
    assert w.breakers.snapshot("svc", fresh=True).failures == 0


def test_expired_probe_late_success_is_ignored_and_the_second_probe_closes(
    world1: World,
) -> None:
    w = world1
    w.finish(w.start("/c0"), "/c0", 503)
    w.clock.now = T0 + 61
    first = w.start("/probe1")
    assert w.rejected()  # one probe at a time
    w.clock.now += 11  # the first probe outlives probe_timeout (10)
    second = w.start("/probe2")
    assert w.rejected()  # the expired token let exactly one new probe in
    w.finish(first, "/probe1", 200)
    assert w.state() == (BreakerState.HALF_OPEN, T0)
    assert w.rejected()
    w.finish(second, "/probe2", 200)
    assert w.state() == (BreakerState.CLOSED, None)
    assert not w.rejected()


def test_expired_probe_late_failure_is_ignored(world1: World) -> None:
    w = world1
    w.finish(w.start("/c0"), "/c0", 503)
    w.clock.now = T0 + 61
    first = w.start("/probe1")
    w.clock.now += 11
    second = w.start("/probe2")
    w.clock.now += 1
    w.finish(first, "/probe1", 503)  # neither re-opens nor restarts the cool-down
    assert w.state() == (BreakerState.HALF_OPEN, T0)
    w.finish(second, "/probe2", 200)
    assert w.state() == (BreakerState.CLOSED, None)


def test_an_existing_breaker_table_gains_the_generation_column(store_url: str) -> None:
    engine = get_engine(store_url)
    with engine.begin() as conn:  # the table as databases created before this change hold it
        conn.execute(text("DROP TABLE nura_breakers"))
        conn.execute(
            text(
                "CREATE TABLE nura_breakers (service VARCHAR(100) PRIMARY KEY,"
                " state VARCHAR(16) NOT NULL, failures INTEGER NOT NULL, opened_at FLOAT,"
                " probe_token VARCHAR(64), probe_started FLOAT, updated_at FLOAT NOT NULL)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO nura_breakers (service, state, failures, opened_at, updated_at)"
                " VALUES ('svc', 'open', 3, :t, :t)"
            ),
            {"t": T0},
        )
    clock = Clock()
    breakers = CircuitBreakers(engine, clock=clock, sync_seconds=0)
    CircuitBreakers(engine, clock=clock, sync_seconds=0)  # a second process: no-op
    assert "generation" in {c["name"] for c in inspect(engine).get_columns("nura_breakers")}
    assert breakers.snapshot("svc").state is BreakerState.OPEN
    clock.now += 61
    probe = breakers.admit("svc", cooldown=60)
    assert probe.allowed and probe.probe_token
    breakers.record_success("svc", probe)
    assert breakers.snapshot("svc").state is BreakerState.CLOSED


def test_operator_reset_makes_results_of_calls_in_flight_stale(world1: World) -> None:
    w = world1
    calls = {f"/c{i}": w.start(f"/c{i}") for i in range(2)}
    w.finish(calls["/c0"], "/c0", 503)
    assert w.state() == (BreakerState.OPEN, T0)
    w.breakers.reset("svc")
    w.finish(calls["/c1"], "/c1", 503)
    assert w.state() == (BreakerState.CLOSED, None)
