"""The HA layout under faults: `nura.platform.ha` with 2 API servers, background services,
2 receivers, 2 dispatchers and 3 workers on the machine's PostgreSQL and Redis.

A steady stream of signed webhooks goes to both receivers (each acknowledged delivery
should become exactly one run of `ha-probe`), `ha-probe` also runs on an interval
schedule, and one API server, one receiver, one dispatcher and one worker are SIGKILLed,
each at its own moment, then started again. Every run calls a recording service through
the call layer under one shared rate limit. Afterwards: every acknowledged webhook became
exactly one flow run, every run ran once, none is stuck, the rate limit held across all
workers, and a breaker opened through one process is open for every process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from deployments.sandbox.ha_probe import (
    SECRET,
    SECRET_ENV,
    Recorder,
    make_project,
    probe_runs,
    send,
)
from nura.core.ratelimit import LimitSpec, PrefectSlotLeaser, limit_name
from nura.platform.ha import HaSettings, HaStack, claim_redis_pair, release_redis_pair
from tests.support.rates import worst_window
from tests.support.servers import postgres_available


def _redis_available() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_available(), reason="needs PostgreSQL on 127.0.0.1:5432"),
    pytest.mark.skipif(not _redis_available(), reason="needs Redis on 127.0.0.1:6379"),
]

RATE_PER_MIN = 120  # 2 calls/s shared by every worker's flow processes
SEND_EVERY = 1.0  # one webhook a second, alternating between the receivers
SEND_SECONDS = 50
WEBHOOK_KEY = "nura-webhook:probe:"


@pytest.mark.timeout(1500)
def test_sigkill_one_of_each_loses_and_doubles_nothing(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    pair = claim_redis_pair("127.0.0.1", 6379, owner=suffix)
    recorder = Recorder().start()
    project = make_project(tmp_path / "project", recorder.url, rate_per_min=RATE_PER_MIN)
    config = yaml.safe_load((project / "integrations.yaml").read_text())
    config["platform"] = {"pending_recovery_seconds": 45}
    (project / "integrations.yaml").write_text(yaml.safe_dump(config))
    settings = HaSettings(
        state_dir=tmp_path / "ha",
        project=project,
        config_path=project / "integrations.yaml",
        prefect_database=f"nura_ha_prefect_{suffix}",
        store_database=f"nura_ha_store_{suffix}",
        redis_messaging_db=pair[0],
        redis_docket_db=pair[1],
        api_servers=2,
        receivers=2,
        dispatchers=2,
        workers=3,
        env={SECRET_ENV: SECRET, "NURA_NO_ATTACH": "1"},
    )
    stack = HaStack(settings, say=lambda m: print("ha:", m, flush=True))
    try:
        state = stack.up()
        receivers = [stack.state.specs[f"receiver-{i}"]["args"][-1] for i in (1, 2)]
        receiver_urls = [f"http://127.0.0.1:{p}" for p in receivers]
        acknowledged: list[str] = []
        faults = {
            8: ("kill", "api-1"),
            14: ("start", "api-1"),
            18: ("kill", "receiver-1"),
            24: ("start", "receiver-1"),
            28: ("kill", "dispatcher-1"),
            34: ("start", "dispatcher-1"),
            38: ("kill", "worker-1"),
            44: ("start", "worker-1"),
        }
        started = time.monotonic()
        for n in range(int(SEND_SECONDS / SEND_EVERY)):
            tick = int(n * SEND_EVERY)
            if tick in faults:
                action, name = faults.pop(tick)
                print(f"t={tick}s {action} {name}", flush=True)
                if action == "kill":
                    stack.kill(name, group=not name.startswith("worker"))
                else:
                    stack.start(name)
            delivery = f"ha-{n}"
            code = send(receiver_urls[n % 2], delivery)
            if 200 <= code < 300:
                acknowledged.append(delivery)
            delay = started + (n + 1) * SEND_EVERY - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        assert all(stack.alive(name) for name in stack.state.pids), "a process is down"
        load_ended = datetime.now(UTC)  # scheduled slots up to here must have run

        # Drain: every acknowledged delivery's run, and the scheduled ones due so far, final.
        deadline = time.monotonic() + 600
        while True:
            runs = probe_runs(state.api_url)
            from_webhooks = [r for r in runs if r["idempotency_key"].startswith(WEBHOOK_KEY)]
            due = [
                r
                for r in runs
                if not r["idempotency_key"].startswith(WEBHOOK_KEY)
                and datetime.fromisoformat(r["expected_start_time"]) < load_ended
            ]
            final = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
            pending = [r for r in from_webhooks + due if r["state_type"] not in final]
            if len(from_webhooks) >= len(acknowledged) and not pending:
                break
            assert time.monotonic() < deadline, (
                f"not drained: {len(from_webhooks)} webhook runs of {len(acknowledged)}, "
                f"{len(pending)} not final: {[(r['name'], r['state_type']) for r in pending][:10]}"
            )
            time.sleep(3)

        # A breaker opened through one process is open for every other process.
        env = stack.nura_env()
        opener = (
            "from nura import get_call_layer; b = get_call_layer().breakers; "
            "[b.record_failure('probe', 1) for _ in range(2)]; "
            "print(b.snapshot('probe', fresh=True).state)"
        )
        checker = (
            "from nura import get_call_layer; "
            "print(get_call_layer().breakers.admit('probe', 300).allowed)"
        )
        opened = subprocess.run([sys.executable, "-c", opener], env=env, cwd=project,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert opened.stdout.strip().endswith("open"), opened.stdout + opened.stderr
        seen = subprocess.run([sys.executable, "-c", checker], env=env, cwd=project,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert seen.stdout.strip().endswith("False"), seen.stdout + seen.stderr
    finally:
        stack.down(drop=True)
        release_redis_pair("127.0.0.1", 6379, suffix, pair)
        recorder.stop()

    keys = [r["idempotency_key"] for r in from_webhooks]
    expected = {f"{WEBHOOK_KEY}{d}" for d in acknowledged}
    assert len(keys) == len(set(keys)), "a delivery became two runs"
    assert expected <= set(keys), f"lost: {sorted(expected - set(keys))[:5]}"
    assert len(acknowledged) >= 0.6 * (SEND_SECONDS / SEND_EVERY)  # the other receiver took over
    stuck = [r for r in from_webhooks + due if r["state_type"] != "COMPLETED"]
    assert not stuck, [(r["name"], r["state_type"], r["state"]["message"]) for r in stuck][:10]
    assert len(due) >= 3  # the schedule ran through the faults
    starts = [r["expected_start_time"] for r in due]
    assert len(starts) == len(set(starts)), "a scheduled slot ran twice"

    # Each run ran once: one recorded call per run, none from a run that does not exist.
    calls = recorder.calls
    by_run = {}
    for _, run_id in calls:
        by_run[run_id] = by_run.get(run_id, 0) + 1
    ran = {r["id"] for r in from_webhooks + due}
    assert all(by_run.get(run_id) == 1 for run_id in ran)  # (later scheduled runs also call)
    assert set(by_run.values()) == {1}, "a run ran twice"

    times = sorted(t for t, _ in calls)
    spec = LimitSpec(limit_name("probe"), RATE_PER_MIN, PrefectSlotLeaser.burst_seconds)
    ceiling = spec.burst_calls + spec.per_second * PrefectSlotLeaser().token_ttl
    worst = worst_window(times, spec.per_second)
    print(
        f"acknowledged {len(acknowledged)}, webhook runs {len(from_webhooks)}, scheduled "
        f"{len(due)}, calls {len(calls)}; worst window {worst}; load {os.getloadavg()}"
    )
    assert worst.excess <= ceiling, (worst, ceiling)
