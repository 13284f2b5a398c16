"""Benchmark: webhooks per second end to end (accepted -> flow run Completed) on the HA layout.

    python -m benchmarks.scale_out [--webhooks 30] [--outage 30]

Needs PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379); creates and drops its own
databases (a claimed pair of Redis databases). Three runs of `nura.platform.ha` on this machine,
each with 2 Prefect API servers (--no-services) behind a balancer and the background
services:

1. single: 1 receiver, 1 dispatcher, 1 worker: `--webhooks` signed webhooks, as fast as
   they are acknowledged, then until every acknowledged one's run is Completed;
2. scaled: 2 receivers, 2 dispatchers, 3 workers: the same;
3. outage: the scaled layout; after half the webhooks both API servers are SIGKILLed for
   `--outage` seconds while the receivers keep acknowledging (the inbox holds them), then
   started again: `drain_s` is from the API's return until every run is Completed.

Each run of `ha-probe` is one call to a recording service, so `duplicates` counts runs per
delivery above one and calls per run above one; `lost` counts acknowledged webhooks
without a Completed run. On one 2-core machine every flow run is a new Python process, so
the CPU, not the layout, bounds both figures: the ratio says what scaling out costs or
gains here, not on separate machines.

Last line: {"bench": "scale_out", "single_per_s", "scaled_per_s", "lost", "duplicates",
"drain_s", "load_avg"}
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from deployments.sandbox.ha_probe import (
    SECRET,
    SECRET_ENV,
    Recorder,
    make_project,
    probe_runs,
    send,
)
from nura.platform.ha import HaSettings, HaStack, claim_redis_pair, release_redis_pair
from nura.platform.processes import wait_http


def _stack(
    root: Path, project: Path, receivers: int, dispatchers: int, workers: int, suffix: str
) -> HaStack:
    pair = claim_redis_pair("127.0.0.1", 6379, owner=suffix)
    settings = HaSettings(
        state_dir=root / f"ha-{suffix}",
        project=project,
        config_path=project / "integrations.yaml",
        prefect_database=f"nura_bench_prefect_{suffix}",
        store_database=f"nura_bench_store_{suffix}",
        redis_messaging_db=pair[0],
        redis_docket_db=pair[1],
        api_servers=2,
        receivers=receivers,
        dispatchers=dispatchers,
        workers=workers,
        worker_limit=4,
        env={SECRET_ENV: SECRET, "NURA_NO_ATTACH": "1"},
    )
    return HaStack(settings, say=lambda m: print(f"  … {m}", flush=True))


def _receiver_urls(stack: HaStack) -> list[str]:
    return [
        f"http://127.0.0.1:{spec['args'][-1]}"
        for name, spec in stack.state.specs.items()
        if name.startswith("receiver-") and name != "receiver-lb"
    ]


def _send_all(urls: list[str], ids: list[str]) -> list[str]:
    def one(i: int) -> str | None:
        return ids[i] if 200 <= send(urls[i % len(urls)], ids[i]) < 300 else None

    with ThreadPoolExecutor(8) as pool:
        return [d for d in pool.map(one, range(len(ids))) if d]


def _wait_completed(api: str, acknowledged: list[str], limit_s: float = 1200) -> dict[str, Any]:
    expected = {f"nura-webhook:probe:{d}" for d in acknowledged}
    deadline = time.monotonic() + limit_s
    while True:
        try:
            runs = [r for r in probe_runs(api) if r["idempotency_key"] in expected]
        except httpx.HTTPError:  # an API server still starting behind the balancer
            time.sleep(1)
            continue
        done = [r for r in runs if r["state_type"] == "COMPLETED"]
        final = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
        if len({r["idempotency_key"] for r in final}) >= len(expected):
            return {"runs": runs, "completed": done}
        if time.monotonic() > deadline:
            return {"runs": runs, "completed": done, "timed_out": True}
        time.sleep(1)


def _phase(
    root: Path,
    project: Path,
    recorder: Recorder,
    name: str,
    n: int,
    shape: tuple[int, int, int],
    outage: float = 0.0,
) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    stack = _stack(root, project, *shape, suffix=suffix)
    print(f"{name}: {shape[0]} receivers, {shape[1]} dispatchers, {shape[2]} workers", flush=True)
    try:
        state = stack.up()
        urls = _receiver_urls(stack)
        ids = [f"{name}-{i}" for i in range(n)]
        started = time.perf_counter()
        drain_s = None
        if outage:
            acknowledged = _send_all(urls, ids[: n // 2])
            apis = [k for k in stack.state.specs if k.startswith("api-") and k != "api-lb"]
            for api in apis:
                stack.kill(api)
            print(f"  API servers down for {outage:g} s", flush=True)
            acknowledged += _send_all(urls, ids[n // 2 :])
            time.sleep(max(0.0, outage - (time.perf_counter() - started)))
            for api in apis:
                stack.start(api)
            wait_http(f"{state.api_url}/health", 300)
            back = time.perf_counter()
            result = _wait_completed(state.api_url, acknowledged)
            drain_s = time.perf_counter() - back
        else:
            acknowledged = _send_all(urls, ids)
            result = _wait_completed(state.api_url, acknowledged)
        elapsed = time.perf_counter() - started
    finally:
        stack.down(drop=True)
        release_redis_pair(
            "127.0.0.1", 6379, suffix, (stack.s.redis_messaging_db, stack.s.redis_docket_db)
        )
    keys = [r["idempotency_key"] for r in result["runs"]]
    run_ids = {r["id"] for r in result["runs"]}
    calls = [run for _, run in recorder.calls if run in run_ids]
    duplicates = (len(keys) - len(set(keys))) + (len(calls) - len(set(calls)))
    completed = {r["idempotency_key"] for r in result["completed"]}
    lost = len({f"nura-webhook:probe:{d}" for d in acknowledged} - completed)
    out = {
        "acknowledged": len(acknowledged),
        "completed": len(completed),
        "lost": lost,
        "duplicates": duplicates,
        "per_s": round(len(completed) / elapsed, 3),
        "seconds": round(elapsed, 1),
        "drain_s": None if drain_s is None else round(drain_s, 1),
    }
    print(f"  {name}: {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=30)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument(
        "--phases", default="single,scaled,outage", help="Which runs, comma-separated."
    )
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    skipped = {"acknowledged": 0, "lost": 0, "duplicates": 0, "per_s": None, "drain_s": None}
    root = Path(tempfile.mkdtemp(prefix="nura-bench-scale-"))
    recorder = Recorder().start()
    project = make_project(root / "project", recorder.url, rate_per_min=6000, schedule_seconds=None)
    try:
        single = (
            _phase(root, project, recorder, "single", args.webhooks, (1, 1, 1))
            if "single" in phases
            else skipped
        )
        scaled = (
            _phase(root, project, recorder, "scaled", args.webhooks, (2, 2, 3))
            if "scaled" in phases
            else skipped
        )
        outage = (
            _phase(root, project, recorder, "outage", args.webhooks, (2, 2, 3), outage=args.outage)
            if "outage" in phases
            else skipped
        )
    finally:
        recorder.stop()
    load = [round(x, 2) for x in os.getloadavg()]
    print(
        f"single {single['per_s']} runs/s, scaled {scaled['per_s']} runs/s "
        f"({(scaled['per_s'] or 0) / max(single['per_s'] or 0, 1e-9):.2f}x); "
        f"API down {args.outage:g} s: "
        f"drained {outage['drain_s']} s after it returned; load average {load}"
    )
    print(
        json.dumps(
            {
                "bench": "scale_out",
                "single_per_s": single["per_s"],
                "scaled_per_s": scaled["per_s"],
                "lost": single["lost"] + scaled["lost"] + outage["lost"],
                "duplicates": single["duplicates"] + scaled["duplicates"] + outage["duplicates"],
                "drain_s": outage["drain_s"],
                "load_avg": load,
            }
        )
    )


if __name__ == "__main__":
    main()
