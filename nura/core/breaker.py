"""Per-service circuit breaker whose state lives in a store shared by every process.

closed --N consecutive failures--> open --cool-down--> half-open (exactly one probe)
half-open --probe succeeds--> closed;  half-open --probe fails--> open (cool-down restarts)

Seed defects 2 and 4: state is not per process, the N-th failure opens the breaker (not the
N+1-th), and half-open admits one probe, chosen atomically in the store across processes.

Only the current probe decides an open breaker. Every open and close bumps the breaker's
`generation`; an `Admission` carries the generation it was granted under (or the probe's
token), and `record_*` take that admission back: a result from an older generation (a
call still in flight when the breaker opened) or from a probe whose token was taken over
after `probe_timeout` changes nothing. Each outcome is one conditional UPDATE, so this
holds across processes on SQLite and PostgreSQL alike. (A probe past `probe_timeout`
whose token nobody has taken over yet is still the current probe.)

Reads are cached for `sync_seconds` so the hot path costs one dictionary lookup; every
failure and every state change is a write, so another process sees an open breaker within
`sync_seconds`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, Engine, case, insert, inspect, select, text, update
from sqlalchemy.exc import DatabaseError, IntegrityError

from nura.core.stores.tables import breakers


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSnapshot:
    service: str
    state: BreakerState
    failures: int
    opened_at: float | None
    probe_started: float | None
    generation: int = 0


@dataclass
class Admission:
    """The breaker's answer for one call: allowed, and whether this call is the probe.

    Hand it back to `record_success`/`record_failure`: `generation` is the closed period
    the call was admitted in (None: unknown, the current one counts), `probe_token` marks
    the half-open probe.
    """

    allowed: bool
    probe_token: str | None = None
    retry_in: float = 0.0
    generation: int | None = None


def _ensure_generation_column(engine: Engine) -> None:
    """Add `generation` to a breaker table created before it existed (create_all won't)."""

    def present() -> bool:
        found = inspect(engine)
        if not found.has_table(breakers.name):
            return True  # nothing to migrate: create_all makes the table as declared
        return "generation" in {col["name"] for col in found.get_columns(breakers.name)}

    if present():
        return
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"ALTER TABLE {breakers.name} ADD COLUMN generation INTEGER NOT NULL DEFAULT 0"
                )
            )
    except DatabaseError:
        if not present():  # otherwise another process added it first
            raise


