"""Benchmark: 2,000 signed deliveries to a receiver that fails 20 % of first attempts.

    python -m benchmarks.webhook_delivery [--events 2000] [--fail-percent 20]

The receiver is the sandbox sink in its own process (it verifies every delivery with the
`standardwebhooks` library and dedupes by webhook-id); it fails the first attempt of a
deterministic 20 % of the ids with 503. Our side is the production path: every event
stored before its first attempt (SQLite store), signed, sent through the call layer
(per-target breaker, retries with full-jitter backoff), outcomes recorded; anything that
still fails is dead-lettered and redriven until the store is empty.

Baseline, in the same run: the same number of events, signed, posted once each over a
pooled httpx client with the same concurrency, no store, no retries, no call layer (what
a naive sender does); its `lost` is every failed first attempt.

Outage phase (`--outage-events`, 0 to skip): a second batch is submitted and the partner
goes down mid-batch for `--outage-seconds` (every request dropped unanswered, as while it
restarts); redrive passes run every 0.2 s (each as if a day had passed, so every dead
letter is due; the breaker keeps real time) until the store is empty. The target's
breaker opens; entries it refuses wait for its probes. Reported: lost, duplicates at the
partner, exhausted (all must be 0), per_s of the phase and how many requests the outage
cost. The phase's breaker cool-down is
`--cooldown` seconds (the default 300 s would make the phase last five minutes).

Rate limits: with `PREFECT_API_URL` set, the call layer leases from Prefect global
concurrency limits as in production; without it, the limiter is off (printed).

Last line: {"bench": "webhook_delivery", "events": N, "delivered": N, "lost": 0,
"per_s": ..., "p50_ms": ..., "p99_ms": ..., "outage": {"events", "lost", "duplicates",
"exhausted", "per_s", "requests", "redrive_passes"}}
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

from nura.platform.processes import StackError, wait_http


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_sink(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments.sandbox.webhook_sink", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30, proc, accept=lambda _: True)
    except StackError as exc:
        proc.kill()
        raise RuntimeError(f"the sink did not start: {exc}") from exc
    return proc


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def baseline(url: str, secret: str, events: int, concurrency: int) -> dict[str, float]:
    """Naive sender: one signed POST per event, no store, no retry, no call layer."""
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    signer = Webhook(secret)
    bodies = [json.dumps({"type": "bench", "data": {"n": i}}) for i in range(events)]
    latencies: list[float] = []
    with httpx.Client(limits=httpx.Limits(max_connections=concurrency)) as client:

        def post(i: int) -> int:
            started = time.perf_counter()
            now = datetime.now(UTC)
            msg_id = f"msg_base_{i}"
            headers = {
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signer.sign(msg_id, now, bodies[i]),
                "Content-Type": "application/json",
            }
            r = client.post(url, content=bodies[i].encode(), headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            return r.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            codes = list(pool.map(post, range(events)))
        elapsed = time.perf_counter() - started
    failed = sum(1 for c in codes if c >= 300)
    return {
        "per_s": events / elapsed,
        "lost": failed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": _percentile(latencies, 0.99),
    }


def outage_phase(
    sink_url: str, events: int, down_seconds: float, fail_after: int
) -> dict[str, float]:
    """Submit `events`; after `fail_after` arrive the partner drops everything for
    `down_seconds`; redrive until the store is empty."""
    import threading

    from nura import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.dead_letters import dead_letter_stats
    from nura.webhooks.delivery import OutgoingEvent, redrive_due, submit_events

    engine = get_engine(store_url())
    httpx.post(f"{sink_url}/reset")
    batch = [
        OutgoingEvent(type="bench.outage", data={"n": i}, id=f"msg_outage_{i}")
        for i in range(events)
    ]
    summaries: list[object] = []
    started = time.perf_counter()
    sender = threading.Thread(target=lambda: summaries.append(submit_events("bench", batch)))
    sender.start()
    while httpx.get(f"{sink_url}/received", timeout=30).json()["attempts"] < fail_after:
        time.sleep(0.01)
    httpx.post(f"{sink_url}/control", json={"down": True})
    went_down = time.perf_counter()
    sender.join()
    passes = 0
    while True:
        if went_down and time.perf_counter() - went_down >= down_seconds:
            httpx.post(f"{sink_url}/control", json={"down": False})
            went_down = 0.0
        stats = dead_letter_stats(engine)
        if not went_down and stats["count"] == stats["in_flight"] == 0:
            break
        passes += 1
        redrive_due(now=time.time() + passes * 86400)  # each pass a day later: all due
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    received = httpx.get(f"{sink_url}/received", timeout=30).json()
    accepted = {a["id"] for a in received["accepted"] if a["id"].startswith("msg_outage_")}
    return {
        "events": events,
        "lost": events - len(accepted),
        "duplicates": received["duplicates"],
        "exhausted": dead_letter_stats(engine)["exhausted"],
        "per_s": round(events / elapsed, 1),
        "requests": received["attempts"],
        "redrive_passes": passes,
        "seconds": round(elapsed, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--fail-percent", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--outage-events", type=int, default=1000)
    parser.add_argument("--outage-seconds", type=float, default=3.0)
    parser.add_argument("--cooldown", type=float, default=2.0)
    args = parser.parse_args(argv)

    port = _free_port()
    sink = _start_sink(port)
    sink_url = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="nura-bench-webhooks-"))
    from deployments.sandbox.webhook_sink import SANDBOX_SECRET

    config = {
        "api_gateway": {"circuit_breaker_cooldown_seconds": args.cooldown},
        "webhooks": {
            "outgoing": {
                "retry_attempts": 3,
                "timeout_seconds": 10,
                "concurrency": args.concurrency,
                "rate_limit_per_minute": 600_000,
                "allow_list": ["127.0.0.1"],
                "targets": {
                    "bench": {"url": f"{sink_url}/hooks/sandbox", "secret": SANDBOX_SECRET}
                },
            }
        },
    }
    (workdir / "integrations.yaml").write_text(yaml.safe_dump(config))
    os.environ["NURA_CONFIG"] = str(workdir / "integrations.yaml")
    os.environ["NURA_STORE_URL"] = f"sqlite:///{workdir / 'nura.db'}"
    os.environ["NURA_STATE_DIR"] = str(workdir)

    from nura import get_call_layer, store_url
    from nura.core.ratelimit import NoLimiter
    from nura.core.stores.db import get_engine
    from nura.core.stores.dead_letters import dead_letter_stats
    from nura.webhooks.delivery import OutgoingEvent, redrive_due, submit_events

    layer = get_call_layer()
    if not os.environ.get("PREFECT_API_URL"):
        layer.limiter = NoLimiter()
        print("rate limiter: off (no PREFECT_API_URL); set it to include Prefect leases")
    else:
        print(f"rate limiter: Prefect global concurrency limits at {os.environ['PREFECT_API_URL']}")

    try:
        # Baseline first, on its own ids, with the same failure share.
        httpx.post(f"{sink_url}/control", json={"fail_first_percent": args.fail_percent})
        base = baseline(f"{sink_url}/hooks/sandbox", SANDBOX_SECRET, args.events, args.concurrency)
        httpx.post(f"{sink_url}/reset")
        httpx.post(f"{sink_url}/control", json={"fail_first_percent": args.fail_percent})

        events = [
            OutgoingEvent(type="bench.event", data={"n": i, "pad": "x" * 200})
            for i in range(args.events)
        ]
        started = time.perf_counter()
        summary = submit_events("bench", events)
        rounds = 0
        engine = get_engine(store_url())
        while dead_letter_stats(engine)["count"] and rounds < 20:  # anything dead-lettered
            rounds += 1
            redrive_due(now=time.time() + 10**7)
        elapsed = time.perf_counter() - started
        received = httpx.get(f"{sink_url}/received", timeout=30).json()
        outage = (
            outage_phase(sink_url, args.outage_events, args.outage_seconds, args.outage_events // 5)
            if args.outage_events
            else None
        )
    finally:
        sink.terminate()
        sink.wait(10)

    ids = {o.id for o in summary.outcomes}
    accepted = {a["id"] for a in received["accepted"]}
    delivered = len(ids & accepted)
    lost = args.events - delivered
    first_failures = sum(1 for o in summary.outcomes if o.attempts > 1)
    per_s = args.events / elapsed
    print(f"events {args.events}, first attempts failed {first_failures} ({args.fail_percent:g} %)")
    print(
        f"nura: delivered {delivered}, lost {lost}, {per_s:.0f} events/s, p50 "
        f"{summary.p50_ms:.1f} ms, p99 {summary.p99_ms:.1f} ms (incl. retries/backoff), "
        f"dead-lettered {summary.pending}, redrive rounds {rounds}, duplicates at receiver "
        f"{received['duplicates']}, rejected signatures {len(received['rejected'])}"
    )
    print(
        f"baseline (signed, no store, no retries): {base['per_s']:.0f} events/s, lost "
        f"{base['lost']:.0f}, p50 {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms"
    )
    if outage:
        print(
            f"outage ({args.outage_events} events, partner down {args.outage_seconds:g} s "
            f"mid-batch, breaker cool-down {args.cooldown:g} s): lost {outage['lost']}, "
            f"duplicates {outage['duplicates']}, exhausted {outage['exhausted']}, "
            f"{outage['per_s']:.0f} events/s over {outage['seconds']} s, "
            f"{outage['requests']} requests at the partner, "
            f"{outage['redrive_passes']} redrive passes"
        )
    print(
        json.dumps(
            {
                "bench": "webhook_delivery",
                "events": args.events,
                "delivered": delivered,
                "lost": lost,
                "per_s": round(per_s, 1),
                "p50_ms": summary.p50_ms,
                "p99_ms": summary.p99_ms,
                "outage": outage,
            }
        )
    )


if __name__ == "__main__":
    main()
