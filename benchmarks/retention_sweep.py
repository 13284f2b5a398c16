"""The retention sweep in batches vs one DELETE, in the same run, on SQLite.

A store holds `--old` call records past retention and `--recent` within it. While each
way of deleting runs, a writer thread inserts a row every 5 ms, as the webhook receiver's
inbox writer does, and records how long each insert took: on SQLite every write waits for
the database's single write lock, so the longest insert is how long the sweep stalled
acknowledgements. Baseline: `DELETE FROM nura_call_records WHERE ts < cutoff` in one
transaction. Ours: `apply_retention` (batches of `--batch` rows, one transaction each).

    python -m benchmarks.retention_sweep [--old 200000] [--recent 20000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

DAY = 86_400.0


def fill(engine, old: int, recent: int, now: float) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import insert

    from nura.core.stores.tables import call_records

    def row(ts: float) -> dict[str, object]:
        return {"ts": ts, "service": "s3", "operation": "put_object", "outcome": "ok",
                "latency_ms": 3.0, "attempts": 1, "fallback": False}  # fmt: skip

    rows = [row(now - 60 * DAY + i * 0.001) for i in range(old)]
    rows += [row(now - DAY + i * 0.001) for i in range(recent)]
    with engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            conn.execute(insert(call_records), rows[start : start + 10_000])


def under_writes(engine, work: Callable[[], int]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Run `work` while a writer inserts every 5 ms; its time and the writer's latencies."""
    from nura.core.stores.health import record_checks

    stop = threading.Event()
    waits: list[float] = []

    def writer() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            record_checks(engine, [{"ts": time.time(), "service": "w", "kind": "http", "ok": True}])
            waits.append(time.perf_counter() - started)
            time.sleep(0.005)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.2)  # the writer's steady state first
    started = time.perf_counter()
    removed = work()
    seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    return {
        "rows": removed,
        "seconds": round(seconds, 3),
        "writer_max_ms": round(max(waits) * 1000, 1),
        "writer_p50_ms": round(statistics.median(waits) * 1000, 2),
        "writes": len(waits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", type=int, default=200_000)
    parser.add_argument("--recent", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    from sqlalchemy import delete

    from nura.config.schema import IntegrationsConfig
    from nura.core.stores.db import get_engine
    from nura.core.stores.tables import call_records
    from nura.retention import apply_retention

    now = time.time()
    cutoff = now - 30 * DAY
    cfg = IntegrationsConfig.model_validate({"retention": {"batch_size": args.batch}})
    work = Path(tempfile.mkdtemp(prefix="nura-bench-retention-"))
    results = {}
    for name in ("one_delete", "batched"):
        engine = get_engine(f"sqlite:///{work / name}.db")
        fill(engine, args.old, args.recent, now)

        def one_delete(engine=engine) -> int:  # type: ignore[no-untyped-def]
            with engine.begin() as conn:
                return int(
                    conn.execute(delete(call_records).where(call_records.c.ts < cutoff)).rowcount
                )

        def batched(engine=engine) -> int:  # type: ignore[no-untyped-def]
            return apply_retention(engine, cfg, now).removed("call_records")

        results[name] = under_writes(engine, one_delete if name == "one_delete" else batched)
        print(f"{name:>10}: {results[name]}")
    base, ours = results["one_delete"], results["batched"]
    summary = {
        "benchmark": "retention_sweep",
        "old_rows": args.old,
        "batch": args.batch,
        "writer_stall_ratio": round(base["writer_max_ms"] / max(ours["writer_max_ms"], 0.001), 1),
        "time_ratio": round(ours["seconds"] / max(base["seconds"], 0.001), 2),
        "baseline": base,
        "batched": ours,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
