"""Breaker transitions with an injected clock, on both store backends."""

from __future__ import annotations

from nura.core.breaker import BreakerState, CircuitBreakers
from nura.core.stores.db import get_engine


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make(store_url: str, clock: Clock) -> CircuitBreakers:
    return CircuitBreakers(get_engine(store_url), clock=clock, sync_seconds=0)


def test_opens_on_the_nth_failure_not_later(store_url: str) -> None:
    clock = Clock()
    b = make(store_url, clock)
    assert b.record_failure("svc", threshold=3) is BreakerState.CLOSED
    assert b.record_failure("svc", threshold=3) is BreakerState.CLOSED
    assert b.record_failure("svc", threshold=3) is BreakerState.OPEN
    assert not b.admit("svc", cooldown=60).allowed


def test_success_resets_the_count(store_url: str) -> None:
    clock = Clock()
    b = make(store_url, clock)
    b.record_failure("svc", threshold=3)
    b.record_failure("svc", threshold=3)
    b.record_success("svc")
    assert b.record_failure("svc", threshold=3) is BreakerState.CLOSED


def test_half_open_admits_exactly_one_probe(store_url: str) -> None:
    clock = Clock()
    b = make(store_url, clock)
    for _ in range(2):
        b.record_failure("svc", threshold=2)
    clock.now += 59
    assert not b.admit("svc", cooldown=60).allowed
    clock.now += 2
    first = b.admit("svc", cooldown=60)
    assert first.allowed and first.probe_token
    other = make(store_url, clock)  # another process sees the same store
    assert not other.admit("svc", cooldown=60).allowed
    assert not b.admit("svc", cooldown=60).allowed
    b.record_success("svc", first)
    assert b.snapshot("svc", fresh=True).state is BreakerState.CLOSED
    assert other.admit("svc", cooldown=60).allowed


def test_failed_probe_reopens_and_restarts_cooldown(store_url: str) -> None:
    clock = Clock()
    b = make(store_url, clock)
    b.record_failure("svc", threshold=1)
    clock.now += 61
    probe = b.admit("svc", cooldown=60)
    assert probe.allowed
    assert b.record_failure("svc", threshold=1, admission=probe) is BreakerState.OPEN
    clock.now += 30
    assert not b.admit("svc", cooldown=60).allowed
    clock.now += 31
    assert b.admit("svc", cooldown=60).allowed


def test_abandoned_probe_is_taken_over_after_probe_timeout(store_url: str) -> None:
    clock = Clock()
    b = CircuitBreakers(get_engine(store_url), clock=clock, sync_seconds=0, probe_timeout=10)
    b.record_failure("svc", threshold=1)
    clock.now += 61
    assert b.admit("svc", cooldown=60).allowed  # this probe's process dies
    clock.now += 5
    assert not b.admit("svc", cooldown=60).allowed
    clock.now += 6
    assert b.admit("svc", cooldown=60).allowed


def test_health_check_recovery_allows_probe(store_url: str) -> None:
    clock = Clock()
    b = make(store_url, clock)
    b.record_failure("svc", threshold=1)
    assert not b.admit("svc", cooldown=300).allowed
    assert b.allow_probe("svc")
    assert b.admit("svc", cooldown=300).allowed
    assert not b.allow_probe("unknown")


def test_all_lists_states(store_url: str) -> None:
    b = make(store_url, Clock())
    b.record_failure("a", threshold=1)
    b.record_failure("b", threshold=5)
    states = {s.service: s.state for s in b.all()}
    assert states == {"a": BreakerState.OPEN, "b": BreakerState.CLOSED}