class CircuitBreakers:
    """All breakers of one store. Thread-safe; one instance per process is enough."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        sync_seconds: float = 0.5,
        probe_timeout: float = 60.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.sync_seconds = sync_seconds
        self.probe_timeout = probe_timeout
        self._cache: dict[str, tuple[float, BreakerSnapshot]] = {}
        self._lock = threading.Lock()
        _ensure_generation_column(engine)

    # -- reads -------------------------------------------------------------------------
    def snapshot(self, service: str, *, fresh: bool = False) -> BreakerSnapshot:
        now = time.monotonic()
        cached = self._cache.get(service)
        if not fresh and cached and now - cached[0] < self.sync_seconds:
            return cached[1]
        with self.engine.connect() as conn:
            row = conn.execute(select(breakers).where(breakers.c.service == service)).first()
        snap = (
            BreakerSnapshot(
                service,
                BreakerState(row.state),
                row.failures,
                row.opened_at,
                row.probe_started,
                row.generation,
            )
            if row
            else BreakerSnapshot(service, BreakerState.CLOSED, 0, None, None)
        )
        self._cache[service] = (now, snap)
        return snap

    def all(self) -> list[BreakerSnapshot]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(breakers).order_by(breakers.c.service)).all()
        return [
            BreakerSnapshot(
                r.service,
                BreakerState(r.state),
                r.failures,
                r.opened_at,
                r.probe_started,
                r.generation,
            )
            for r in rows
        ]

    # -- admission ---------------------------------------------------------------------
    def admit(self, service: str, cooldown: float) -> Admission:
        """May a call to `service` go out now? Microseconds when closed or freshly open."""
        snap = self.snapshot(service)
        if snap.state is BreakerState.CLOSED:
            return Admission(True, generation=snap.generation)
        now = self.clock()
        if snap.state is BreakerState.OPEN:
            ready_at = (snap.opened_at or 0.0) + cooldown
            if now < ready_at:
                return Admission(False, retry_in=ready_at - now)
        elif (snap.probe_started or 0.0) + self.probe_timeout > now:
            return Admission(False, retry_in=self.probe_timeout)  # someone else is probing
        return self._try_probe(service, cooldown, now)

    def _try_probe(self, service: str, cooldown: float, now: float) -> Admission:
        token = uuid.uuid4().hex
        c = breakers.c
        stmt = (
            update(breakers)
            .where(c.service == service)
            .where(
                ((c.state == BreakerState.OPEN) & (c.opened_at <= now - cooldown))
                | (
                    (c.state == BreakerState.HALF_OPEN)
                    & (c.probe_started <= now - self.probe_timeout)
                )
            )
            .values(
                state=BreakerState.HALF_OPEN, probe_token=token, probe_started=now, updated_at=now
            )
        )
        with self.engine.begin() as conn:
            won = conn.execute(stmt).rowcount == 1
        self._cache.pop(service, None)
        return Admission(True, probe_token=token) if won else Admission(False, retry_in=cooldown)

    # -- outcomes ----------------------------------------------------------------------
    def _ensure_row(self, conn, service: str, now: float) -> None:  # type: ignore[no-untyped-def]
        exists = conn.execute(
            select(breakers.c.service).where(breakers.c.service == service)
        ).first()
        if exists is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(breakers).values(
                            service=service, state=BreakerState.CLOSED, failures=0, updated_at=now
                        )
                    )
            except IntegrityError:
                pass  # another process inserted it first: fine, we update below

    def _current(self, service: str, admission: Admission | None) -> ColumnElement[bool]:
        """The rows a result of `admission` may still change (none once it is stale)."""
        c = breakers.c
        if admission is not None and admission.probe_token is not None:
            return (
                (c.service == service)
                & (c.state == BreakerState.HALF_OPEN)
                & (c.probe_token == admission.probe_token)
            )
        # Admitted while closed: counts only while the breaker is still in that closed period.
        current = (c.service == service) & (c.state == BreakerState.CLOSED)
        if admission is not None and admission.generation is not None:
            current = current & (c.generation == admission.generation)
        return current

    def record_success(self, service: str, admission: Admission | None = None) -> None:
        """A call of `admission` succeeded: resets the count; only the current probe closes."""
        probe = admission is not None and admission.probe_token is not None
        if not probe:
            snap = self.snapshot(service)
            if snap.state is BreakerState.CLOSED and snap.failures == 0:
                return  # the common case writes nothing
            admitted_in = admission.generation if admission is not None else None
            if admitted_in is not None and admitted_in < snap.generation:
                return  # admitted before the breaker last opened or closed: stale
        c = breakers.c
        values: dict[str, object] = {"failures": 0, "updated_at": self.clock()}
        if probe:
            values.update(
                state=BreakerState.CLOSED,
                opened_at=None,
                probe_token=None,
                probe_started=None,
                generation=c.generation + 1,
            )
        with self.engine.begin() as conn:
            conn.execute(update(breakers).where(self._current(service, admission)).values(values))
        self._cache.pop(service, None)

    def record_failure(
        self, service: str, threshold: int, admission: Admission | None = None
    ) -> BreakerState:
        """Count one failure; returns the state after it (OPEN once `threshold` is reached).

        A stale result (see `Admission`) changes nothing: an open breaker is neither
        extended nor opened twice.
        """
        now = self.clock()
        c = breakers.c
        if admission is not None and admission.probe_token is not None:
            # A failed probe re-opens the breaker and restarts the cool-down.
            values: dict[str, object] = {
                "state": BreakerState.OPEN,
                "opened_at": now,
                "generation": c.generation + 1,
                "probe_token": None,
                "probe_started": None,
            }
        else:
            opening = c.failures + 1 >= threshold
            values = {
                "state": case((opening, BreakerState.OPEN), else_=c.state),
                "opened_at": case((opening, now), else_=c.opened_at),
                "generation": case((opening, c.generation + 1), else_=c.generation),
            }
        values.update(failures=c.failures + 1, updated_at=now)
        with self.engine.begin() as conn:
            self._ensure_row(conn, service, now)
            conn.execute(update(breakers).where(self._current(service, admission)).values(values))
        self._cache.pop(service, None)
        return self.snapshot(service, fresh=True).state

    # -- operations --------------------------------------------------------------------
    def allow_probe(self, service: str) -> bool:
        """Health-check recovery: an open breaker becomes probe-eligible now (seed section 4)."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(breakers)
                .where(breakers.c.service == service)
                .where(breakers.c.state == BreakerState.OPEN)
                .values(opened_at=0.0, updated_at=self.clock())
            ).rowcount
        self._cache.pop(service, None)
        return bool(changed)

    def admit_probe(self, service: str) -> Admission:
        """Admit the caller as the half-open probe now, without waiting for the cool-down.

        For a health check about to observe `service`: a passing check then closes the
        breaker, a failing one re-opens it, through `record_success`/`record_failure` with
        this admission, exactly as a traffic probe's result would. Granted only while the
        breaker is open, or half-open with no live probe (a probe in flight keeps its turn);
        a closed breaker has nothing to probe."""
        # the traffic probe's own admission with no cool-down left to wait for
        granted = self._try_probe(service, 0.0, self.clock())
        return granted if granted.allowed else Admission(False)

    def reset(self, service: str) -> None:
        """Operator override: close the breaker (results of calls in flight are then stale)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(breakers)
                .where(breakers.c.service == service)
                .values(
                    state=BreakerState.CLOSED,
                    failures=0,
                    opened_at=None,
                    probe_token=None,
                    probe_started=None,
                    generation=breakers.c.generation + 1,
                    updated_at=self.clock(),
                )
            )
        self._cache.pop(service, None)
