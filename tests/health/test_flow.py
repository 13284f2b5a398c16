"""The `health-monitor` flow end to end on a real Prefect server, moto and real services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

pytestmark = pytest.mark.integration
RESPONSE_THRESHOLD = 5.0  # the default: this test is about the run, not latency


def _artifact(key: str, flow_run_id=None):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    run = ArtifactFilterFlowRunId(any_=[flow_run_id]) if flow_run_id else None
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]), flow_run_id=run)
        )


def _events(name: str, deadline: float = 10.0) -> list:
    import httpx
    from prefect.settings import PREFECT_API_URL

    end = time.monotonic() + deadline
    while True:
        body = {"filter": {"event": {"name": [name]}}, "limit": 50}
        found = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body).json()
        if found.get("events") or time.monotonic() > end:
            return found.get("events", [])
        time.sleep(0.3)  # the event persister writes asynchronously: nothing to inject


def run_flow_module(api_url: str) -> dict:
    """`python -m flows.health_monitor` as a deployment's process would run it."""
    env = dict(os.environ, PREFECT_API_URL=api_url)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.health_monitor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,  # a hang guard: the flow took 100 s at load 26 (two more steps since issue 18)
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"flow process took {time.perf_counter() - started:.1f}s")
    return json.loads(done.stdout.strip().splitlines()[-1])


# One backend is enough here: the stores are exercised on both in test_scenarios.py.
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.timeout(900)  # includes the session's Prefect server start on a busy machine
def test_flow_run_reports_alerts_artifacts_metrics_and_events(prefect_server, world) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    world.services["beta"].stop()
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        # One failed round is not confirmed yet (failure_threshold 2): no alert, no page.
        first = run_flow_module(prefect_server.api_url)
        assert first["services"]["beta"] == "unhealthy"
        assert not [a for a in first["alerts"] if a["key"] == "beta"]
        summary = run_flow_module(prefect_server.api_url)
        assert summary["overall"] == "unhealthy"
        assert summary["services"]["beta"] == "unhealthy"
        assert summary["services"]["alpha"] == "healthy"
        assert summary["services"]["prefect_api"] == "healthy"
        assert {
            "kind": "opened",
            "key": "beta",
            "level": "unhealthy",
            "severity": "high",
        } in summary["alerts"]
        # No channel is configured in this world: nothing is left undelivered.
        assert summary["undelivered"] == {}

        report = _artifact("health-report")
        assert report and "UNHEALTHY" in report[0].data and "git-ingest" in report[0].data
        sla = _artifact("health-sla")
        rows = json.loads(sla[0].data) if isinstance(sla[0].data, str) else sla[0].data
        assert any(row["service"] == "beta" and row["window"] == "1h" for row in rows)
        assert all("p95_ms" not in row and "availability_pct" in row for row in rows)
        latency = _artifact("health-sla-latency")
        rows = json.loads(latency[0].data) if isinstance(latency[0].data, str) else latency[0].data
        assert any(row["service"] == "alpha" and row["p95_ms"] is not None for row in rows)

        events = _events("nura.health.unhealthy")
        assert any(e["resource"]["prefect.resource.id"] == "nura.service.beta" for e in events)

    cw = boto3.client("cloudwatch", endpoint_url=world.moto, region_name="us-east-1")
    metrics = cw.list_metrics(Namespace=world.config.external_services.aws.cloudwatch.namespace)
    names = {m["MetricName"] for m in metrics["Metrics"]}
    assert {"Status", "LatencyP95", "Availability", "OverallStatus"} <= names

    # The alert audit trail went to CloudWatch Logs as JSON records.
    logs = boto3.client("logs", endpoint_url=world.moto, region_name="us-east-1")
    found = logs.get_log_events(logGroupName="nura-health-audit", logStreamName="health-alerts")
    records = [json.loads(e["message"]) for e in found["events"]]
    assert any(r["key"] == "beta" and r["kind"] == "opened" for r in records)
