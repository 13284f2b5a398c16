"""The `health-monitor` flow evaluates security alerts on every run, with nothing else deployed.

A burst of refused webhooks is recorded by the real receiver (in process, through
Starlette's TestClient, so the events carry the wall clock the flow reads); two flow runs
on a real Prefect server then open the alert once (the second run pages nobody), put it
in the health report artifact and emit the `nura.security.signature_failure` event.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from nura.core.stores.db import get_engine
from nura.platform.receiver_app import create_app
from tests.webhooks.helpers import config, github_headers, push_payload, secrets

pytestmark = pytest.mark.integration
KEY = "security.signature_failure.git_updates"


def _refused_burst(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    app = create_app(config(), engine=engine, secrets=secrets(), run_dispatcher=False)
    body = push_payload()
    with TestClient(app) as client:  # the lifespan's end flushes the events
        for i in range(n):
            headers = github_headers(body, f"flow-{i}", secret="wrong")
            assert client.post("/webhooks/git", content=body, headers=headers).status_code == 401


@pytest.mark.timeout(900)  # includes the session's Prefect server start on a busy machine
def test_health_monitor_runs_open_the_security_alert_once(
    prefect_server, moto_reset, nura_config, tmp_path
) -> None:
    from flows.health_monitor import HealthMonitorParams, health_monitor
    from tests.health.test_flow import _artifact, _events

    store = f"sqlite:///{tmp_path / 'flow.db'}"
    nura_config(
        {
            "external_services": {
                "aws": {"endpoint_url": moto_reset, "bedrock": {"lifecycle_check": False}}
            },
            "health_monitoring": {
                "check_timeout_seconds": 2,
                "publish_cloudwatch": False,
                "security_alerts": {"signature_failure": {"threshold": 5, "window_minutes": 10}},
            },
        },
        store=store,
    )
    _refused_burst(get_engine(store), 6)
    params = HealthMonitorParams(cloudwatch=False)
    first = health_monitor(params)
    opened = [a for a in first["alerts"] if a["key"] == KEY]
    assert opened == [{"kind": "opened", "key": KEY, "level": "unhealthy", "severity": "high"}]
    state = health_monitor(params, return_state=True)
    second = state.result()
    assert not [a for a in second["alerts"] if a["key"] == KEY]
    # This run's report: a run of another test that ends late writes the same key.
    report = _artifact("health-report", flow_run_id=state.state_details.flow_run_id)
    assert report and "## Security (last 24 h)" in report[0].data
    assert "endpoint git_updates | 6 | 5 in 10 min | 🔴 open" in report[0].data
    events = _events("nura.security.signature_failure")
    assert any(e["resource"]["prefect.resource.id"] == f"nura.{KEY}" for e in events)
