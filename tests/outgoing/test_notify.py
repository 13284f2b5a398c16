"""`notify`: Slack to the local sink (answering as Slack documents), email through SES on
moto's server, the one routing rule, limits, durable retries, Slack's refusals told apart."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.outgoing.conftest import outgoing_config

pytestmark = pytest.mark.integration


def _ses_messages() -> list[Any]:
    """What moto's SES backend (same process as the threaded moto server) has sent."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


HOOK = "/slack/T000/B000/XXXX"


def _config(sink_url: str, moto: str, **notifications: Any) -> dict[str, Any]:
    cfg = outgoing_config(sink_url)
    cfg["external_services"] = {
        "aws": {
            "region": "us-east-1",
            "ses": {"endpoint_url": moto, "from_email": "alerts@nura.ai"},
        },
        # Slack failing in these tests must not open its breaker (a wall-clock cool-down).
        "slack": {"circuit_breaker_threshold": 1000, "retry_attempts": 0},
    }
    cfg["health_monitoring"] = {
        "notifications": {
            "slack_webhook_url": f"{sink_url}{HOOK}",
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
    from nura.notify.dispatch import retry_notifications, send_notification

    nura_config(_config(sink.url, moto_reset, rate_limits={"slack": {"max": 2, "per_seconds": 60}}))
    low = send_notification("fyi", "nothing", "low")
    assert not low.notified and low.channels == {}
    high = [send_notification(f"alert {i}", "b", "high", now=1000.0 + i) for i in range(3)]
    assert [r.channels["slack"].status for r in high] == ["sent", "sent", "rate_limited"]
    assert "email" not in high[0].channels  # routing: high goes to Slack only
    assert len(sink.received()["slack"]) == 2
    # Rate limited is not dropped: it waits its turn and goes first once the window allows.
    later = send_notification("alert later", "b", "high", now=1000.0 + 61)
    assert later.channels["slack"].status == "rate_limited"
    texts = [m["json"]["text"] for m in sink.received()["slack"]]
    assert len(texts) == 3 and "alert 2" in texts[2]
    assert retry_notifications(now=1000.0 + 122)["attempted"] == {"sent": 1}
    assert "alert later" in sink.received()["slack"][3]["json"]["text"]
    with pytest.raises(ValueError, match="severity"):
        send_notification("x", "y", "urgent")


def test_failures_are_reported_not_raised(prefect_server, moto_reset, sink, nura_config) -> None:
    from nura.notify.dispatch import send_notification

    # The SES sender is not verified (MessageRejected) and Slack is down (5xx).
    nura_config(_config(sink.url, moto_reset))
    sink.control(slack_status=500)
    result = send_notification("boom", "body", "critical")
    assert not result.ok and not result.delivered
    email = result.channels["email"]
    assert email.status == "pending" and email.next_attempt_at is not None
    assert "MessageRejected" in (email.error or "") or "ClientError" in (email.error or "")
    assert result.channels["slack"].status == "pending"
    assert set(result.failed_channels) == {"email", "slack"}


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


def _ses_subjects(before: int) -> list[str]:
    return [m.subject for m in _ses_messages()[before:]]


def test_every_severity_end_to_end_with_the_shipped_routing(
    prefect_server, moto_reset, sink, nura_config
) -> None:
    """The packaged routing (no `routing` in the project's file): low nobody, medium Slack,
    high and critical Slack and email."""
    from nura.notify.dispatch import send_notification

    cfg = _config(sink.url, moto_reset)
    del cfg["health_monitoring"]["notifications"]["routing"]
    nura_config(cfg)
    _verify_sender(moto_reset)
    before = len(_ses_messages())
    got = {sev: send_notification(f"t-{sev}", "b", sev) for sev in SEVERITIES}
    assert not got["low"].notified and got["low"].channels == {}
    assert got["medium"].sent == ["slack"] and got["medium"].delivered
    assert sorted(got["high"].sent) == ["email", "slack"]
    assert sorted(got["critical"].sent) == ["email", "slack"]
    texts = [m["json"]["text"] for m in sink.received()["slack"]]
    assert [t.split("]")[1].split()[0] for t in texts] == ["t-medium", "t-high", "t-critical"]
    assert [s.split("] ")[-1] for s in _ses_subjects(before)] == ["t-high", "t-critical"]


SEVERITIES = ("low", "medium", "high", "critical")


def test_routing_contradiction_is_a_config_error(nura_config, tmp_path) -> None:
    from nura.config import ConfigError

    with pytest.raises(ConfigError, match="severity_levels excludes"):
        nura_config(
            {
                "health_monitoring": {
                    "notifications": {
                        "severity_levels": ["high", "critical"],
                        "routing": {"medium": ["slack"]},
                    }
                }
            }
        )
    # The deprecated key alone still means what it meant: those severities, every channel.
    cfg = nura_config({"health_monitoring": {"notifications": {"severity_levels": ["high"]}}})
    notifications = cfg.health_monitoring.notifications
    assert notifications.channels_for("high") == ["slack", "email"]
    assert notifications.channels_for("medium") == []


def test_slack_down_then_back_every_notification_delivered_in_order(
    prefect_server, moto_reset, sink, nura_config
) -> None:
    from nura import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.notifications import outbox_rows
    from nura.notify.dispatch import retry_notifications, send_notification

    nura_config(_config(sink.url, moto_reset))
    t0 = 2_000_000.0
    sink.control(slack_down=True)  # connections dropped: Slack unreachable
    first = send_notification("UNHEALTHY a", "down", "high", now=t0)
    assert first.channels["slack"].status == "pending"
    # Retried with backoff by later runs while Slack is still down.
    assert retry_notifications(now=t0 + 30)["attempted"] == {}  # not due yet (60 s)
    assert retry_notifications(now=t0 + 60)["attempted"] == {"pending": 1}
    second = send_notification("UNHEALTHY b", "down", "high", now=t0 + 300)
    assert second.channels["slack"].status == "pending"
    assert sink.received()["slack"] == []

    sink.control(slack_down=False)  # back after 10 minutes
    summary = retry_notifications(now=t0 + 600)
    assert summary == {"attempted": {"sent": 2}, "pending": {}}
    assert [m["json"]["text"].split("] ")[1].split("\n")[0] for m in sink.received()["slack"]] == [
        "UNHEALTHY a",
        "UNHEALTHY b",
    ]
    rows = outbox_rows(get_engine(store_url()))
    # "b" waited behind "a" (order kept): a new message retries the queue head first.
    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 4), ("sent", 1)]
    assert retry_notifications(now=t0 + 900) == {"attempted": {}, "pending": {}}


