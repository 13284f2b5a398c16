"""Webhook ingress under load: 5,000 signed deliveries, 64 connections, a Prefect outage.

    python -m benchmarks.webhook_ingress [--requests 5000] [--connections 64]

1. Starts its own Prefect server (PostgreSQL database of its own) and deploys `git-ingest`.
2. Baseline: creates flow runs directly through Prefect's client
   (`create_flow_run_from_deployment`, 16 in flight) and measures runs/s.
3. Starts the receiver (`nura webhooks serve`, dispatcher inside, SQLite inbox) as a
   subprocess and fires the deliveries at it from another subprocess over 64 keep-alive
   connections, each sending its next signed request when the previous one is answered
   (uvloop, callbacks: the generator shares the two cores with what it measures); 500 of
   them repeat earlier delivery ids. The Prefect server is stopped `--outage-after`
   seconds after the load begins and restarted when it ends.
4. Waits until every delivery is dispatched, then counts flow runs per idempotency key:
   `lost` = acknowledged deliveries without exactly one run; `duplicate_runs` = extra runs.

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast
from uuid import UUID

SECRET = "bench-secret"
ENDPOINT = "bench"


# -- the load generator (runs in its own process) ---------------------------------------
def _request(port: int, body: bytes, delivery: str) -> bytes:
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST /webhooks/{ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {sig}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the load, one request at a time.

    Driven from its callbacks: when a response is complete the next request is written
    from `data_received`, with no coroutine, future or queue per request. The load
    generator shares the two cores with the receiver it measures, so every microsecond it
    spends is taken from the system under test. A request's latency runs from handing
    its bytes to the transport until the last byte of its response has been parsed.
    """

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        # In flight: delivery id, request bytes, attempt, perf_counter at write.
        self.current: tuple[str, bytes, int, float] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, delivery: str, data: bytes, attempt: int) -> None:
        assert self.transport is not None
        self.current = (delivery, data, attempt, time.perf_counter())
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.current is None:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        done = time.perf_counter()
        del self.buffer[: end + 4 + length]
        delivery, _, _, sent = self.current
        self.current = None
        self.load.completed(self, delivery, int(lines[0].split()[1]), sent, done)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.current is not None:
            delivery, data, attempt, _ = self.current
            self.current = None
            self.load.lost(delivery, data, attempt)


class _Load:
    """Closed loop: each connection sends its next delivery once the previous is answered."""

    def __init__(self, port: int, plan: list[str], bodies: dict[str, bytes]) -> None:
        self.port = port
        self.plan = collections.deque(plan)
        self.bodies = bodies
        self.latencies: list[float] = []
        self.slow: list[tuple[float, float]] = []  # (latency ms, start s into the run)
        self.statuses: dict[int, int] = {}
        self.acked: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.open = 0
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.started = time.perf_counter()

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Connection(self), "127.0.0.1", self.port)
        return conn

    async def run(self, connections: int) -> float:
        conns = await asyncio.gather(*(self.connect() for _ in range(connections)))
        self.open = len(conns)
        for conn in conns:
            self.next(conn)
        await self.finished
        return time.perf_counter() - self.started

    def next(self, conn: _Connection) -> None:
        if not self.plan:
            assert conn.transport is not None
            conn.transport.close()
            self.open -= 1
            if self.open == 0 and not self.finished.done():
                self.finished.set_result(None)
            return
        delivery = self.plan.popleft()
        conn.send(delivery, _request(self.port, self.bodies[delivery], delivery), 0)

    def completed(
        self, conn: _Connection, delivery: str, status: int, sent: float, done: float
    ) -> None:
        ms = (done - sent) * 1000
        self.latencies.append(ms)
        self.slow.append((ms, sent - self.started))
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status in (200, 202):
            self.acked.add(delivery)
        self.next(conn)

    def lost(self, delivery: str, data: bytes, attempt: int) -> None:
        """The connection closed mid-request: retry on a new one (3 attempts in all)."""
        task = asyncio.get_running_loop().create_task(self._retry(delivery, data, attempt + 1))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _retry(self, delivery: str, data: bytes, attempt: int) -> None:
        try:
            conn = await self.connect()
        except OSError as exc:
            if not self.finished.done():
                self.finished.set_exception(exc)
            return
        if attempt < 3:
            conn.send(delivery, data, attempt)
        else:  # given up on this delivery: not acknowledged, not timed
            self.next(conn)


