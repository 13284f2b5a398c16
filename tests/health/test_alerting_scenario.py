"""What on-call experiences, end to end, with an injected clock (5-minute rounds).

Real services (FlakyService), moto for SES, the recording Slack stand-in (answering as
Slack documents), fresh stores on SQLite and PostgreSQL; each round is what the flow does:
checks -> SLA -> retry undelivered notifications -> alert transitions -> delivery.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

from deployments.sandbox.webhook_sink import WebhookSink
from nura import CallLayer, IntegrationError, get_call_layer
from nura.core.breaker import BreakerState
from nura.core.ratelimit import NoLimiter
from nura.core.stores.db import get_engine
from nura.core.stores.notifications import pending
from nura.health.alerts import deliver_alert, update_alerts
from nura.health.checks import check_round
from nura.health.sla import build_report
from nura.notify.dispatch import retry_notifications
from tests.health.conftest import world_config

pytestmark = pytest.mark.integration
RESPONSE_THRESHOLD = 5.0  # latency is not what this scenario is about
ROUND = 300.0
HOOK = "/slack/T0/B0/ONCALL"


def _moto_ses_subjects() -> list[str]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses import ses_backends

    return [m.subject for m in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages]


def _configure(world, nura_config, slack: WebhookSink) -> None:
    cfg: dict[str, Any] = world_config(
        {n: s.url for n, s in world.services.items()},
        world.moto,
        world.config.external_services.aws.bedrock.endpoint_url,
        alert_thresholds={"response_time_seconds": RESPONSE_THRESHOLD},
        failure_threshold=2,
        success_threshold=2,
        notifications={
            "slack_webhook_url": f"{slack.url}{HOOK}",
            "email": {"recipients": ["oncall@nura.ai"]},
            # The shipped routing: medium -> slack, high/critical -> slack + email.
        },
    )
    # Slack's outage must not open its breaker for a wall-clock cool-down in this test.
    cfg["external_services"]["slack"] = {"circuit_breaker_threshold": 1000, "retry_attempts": 0}
    nura_config(cfg, store=world.store_url)
    boto3.client("ses", endpoint_url=world.moto, region_name="us-east-1").verify_email_identity(
        EmailAddress="noreply@nura.ai"
    )


def monitor_round(now: float) -> list[dict[str, Any]]:
    results = check_round(now=now)
    report = build_report([r.as_dict() for r in results], now=now)
    retry_notifications(now=now)
    changes = update_alerts(report, now=now)
    for change in changes:
        deliver_alert(change, now=now)
    return report["services"]


def _titles(texts: list[str], service: str) -> list[str]:
    return [t for t in texts if f" {service}" in t.split("\n")[0]]


def test_on_call_scenario(world, nura_config, slack, moto_reset) -> None:
    _configure(world, nura_config, slack)
    # The call layer stamps traffic records with the wall clock, so the injected clock
    # starts there; the rounds then advance it by 5 minutes each, never by sleeping.
    T0 = float(int(time.time()))  # noqa: N806 - the scenario's "time zero"
    ses_before = len(_moto_ses_subjects())
    layer = get_call_layer()
    # Traffic through the same breakers and call records (no Prefect here: no rate limiter).
    traffic = CallLayer(
        layer.policies, breakers=layer.breakers, limiter=NoLimiter(), recorder=layer.recorder
    )
    # alpha: an outage of two rounds, then a gradual recovery (through degraded).
    # beta: three down/up cycles in 30 minutes.
    alpha_down = {0, 1}
    beta_down = {0, 2, 4}
    slack.control(slack_down=True)  # Slack unreachable for the first 10 minutes
    statuses: dict[int, dict[str, str]] = {}
    for i in range(9):
        now = T0 + i * ROUND
        if i == 2:
            slack.control(slack_down=False)
        world.control("alpha", down=i in alpha_down)
        world.control("beta", down=i in beta_down)
        if i == 3:
            # gamma: one error in three calls: shown, not judged (min_calls).
            traffic.request("gamma", "GET", "/echo", retries=0)
            traffic.request("gamma", "GET", "/echo", retries=0)
            world.control("gamma", fail_next=1, fail_status=500)
            with pytest.raises(IntegrationError):
                traffic.request("gamma", "GET", "/echo", retries=0)
        if i == 5:
            # gamma's breaker opened by traffic (threshold 2), then gamma answers again
            # and no traffic follows: the next passing check must close it.
            world.control("gamma", down=True)
            for _ in range(2):
                with pytest.raises(IntegrationError):
                    traffic.request("gamma", "GET", "/echo", retries=0)
            assert get_call_layer().breakers.snapshot("gamma", fresh=True).state == "open"
            world.control("gamma", down=False)
        services = {s["service"]: s for s in monitor_round(now)}
        statuses[i] = {n: services[n]["status"] for n in ("alpha", "beta", "gamma")}
        if i == 3:
            gamma = services["gamma"]
            assert gamma["status"] == "healthy", gamma["reason"]
            assert gamma["calls"] == 3 and gamma["error_rate_pct"] == pytest.approx(33.333, 1e-3)
        if i == 5:
            assert get_call_layer().breakers.snapshot("gamma", fresh=True).state is (
                BreakerState.CLOSED
            )
            assert services["gamma"]["status"] == "healthy", services["gamma"]["reason"]

    # alpha healed through degraded: the high page and exactly one RECOVERED, on the same
    # channels (Slack and email), delivered although Slack was down when it opened.
    assert [statuses[i]["alpha"] for i in range(6)] == [
        "unhealthy",
        "unhealthy",
        "degraded",
        "degraded",
        "healthy",
        "healthy",
    ]
    texts = [m["json"]["text"] for m in slack.received()["slack"]]
    alpha = _titles(texts, "alpha")
    assert [t.split("\n")[0] for t in alpha] == [
        ":large_orange_circle: [HIGH] UNHEALTHY alpha",
        ":large_orange_circle: [HIGH] RECOVERED alpha is healthy again",
    ]
    subjects = _moto_ses_subjects()[ses_before:]
    assert [s for s in subjects if "alpha" in s] == [
        "[Nura] [HIGH] UNHEALTHY alpha",
        "[Nura] [HIGH] RECOVERED alpha is healthy again",
    ]
    # beta flapped three times in 30 minutes: at most one page, and never at high.
    beta = _titles(texts, "beta")
    assert len([t for t in beta if "RECOVERED" not in t]) <= 1
    assert not [s for s in subjects if "beta" in s and "RECOVERED" not in s]
    assert all("RECOVERED" in t or "[MEDIUM]" in t for t in beta)
    # gamma never alerted anyone.
    assert _titles(texts, "gamma") == [] and not [s for s in subjects if "gamma" in s]
    # Every notification was delivered once Slack came back; nothing is left queued.
    assert pending(get_engine(world.store_url)) == []
    assert slack.received()["slack_refused"] == []
