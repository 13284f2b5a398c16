"""Dynamic rate-limit adjustment: each service's effective rate follows its answers (AIMD).

A 429 (or, when configured, a p95 attempt latency over `latency_p95_ms`) multiplies the
service's effective rate by `decrease_factor`, at most once per `cooldown_seconds` across
every process, so one burst of 429s from many calls in flight counts as one decrease.
Each `increase_interval_seconds` with successes and no throttle signal adds
`increase_fraction` of the configured rate back, never above the configured rate (the
ceiling) and never below `min_rate_per_minute`.

The state is one row per service in the store, shared by every process like the breakers
(`nura.core.breaker`); each change is a conditional UPDATE on the row's `version`, so
exactly one process makes it, logs it and emits the Prefect event `nura.ratelimit.adjusted`.
The call layer hands the effective rate to the limiter, whose Prefect global concurrency
limit (`nura.core.ratelimit`) is updated to it, so every process is held to it by Prefect.

Reads are cached for `sync_seconds`: the hot path is one dictionary lookup and a service
at its configured rate (no row) writes nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from nura.config import ServicePolicy
from nura.config.sections.adaptive import AdaptiveRateSettings
from nura.core.stores.ratelimit_state import rate_state

logger = logging.getLogger("nura.core.adaptive")

EVENT = "nura.ratelimit.adjusted"


@dataclass(frozen=True)
class RateState:
    """A service's row: its effective rate and when it last changed (epoch seconds)."""

    service: str
    rate_per_minute: float
    ceiling_per_minute: float
    version: int
    last_decrease_at: float | None
    last_change_at: float
    reason: str
    decreases: int
    updated_at: float


@dataclass(frozen=True)
class Adjustment:
    """One change of a service's effective rate, as logged and emitted."""

    service: str
    old_per_minute: float
    new_per_minute: float
    ceiling_per_minute: float
    reason: str


# -- the arithmetic ------------------------------------------------------------------------
def floor_rate(settings: AdaptiveRateSettings, ceiling: float) -> float:
    return min(settings.min_rate_per_minute, ceiling)


def decreased(rate: float, settings: AdaptiveRateSettings, ceiling: float) -> float:
    """Multiplicative decrease, not below the floor."""
    return round(
        max(floor_rate(settings, ceiling), min(rate, ceiling) * settings.decrease_factor), 3
    )


def increased(rate: float, settings: AdaptiveRateSettings, ceiling: float) -> float:
    """Additive increase, not above the ceiling."""
    return round(min(ceiling, rate + settings.increase_fraction * ceiling), 3)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def publish(adjustment: Adjustment) -> None:
    """Log the change (a run's logs when inside one) and emit it as a Prefect event."""
    from prefect.events import emit_event

    a = adjustment
    logger.warning(
        "effective rate of %s %s from %g to %g calls/min (ceiling %g): %s",
        a.service,
        "lowered" if a.new_per_minute < a.old_per_minute else "raised",
        a.old_per_minute,
        a.new_per_minute,
        a.ceiling_per_minute,
        a.reason,
    )
    emit_event(
        event=EVENT,
        resource={
            "prefect.resource.id": f"nura.service.{a.service}",
            "prefect.resource.name": a.service,
        },
        payload={
            "service": a.service,
            "old_per_minute": a.old_per_minute,
            "new_per_minute": a.new_per_minute,
            "ceiling_per_minute": a.ceiling_per_minute,
            "reason": a.reason,
        },
    )


