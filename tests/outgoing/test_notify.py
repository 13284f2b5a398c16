"""`notify`: Slack to the local sink, email through SES on moto's server, routing, limits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.outgoing.conftest import outgoing_config

pytestmark = pytest.mark.integration


def _ses_messages() -> list[Any]:
    """What moto's SES backend (same process as the threaded moto server) has sent."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def _config(sink_url: str, moto: str, **notifications: Any) -> dict[str, Any]:
    cfg = outgoing_config(sink_url)
    cfg["external_services"] = {
        "aws": {
            "region": "us-east-1",
            "ses": {"endpoint_url": moto, "from_email": "alerts@nura.ai"},
        }
    }
    cfg["health_monitoring"] = {
        "notifications": {
            "slack_webhook_url": f"{sink_url}/slack/T000/B000/XXXX",
            "severity_levels": ["high", "critical"],
            "routing": {"high": ["slack"], "critical": ["slack", "email"]},
            "email": {"recipients": ["oncall@nura.ai"]},
            **notifications,
        }
    }
    return cfg


def _verify_sender(moto: str) -> None:
    import boto3

    boto3.client("ses", region_name="us-east-1", endpoint_url=moto).verify_email_identity(
        EmailAddress="alerts@nura.ai"
    )


def test_critical_goes_to_slack_and_ses_and_is_tracked(
    prefect_server, moto_reset, sink, nura_config
) -> None:
    from nura import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.notifications import notification_by_message_id
    from nura.notify.dispatch import send_notification

    nura_config(_config(sink.url, moto_reset))
    _verify_sender(moto_reset)
    before = len(_ses_messages())
    result = send_notification(
        "Disk almost full",
        "node-1 at 97 %",
        "critical",
        event="health.disk",
        details={"node": "n1"},
    )
    assert result.notified and result.ok
    assert result.channels["slack"].status == "sent"
    assert result.channels["slack"].response == "ok"
    email = result.channels["email"]
    assert email.status == "sent" and email.message_id
    # Slack: the sink got Block Kit JSON with the title and severity.
    slack = sink.received()["slack"]
    assert len(slack) == 1 and "[CRITICAL] Disk almost full" in slack[0]["json"]["text"]
    # SES: moto's backend holds the message with text and HTML bodies and our sender.
    sent = _ses_messages()[before:]
    assert len(sent) == 1
    msg = sent[0]
    assert msg.id == email.message_id
    assert msg.source == "alerts@nura.ai"
    assert msg.destinations["ToAddresses"] == ["oncall@nura.ai"]
    assert "node-1 at 97 %" in msg.body and "[CRITICAL]" in msg.subject
    row = notification_by_message_id(get_engine(store_url()), email.message_id)
    assert row is not None and row["channel"] == "email" and row["status"] == "sent"


def test_routing_threshold_and_rate_limit(prefect_server, moto_reset, sink, nura_config) -> None:
    from nura.notify.dispatch import send_notification

    nura_config(_config(sink.url, moto_reset, rate_limits={"slack": {"max": 2, "per_seconds": 60}}))
    low = send_notification("fyi", "nothing", "low")
    assert not low.notified and low.channels == {}
    high = [send_notification(f"alert {i}", "b", "high", now=1000.0 + i) for i in range(3)]
    assert [r.channels["slack"].status for r in high] == ["sent", "sent", "rate_limited"]
    assert "email" not in high[0].channels  # routing: high goes to Slack only
    assert len(sink.received()["slack"]) == 2
    later = send_notification("alert later", "b", "high", now=1000.0 + 61)
    assert later.channels["slack"].status == "sent"
    with pytest.raises(ValueError, match="severity"):
        send_notification("x", "y", "urgent")


def test_failures_are_reported_not_raised(prefect_server, moto_reset, sink, nura_config) -> None:
    from nura.notify.dispatch import send_notification

    # The SES sender is not verified (MessageRejected) and Slack answers 404.
    nura_config(_config(sink.url, moto_reset, slack_webhook_url=f"{sink.url}/nope"))
    result = send_notification("boom", "body", "critical")
    assert not result.ok
    assert result.channels["email"].status == "failed"
    assert "MessageRejected" in (result.channels["email"].error or "") or "ClientError" in (
        result.channels["email"].error or ""
    )
    assert result.channels["slack"].status == "failed"


def test_notify_task_in_a_flow_with_slack_block(
    prefect_server, moto_reset, sink, nura_config
) -> None:
    from prefect import flow
    from prefect.blocks.notifications import SlackWebhook

    from nura.notify.dispatch import notify

    SlackWebhook(url=f"{sink.url}/slack/T1/B1/YYYY").save("nura-test-alerts", overwrite=True)
    nura_config(_config(sink.url, moto_reset, slack_webhook_url="", slack_block="nura-test-alerts"))

    @flow
    def alerting() -> Any:
        return notify("from a flow", "body", "high", event="test.event")

    result = alerting()
    assert result.channels["slack"].status == "sent"
    assert sink.received()["slack"][0]["path"] == "/slack/T1/B1/YYYY"
