"""SLA figures computed in the database (PostgreSQL and SQLite alike), never loaded.

    figures = window_figures_sql(engine, now=now, windows={"status": 900, "1h": 3600, ...})
    figures["1h"]["alpha"]["p95_ms"], figures["status"]["alpha"]["calls"]

The same figures as `nura.health.sla.window_figures` (the pandas reference, kept for tests
and the benchmark's baseline), over the same half-open windows `(now - length, now]`:
- counts, availability, error and fallback rates: one grouped scan per table, grouped by
  service and band (the shortest window holding the row), summed up per window;
- p50/p95/p99: per window, `ROW_NUMBER()` over each service's latencies (checks plus
  traffic that reached the service) and only the rows around each quantile's position
  leave the database; they are interpolated here exactly as numpy's "linear" method does
  (what pandas' `quantile` uses), so the figures equal the reference's. Window functions
  rather than `percentile_cont` because SQLite has no ordered-set aggregates.

`exclude` (service -> [(start, end)]) leaves out each service's samples with
`start <= ts < end`: its maintenance windows (`nura.health.maintenance`).

What a run reads is bounded by the longest window (7 d), whatever the tables hold: both
scans are range scans on a `ts` index (`ensure_indexes` adds the one call records lacked),
and Python holds a few rows per service, not the samples.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    Engine,
    Float,
    Index,
    and_,
    case,
    cast,
    func,
    inspect,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.exc import DatabaseError

from nura.core.stores.health import health_checks
from nura.core.stores.tables import call_records

CHECK_OPERATION = "health.check"
QUANTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
# Call records are read by time range alone; their table only had (service, ts).
CALLS_TS_INDEX = Index("ix_nura_call_records_ts", call_records.c.ts)
_indexed: set[int] = set()
_index_lock = threading.Lock()


def ensure_indexes(engine: Engine) -> None:
    """Create the `ts` indexes on tables made before they existed (once per engine)."""
    if id(engine) in _indexed:
        return
    with _index_lock:
        if id(engine) not in _indexed:
            for index in (CALLS_TS_INDEX, *health_checks.indexes):
                try:
                    index.create(engine, checkfirst=True)
                except DatabaseError:
                    # Another process created it between the check and ours: fine if so.
                    if not _has_index(engine, index):
                        raise
            _indexed.add(id(engine))


def _has_index(engine: Engine, index: Index) -> bool:
    table = index.table
    assert table is not None
    return index.name in {i["name"] for i in inspect(engine).get_indexes(table.name)}


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's `_lerp` (the "linear" quantile method), so results equal pandas' to the bit."""
    diff = b - a
    out = a + diff * t
    return b - diff * (1 - t) if t >= 0.5 else out


def quantile_from_ranks(values: Mapping[int, float], n: int, q: float) -> float:
    """The linear-interpolated `q` quantile of `n` sorted values, given the ones around it."""
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return _lerp(values[lo], values[hi], pos - lo)


Spans = Mapping[str, list[tuple[float, float]]]


def _overlapping(exclude: Spans | None, lo: float, hi: float) -> Spans:
    """Only the spans that reach into `(lo, hi]`: fewer terms in the window's query."""
    found = {
        name: [(a, b) for a, b in spans if b > lo and a <= hi]
        for name, spans in (exclude or {}).items()
    }
    return {name: spans for name, spans in found.items() if spans}


def outside(service: Any, ts: Any, exclude: Spans | None) -> Any:
    """SQL condition: the row is not inside one of its service's excluded spans."""
    inside = [
        and_(service == name, ts >= lo, ts < hi)
        for name, spans in (exclude or {}).items()
        for lo, hi in spans
    ]
    return not_(or_(*inside)) if inside else true()


