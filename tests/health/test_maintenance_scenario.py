"""On-call during maintenance, with an injected clock: real services (FlakyService), the
recording Slack stand-in, fresh stores on SQLite and PostgreSQL. Each round is what the
flow does: checks -> SLA -> retry -> maintenance step -> alert transitions -> delivery.

alpha: a window started from the command line; alpha goes down inside it and stays down
after it: no page inside, the held alert is sent when the window ends, then recovery.
beta: a window declared in the configuration; beta goes down and recovers inside it:
nobody is paged, the end notice says what was held.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from deployments.sandbox.webhook_sink import WebhookSink
from nura.core.stores.alerts import history
from nura.core.stores.db import get_engine
from nura.health import maintenance
from nura.health.alerts import deliver_alert, update_alerts
from nura.health.checks import check_round
from nura.health.sla import build_report
from nura.notify.dispatch import retry_notifications
from tests.health.conftest import world_config

pytestmark = pytest.mark.integration
RESPONSE_THRESHOLD = 5.0  # latency is not what this scenario is about
HOOK = "/slack/T0/B0/ONCALL"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _configure(world, nura_config, slack: WebhookSink, t0: float) -> None:
    cfg: dict[str, Any] = world_config(
        {n: s.url for n, s in world.services.items()},
        world.moto,
        world.config.external_services.aws.bedrock.endpoint_url,
        alert_thresholds={"response_time_seconds": RESPONSE_THRESHOLD},
        failure_threshold=1,
        success_threshold=1,
        notifications={
            "slack_webhook_url": f"{slack.url}{HOOK}",
            "routing": {"low": ["slack"], "medium": ["slack"], "high": ["slack"]},
        },
        maintenance_windows=[
            {"service": "beta", "start": _iso(t0 + 1000), "end": _iso(t0 + 2000), "reason": "x"}
        ],
    )
    cfg["external_services"]["slack"] = {"circuit_breaker_threshold": 1000, "retry_attempts": 0}
    nura_config(cfg, store=world.store_url)


def monitor_round(now: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    results = check_round(now=now)
    report = build_report([r.as_dict() for r in results], now=now)
    retry_notifications(now=now)
    maintenance.maintenance_round(now=now)
    changes = update_alerts(report, now=now)
    for change in changes:
        deliver_alert(change, now=now)
    return report, changes


def _slack_titles(slack: WebhookSink, service: str) -> list[str]:
    firsts = [m["json"]["text"].split("\n")[0] for m in slack.received()["slack"]]
    return [t for t in firsts if f" {service}" in t]


@pytest.fixture
def prefect_api(prefect_server, world) -> Iterator[str]:
    """The session's Prefect server (rate limits, events) inside the world, which
    otherwise runs without one."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        yield prefect_server.api_url


def test_alerts_are_held_during_maintenance_and_sent_when_it_ends(
    world, nura_config, slack, prefect_api
) -> None:
    t0 = float(int(time.time()))
    _configure(world, nura_config, slack, t0)
    engine = get_engine(world.store_url)

    monitor_round(t0)
    window = maintenance.start(engine, "alpha", 1800, "db upgrade", "cli:ana", now=t0 + 60)
    assert _slack_titles(slack, "alpha") == [_slack_titles(slack, "alpha")[0]]
    assert "MAINTENANCE alpha until" in _slack_titles(slack, "alpha")[0]

    script = {  # offset -> (alpha down, beta down)
        300: (True, False),
        600: (True, False),
        1200: (True, True),
        1500: (True, False),
        1900: (True, False),
        2200: (False, False),  # up, but the failed check at 1900 keeps it degraded
        2800: (False, False),  # out of the 15-minute status window: healthy
    }
    seen: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for offset, (alpha_down, beta_down) in script.items():
        world.control("alpha", down=alpha_down)
        world.control("beta", down=beta_down)
        seen[offset] = monitor_round(t0 + offset)
        if offset < 1900:  # nothing but the start notice reached anyone about alpha
            assert len(_slack_titles(slack, "alpha")) == 1, _slack_titles(slack, "alpha")

    # Inside the window: alpha's checks ran and were judged, its alert opened (history),
    # the change was an event flagged `maintenance`, not a page.
    report, changes = seen[300]
    alpha = next(s for s in report["services"] if s["service"] == "alpha")
    assert alpha["status"] == "unhealthy" and alpha["maintenance"]["id"] == window["id"]
    assert report["maintenance"]["active"] == ["alpha"]
    opened = [c for c in changes if c["key"] == "alpha"]
    assert [(c["kind"], c["notify"], c["maintenance"]) for c in opened] == [("opened", False, True)]
    assert [h["kind"] for h in history(engine, "alpha")] == ["opened", "improved", "resolved"]

    # alpha: start notice, end notice, the held alert sent at the end, then recovery.
    titles = _slack_titles(slack, "alpha")
    assert len(titles) == 4, titles
    assert "[LOW] MAINTENANCE alpha until" in titles[0]
    assert "[LOW] MAINTENANCE OVER alpha" in titles[1]
    assert "[HIGH] STILL UNHEALTHY alpha" in titles[2]
    assert "[HIGH] RECOVERED alpha" in titles[3]

    # beta: down and back inside its configured window: two notices, no page; the end
    # notice lists what was held.
    beta = _slack_titles(slack, "beta")
    assert len(beta) == 2 and "MAINTENANCE beta" in beta[0] and "MAINTENANCE OVER beta" in beta[1]
    end_text = next(
        m["json"]["text"]
        for m in slack.received()["slack"]
        if "MAINTENANCE OVER beta" in m["json"]["text"]
    )
    assert "opened unhealthy" in end_text and "resolved healthy" in end_text
    assert [h["kind"] for h in history(engine, "beta")] == ["opened", "resolved"]

    # Every notice went out once, though every round looked at the windows again.
    from nura.core.stores.maintenance import notices

    assert sorted((n["service"], n["kind"]) for n in notices(engine)) == [
        ("alpha", "ended"),
        ("alpha", "started"),
        ("beta", "ended"),
        ("beta", "started"),
    ]
