"""Benchmark: one health-check round over 100 local services (latencies 0-200 ms, one 1 s).

    python -m benchmarks.health_monitor [--services 100]

The round must take about as long as its slowest check, not the sum: checks run
concurrently, each bounded by its own timeout. Baseline, in the same run: the slowest
service checked alone. Last line: {"bench": "health_monitor", "services": N, "wall_s": ...,
"slowest_check_s": ..., "ratio": ...} with ratio = wall / slowest single check (target <= 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import httpx
import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from deployments.sandbox.http_service import FlakyService

    rng = random.Random(args.seed)
    servers = [FlakyService().start() for _ in range(args.services)]
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

    # Baseline: the slowest service's check alone.
    alone = [c for c in checks if c.service == slow_name]
    t0 = time.perf_counter()
    run_round(alone)
    baseline_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = run_round(checks)
    wall_s = time.perf_counter() - t0
    slowest_s = max((r.latency_ms or 0.0) for r in results) / 1000
    failed = [r.service for r in results if not r.ok]
    for s in servers:
        s.stop()

    print(f"services checked        {len(results)} (failed: {len(failed)})")
    print(f"slowest service alone   {baseline_s:.3f} s (baseline)")
    print(f"slowest check in round  {slowest_s:.3f} s")
    print(f"round wall time         {wall_s:.3f} s")
    print(f"sum of check latencies  {sum((r.latency_ms or 0) for r in results) / 1000:.3f} s")
    print(f"ratio wall/slowest      {wall_s / slowest_s:.3f} (target <= 1.5)")
    print(f"ratio wall/baseline     {wall_s / baseline_s:.3f}")
    print(
        json.dumps(
            {
                "bench": "health_monitor",
                "services": len(results),
                "wall_s": round(wall_s, 3),
                "slowest_check_s": round(slowest_s, 3),
                "ratio": round(wall_s / slowest_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