async def _load(port: int, n: int, connections: int, redeliveries: int) -> dict[str, Any]:
    unique = n - redeliveries
    ids = [f"bench-{i:05d}" for i in range(unique)]
    rng = random.Random(7)
    plan = list(ids)
    # Redeliveries of earlier ids, spread over the second half of the run.
    for k in range(redeliveries):
        pos = unique // 2 + (k * (len(plan) - unique // 2)) // redeliveries + k
        plan.insert(min(pos, len(plan)), rng.choice(ids[: unique // 2]))
    bodies = {}
    for d in ids:
        payload = {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": hashlib.sha1(d.encode()).hexdigest(),  # noqa: S324 - a fake commit id
            "repository": {"full_name": "bench/repo", "name": "repo", "owner": {"login": "bench"}},
            "commits": [{"id": d, "added": ["README.md"], "modified": [], "removed": []}],
        }
        bodies[d] = json.dumps(payload).encode()
    print("load starts", flush=True)  # the orchestrator times the Prefect outage from here
    started_at = time.time()
    load = _Load(port, plan, bodies)
    elapsed = await load.run(connections)
    latencies = sorted(load.latencies)
    slow = sorted(load.slow, reverse=True)
    return {
        "elapsed_s": elapsed,
        "statuses": load.statuses,
        "accepted": load.statuses.get(202, 0),
        "duplicates": load.statuses.get(200, 0),
        "acked_ids": sorted(load.acked),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "requests": len(latencies),
        "started_at": started_at,
        # When the slowest 1 % started (s into the load): bunched = one stall, else spread.
        "slowest_started_s": sorted(round(at, 2) for _, at in slow[: max(1, len(slow) // 100)]),
    }


def client_main(port: int, n: int, connections: int, redeliveries: int, out: str) -> None:
    try:  # uvloop when installed (uvicorn's extra): less of the client's CPU per request
        import uvloop
    except ImportError:
        result = asyncio.run(_load(port, n, connections, redeliveries))
    else:
        result = uvloop.run(_load(port, n, connections, redeliveries))
    Path(out).write_text(json.dumps(result))


# -- orchestration ------------------------------------------------------------------------
async def _baseline(api_url: str, deployment_id: str, n: int) -> float:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with sem:
                    await client.create_flow_run_from_deployment(
                        UUID(deployment_id), parameters={"payload": {"i": i}}, tags=["baseline"]
                    )

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return n / (time.perf_counter() - t0)


async def _bulk_baseline(api_url: str, deployment_id: str, n: int) -> float:
    """Runs/s through the bulk endpoint alone, 100 a call (what the dispatcher uses): the
    Prefect server's own ceiling for the dispatch rate, measured on the same server."""
    import httpx  # here: the load client process imports this module and needs none of it

    async with httpx.AsyncClient(base_url=api_url + "/", timeout=120) as client:
        t0 = time.perf_counter()
        for start in range(0, n, 100):
            body = [
                {"parameters": {"payload": {"i": i}}, "tags": ["baseline-bulk"]}
                for i in range(start, min(n, start + 100))
            ]
            r = await client.post(f"deployments/{deployment_id}/create_flow_run/bulk", json=body)
            r.raise_for_status()
        return n / (time.perf_counter() - t0)


async def _runs_by_key(api_url: str, deployment_id: str) -> dict[str, set[str]]:
    """Idempotency key -> distinct flow run ids (paged; call it once nothing creates runs)."""
    import httpx

    runs: dict[str, set[str]] = {}
    async with httpx.AsyncClient(base_url=api_url + "/", timeout=60) as c:
        offset = 0
        while True:
            r = await c.post(
                "flow_runs/filter",
                json={
                    "deployments": {"id": {"any_": [deployment_id]}},
                    "flow_runs": {"tags": {"all_": ["nura-webhook"]}},
                    "limit": 200,
                    "offset": offset,
                    "sort": "ID_DESC",
                },
            )
            r.raise_for_status()
            page = r.json()
            for run in page:
                runs.setdefault(run.get("idempotency_key") or "", set()).add(run["id"])
            if len(page) < 200:
                return runs
            offset += 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--redeliveries", type=int, default=500)
    parser.add_argument("--baseline-runs", type=int, default=300)
    parser.add_argument("--outage-after", type=float, default=0.25, help="s after load starts")
    parser.add_argument("--drain-timeout", type=float, default=600, help="s to wait for dispatch")
    parser.add_argument("--client", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(
            int(args.client[0]), args.requests, args.connections, args.redeliveries, args.client[1]
        )
        return

    import yaml

    from nura.platform.processes import wait_http
    from tests.support.servers import PrefectServer, free_port, temp_database

    work = Path(tempfile.mkdtemp(prefix="nura-bench-wh-"))
    port = free_port()
    config = {
        "platform": {"state_dir": str(work / "state")},
        "webhooks": {
            "incoming": {
                ENDPOINT: {
                    "url_path": f"/webhooks/{ENDPOINT}",
                    "event_types": ["git.push"],
                    "scheme": "github",
                    "secret_env": "NURA_BENCH_WEBHOOK_SECRET",
                    "rate_limit_per_minute": 10_000_000,
                }
            },
            "receiver": {"host": "127.0.0.1", "port": port},
            "dispatcher": {"outage_probe_max_seconds": 1.0},
        },
    }
    (work / "integrations.yaml").write_text(yaml.safe_dump(config))
    store = f"sqlite:///{work / 'inbox.db'}"
    with temp_database("nura_bench_wh") as db:
        server = PrefectServer(db)
        receiver: subprocess.Popen[bytes] | None = None
        try:
            server.start(timeout=300)
            from prefect.settings import PREFECT_API_URL, temporary_settings

            from flows.git_ingest import git_ingest

            with temporary_settings({PREFECT_API_URL: server.api_url}):
                runner_deployment: Any = git_ingest.to_deployment(name="git-ingest")
                deployment_id = str(runner_deployment.apply())
            baseline = asyncio.run(_baseline(server.api_url, deployment_id, args.baseline_runs))
            print(
                f"baseline: direct create_flow_run_from_deployment {baseline:.1f} runs/s",
                flush=True,
            )
            bulk = asyncio.run(_bulk_baseline(server.api_url, deployment_id, args.baseline_runs))
            print(f"Prefect's bulk endpoint alone, 100 a call: {bulk:.1f} runs/s", flush=True)

            env = dict(
                os.environ,
                NURA_CONFIG=str(work / "integrations.yaml"),
                NURA_STORE_URL=store,
                NURA_BENCH_WEBHOOK_SECRET=SECRET,
                PREFECT_API_URL=server.api_url,
            )
            receiver = subprocess.Popen(
                [sys.executable, "-m", "nura.cli.main", "webhooks", "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(work / "receiver.log", "wb"),  # noqa: SIM115
            )
            wait_http(f"http://127.0.0.1:{port}/healthz", 120)
            out = work / "client.json"
            client = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.webhook_ingress",
                    "--requests",
                    str(args.requests),
                    "--connections",
                    str(args.connections),
                    "--redeliveries",
                    str(args.redeliveries),
                    "--client",
                    str(port),
                    str(out),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            load_avg = os.getloadavg()
            # The client says when its load begins (after its start-up, ~0.5 s): the outage
            # is timed from there, so it falls inside the load however fast that runs.
            assert client.stdout is not None
            client.stdout.readline()
            time.sleep(args.outage_after)
            outage_start = time.monotonic()
            stop_at = time.time()
            server.stop()
            stopped_at = time.time()
            print(f"Prefect server stopped {args.outage_after:.2f}s into the load", flush=True)
            client.wait(600)
            client.stdout.close()
            server.start(timeout=300)
            print(f"Prefect server back after {time.monotonic() - outage_start:.1f}s", flush=True)
            load = json.loads(out.read_text())

            from nura.core.stores.db import get_engine
            from nura.core.stores.inbox import dispatch_lags, status_counts

            engine = get_engine(store)
            back = time.monotonic()
            waiting_when_back = status_counts(engine)["accepted"]
            acked = set(load["acked_ids"])
            deadline = time.monotonic() + args.drain_timeout
            while time.monotonic() < deadline:
                counts = status_counts(engine)
                if counts["accepted"] == 0:
                    break
                time.sleep(0.5)
            drained = time.monotonic()
            dispatch_per_s = (waiting_when_back - counts["accepted"]) / max(drained - back, 1e-9)
            # Stop the dispatcher first: runs created while paging would shift the pages.
            receiver.terminate()
            receiver.wait(30)
            print(
                f"dispatch wait ended {drained - outage_start:.1f}s into the outage: {counts}; "
                f"{waiting_when_back} waiting when the server came back, dispatched at "
                f"{dispatch_per_s:.1f} runs/s (the bulk endpoint alone: {bulk:.1f} runs/s)",
                flush=True,
            )
            runs = asyncio.run(_runs_by_key(server.api_url, deployment_id))
            from nura.core.stores.inbox import list_entries

            entries = {e["delivery_id"]: e for e in list_entries(engine, None, 100_000)}
            # Lost: acknowledged but not in the inbox, or dispatched without a run to show.
            # Still `accepted` when the wait ended is pending, not lost (reported apart).
            pending = sum(1 for d in acked if d in entries and entries[d]["status"] == "accepted")
            lost = sum(
                1
                for d in acked
                if d not in entries
                or (
                    entries[d]["status"] != "accepted"
                    and not runs.get(f"nura-webhook:{ENDPOINT}:{d}")
                )
            )
            duplicate_runs = sum(max(0, len(ids) - 1) for ids in runs.values())
            lags = sorted(dispatch_lags(engine))
            lag_p50 = statistics.median(lags) if lags else None
        finally:
            if receiver is not None and receiver.poll() is None:
                receiver.terminate()
                receiver.wait(20)
            server.stop()

    accepted_per_s = (load["accepted"] + load["duplicates"]) / load["elapsed_s"]
    print(
        f"load: {load['requests']} requests in {load['elapsed_s']:.2f}s over "
        f"{args.connections} connections, statuses {load['statuses']}; "
        f"load average before {load_avg[0]:.2f}, after {os.getloadavg()[0]:.2f} (1 min)"
    )
    t0 = load["started_at"]
    slow = load["slowest_started_s"]
    print(
        f"Prefect stop: requested {stop_at - t0:.2f}s, done {stopped_at - t0:.2f}s into the "
        f"load; the slowest 1% started {slow[0]:.2f}-{slow[-1]:.2f}s "
        f"(median {statistics.median(slow):.2f}s)"
    )
    print(
        f"accepted (202+200 duplicate) {accepted_per_s:.0f}/s, "
        f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms"
    )
    print(
        f"unique deliveries acknowledged {len(acked)}, flow runs "
        f"{sum(len(ids) for ids in runs.values())}, "
        f"lost {lost}, still pending {pending}, duplicate runs {duplicate_runs}, "
        f"dispatch lag p50 {lag_p50 if lag_p50 is not None else float('nan'):.2f}s"
    )
    print(
        json.dumps(
            {
                "bench": "webhook_ingress",
                "requests": load["requests"],
                "accepted_per_s": round(accepted_per_s, 1),
                "p50_ms": round(load["p50_ms"], 2),
                "p99_ms": round(load["p99_ms"], 2),
                "lost": lost,
                "duplicate_runs": duplicate_runs,
                "dispatch_lag_p50_s": round(lag_p50, 3) if lag_p50 is not None else None,
                "baseline_direct_create_flow_run_per_s": round(baseline, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
