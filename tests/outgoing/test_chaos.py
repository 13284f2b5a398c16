"""Chaos: the target is down for the first N attempts and the sender is killed midway.

A first process stores 120 events and starts delivering them to a sink that fails its
first 40 attempts and answers slowly; it is SIGKILLed once some deliveries arrived. A new
process then runs the redrive until nothing is left. From the receiver's point of view
every event arrives exactly once (deduplicated by `webhook-id`), and the store says
every entry was delivered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.outgoing.conftest import outgoing_config

pytestmark = pytest.mark.integration

EVENTS = 120

SENDER = f"""
from nura.webhooks.delivery import OutgoingEvent, submit_events
events = [
    OutgoingEvent(type="git.push", data={{"n": i}}, id=f"msg_chaos_{{i}}")
    for i in range({EVENTS})
]
submit_events("sandbox", events)
print("SENDER FINISHED")
"""

REDRIVER = """
import time
from nura import store_url
from nura.core.stores.dead_letters import dead_letter_stats
from nura.core.stores.db import get_engine
from nura.webhooks.delivery import redrive_due
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    redrive_due()
    stats = dead_letter_stats(get_engine(store_url()))
    if stats["count"] == 0 and stats["in_flight"] == 0 and stats["exhausted"] == 0:
        print("REDRIVE DONE", stats)
        break
    time.sleep(0.2)
else:
    raise SystemExit(f"not drained: {stats}")
"""


def _env(tmp_path: Path, sink_url: str, api_url: str) -> dict[str, str]:
    cfg = outgoing_config(
        sink_url,
        retry_attempts=1,
        concurrency=4,
        dead_letters={
            "redrive_base_minutes": 0.002,  # 0.12 s, 0.24 s, ... (the schedule, sped up)
            "max_redrives": 30,
            "lease_seconds": 1.5,
        },
    )
    # A breaker would turn the outage into instant dead letters; here the retries are
    # the point, so it stays closed (breakers have their own tests in the spine).
    cfg["webhooks"]["outgoing"]["circuit_breaker_threshold"] = 1000
    path = tmp_path / "chaos.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ)
    env.update(
        NURA_CONFIG=str(path),
        NURA_STORE_URL=f"sqlite:///{tmp_path / 'chaos.db'}",
        NURA_STATE_DIR=str(tmp_path / "state"),
        PREFECT_API_URL=api_url,
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    return env


def test_every_event_arrives_exactly_once_across_a_crash(prefect_server, sink, tmp_path) -> None:
    env = _env(tmp_path, sink.url, prefect_server.api_url)
    sink.control(fail_next=40, fail_status=503, latency_ms=40)
    sender = subprocess.Popen([sys.executable, "-c", SENDER], env=env, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(sink.received()["accepted"]) < 15:
        assert sender.poll() is None, "the sender finished before it could be killed"
        assert time.monotonic() < deadline, "no delivery arrived"
        time.sleep(0.05)
    os.kill(sender.pid, signal.SIGKILL)
    sender.wait(10)
    before = len(sink.received()["accepted"])
    assert before < EVENTS  # the crash really happened midway
    sink.control(latency_ms=0)

    redriver = subprocess.run(
        [sys.executable, "-c", REDRIVER], env=env, capture_output=True, text=True, timeout=120
    )
    assert redriver.returncode == 0, redriver.stderr[-2000:]
    got = sink.received()
    ids = [a["id"] for a in got["accepted"]]
    assert sorted(ids) == sorted(f"msg_chaos_{i}" for i in range(EVENTS))
    assert len(ids) == len(set(ids))
    assert got["rejected"] == []
    assert got["attempts"] >= EVENTS + 40  # the outage and any redelivery really happened
