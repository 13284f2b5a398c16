"""Benchmark: the health monitor's two costs, each against a baseline in the same run.

    python -m benchmarks.health_monitor [--services 100] [--backend sqlite|postgresql|both]

1. One check round over N local services (latencies 0-200 ms, one 1 s): it must take about
   as long as its slowest check, not the sum (checks run concurrently, each bounded by its
   own timeout). Baseline: the slowest service checked alone. Target: wall/slowest <= 1.5.
2. The SLA step with 1 day, 7 days and 30 days of history (N services, a check every 5 minutes
   per service, 200,000 traffic calls per 7 days; check rows older than 7 d + 1 h are
   purged by every round, call records are not). Baseline: the previous step, which loaded
   7 days of checks and call records into pandas; now: the figures aggregated in the
   database (`nura.health.aggregate`). Run time (best of 2) and peak Python memory
   (tracemalloc, numpy's buffers included) for each, and whether both give the same
   figures.

Last line: {"bench": "health_monitor", "services": N, "wall_s": ..., "slowest_check_s": ...,
"ratio": ..., "sla": {"<backend>": {"1d": {...}, "30d": {...}}}}.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

DAY = 86400.0
CALLS_PER_7D = 200_000
CHECK_EVERY = 300.0
NOW = 1_900_000_000.0


def check_round_figures(n: int, seed: int) -> dict[str, Any]:
    from deployments.sandbox.http_service import FlakyService

    rng = random.Random(seed)
    servers = [FlakyService().start() for _ in range(n)]
    try:
        latencies = [rng.uniform(0, 200) for _ in servers]
        latencies[len(servers) // 2] = 1000.0  # the one slow service
        for server, ms in zip(servers, latencies, strict=True):
            httpx.post(f"{server.url}/control", json={"latency_ms": ms}).raise_for_status()
        tmp = Path(tempfile.mkdtemp(prefix="nura-bench-health-"))
        names = [f"svc{i:03d}" for i in range(len(servers))]
        config = {
            "external_services": {
                "partners": {
                    name: {"base_url": s.url, "health_check_endpoint": "/health"}
                    for name, s in zip(names, servers, strict=True)
                }
            },
            "health_monitoring": {"check_timeout_seconds": 5},
        }
        (tmp / "integrations.yaml").write_text(yaml.safe_dump(config))
        os.environ["NURA_CONFIG"] = str(tmp / "integrations.yaml")
        os.environ["NURA_STORE_URL"] = f"sqlite:///{tmp / 'nura.db'}"

        from nura import get_call_layer, get_config, store_url
        from nura.core.stores.db import get_engine
        from nura.health.checks import build_checks, run_round

        cfg = get_config()
        layer = get_call_layer()
        engine = get_engine(store_url(cfg))
        checks = [c for c in build_checks(cfg, layer, engine) if c.service in set(names)]
        slow_name = names[len(servers) // 2]
        alone = [c for c in checks if c.service == slow_name]
        t0 = time.perf_counter()
        run_round(alone)
        baseline_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = run_round(checks)
        wall_s = time.perf_counter() - t0
    finally:
        for s in servers:
            s.stop()
    slowest_s = max((r.latency_ms or 0.0) for r in results) / 1000
    failed = [r.service for r in results if not r.ok]
    print(f"services checked        {len(results)} (failed: {len(failed)})")
    print(f"slowest service alone   {baseline_s:.3f} s (baseline)")
    print(f"slowest check in round  {slowest_s:.3f} s")
    print(f"round wall time         {wall_s:.3f} s")
    print(f"sum of check latencies  {sum((r.latency_ms or 0) for r in results) / 1000:.3f} s")
    print(f"ratio wall/slowest      {wall_s / slowest_s:.3f} (target <= 1.5)")
    print(f"ratio wall/baseline     {wall_s / baseline_s:.3f}")
    return {
        "services": len(results),
        "wall_s": round(wall_s, 3),
        "slowest_check_s": round(slowest_s, 3),
        "ratio": round(wall_s / slowest_s, 3),
    }


# -- the SLA step ---------------------------------------------------------------------------
@contextlib.contextmanager
def _database(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'sla-{time.monotonic_ns()}.db'}"
        return
    from sqlalchemy import create_engine, text

    name = f"nura_bench_sla_{os.getpid()}_{time.monotonic_ns() % 10**8}"
    admin = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from nura.core.stores.db import reset_engines

        reset_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _seed(engine: Any, services: int, days: float, rng: random.Random) -> tuple[int, int]:
    from sqlalchemy import insert

    from nura.core.stores.health import health_checks
    from nura.core.stores.tables import call_records

    names = [f"svc{i:03d}" for i in range(services)]
    check_span = min(days * DAY, 7 * DAY + 3600)  # what the monitor's purge keeps
    checks = [
        {
            "ts": NOW - k * CHECK_EVERY,
            "service": name,
            "kind": "http",
            "ok": rng.random() > 0.02,
            "latency_ms": rng.lognormvariate(4, 0.6),
        }
        for name in names
        for k in range(int(check_span / CHECK_EVERY))
    ]
    n_calls = int(CALLS_PER_7D * days / 7)
    outcomes = ["ok"] * 95 + ["error"] * 3 + ["fallback", "rejected"]
    calls = []
    for _ in range(n_calls):
        outcome = rng.choice(outcomes)
        calls.append(
            {
                "ts": NOW - rng.uniform(0, days * DAY),
                "service": rng.choice(names),
                "operation": "op",
                "outcome": outcome,
                "latency_ms": 0.0 if outcome == "rejected" else rng.lognormvariate(5, 0.8),
                "attempts": 1,
                "fallback": outcome == "fallback",
            }
        )
    # Stored in time order, as rounds and the call recorder append them.
    checks.sort(key=lambda r: r["ts"])
    calls.sort(key=lambda r: r["ts"])
    with engine.begin() as conn:
        for table, rows in ((health_checks, checks), (call_records, calls)):
            for i in range(0, len(rows), 50_000):
                conn.execute(insert(table), rows[i : i + 50_000])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    return len(checks), len(calls)


def _baseline(engine: Any) -> dict[str, Any]:
    """The previous SLA step: 7 days of checks and call records loaded into pandas."""
    import pandas as pd
    from sqlalchemy import select

    from nura.config.sections.health import AlertThresholds
    from nura.core.stores.health import load_checks
    from nura.core.stores.tables import call_records
    from nura.health.sla import CALL_COLUMNS, WINDOWS, evaluate

    since = NOW - WINDOWS["7d"]
    checks = load_checks(engine, since)
    cols = [call_records.c[name] for name in CALL_COLUMNS]
    with engine.connect() as conn:
        calls = pd.DataFrame(
            conn.execute(select(*cols).where(call_records.c.ts > since)).all(),
            columns=CALL_COLUMNS,
        )
    return evaluate(checks, calls, [], {}, AlertThresholds(), now=NOW, status_window_s=900)


def _in_database(engine: Any) -> dict[str, Any]:
    """What `build_report` does now (without the config, breakers and status save)."""
    from nura.config.sections.health import AlertThresholds
    from nura.health.aggregate import window_figures_sql
    from nura.health.sla import STATUS, WINDOWS, assemble

    figures = window_figures_sql(engine, now=NOW, windows={STATUS: 900.0, **WINDOWS})
    return assemble(figures, [], {}, AlertThresholds(), now=NOW)


def _measure(fn: Callable[[], dict[str, Any]]) -> tuple[float, float, dict[str, Any]]:
    """(best wall time of 2, peak traced MB, result)."""
    times = []
    result: dict[str, Any] = {}
    for _ in range(2):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return min(times), peak, result


def sla_figures(services: int, backends: list[str], seed: int) -> dict[str, Any]:
    from nura.core.stores.db import get_engine, reset_engines

    tmp = Path(tempfile.mkdtemp(prefix="nura-bench-sla-"))
    out: dict[str, Any] = {}
    print()
    print(f"SLA step, {services} services (baseline: 7 days loaded into pandas)")
    print(f"{'backend':<11}{'history':>8}{'checks':>9}{'calls':>9}   {'':<9}"
          f"{'time s':>8}{'peak MB':>9}   same figures")  # fmt: skip
    for backend in backends:
        out[backend] = {}
        for label, days in (("1d", 1.0), ("7d", 7.0), ("30d", 30.0)):
            with _database(backend, tmp) as url:
                engine = get_engine(url)
                n_checks, n_calls = _seed(engine, services, days, random.Random(seed))
                base_s, base_mb, base = _measure(lambda e=engine: _baseline(e))
                new_s, new_mb, new = _measure(lambda e=engine: _in_database(e))
                same = base["windows"] == new["windows"] and base["services"] == new["services"]
                reset_engines()
            for name, s, mb in (("baseline", base_s, base_mb), ("database", new_s, new_mb)):
                print(
                    f"{backend:<11}{label:>8}{n_checks:>9}{n_calls:>9}   {name:<9}"
                    f"{s:>8.3f}{mb:>9.1f}   {'yes' if same else 'NO'}"
                )
            out[backend][label] = {
                "checks": n_checks,
                "calls": n_calls,
                "baseline_s": round(base_s, 3),
                "baseline_peak_mb": round(base_mb, 1),
                "database_s": round(new_s, 3),
                "database_peak_mb": round(new_mb, 1),
                "same_figures": same,
            }
    return out


def _postgres_up() -> bool:
    from sqlalchemy import create_engine

    try:
        engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--skip-round", action="store_true", help="Only the SLA step.")
    args = parser.parse_args()

    summary: dict[str, Any] = {"bench": "health_monitor"}
    if not args.skip_round:
        summary.update(check_round_figures(args.services, args.seed))
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in backends and not _postgres_up():
        print("PostgreSQL at 127.0.0.1:5432 is not reachable: SQLite only")
        backends = [b for b in backends if b != "postgresql"]
    summary["sla"] = sla_figures(args.services, backends, args.seed)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
