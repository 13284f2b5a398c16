"""Confluence watch: Confluence calls of an hour of one-minute polls, against a baseline.

    python -m benchmarks.confluence_watch [--pages 1000] [--edits 12] [--latency-ms 20]

The Confluence test server (3 spaces, `--pages` each, `--latency-ms` per request) over
real HTTP; the watch's `poll` runs 60 times on an injected clock (one poll a minute), while
a seeded random generator edits and trashes pages between polls. Baseline: the same hour
polled per space, as the incremental sync asks (`changed_since`: one CQL search per space)
plus a trash listing per space and poll. Counts what each reported: every edit and trash
once (no duplicate, none missed) is the condition for the call counts to mean anything.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from deployments.sandbox.confluence_server import ConfluenceServer
from nura.config import IntegrationsConfig
from nura.confluence.client import ConfluenceClient
from nura.confluence.watch import PageChange, WatchState, poll
from nura.core.breaker import CircuitBreakers
from nura.core.layer import CallLayer
from nura.core.ratelimit import NoLimiter
from nura.core.stores.db import get_engine

SPACES = ["TECH", "DOCS", "ARCH"]
EMAIL, TOKEN = "bot@example.com", "sandbox-token"
START = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now.timestamp()


def client_for(server: ConfluenceServer, state_dir: Path) -> ConfluenceClient:
    cfg = IntegrationsConfig.model_validate(
        {"external_services": {"confluence": {"base_url": server.url}}}
    )
    layer = CallLayer(
        cfg.policies(),
        breakers=CircuitBreakers(get_engine(f"sqlite:///{state_dir / 'breakers.db'}")),
        limiter=NoLimiter(),
    )
    return ConfluenceClient(server.url, httpx.BasicAuth(EMAIL, TOKEN), layer=layer)


def baseline_poll(
    client: ConfluenceClient, space_ids: dict[str, str], since: datetime, state: dict[str, Any]
) -> list[tuple[str, str, int]]:
    """Per space: the sync's CQL search and a trash listing (what a watch without the
    combined query and the trash cadence would ask)."""
    found = []
    for key in SPACES:
        for hit in client.changed_since(key, since):
            version = int(hit["version"]["number"])
            if state["seen"].get(hit["id"], 0) < version:
                state["seen"][hit["id"]] = version
                found.append(("updated", str(hit["id"]), version))
        for page in client.iter_pages(space_ids[key], status="trashed"):
            if page["id"] not in state["trashed"]:
                state["trashed"].add(page["id"])
                found.append(("removed", str(page["id"]), int(page["version"]["number"])))
    return found


def run(pages: int, edits: int, latency_ms: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    clock = Clock()
    server = ConfluenceServer(email=EMAIL, api_token=TOKEN)
    server.clock = clock
    server.generate(SPACES, pages, body_bytes=500)
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="nura-watch-bench-"))
    try:
        server.set_faults(latency_ms=latency_ms)
        client = client_for(server, tmp)
        space_ids = {k: server.spaces[k]["id"] for k in SPACES}
        ids = sorted(server.pages, key=int)
        minutes = sorted(rng.sample(range(1, 59), edits))
        trash_minutes = set(rng.sample(minutes, max(1, edits // 6)))
        state = WatchState()
        base_state: dict[str, Any] = {"seen": {}, "trashed": set()}
        expected: set[tuple[str, str, int]] = set()
        reported: list[tuple[str, str, int]] = []
        base_reported: list[tuple[str, str, int]] = []
        watch_calls: list[int] = []
        base_calls: list[int] = []
        poll_ms: list[float] = []
        idle_calls: list[int] = []
        for minute in range(61):
            clock.now = START + timedelta(minutes=minute, seconds=30)
            if minute in minutes:
                page = rng.choice([p for p in ids if server.pages[p]["status"] == "current"])
                if minute in trash_minutes:
                    server.trash(page)
                    expected.add(("removed", page, server.pages[page]["version"]))
                else:
                    server.edit(page)
                    expected.add(("updated", page, server.pages[page]["version"]))
            clock.now += timedelta(seconds=15)
            started = time.perf_counter()
            result = poll(
                SPACES,
                state,
                clock.now,
                client=client,
                overlap=timedelta(minutes=2),
                trash_every=timedelta(minutes=5),
            )
            poll_ms.append((time.perf_counter() - started) * 1000)
            if minute > 0:  # minute 0: the first poll, the trash baseline
                watch_calls.append(result.calls)
                if not result.changes and not result.trash_checked:
                    idle_calls.append(result.calls)
            reported += [_triple(c) for c in result.changes]
            before = client.calls
            since = clock.now - timedelta(minutes=2)
            found = baseline_poll(client, space_ids, since, base_state)
            if minute > 0:
                base_calls.append(client.calls - before)
                base_reported += found
        # a last trash check (the watch checks the trash every 5 minutes)
        clock.now += timedelta(minutes=5)
        final = poll(SPACES, state, clock.now, client=client, overlap=timedelta(minutes=2))
        reported += [_triple(c) for c in final.changes]
        watch_calls.append(final.calls)
    finally:
        server.stop()
    return {
        "pages": pages * len(SPACES),
        "polls": len(watch_calls),
        "edits": len(expected),
        "idle_calls_per_poll": statistics.mean(idle_calls) if idle_calls else None,
        "watch_calls_per_hour": sum(watch_calls),
        "baseline_calls_per_hour": sum(base_calls),
        "ratio": round(sum(base_calls) / max(1, sum(watch_calls)), 2),
        "reported": len(reported),
        "duplicates": len(reported) - len(set(reported)),
        "missed": len(expected - set(reported)),
        "baseline_missed": len(expected - set(base_reported)),
        "poll_ms_p50": round(statistics.median(poll_ms), 1),
        "poll_ms_max": round(max(poll_ms), 1),
    }


def _triple(change: PageChange) -> tuple[str, str, int]:
    return (change.kind, change.page_id, change.version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000, help="pages per space (3 spaces)")
    parser.add_argument("--edits", type=int, default=12, help="edits and trashes in the hour")
    parser.add_argument("--latency-ms", type=int, default=20, help="per Confluence request")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average {load:.2f}; {args.pages} pages x {len(SPACES)} spaces")
    figures = run(args.pages, args.edits, args.latency_ms, args.seed)
    for name, value in figures.items():
        print(f"  {name:>24}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
