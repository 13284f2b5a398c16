"""What the resilient call layer adds to a call, against raw pooled httpx, in the same run.

2,000 raw calls and 2,000 calls through the layer (Prefect-leased rate limit set high enough
never to block, breaker on a SQLite store, call records on), alternating one by one against
a loopback HTTP server, after a warm-up. Needs a Prefect server: PREFECT_API_URL, or one
is started on an embedded PostgreSQL for the run.

    python -m benchmarks.call_overhead [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    from deployments.sandbox.http_service import FlakyService
    from nura.config import parse_config
    from nura.core.breaker import CircuitBreakers
    from nura.core.call_records import CallRecorder
    from nura.core.http import shared_client
    from nura.core.layer import CallLayer
    from nura.core.ratelimit import PrefectSlotLeaser
    from nura.core.stores.db import get_engine
    from nura.platform.processes import local_prefect_server

    work = Path(tempfile.mkdtemp(prefix="nura-bench-"))
    service = FlakyService().start()
    with local_prefect_server(work / "stack"):
        cfg = parse_config(
            {
                "external_services": {
                    "partners": {
                        "bench": {"base_url": service.url, "rate_limit_per_minute": 60_000_000}
                    }
                }
            }
        )
        engine = get_engine(f"sqlite:///{work / 'nura.db'}")
        leaser = PrefectSlotLeaser()
        client = shared_client()
        layer = CallLayer(
            cfg.policies(),
            breakers=CircuitBreakers(engine),
            limiter=leaser,
            recorder=CallRecorder(engine),
            http_client=client,
        )
        url = f"{service.url}/echo"
        for _ in range(args.warmup):
            client.get(url)
            layer.request("bench", "GET", url)
        raw: list[float] = []
        through: list[float] = []
        for _ in range(args.calls):
            t = time.perf_counter()
            client.get(url)
            raw.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            layer.request("bench", "GET", url)
            through.append((time.perf_counter() - t) * 1000)
        assert layer.recorder is not None
        layer.recorder.flush()
    service.stop()

    result = {
        "bench": "call_overhead",
        "calls": args.calls,
        "raw_p50_ms": round(percentile(raw, 50), 3),
        "layer_p50_ms": round(percentile(through, 50), 3),
        "p50_added_ms": round(percentile(through, 50) - percentile(raw, 50), 3),
        "p99_added_ms": round(percentile(through, 99) - percentile(raw, 99), 3),
    }
    raw_p99, layer_p99 = percentile(raw, 99), percentile(through, 99)
    raw_mean, layer_mean = statistics.mean(raw), statistics.mean(through)
    print(f"raw   p50 {result['raw_p50_ms']} ms  p99 {raw_p99:.3f} ms  mean {raw_mean:.3f}")
    print(f"layer p50 {result['layer_p50_ms']} ms  p99 {layer_p99:.3f} ms  mean {layer_mean:.3f}")
    print(f"Prefect limit leases: {leaser.leases} for {args.calls + args.warmup} layer calls")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
