"""Wall time from `nura up` to all components healthy and the first sandbox runs completed.

Runs the sandbox stack twice in the same run: on the default embedded PostgreSQL and, as
the baseline, on SQLite (Prefect's default database), each in a fresh state dir on free
ports, and counts flow runs that did not complete and `database is locked` answers.

    python -m benchmarks.platform_startup [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import httpx
import yaml

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _first_runs_done(api: str, expected: int, timeout: float) -> tuple[float, dict[str, int]]:
    start = time.monotonic()
    counts: dict[str, int] = {}
    while time.monotonic() - start < timeout:
        runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=30).json()
        started = [r for r in runs if r.get("start_time") or r["state_type"] in TERMINAL]
        counts = {}
        for r in started:
            counts[r["state_type"]] = counts.get(r["state_type"], 0) + 1
        if len(started) >= expected and all(r["state_type"] in TERMINAL for r in started):
            return time.monotonic() - start, counts
        time.sleep(0.5)
    return float("nan"), counts


def measure(database: str) -> dict[str, object]:
    from nura.platform.first_runs import FIRST_RUNS
    from tests.platform.stack_support import TempStack

    stack = TempStack()
    raw = yaml.safe_load(stack.config.read_text())
    raw["platform"]["prefect_database"] = database
    stack.config.write_text(yaml.safe_dump(raw))
    t0 = time.monotonic()
    try:
        # `nura up --detach` returns once it has reported the first runs: "up" is the
        # stack's own figure (start to every component healthy), recorded in stack.json.
        state = stack.up()
        up_s = float(state.get("timings", {}).get("up") or time.monotonic() - t0)
        _, counts = _first_runs_done(
            state["api_url"], len(FIRST_RUNS) + 2, 300
        )  # + the two webhook-started runs
        done_s = time.monotonic() - t0
        log = Path(stack.state_dir / "logs" / "prefect-server.log").read_text(errors="replace")
        locked = log.count("database is locked")
    finally:
        stack.down()
    return {
        "database": database,
        "up_s": round(up_s, 1),
        "first_runs_done_s": round(done_s, 1),
        "runs": counts,
        "database_locked_errors": locked,
        "timings": state.get("timings", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-sqlite", action="store_true", help="Measure only the default.")
    args = parser.parse_args()
    results = [measure("embedded-postgres")]
    if not args.skip_sqlite:
        results.append(measure("sqlite"))
    for r in results:
        print(json.dumps(r))
    main_result = results[0]
    out = {
        "bench": "platform_startup",
        "up_s": main_result["up_s"],
        "first_runs_done_s": main_result["first_runs_done_s"],
    }
    if len(results) > 1:
        out["baseline_sqlite_up_s"] = results[1]["up_s"]
        out["baseline_sqlite_first_runs_done_s"] = results[1]["first_runs_done_s"]
        out["baseline_sqlite_database_locked"] = results[1]["database_locked_errors"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
