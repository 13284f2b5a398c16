"""Dynamic rate adjustment vs a fixed limit, in the same run, against a throttling service.

Two stand-ins answer 429 (Retry-After: 1) above a hidden rate (default 8/s) while the
services are configured at five times that. Two OS processes call both at once through
the call layer (Prefect-leased limits, SQLite store): one service with a fixed limit (the
baseline), one adaptive. Reports 429s, throughput and the effective rate the adaptive one
settled at. Needs a Prefect server: PREFECT_API_URL, or one is started for the run.

    python -m benchmarks.adaptive_rate [--calls 120] [--hidden 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=120, help="calls per process and service")
    parser.add_argument("--hidden", type=float, default=8.0, help="the service's rate per second")
    args = parser.parse_args()

    import tests.spine.test_adaptive_rate as workload
    from deployments.sandbox.throttled_service import ThrottledService
    from nura.platform.processes import local_prefect_server

    workload.CALLS_EACH = args.calls
    ceiling = int(args.hidden * 60 * 5)
    workload.CEILING_PER_MINUTE = ceiling
    work = Path(tempfile.mkdtemp(prefix="nura-bench-adaptive-"))
    fixed_service = ThrottledService(rate=args.hidden).start()
    adaptive_service = ThrottledService(rate=args.hidden).start()
    try:
        with local_prefect_server(work / "stack"):
            config = work / "integrations.yaml"
            config.write_text(
                yaml.safe_dump(workload.services(fixed_service.url, adaptive_service.url))
            )
            os.environ.update(
                NURA_CONFIG=str(config),
                NURA_STORE_URL=f"sqlite:///{work / 'nura.db'}",
                NURA_STATE_DIR=str(work / "state"),
            )
            started = time.perf_counter()
            outcomes = workload.run_workload(
                {"throttled-fixed": fixed_service.url, "throttled-adaptive": adaptive_service.url}
            )
            wall = time.perf_counter() - started
    finally:
        fixed_service.stop()
        adaptive_service.stop()
    fixed, adaptive = outcomes["throttled-fixed"], outcomes["throttled-adaptive"]
    late = adaptive.late
    result = {
        "hidden_per_minute": args.hidden * 60,
        "ceiling_per_minute": ceiling,
        "calls_per_service": 2 * args.calls,
        "fixed_ok": fixed.ok,
        "fixed_429": fixed.throttled,
        "adaptive_ok": adaptive.ok,
        "adaptive_429": adaptive.throttled,
        "429_ratio": round(adaptive.throttled / max(1, fixed.throttled), 3),
        "adaptive_rate_median_second_half": statistics.median(late),
        "adaptive_rate_min_second_half": min(late),
        "wall_seconds": round(wall, 1),
    }
    print(
        f"hidden {args.hidden}/s, ceiling {ceiling}/min, {2 * args.calls} calls per service\n"
        f"fixed:    {fixed.ok} ok, {fixed.throttled} 429s\n"
        f"adaptive: {adaptive.ok} ok, {adaptive.throttled} 429s "
        f"({result['429_ratio']:.2f} of fixed); effective rate, second half: median "
        f"{result['adaptive_rate_median_second_half']:.0f}/min\n"
        f"wall (both side by side, incl. process start): {wall:.1f}s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
