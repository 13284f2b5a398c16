"""AIMD arithmetic of the effective rate, with an injected clock, on both store backends."""

from __future__ import annotations

import dataclasses

import pytest

from nura.config import ServicePolicy
from nura.config.sections.adaptive import AdaptiveRateSettings
from nura.core.adaptive import AdaptiveRates, Adjustment, decreased, increased, p95
from nura.core.stores.db import get_engine

CEILING = 1200  # calls per minute


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def policy(**adaptive: object) -> ServicePolicy:
    return ServicePolicy(
        name="partner",
        base_url=None,
        rate_limit_per_minute=CEILING,
        timeout_seconds=5,
        circuit_breaker_threshold=5,
        circuit_breaker_cooldown_seconds=60,
        retry_attempts=3,
        backoff_base_seconds=0.1,
        backoff_max_seconds=1,
        retry_after_max_seconds=5,
        fallback_enabled=False,
        health_check_endpoint=None,
        adaptive=AdaptiveRateSettings(**adaptive),  # type: ignore[arg-type]
    )


def rates(store_url: str, clock: Clock, changes: list[Adjustment]) -> AdaptiveRates:
    return AdaptiveRates(
        get_engine(store_url), clock=clock, sync_seconds=0, on_change=changes.append
    )


def test_arithmetic_keeps_between_floor_and_ceiling() -> None:
    s = AdaptiveRateSettings(decrease_factor=0.5, increase_fraction=0.1, min_rate_per_minute=100)
    assert decreased(1200, s, 1200) == 600
    assert decreased(150, s, 1200) == 100  # the floor
    assert decreased(60, s, 60) == 60  # a configured rate under the floor is not lowered
    assert increased(600, s, 1200) == 720
    assert increased(1150, s, 1200) == 1200  # never above the ceiling
    assert decreased(5000, s, 1200) == 600  # a rate above a lowered ceiling starts from it
    assert p95([float(i) for i in range(1, 21)]) == 19.0


def test_no_row_means_the_configured_rate(store_url: str) -> None:
    r = rates(store_url, Clock(), [])
    assert r.effective(policy()) == CEILING
    assert r.succeeded(policy(), 5.0) is None
    assert r.all() == []  # success at the ceiling writes nothing


def test_one_decrease_per_cooldown_then_additive_recovery(store_url: str) -> None:
    clock, changes = Clock(), []
    r = rates(store_url, clock, changes)
    p = policy(cooldown_seconds=2, increase_interval_seconds=1, increase_fraction=0.05)
    assert r.throttled(p) == Adjustment("partner", 1200, 600, 1200, "429")
    for _ in range(10):  # the rest of the burst of 429s from calls in flight
        assert r.throttled(p) is None
    assert r.effective(p) == 600
    clock.now += 1.5
    assert r.succeeded(p, 5.0) is None  # still cooling down: no increase either
    clock.now += 0.6
    assert r.throttled(p) is not None  # the cool-down is over: a new overload counts
    assert r.effective(p) == 300
    clock.now += 2.0
    assert r.succeeded(p, 5.0) == Adjustment("partner", 300, 360, 1200, "recovery")
    assert r.succeeded(p, 5.0) is None  # one increase per success window
    for _ in range(30):
        clock.now += 1.0
        r.succeeded(p, 5.0)
    assert r.effective(p) == CEILING  # restored, and never above
    assert [c.reason for c in changes].count("recovery") == 15
    assert max(c.new_per_minute for c in changes) == CEILING
    (state,) = r.all()
    assert state.decreases == 2 and state.rate_per_minute == CEILING


def test_no_increase_while_the_limit_is_not_the_bottleneck(store_url: str) -> None:
    clock, changes = Clock(), []
    r = rates(store_url, clock, changes)
    p = policy()
    r.throttled(p)
    clock.now += 10
    assert r.succeeded(p, 5.0, limited=False) is None  # callers use less than 600/min
    assert r.effective(p) == 600
    assert r.succeeded(p, 5.0, limited=True) is not None


def test_two_processes_count_one_burst_once(store_url: str) -> None:
    clock, changes = Clock(), []
    first, second = rates(store_url, clock, changes), rates(store_url, clock, changes)
    p = policy()
    assert first.effective(p) == second.effective(p) == CEILING
    assert first.throttled(p) is not None
    assert second.throttled(p) is None  # the same overload, seen by another process
    assert second.effective(p) == 600
    assert len(changes) == 1


def test_floor_and_disabled(store_url: str) -> None:
    clock, changes = Clock(), []
    r = rates(store_url, clock, changes)
    p = policy(min_rate_per_minute=500, cooldown_seconds=0)
    r.throttled(p)
    r.throttled(p)
    assert r.effective(p) == 500
    assert r.throttled(p) is None  # at the floor: nothing changes, nothing is published
    assert len(changes) == 2
    off = policy(enabled=False)
    assert r.effective(off) == CEILING  # the row is ignored once disabled
    assert r.throttled(off) is None and r.succeeded(off, 1e6) is None


def test_latency_over_the_threshold_decreases(store_url: str) -> None:
    clock, changes = Clock(), []
    r = rates(store_url, clock, changes)
    p = policy(latency_p95_ms=100, latency_window=20)
    for _ in range(20):
        assert r.succeeded(p, 20.0) is None
    assert r.succeeded(p, 400.0) is None  # one slow answer in 20 is under the p95
    # A second one puts the p95 over 100 ms.
    assert r.succeeded(p, 400.0) == Adjustment("partner", 1200, 600, 1200, "latency")


def test_a_lowered_ceiling_caps_the_stored_rate(store_url: str) -> None:
    clock, changes = Clock(), []
    r = rates(store_url, clock, changes)
    r.throttled(policy())  # 600 stored
    lower = dataclasses.replace(policy(), rate_limit_per_minute=300)
    assert r.effective(lower) == 300
    r.reset("partner")
    assert r.effective(policy()) == CEILING


@pytest.mark.parametrize("bad", [{"decrease_factor": 1.0}, {"increase_fraction": 0}, {"x": 1}])
def test_settings_are_validated(bad: dict[str, object]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AdaptiveRateSettings(**bad)  # type: ignore[arg-type]


def test_cli_shows_configured_and_effective_rates(nura_config, tmp_path) -> None:
    from typer.testing import CliRunner

    from nura.cli.main import app
    from nura.core.runtime import get_call_layer

    store = f"sqlite:///{tmp_path / 'cli.db'}"
    nura_config(
        {"external_services": {"partners": {"partner": {"rate_limit_per_minute": CEILING}}}},
        store=store,
    )
    # Another process lowered the rate (its event is not what this test is about).
    other = AdaptiveRates(get_engine(store), on_change=lambda _: None)
    other.throttled(get_call_layer().policy("partner"))
    runner = CliRunner()
    shown = runner.invoke(app, ["ratelimits"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.output.splitlines() if "partner" in line)
    assert "1200" in row and "600" in row and "429" in row
    assert runner.invoke(app, ["ratelimits", "reset", "nope"]).exit_code == 2
    reset = runner.invoke(app, ["ratelimits", "reset", "partner"])
    assert reset.exit_code == 0 and "back to 1200/min" in reset.output
