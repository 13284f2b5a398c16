"""Recording security events where they happen, without ever changing what happens.

    report_event("ssrf_refusal", target.name, {"reason": exc.reason})   # a flow's refusal

    buffer = SecurityEventBuffer(engine, clock=receiver.clock)          # the receiver's
    buffer.start()
    buffer.note("signature_failure", "partner", error="bad_signature", client="203.0.113.9")
    buffer.stop()                                                       # flushes

A refusal stands whether or not it could be recorded: both paths log a store failure and
carry on, never turning a 401 or a refused delivery into something else.

`report_event` writes at once: it serves refusals inside flow runs (SSRF, hard budgets),
which are few. The receiver is the one place an attacker sets the rate, so it uses
`SecurityEventBuffer`: `note` adds to an in-memory counter (a dict update under a lock,
no I/O on the request path), and one background thread writes what gathered every
`flush_seconds`, one row per (kind, subject). Accepted deliveries never touch it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from nura.core.stores.security import record_events

logger = logging.getLogger("nura.security")

MAX_CLIENTS = 5  # distinct client addresses kept per (kind, subject) and flush


def report_event(
    kind: str,
    subject: str,
    detail: Mapping[str, Any] | None = None,
    *,
    engine: Engine | None = None,
    now: float | None = None,
) -> None:
    """Store one security event (the configured store unless `engine`); never raises."""
    try:
        if engine is None:
            from nura.core.runtime import store_url
            from nura.core.stores.db import get_engine

            engine = get_engine(store_url())
        ts = time.time() if now is None else now
        record_events(engine, [(kind, subject, detail, ts, 1)])
    except Exception as exc:  # the refusal itself stands; only its count is lost
        logger.warning("security event %s/%s not recorded: %s", kind, subject, exc)


@dataclass
class _Tally:
    first_ts: float
    count: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    clients: set[str] = field(default_factory=set)

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.errors:
            out["errors"] = dict(self.errors)
        if self.clients:
            out["clients"] = sorted(self.clients)
        return out


class SecurityEventBuffer:
    """Counts events in memory; a background thread stores them every `flush_seconds`."""

    def __init__(
        self,
        engine: Engine,
        *,
        flush_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.flush_seconds = flush_seconds
        self.clock = clock
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(
        self, kind: str, subject: str, *, error: str | None = None, client: str | None = None
    ) -> None:
        """Count one event (no I/O). `error`: the refusal's code; `client`: its address."""
        with self._lock:
            tally = self._tallies.get((kind, subject))
            if tally is None:
                tally = self._tallies[(kind, subject)] = _Tally(self.clock())
            tally.count += 1
            if error:
                tally.errors[error] += 1
            if client and len(tally.clients) < MAX_CLIENTS:
                tally.clients.add(client)

    def flush(self) -> None:
        """Store what was noted so far (one row per kind and subject); never raises."""
        with self._write_lock:  # the thread and a caller never write the same tallies twice
            with self._lock:
                tallies, self._tallies = self._tallies, {}
            rows = [(k, s, t.detail(), t.first_ts, t.count) for (k, s), t in tallies.items()]
            try:
                record_events(self.engine, rows)
            except Exception as exc:  # dropped, not kept: an outage must not grow memory
                logger.warning("%d security events not recorded: %s", len(rows), exc)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="nura-security-events", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and store what is left (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()
