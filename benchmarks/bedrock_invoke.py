"""1,000 Bedrock invocations through the flow's task path vs a bare boto3 client.

    python -m benchmarks.bedrock_invoke [--calls 1000]

Both paths call the same local stand-in (zero added latency) over real HTTP in the same
run, interleaved in blocks so machine noise hits both alike. The nura path is the function
the `invoke_bedrock` task wraps (`await nura.bedrock.invoke.invoke_bedrock(request)`):
validation, the model-lifecycle gate (cached), budget reservation,
tokens-per-minute reservation, the call layer (breaker, requests-per-minute lease, call
record), the Converse call off the event loop, cost, ledger write. Prefect's own per-task
orchestration (~4-7 ms a task run, PREFECT-FACTS.md) is not part of it. Rate limits are
real Prefect global concurrency limits: PREFECT_API_URL if set, else a temporary Prefect
server on a PostgreSQL database of its own.

`cost_check` is "exact" when the ledger's total equals the sum of reported tokens x the
configured prices (Decimal), to the pico-dollar. Last line: the JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import yaml

# The shipped chain (live models): two Claude inference profiles and Nova Pro.
SONNET = "global.anthropic.claude-sonnet-4-6"
HAIKU = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA = "amazon.nova-pro-v1:0"
BLOCKS = 10


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """PREFECT_API_URL when set, else a temporary server (PostgreSQL) for the limits."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from tests.support.servers import PrefectServer, temp_database

    with temp_database("nura_bench_prefect") as db:
        server = PrefectServer(db).start(timeout=240)
        os.environ["PREFECT_API_URL"] = server.api_url
        try:
            yield server.api_url
        finally:
            server.stop()
            os.environ.pop("PREFECT_API_URL", None)


def write_config(workdir: Path, endpoint: str) -> Path:
    high = {"requests_per_minute": 1_000_000, "tokens_per_minute": 50_000_000}
    config = {
        "external_services": {
            "aws": {
                "bedrock": {
                    "endpoint_url": endpoint,
                    "rate_limit_per_minute": 1_000_000,
                    "timeout_seconds": 10,
                    "model_limits": {SONNET: high, HAIKU: high, NOVA: high},
                    "budgets": {"scopes": {"global": {"daily_usd": "100000"}}},
                }
            }
        }
    }
    path = workdir / "integrations.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(calls: int) -> dict[str, object]:
    import boto3
    from botocore.config import Config

    from deployments.sandbox.bedrock_server import BedrockStandIn
    from nura.bedrock.invoke import get_invoker, invoke_bedrock
    from nura.bedrock.models import InvocationRequest
    from nura.config.sections.bedrock import BedrockSettings
    from nura.core.runtime import get_call_layer, reset_runtime, store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.ledger import CostLedger, to_pusd, to_usd

    standin = BedrockStandIn().start()
    workdir = Path(tempfile.mkdtemp(prefix="nura-bench-bedrock-"))
    os.environ["NURA_CONFIG"] = str(write_config(workdir, standin.url))
    os.environ["NURA_STORE_URL"] = f"sqlite:///{workdir / 'nura.db'}"
    reset_runtime()
    try:
        bare = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=standin.url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - the stand-in checks no signature
            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=50),
        )
        prompts = [
            f"Question {i}: what does step {i % 37} of the pipeline do? " * (1 + i % 5)
            for i in range(calls)
        ]
        requests = [InvocationRequest(prompt=p, max_tokens=256) for p in prompts]

        def bare_call(prompt: str) -> None:
            bare.converse(
                modelId=SONNET,
                messages=[{"role": "user", "content": [{"text": prompt}]}],
                inferenceConfig={"maxTokens": 256, "temperature": 0.5},
            )

        # Warm both paths (connections, limits created and leased, tables, imports).
        for i in range(30):
            bare_call(prompts[i])
            await invoke_bedrock(requests[i])
        ledger = CostLedger(get_engine(store_url()))
        warm_ids = {row["id"] for row in ledger.calls(limit=100)}

        load = os.getloadavg()[0]
        bare_ms: list[float] = []
        nura_ms: list[float] = []
        results = []
        size = max(1, calls // BLOCKS)
        for start in range(0, calls, size):
            block = range(start, min(calls, start + size))
            for i in block:
                t = time.perf_counter()
                bare_call(prompts[i])
                bare_ms.append((time.perf_counter() - t) * 1000)
            for i in block:
                t = time.perf_counter()
                results.append(await invoke_bedrock(requests[i]))
                nura_ms.append((time.perf_counter() - t) * 1000)
        get_call_layer()  # the call records are flushed by reset_runtime below

        rows = [r for r in ledger.calls(limit=calls + 200) if r["id"] not in warm_ids]
        settings = BedrockSettings()
        expected = Decimal(0)
        for r in results:
            price = settings.price_for(r.model_id, "us-east-1")
            assert price is not None
            expected += (
                r.input_tokens * price.input_per_1k + r.output_tokens * price.output_per_1k
            ) / 1000
        ledger_total = sum(int(row["cost_pusd"]) for row in rows)
        exact = len(rows) == calls and ledger_total == to_pusd(expected)
        leases = get_invoker().tokens.leases + getattr(get_call_layer().limiter, "leases", 0)
        bare_p50, nura_p50 = statistics.median(bare_ms), statistics.median(nura_ms)
        print(f"calls per path: {calls} (stand-in {standin.url}, zero added latency)")
        print(
            f"conditions: {os.cpu_count()} CPUs, load average {load:.1f} before / "
            f"{os.getloadavg()[0]:.1f} after (the paths alternate in blocks of {size})"
        )
        print(
            f"bare boto3 : p50 {bare_p50:.3f} ms  p95 {pct(bare_ms, 0.95):.3f} ms  "
            f"mean {statistics.fmean(bare_ms):.3f} ms"
        )
        print(
            f"nura task  : p50 {nura_p50:.3f} ms  p95 {pct(nura_ms, 0.95):.3f} ms  "
            f"mean {statistics.fmean(nura_ms):.3f} ms"
        )
        print(
            f"p50 overhead: {nura_p50 - bare_p50:.3f} ms; "
            f"limit leases (server round trips): {leases}"
        )
        print(
            f"ledger rows {len(rows)}, ledger total ${to_usd(ledger_total)}, "
            f"tokens x prices ${expected}"
        )
        return {
            "bench": "bedrock_invoke",
            "calls": calls,
            "bare_p50_ms": round(bare_p50, 3),
            "nura_p50_ms": round(nura_p50, 3),
            "p50_overhead_ms": round(nura_p50 - bare_p50, 3),
            "cost_usd_total": float(to_usd(ledger_total)),
            "cost_check": "exact" if exact else "mismatch",
        }
    finally:
        reset_runtime()
        standin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    with prefect_api():
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
            summary = asyncio.run(run(args.calls))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
