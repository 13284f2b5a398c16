"""Tokens-per-minute leasing: reservations, settlement to actual usage, debts, waits."""

from __future__ import annotations

from typing import Any

import pytest

from nura.bedrock.limits import BURST_SECONDS, TokenLeaser, tpm_service
from nura.core.errors import RateLimited
from nura.core.ratelimit import SLOT_SCALE


class _Response:
    def __init__(self, status: int, body: Any = None) -> None:
        self.status_code = status
        self._body = body
        self.headers: dict[str, str] = {}

    def json(self) -> Any:
        return self._body

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(self.status_code)


class FakeLimits:
    """The three global-concurrency-limit endpoints the leaser uses; counts granted slots."""

    def __init__(self, deny: bool = False) -> None:
        self.limits: dict[str, dict[str, Any]] = {}
        self.granted = 0
        self.deny = deny

    def request(self, method: str, path: str, json: Any = None) -> _Response:
        if method == "GET":
            name = path.rsplit("/", 1)[1]
            if name not in self.limits:
                return _Response(404)
            return _Response(200, {**self.limits[name], "active_slots": self.limits[name]["limit"]})
        if method in ("POST", "PATCH") and "increment" not in path:
            self.limits[json["name"]] = dict(json)
            return _Response(201)
        if self.deny:
            return _Response(423)
        self.granted += json["slots"]
        return _Response(200, [{"name": json["names"][0]}])


def leaser(fake: FakeLimits) -> TokenLeaser:
    return TokenLeaser(lambda: fake, sleep=lambda s: None, max_wait_step=0.01)


def test_reserve_leases_from_the_global_limit_and_creates_it() -> None:
    fake = FakeLimits()
    tl = leaser(fake)
    service = tpm_service("m")
    assert tl.reserve(service, 60_000, 700, timeout=5) == 700
    spec = fake.limits["nura-rate-bedrock-tpm:m"]
    assert spec["limit"] == 60_000 / 60 * BURST_SECONDS * SLOT_SCALE
    assert spec["slot_decay_per_second"] == 1000 * SLOT_SCALE
    assert fake.granted >= 700 * SLOT_SCALE


def idle(bucket: Any) -> None:
    """Wait until no background lease is in flight (the prefetch is asynchronous)."""
    with bucket.cond:
        while bucket.refilling:
            bucket.cond.wait(0.05)


def test_settle_returns_overestimate_and_books_underestimate_as_debt() -> None:
    fake = FakeLimits()
    tl = leaser(fake)
    service = tpm_service("m")
    tl.reserve(service, 60_000, 500, timeout=5)
    bucket = tl._bucket(service, 60_000)
    idle(bucket)
    before = bucket.tokens
    tl.settle(service, 60_000, 500, 120)  # used less: 380 back to the live lease
    assert bucket.tokens == before + 380
    tl.settle(service, 60_000, 100, 100 + bucket.tokens + 50)  # used more than we hold
    assert bucket.tokens == 0 and bucket.debt == 50
    granted_before = fake.granted
    tl.reserve(service, 60_000, 10, timeout=5)  # the next lease pays the debt first
    idle(bucket)
    assert fake.granted - granted_before >= (10 + 50) * SLOT_SCALE
    assert bucket.debt == 0


def test_reservation_larger_than_the_burst_takes_the_burst() -> None:
    tl = leaser(FakeLimits())
    assert tl.reserve(tpm_service("m"), 600, 10_000, timeout=5) == 600 / 60 * BURST_SECONDS


def test_saturated_limit_raises_rate_limited_after_the_wait() -> None:
    import time

    fake = FakeLimits(deny=True)
    tl = TokenLeaser(lambda: fake, sleep=time.sleep, max_wait_step=0.01)
    try:
        with pytest.raises(RateLimited):
            tl.reserve(tpm_service("m"), 600, 10, timeout=0.2)
    finally:
        fake.deny = False  # lets the background lease finish instead of polling forever
    assert tl.reserve(tpm_service("m"), 600, 10, timeout=5) == 10