def test_an_undelivered_notification_expires(prefect_server, moto_reset, sink, nura_config) -> None:
    from nura.notify.dispatch import retry_notifications, send_notification

    nura_config(_config(sink.url, moto_reset, retry={"expire_minutes": 10}))
    sink.control(slack_status=503)
    send_notification("old news", "b", "high", now=1000.0)
    sink.control(slack_status=None)
    assert retry_notifications(now=1000.0 + 601) == {"attempted": {"expired": 1}, "pending": {}}
    assert sink.received()["slack"] == []


def test_a_malformed_message_is_refused_for_good_with_slacks_answer(
    prefect_server, moto_reset, sink, nura_config
) -> None:
    from nura.notify.dispatch import retry_notifications, send_notification

    nura_config(_config(sink.url, moto_reset))
    # An empty title makes an empty Block Kit header: Slack answers 400 invalid_blocks.
    result = send_notification("", "body", "high", now=5000.0)
    slack = result.channels["slack"]
    assert slack.status == "failed"
    assert "invalid_blocks" in (slack.error or "") and "message rejected" in (slack.error or "")
    assert sink.received()["slack_refused"][0]["error"] == "invalid_blocks"
    assert retry_notifications(now=9000.0) == {"attempted": {}, "pending": {}}  # not retried


