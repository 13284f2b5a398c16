"""The scale path: Prefect on PostgreSQL, two workers on one pool, stores on PostgreSQL.

20 flow runs of `call-layer-demo` are spread over two process workers in separate
processes; every run calls one local service that shares one rate limit, and the service's
arrival times show the limit holding across all the flow processes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nura.core.ratelimit import LimitSpec, PrefectSlotLeaser, limit_name
from tests.support.rates import worst_window
from tests.support.servers import temp_database

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
RATE_PER_MIN = 600  # 10 calls/s shared by every worker's flow processes
RUNS = 20
CALLS_PER_RUN = 5


async def _create_runs(n: int, params: dict) -> list[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name("call-layer-demo/call-layer-demo")
        runs = [
            await client.create_flow_run_from_deployment(deployment.id, parameters=params)
            for _ in range(n)
        ]
    return [str(r.id) for r in runs]


async def _wait_runs(ids: list[str], limit_s: float) -> dict[str, str]:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + limit_s
    async with get_client() as client:
        while True:
            states = {i: (await client.read_flow_run(i)).state_type.value for i in ids}
            if all(s in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for s in states.values()):
                return states
            if time.monotonic() > deadline:
                return states
            await asyncio.sleep(1)


def _diagnose(api: str, bad: list[str], states: dict[str, str]) -> str:
    """Why runs did not complete: their state messages and error logs."""
    lines = [f"{len(bad)} of {len(states)} runs did not complete"]
    for run_id in bad:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=30).json()
        lines.append(f"{run_id} {run['state_type']}: {run['state'].get('message')}")
        logs = httpx.post(
            f"{api}/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [run_id]}, "level": {"ge_": 30}}, "limit": 20},
            timeout=30,
        ).json()
        lines += [f"  {log['message'][:800]}" for log in logs]
    return "\n".join(lines)


def _workers_of(api: str, ids: list[str]) -> dict[str, str]:
    """flow run id -> worker name, from the workers' `submitted-flow-run` events."""
    body = {"filter": {"event": {"name": ["prefect.worker.submitted-flow-run"]}}, "limit": 50}
    page = httpx.post(f"{api}/events/filter", json=body, timeout=30)
    page.raise_for_status()
    data = page.json()
    events = list(data["events"])
    while data.get("next_page"):  # 50 events a page at most
        data = httpx.get(data["next_page"], timeout=30).json()
        events += data["events"]
    out = {}
    for event in events:
        worker = event["resource"].get("prefect.resource.name")
        for related in event.get("related", []):
            rid = related["prefect.resource.id"]
            if rid.startswith("prefect.flow-run."):
                out[rid.removeprefix("prefect.flow-run.")] = worker
    return {i: out.get(i, "?") for i in ids}


@pytest.mark.timeout(900)
def test_twenty_runs_over_two_workers_share_one_rate_limit(
    prefect_server, flaky_service, nura_config, tmp_path
):
    with temp_database("nura_scale_store") as db:
        store = db.replace("postgresql://", "postgresql+psycopg://")
        nura_config(
            {
                "external_services": {
                    "partners": {
                        "demo": {
                            "base_url": flaky_service.url,
                            "rate_limit_per_minute": RATE_PER_MIN,
                        }
                    }
                }
            },
            store=store,
        )
        env = dict(os.environ)
        boot = subprocess.run(
            [sys.executable, "-m", "nura.cli.main", "bootstrap", "--quiet"],
            env=env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert boot.returncode == 0, boot.stdout + boot.stderr
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "worker",
                    "start",
                    "--pool",
                    "nura-process",
                    "--type",
                    "process",
                    "--name",
                    f"scale-worker-{i}",
                    "--limit",
                    "10",
                ],
                env=env,
                cwd=PROJECT,
                stdout=open(tmp_path / f"w{i}.log", "wb"),
                stderr=subprocess.STDOUT,
            )
            for i in (1, 2)
        ]
        try:
            ids = asyncio.run(
                _create_runs(RUNS, {"params": {"service": "demo", "calls": CALLS_PER_RUN}})
            )
            states = asyncio.run(_wait_runs(ids, limit_s=400))
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:  # a loaded machine: no reason to fail
                    w.kill()
                    w.wait()
        bad = [i for i, st in states.items() if st != "COMPLETED"]
        assert not bad, _diagnose(prefect_server.api_url, bad, states)

        by_worker = _workers_of(prefect_server.api_url, ids)
        counts = {w: list(by_worker.values()).count(w) for w in set(by_worker.values())}
        print(f"runs per worker: {counts}")
        assert set(counts) == {"scale-worker-1", "scale-worker-2"}, counts

        times = sorted(httpx.get(f"{flaky_service.url}/stats").json()["times"])
        assert len(times) == RUNS * CALLS_PER_RUN  # nothing lost, nothing doubled
        spec = LimitSpec(limit_name("demo"), RATE_PER_MIN, PrefectSlotLeaser.burst_seconds)
        rate, burst = spec.per_second, spec.burst_calls
        # The ceiling ratelimit.py documents (see tests/spine/test_cross_process.py): any
        # window between two arrivals holds at most `rate * (W + token_ttl) + burst` calls,
        # across both workers and all their runs. No lower bound: a loaded machine is slower.
        ceiling = burst + rate * PrefectSlotLeaser().token_ttl
        worst = worst_window(times, rate)
        print(f"{len(times)} calls over {times[-1] - times[0]:.1f}s; worst window {worst}")
        assert worst.excess <= ceiling, (worst, ceiling)

        # The stores were on PostgreSQL: every call left its record there.
        from sqlalchemy import func, select

        from nura.core.stores.db import get_engine
        from nura.core.stores.tables import call_records

        with get_engine(store).connect() as conn:
            recorded = conn.execute(
                select(func.count())
                .select_from(call_records)
                .where(call_records.c.service == "demo")
            ).scalar()
        assert recorded == RUNS * CALLS_PER_RUN
        from nura.core.stores.db import reset_engines

        reset_engines()