def _counts(
    engine: Engine, now: float, windows: Mapping[str, float], exclude: Spans | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Counts per service and window from one grouped scan per table: each row falls in one
    band (the shortest window holding it) and a window sums its bands, the windows being
    nested (all end at `now`)."""
    order = sorted(windows, key=lambda name: windows[name])
    hc, cr = health_checks.c, call_records.c

    def band(ts: Any) -> Any:
        return case(*[(ts > now - windows[name], i) for i, name in enumerate(order)])

    check_band, call_band = band(hc.ts).label("band"), band(cr.ts).label("band")
    failed = case((cr.outcome != "ok", 1), else_=0)
    fallback = case((or_(cr.outcome == "fallback", cr.fallback == true()), 1), else_=0)
    longest = windows[order[-1]]
    exclude = _overlapping(exclude, now - longest, now)
    with engine.connect() as conn:
        checks = conn.execute(
            select(
                hc.service, check_band, func.count(), func.sum(case((hc.ok == true(), 1), else_=0))
            )
            .where(hc.ts > now - longest, hc.ts <= now, outside(hc.service, hc.ts, exclude))
            .group_by(hc.service, check_band)
        ).all()
        calls = conn.execute(
            select(cr.service, call_band, func.count(), func.sum(failed), func.sum(fallback))
            .where(
                cr.ts > now - longest,
                cr.ts <= now,
                cr.operation != CHECK_OPERATION,
                outside(cr.service, cr.ts, exclude),
            )
            .group_by(cr.service, call_band)
        ).all()
    # service -> per band [checks, ok, calls, failed, fallback]
    bands: dict[str, list[list[int]]] = {}
    for service, i, n, ok in checks:
        row = bands.setdefault(service, [[0] * 5 for _ in order])[int(i)]
        row[0], row[1] = int(n), int(ok or 0)
    for service, i, n, bad, fb in calls:
        row = bands.setdefault(service, [[0] * 5 for _ in order])[int(i)]
        row[2], row[3], row[4] = int(n), int(bad or 0), int(fb or 0)
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in windows}
    for service, per_band in bands.items():
        total = [0] * 5
        for i, name in enumerate(order):
            total = [t + v for t, v in zip(total, per_band[i], strict=True)]
            n_checks, ok, n_calls, bad, fb = total
            fig: dict[str, Any] = {}
            if n_checks:
                fig.update(checks=n_checks, availability_pct=ok / n_checks * 100)
            if n_calls:
                fig.update(
                    calls=n_calls,
                    error_rate_pct=bad / n_calls * 100,
                    fallback_rate_pct=fb / n_calls * 100,
                )
            if fig:
                out[name][service] = fig
    return out


def _percentiles(
    engine: Engine, now: float, seconds: float, exclude: Spans | None = None
) -> dict[str, dict[str, float]]:
    hc, cr = health_checks.c, call_records.c
    lo = now - seconds
    exclude = _overlapping(exclude, lo, now)
    samples = union_all(
        select(hc.service.label("service"), hc.latency_ms.label("v")).where(
            hc.ts > lo,
            hc.ts <= now,
            hc.latency_ms.is_not(None),
            outside(hc.service, hc.ts, exclude),
        ),
        select(cr.service.label("service"), cr.latency_ms.label("v")).where(
            cr.ts > lo,
            cr.ts <= now,
            cr.operation != CHECK_OPERATION,
            cr.outcome != "rejected",  # never reached the service: no latency
            cr.latency_ms.is_not(None),
            outside(cr.service, cr.ts, exclude),
        ),
    ).subquery("samples")
    ranked = select(
        samples.c.service,
        samples.c.v,
        (func.row_number().over(partition_by=samples.c.service, order_by=samples.c.v) - 1).label(
            "i"
        ),
        func.count().over(partition_by=samples.c.service).label("n"),
    ).subquery("ranked")
    i = cast(ranked.c.i, Float)
    pos = [(cast(ranked.c.n, Float) - 1) * literal(q, Float) for q in QUANTILES.values()]
    # The rows at floor(pos) and floor(pos) + 1 of every quantile (and a neighbour).
    near = or_(*[and_(i >= p - 1, i <= p + 1) for p in pos])
    with engine.connect() as conn:
        rows = conn.execute(
            select(ranked.c.service, ranked.c.i, ranked.c.n, ranked.c.v).where(near)
        )
        by_service: dict[str, tuple[int, dict[int, float]]] = {}
        for service, idx, n, v in rows:
            entry = by_service.setdefault(service, (int(n), {}))
            entry[1][int(idx)] = float(v)
    return {
        service: {key: quantile_from_ranks(values, n, q) for key, q in QUANTILES.items()}
        for service, (n, values) in by_service.items()
    }


def window_figures_sql(
    engine: Engine,
    *,
    now: float,
    windows: Mapping[str, float],
    exclude: Spans | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """window name -> service -> figures (the keys of `sla.window_figures`' columns);
    `exclude`: per service, spans left out (maintenance)."""
    ensure_indexes(engine)
    out = _counts(engine, now, windows, exclude)
    for name, secs in windows.items():
        for service, figs in _percentiles(engine, now, secs, exclude).items():
            out[name].setdefault(service, {}).update(figs)
    for figures in out.values():
        for fig in figures.values():
            fig.setdefault("checks", 0)
            fig.setdefault("calls", 0)
    return out