@pytest.mark.parametrize(
    ("error", "status"),
    [("channel_is_archived", 410), ("channel_not_found", 404), ("action_prohibited", 403)],
)
def test_a_dead_webhook_disables_slack_and_says_so_by_email(
    prefect_server, moto_reset, sink, nura_config, error: str, status: int
) -> None:
    from nura.notify.dispatch import retry_notifications, send_notification

    nura_config(_config(sink.url, moto_reset))
    _verify_sender(moto_reset)
    before = len(_ses_messages())
    sink.control(slack_hooks={HOOK: error})
    result = send_notification("UNHEALTHY x", "down", "high", now=7000.0)
    slack = result.channels["slack"]
    assert slack.status == "disabled" and error in (slack.error or "")
    assert f"{status}" in (slack.error or "") or "cannot deliver" in (slack.error or "")
    # Announced once, by email (Slack is the channel that is dead).
    subjects = _ses_subjects(before)
    assert len(subjects) == 1 and "Slack alerts are not being delivered" in subjects[0]
    again = send_notification("UNHEALTHY y", "down", "high", now=7300.0)
    assert again.channels["slack"].status == "disabled"
    assert len(_ses_subjects(before)) == 1  # not announced again
    assert len(sink.received()["slack_refused"]) == 1  # a disabled channel is not hammered

    # A new webhook URL re-enables Slack: what was held is delivered, in order.
    nura_config(_config(sink.url, moto_reset, slack_webhook_url=f"{sink.url}/slack/T1/B2/NEW"))
    assert retry_notifications(now=7600.0)["attempted"] == {"sent": 2}
    texts = [m["json"]["text"] for m in sink.received()["slack"]]
    assert ["UNHEALTHY x" in texts[0], "UNHEALTHY y" in texts[1]] == [True, True]


# -- SES feedback: every notification kept, the worst outcome is the message's status -----
from tests.outgoing.test_sns import client, keypair, signed  # noqa: E402,F401 - fixtures


def _ses_event(sns_id: str, ses_id: str, kind: str) -> dict[str, Any]:
    """An SES notification as SES documents it ("Amazon SES notification contents")."""
    mail = {
        "timestamp": "2026-12-07T10:00:00.000Z",
        "messageId": ses_id,
        "source": "alerts@nura.ai",
        "destination": ["oncall@nura.ai", "gone@nura.ai"],
    }
    event: dict[str, Any] = {"notificationType": kind, "mail": mail}
    if kind == "Bounce":
        event["bounce"] = {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "gone@nura.ai", "status": "5.1.1"}],
            "timestamp": "2026-12-07T10:00:01.000Z",
            "feedbackId": "fb-1",
        }
    elif kind == "Complaint":
        event["complaint"] = {
            "complainedRecipients": [{"emailAddress": "oncall@nura.ai"}],
            "timestamp": "2026-12-07T10:00:03.000Z",
            "feedbackId": "fb-2",
            "complaintFeedbackType": "abuse",
        }
    else:
        event["delivery"] = {
            "timestamp": "2026-12-07T10:00:02.000Z",
            "processingTimeMillis": 546,
            "recipients": ["oncall@nura.ai"],
            "smtpResponse": "250 ok",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        }
    return {"Type": "Notification", "MessageId": sns_id, "Message": json.dumps(event)}


def test_a_delivery_after_a_bounce_does_not_hide_it(client, keypair) -> None:  # noqa: F811
    from nura import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.notifications import (
        feedback_for,
        notification_by_message_id,
        record_notification,
    )

    engine = get_engine(store_url())
    record_notification(
        engine, channel="email", severity="high", title="t", status="sent", message_id="ses-9"
    )
    for sns_id, kind in (("n1", "Bounce"), ("n2", "Delivery"), ("n3", "Delivery")):
        answer = client.post(
            "/webhooks/ses-events", json=signed(keypair[0], _ses_event(sns_id, "ses-9", kind))
        )
        assert answer.status_code == 200, answer.text
    row = notification_by_message_id(engine, "ses-9")
    assert row is not None and row["feedback"] == "bounce"  # the worst outcome stays
    assert [f["kind"] for f in feedback_for(engine, "ses-9")] == ["bounce", "delivery", "delivery"]

    # Delivery first, then a complaint: the complaint is worse and wins.
    record_notification(
        engine, channel="email", severity="high", title="t", status="sent", message_id="ses-10"
    )
    for sns_id, kind in (("n4", "Delivery"), ("n5", "Complaint"), ("n6", "Delivery")):
        client.post(
            "/webhooks/ses-events", json=signed(keypair[0], _ses_event(sns_id, "ses-10", kind))
        )
    assert notification_by_message_id(engine, "ses-10")["feedback"] == "complaint"  # type: ignore[index]
    assert len(feedback_for(engine, "ses-10")) == 3
