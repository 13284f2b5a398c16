"""Throttling: an absurd Retry-After counts as absent, and 429s have their own retry budget.

A Retry-After no server means (9223372036854775807, a date in year 9999) made every call
wait the 60 s cap; four 429s in a row failed a call on a site that throttles.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import httpx
import pytest
import respx

from nura.config import parse_config
from nura.core import retry
from nura.core.breaker import CircuitBreakers
from nura.core.errors import RateLimited, ServiceUnavailable
from nura.core.layer import CallLayer
from nura.core.ratelimit import NoLimiter
from nura.core.retry import ABSURD_RETRY_AFTER_SECONDS, RATE_LIMITED_RETRIES, sane_retry_after
from nura.core.stores.db import get_engine

BASE = "https://throttled.example.com"
HUGE = "9223372036854775807"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(autouse=True)
def _fresh_log_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "_absurd_seen", set())


@pytest.fixture
def layer(tmp_path: Path):
    cfg = parse_config(
        {
            "api_gateway": {
                "retry_default": 3,
                "backoff_base_seconds": 1,
                "backoff_max_seconds": 8,
                "retry_after_max_seconds": 20,
            },
            "external_services": {"partners": {"svc": {"base_url": BASE}}},
        }
    )
    sleeps = Sleeps()
    built = CallLayer(
        cfg.policies(),
        breakers=CircuitBreakers(get_engine(f"sqlite:///{tmp_path / 'b.db'}"), sync_seconds=0),
        limiter=NoLimiter(),
        http_client=httpx.Client(),
        sleep=sleeps,
        rng=random.Random(3),
    )
    built.sleeps = sleeps  # type: ignore[attr-defined]
    yield built
    built.close()


def test_sane_retry_after() -> None:
    assert sane_retry_after(None) is None
    assert sane_retry_after(3.0) == 3.0
    assert sane_retry_after(ABSURD_RETRY_AFTER_SECONDS) == ABSURD_RETRY_AFTER_SECONDS
    assert sane_retry_after(ABSURD_RETRY_AFTER_SECONDS + 1) is None
    assert sane_retry_after(retry.parse_retry_after(HUGE)) is None


@respx.mock
@pytest.mark.parametrize("value", [HUGE, "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_absurd_retry_after_is_backoff_not_the_cap(layer, value, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="nura.calls")
    route = respx.get(f"{BASE}/x").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": value}), httpx.Response(200)] * 3
    )
    for _ in range(3):
        assert layer.request("svc", "GET", "/x").attempts == 2
    assert route.call_count == 6
    # normal backoff (base 1 s, first retry: up to 1 s), never the 20 s cap
    assert len(layer.sleeps) == 3 and all(s <= 1.0 for s in layer.sleeps)
    absurd = [r for r in caplog.records if "no server means" in r.getMessage()]
    assert len(absurd) == 1  # logged once, not on every call


@respx.mock
def test_plausible_retry_after_is_still_honoured_and_capped(layer) -> None:
    respx.get(f"{BASE}/x").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(429, headers={"Retry-After": "3600"}),  # an hour: capped
            httpx.Response(200),
        ]
    )
    layer.request("svc", "GET", "/x")
    assert layer.sleeps == [3.0, 20.0]


@respx.mock
def test_429s_have_their_own_retry_budget(layer) -> None:
    """retry_attempts is 3: five 429s in a row used to fail the call at the fourth."""
    route = respx.get(f"{BASE}/x").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "1"})] * 5 + [httpx.Response(200)]
    )
    result = layer.request("svc", "GET", "/x")
    assert result.attempts == 6 and route.call_count == 6
    assert layer.sleeps == [1.0] * 5


@respx.mock
def test_the_429_budget_ends(layer) -> None:
    route = respx.get(f"{BASE}/x").respond(429, headers={"Retry-After": "1"})
    with pytest.raises(RateLimited) as err:
        layer.request("svc", "GET", "/x", deadline=10_000)
    assert err.value.attempts == RATE_LIMITED_RETRIES + 1 == route.call_count


@respx.mock
def test_failures_keep_their_budget_when_429s_come_between(layer) -> None:
    route = respx.get(f"{BASE}/x").mock(
        side_effect=[
            httpx.Response(429),
            httpx.Response(503),
            httpx.Response(429),
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(503),  # the fourth failure: retry_attempts (3) spent
            httpx.Response(200),
        ]
    )
    with pytest.raises(ServiceUnavailable) as err:
        layer.request("svc", "GET", "/x", deadline=10_000)
    assert err.value.attempts == 6 and route.call_count == 6


@respx.mock
@pytest.mark.parametrize("retries", [0, 1])
def test_a_callers_explicit_retries_count_429s_too(layer, retries) -> None:
    """A caller that sets `retries` (a fallback chain that moves on when throttled)
    keeps that budget for everything."""
    route = respx.get(f"{BASE}/x").respond(429)
    with pytest.raises(RateLimited) as err:
        layer.request("svc", "GET", "/x", retries=retries)
    assert err.value.attempts == retries + 1 == route.call_count
