"""The call layer across processes, through a real Prefect server on PostgreSQL.

Two separate processes run the `call-layer-demo` flow against one local HTTP service that
shares one configured rate limit; the server-side arrival times show the limit. A breaker
opened in one process is seen open in another, without touching the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from nura.core.errors import CircuitOpen
from nura.core.runtime import get_call_layer

pytestmark = pytest.mark.integration

RATE_PER_MIN = 1200  # 20 calls/s; the limit's burst is one second of calls (20)
CALLS_EACH = 100


def run_demo(calls: int, service: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.call_layer_demo",
            "--service",
            service,
            "--calls",
            str(calls),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_rate_limit_holds_across_two_processes(prefect_server, flaky_service, nura_config):
    nura_config(
        {
            "external_services": {
                "partners": {
                    "shared": {"base_url": flaky_service.url, "rate_limit_per_minute": RATE_PER_MIN}
                }
            }
        }
    )
    env = dict(os.environ)
    procs = [run_demo(CALLS_EACH, "shared", env) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
        assert "'ok': 100" in out, out
    times = sorted(httpx.get(f"{flaky_service.url}/stats").json()["times"])
    assert len(times) == 2 * CALLS_EACH
    rate = RATE_PER_MIN / 60
    burst = int(rate)  # calls the limit admits at once before decay governs
    steady = (len(times) - burst) / (times[-1] - times[0])
    span = times[-1] - times[0]
    per_second = [sum(1 for t in times if int(t - times[0]) == s) for s in range(int(span) + 1)]
    print(f"configured {rate}/s, measured {steady:.2f}/s over {span:.2f}s; per second {per_second}")
    # The limit is shared: two processes together stay within 10 % of one configured rate
    # (a per-process limit would give twice it). Below it only means the callers were slow
    # (a loaded machine), not that the limit failed; far below it would be a starved limiter.
    assert steady <= rate * 1.10, steady
    assert steady >= rate * 0.5, steady
    # No one-second window exceeds a second's rate plus the burst.
    j = 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        assert i - j + 1 <= rate + burst + 1


def test_breaker_opened_by_one_process_is_open_in_another(
    prefect_server, flaky_service, nura_config
):
    nura_config(
        {
            "api_gateway": {"circuit_breaker_cooldown_seconds": 600, "backoff_base_seconds": 0.01},
            "external_services": {
                "partners": {
                    "fragile": {
                        "base_url": flaky_service.url,
                        "circuit_breaker_threshold": 2,
                        "retry_attempts": 0,
                        "rate_limit_per_minute": 6000,
                    }
                }
            },
        }
    )
    httpx.post(f"{flaky_service.url}/control", json={"fail_next": 1000, "fail_status": 500})
    proc = run_demo(3, "fragile", dict(os.environ))
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    assert "CircuitOpen" in out or "ServerError" in out, out
    before = httpx.get(f"{flaky_service.url}/stats").json()["requests"]
    # Two failures open the breaker; the demo's calls run concurrently, so a third may
    # already have been in flight when it opened.
    assert 2 <= before <= 3
    with pytest.raises(CircuitOpen):
        get_call_layer().request("fragile", "GET", "/echo")
    assert httpx.get(f"{flaky_service.url}/stats").json()["requests"] == before