class AdaptiveRates:
    """Every service's effective rate, shared through the store. Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        sync_seconds: float = 0.5,
        on_change: Callable[[Adjustment], None] = publish,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.sync_seconds = sync_seconds
        self.on_change = on_change
        self._cache: dict[str, tuple[float, RateState | None]] = {}
        self._next_increase: dict[str, float] = {}
        self._latencies: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    # -- reads ---------------------------------------------------------------------------
    def state(self, service: str, *, fresh: bool = False) -> RateState | None:
        now = self.clock()
        cached = self._cache.get(service)
        if not fresh and cached is not None and now - cached[0] < self.sync_seconds:
            return cached[1]
        with self.engine.connect() as conn:
            row = conn.execute(select(rate_state).where(rate_state.c.service == service)).first()
        found = RateState(**row._mapping) if row is not None else None
        self._cache[service] = (now, found)
        return found

    def all(self) -> list[RateState]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(rate_state).order_by(rate_state.c.service)).all()
        return [RateState(**row._mapping) for row in rows]

    def effective(self, policy: ServicePolicy) -> float:
        """Calls per minute the limiter should allow `policy`'s service now (hot path)."""
        ceiling = float(policy.rate_limit_per_minute)
        if not policy.adaptive.enabled:
            return ceiling
        found = self.state(policy.name)
        return ceiling if found is None else min(found.rate_per_minute, ceiling)

    # -- signals -------------------------------------------------------------------------
    def throttled(self, policy: ServicePolicy, reason: str = "429") -> Adjustment | None:
        """The service said "too fast": decrease, unless a decrease is still cooling down."""
        settings = policy.adaptive
        if not settings.enabled:
            return None
        now = self.clock()
        if self._cooling(self.state(policy.name), settings, now):
            return None  # cached: the burst of 429s of one overload costs no store reads
        found = self.state(policy.name, fresh=True)
        if self._cooling(found, settings, now):
            return None
        ceiling = float(policy.rate_limit_per_minute)
        old = ceiling if found is None else min(found.rate_per_minute, ceiling)
        new = decreased(old, settings, ceiling)
        return self._change(policy.name, found, old, new, ceiling, reason, now, decrease=True)

    def succeeded(
        self, policy: ServicePolicy, latency_ms: float, *, limited: bool = True
    ) -> Adjustment | None:
        """One successful attempt that took `latency_ms`: a latency signal, or recovery.

        `limited`: the rate limit held calls back lately. Only then does the rate rise
        (as TCP grows its window only while it is the bottleneck): a rate the callers do
        not use would climb unopposed, and the next burst would meet the overload again.
        """
        settings = policy.adaptive
        if not settings.enabled:
            return None
        if settings.latency_p95_ms is not None and self._slow(policy.name, settings, latency_ms):
            return self.throttled(policy, reason="latency")
        if not limited:
            return None
        ceiling = float(policy.rate_limit_per_minute)
        now = self.clock()
        found = self.state(policy.name)
        if not self._may_increase(found, settings, ceiling, now):
            return None  # the common case: at the ceiling, nothing to restore
        with self._lock:  # one attempt per window and process; the store settles the rest
            if self._next_increase.get(policy.name, 0.0) > now:
                return None
            self._next_increase[policy.name] = now + settings.increase_interval_seconds
        found = self.state(policy.name, fresh=True)
        if found is None or not self._may_increase(found, settings, ceiling, now):
            return None
        old = min(found.rate_per_minute, ceiling)
        new = increased(old, settings, ceiling)
        return self._change(policy.name, found, old, new, ceiling, "recovery", now, decrease=False)

    def reset(self, service: str) -> None:
        """Operator override: back to the configured rate (the row is removed)."""
        with self.engine.begin() as conn:
            conn.execute(rate_state.delete().where(rate_state.c.service == service))
        self._cache.pop(service, None)

    # -- decisions -----------------------------------------------------------------------
    @staticmethod
    def _cooling(found: RateState | None, settings: AdaptiveRateSettings, now: float) -> bool:
        last = found.last_decrease_at if found is not None else None
        return last is not None and now - last < settings.cooldown_seconds

    def _may_increase(
        self, found: RateState | None, settings: AdaptiveRateSettings, ceiling: float, now: float
    ) -> bool:
        if found is None or found.rate_per_minute >= ceiling:
            return False
        return (
            now - found.last_change_at >= settings.increase_interval_seconds
            and not self._cooling(found, settings, now)
        )

    def _slow(self, service: str, settings: AdaptiveRateSettings, latency_ms: float) -> bool:
        """Is the p95 of this process's last `latency_window` attempts over the threshold?"""
        assert settings.latency_p95_ms is not None
        with self._lock:
            window = self._latencies.get(service)
            if window is None or window.maxlen != settings.latency_window:
                window = self._latencies[service] = deque(maxlen=settings.latency_window)
            window.append(latency_ms)
            if (
                len(window) < settings.latency_window
                or p95(list(window)) <= settings.latency_p95_ms
            ):
                return False
            window.clear()  # the next verdict is on attempts made at the new rate
            return True

    def _change(
        self,
        service: str,
        found: RateState | None,
        old: float,
        new: float,
        ceiling: float,
        reason: str,
        now: float,
        *,
        decrease: bool,
    ) -> Adjustment | None:
        """Write the new rate if nobody changed the row since `found`; publish it if so."""
        values: dict[str, object] = {
            "rate_per_minute": new,
            "ceiling_per_minute": ceiling,
            "last_change_at": now,
            "reason": reason,
            "updated_at": now,
        }
        if decrease:
            values["last_decrease_at"] = now
        try:
            with self.engine.begin() as conn:
                if found is None:
                    conn.execute(
                        insert(rate_state).values(
                            service=service, version=1, decreases=int(decrease), **values
                        )
                    )
                else:
                    c = rate_state.c
                    won = conn.execute(
                        update(rate_state)
                        .where(c.service == service, c.version == found.version)
                        .values(
                            version=c.version + 1, decreases=c.decreases + int(decrease), **values
                        )
                    ).rowcount
                    if won != 1:
                        return None  # another process changed it first: its change counts
        except IntegrityError:
            return None  # another process inserted the row first
        finally:
            self._cache.pop(service, None)
        if new == old:
            return None  # at the floor already: the cool-down restarted, the rate is unchanged
        adjustment = Adjustment(service, old, new, ceiling, reason)
        self.on_change(adjustment)
        return adjustment
