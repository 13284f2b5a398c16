"""Deliveries over real HTTP to the sink, which verifies them with `standardwebhooks`."""

from __future__ import annotations

import time

import pytest

from tests.outgoing.conftest import outgoing_config

pytestmark = pytest.mark.integration


def _events(n: int, prefix: str = "evt"):  # type: ignore[no-untyped-def]
    from nura.webhooks.delivery import OutgoingEvent

    return [OutgoingEvent(type="git.push", data={"n": i}, id=f"msg_{prefix}_{i}") for i in range(n)]


def _engine():  # type: ignore[no-untyped-def]
    from nura import store_url
    from nura.core.stores.db import get_engine

    return get_engine(store_url())


def test_signed_delivery_verified_by_the_library(prefect_server, sink, nura_config) -> None:
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import submit_events

    nura_config(outgoing_config(sink.url))
    summary = submit_events("partner", _events(5))
    assert summary.delivered == 5 and summary.pending == summary.exhausted == 0
    got = sink.received()
    assert got["rejected"] == []
    accepted = {a["id"]: a for a in got["accepted"]}
    assert set(accepted) == {f"msg_evt_{i}" for i in range(5)}
    assert all(a["x_signature"] and a["x_event_type"] == "git.push" for a in accepted.values())
    assert accepted["msg_evt_3"]["payload"]["data"] == {"n": 3}
    assert dl.get(_engine(), "msg_evt_3")["status"] == "delivered"  # type: ignore[index]
    # The same ids again: stored already, not sent twice.
    again = submit_events("partner", _events(5))
    assert again.duplicate == 5 and sink.received()["attempts"] == 5


def test_retries_keep_the_webhook_id_and_honour_retry_after(
    prefect_server, sink, nura_config
) -> None:
    from nura.webhooks.delivery import submit_events

    nura_config(outgoing_config(sink.url))
    sink.control(fail_next=2, fail_status=429, retry_after="1")
    started = time.monotonic()
    summary = submit_events("sandbox", _events(1, "ra"))
    elapsed = time.monotonic() - started
    assert summary.delivered == 1 and summary.outcomes[0].attempts == 3
    assert elapsed >= 2.0  # two Retry-After: 1 waits, not the 10 ms backoff
    got = sink.received()
    assert got["attempts"] == 3 and [a["id"] for a in got["accepted"]] == ["msg_ra_0"]


def test_exhausted_retries_become_a_dead_letter_and_the_redrive_delivers(
    prefect_server, sink, nura_config
) -> None:
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import redrive_due, submit_events

    nura_config(outgoing_config(sink.url))
    sink.control(fail_next=3, fail_status=503)  # retry_attempts 2 -> 3 attempts, all fail
    summary = submit_events("sandbox", _events(1, "dl"))
    assert summary.pending == 1 and summary.outcomes[0].attempts == 3
    row = dl.get(_engine(), "msg_dl_0")
    assert row is not None and row["status"] == "pending" and row["last_status"] == 503
    assert row["next_attempt_at"] == pytest.approx(row["updated_at"] + 300, abs=1)
    assert dl.dead_letter_stats(_engine())["count"] == 1
    # Not due yet: the redrive leaves it alone.
    assert redrive_due().due == 0
    result = redrive_due(now=row["next_attempt_at"] + 1)
    assert result.delivered == 1
    assert dl.get(_engine(), "msg_dl_0")["status"] == "delivered"  # type: ignore[index]
    assert [a["id"] for a in sink.received()["accepted"]] == ["msg_dl_0"]


def test_max_redrives_then_exhausted(prefect_server, sink, nura_config) -> None:
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import redrive_due, submit_events

    nura_config(
        outgoing_config(
            sink.url, retry_attempts=0, dead_letters={"redrive_base_minutes": 1, "max_redrives": 2}
        )
    )
    sink.control(fail_next=100, fail_status=500)
    submit_events("sandbox", _events(1, "mx"))
    now = time.time()
    for expected in ("pending", "exhausted"):
        now += 3600
        redrive_due(now=now)
        assert dl.get(_engine(), "msg_mx_0")["status"] == expected  # type: ignore[index]
    row = dl.get(_engine(), "msg_mx_0")
    assert row is not None and row["attempts"] == 3 and row["redrives"] == 2


@pytest.mark.parametrize("status", [400, 301])
def test_other_4xx_and_3xx_fail_without_retry(prefect_server, sink, nura_config, status) -> None:
    from nura.webhooks.delivery import submit_events

    nura_config(outgoing_config(sink.url))
    sink.control(fail_next=1, fail_status=status)
    summary = submit_events("sandbox", _events(1, f"c{status}"))
    assert summary.exhausted == 1 and summary.outcomes[0].attempts == 1
    assert summary.outcomes[0].status_code == status
    assert sink.received()["attempts"] == 1


def test_410_disables_the_target_keeps_events_and_alerts(
    prefect_server, moto_reset, sink, nura_config
) -> None:
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import redrive_due, submit_events

    cfg = outgoing_config(sink.url)
    cfg["health_monitoring"] = {
        "notifications": {"slack_webhook_url": f"{sink.url}/slack/T/B/C", "email_alerts": False}
    }
    nura_config(cfg)
    sink.control(gone=True)
    summary = submit_events("sandbox", _events(3, "gone"))
    assert summary.disabled and summary.parked == 3 and summary.delivered == 0
    assert "sandbox" in dl.disabled_targets(_engine())
    slack = sink.received()["slack"]
    assert len(slack) == 1 and "sandbox disabled" in slack[0]["json"]["text"]
    # While disabled nothing is sent; events wait as pending.
    attempts = sink.received()["attempts"]
    assert submit_events("sandbox", _events(1, "later")).parked == 1
    assert redrive_due(now=time.time() + 10**6).delivered == 0
    assert sink.received()["attempts"] == attempts
    # The partner is back and an operator enables the target: everything arrives once.
    sink.control(gone=False)
    dl.enable_endpoint(_engine(), "sandbox")
    assert redrive_due().delivered == 4
    assert len(sink.received()["accepted"]) == 4


def test_auto_disable_after_the_configured_failing_period(
    prefect_server, sink, nura_config
) -> None:
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import submit_events

    nura_config(outgoing_config(sink.url, retry_attempts=0, auto_disable_after_hours=1))
    sink.control(fail_next=100, fail_status=502)
    submit_events("sandbox", _events(1, "ad1"))
    assert dl.disabled_targets(_engine()) == set()
    # Pretend the streak began 2 hours ago (the store keeps when it started).
    dl.record_endpoint_failure(_engine(), "sandbox", now=time.time() - 7200)
    from sqlalchemy import update

    with _engine().begin() as conn:
        conn.execute(
            update(dl.endpoints)
            .where(dl.endpoints.c.target == "sandbox")
            .values(failing_since=time.time() - 7200)
        )
    submit_events("sandbox", _events(1, "ad2"))
    assert dl.disabled_targets(_engine()) == {"sandbox"}


def test_ssrf_guard_refuses_private_targets_unless_allow_listed(
    prefect_server, sink, nura_config
) -> None:
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import submit_events

    nura_config(outgoing_config(sink.url, allow_list=[]))
    summary = submit_events("sandbox", _events(1, "ssrf"))
    assert summary.exhausted == 1 and "refused" in (summary.outcomes[0].error or "")
    assert sink.received()["attempts"] == 0
    row = dl.get(_engine(), "msg_ssrf_0")
    assert row is not None and row["status"] == "exhausted"  # kept: replayable after a fix


def test_timeouts_are_retried(prefect_server, sink, nura_config) -> None:
    from nura.webhooks.delivery import submit_events

    cfg = outgoing_config(sink.url)
    cfg["webhooks"]["outgoing"]["targets"]["sandbox"]["timeout_seconds"] = 0.3
    nura_config(cfg)
    sink.control(latency_ms=600)
    summary = submit_events("sandbox", _events(1, "slow"))
    assert summary.pending == 1 and summary.outcomes[0].attempts == 3
    assert "ServiceTimeout" in (summary.outcomes[0].error or "")


def test_unknown_target_and_refused_event_type(prefect_server, sink, nura_config) -> None:
    from nura.webhooks.delivery import EventNotAccepted, UnknownTarget, submit_events

    cfg = outgoing_config(sink.url)
    cfg["webhooks"]["outgoing"]["targets"]["partner"]["event_types"] = ["system.alert"]
    nura_config(cfg)
    with pytest.raises(UnknownTarget, match="nope"):
        submit_events("nope", _events(1))
    with pytest.raises(EventNotAccepted):
        submit_events("partner", _events(1))


def test_flows_run_with_defaults_against_the_sandbox(prefect_server, sink, nura_config) -> None:
    from flows.webhook_deliver import webhook_deliver
    from flows.webhook_redrive import webhook_redrive

    nura_config(outgoing_config(sink.url))
    summary = webhook_deliver()
    assert summary.target == "sandbox" and summary.delivered == 1
    accepted = sink.received()["accepted"]
    assert accepted[0]["type"] == "system.alert"
    assert webhook_redrive().due == 0


def test_dead_letter_and_redrive_on_both_store_backends(
    prefect_server, sink, nura_config, store_url
) -> None:
    from nura.core.stores import dead_letters as dl
    from nura.webhooks.delivery import redrive_due, submit_events

    nura_config(outgoing_config(sink.url, retry_attempts=0), store=store_url)
    sink.control(fail_next=2, fail_status=500)
    summary = submit_events("partner", _events(3, "be"))
    assert summary.delivered == 1 and summary.pending == 2
    assert dl.dead_letter_stats(_engine())["count"] == 2
    assert redrive_due(now=time.time() + 301).delivered == 2
    assert dl.dead_letter_stats(_engine())["count"] == 0
    assert len({a["id"] for a in sink.received()["accepted"]}) == 3


def _target_with_resolver(name: str, allow_list: list[str], resolver):  # type: ignore[no-untyped-def]
    import dataclasses

    from nura.webhooks.delivery import resolve_target
    from nura.webhooks.ssrf import SSRFGuard

    guard = SSRFGuard(allow_list, resolver=resolver, cache_seconds=0)
    return dataclasses.replace(resolve_target(name), guard=guard)


def test_dns_rebinding_never_reaches_the_loopback_sink(prefect_server, sink, nura_config) -> None:
    from urllib.parse import urlsplit

    from nura.webhooks.delivery import build_body, send_signed

    port = urlsplit(sink.url).port
    # `localhost` is 127.0.0.1 to the system resolver, so a second lookup by httpx
    # would reach the sink; the guard's resolver answers public first, loopback after.
    nura_config(outgoing_config(f"http://localhost:{port}", allow_list=[]))
    answers = iter([["93.184.215.14"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers, ["127.0.0.1"])

    target = _target_with_resolver("sandbox", [], rebinding)
    result = send_signed(target, "msg_rebind_0", "git.push", build_body("git.push", {}))
    assert not result.ok and not result.retryable
    assert "refused" in (result.error or "") and "127.0.0.1" in (result.error or "")
    assert sink.received()["attempts"] == 0


def test_delivery_connects_to_the_checked_address_and_retries_transient_dns(
    prefect_server, sink, nura_config
) -> None:
    import socket
    from urllib.parse import urlsplit

    from nura.webhooks.delivery import build_body, send_signed

    port = urlsplit(sink.url).port
    # a name only the guard's resolver knows: the delivery can only reach the sink
    # through the address the guard checked (Host header and signature keep the name)
    nura_config(outgoing_config(f"http://hooks.partner.test:{port}"))
    failures = [socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")] * 2

    def flaky(host: str, port: int) -> list[str]:
        assert host == "hooks.partner.test"
        if failures:
            raise failures.pop()
        return ["127.0.0.1"]

    target = _target_with_resolver("sandbox", ["127.0.0.1"], flaky)
    result = send_signed(target, "msg_dns_0", "git.push", build_body("git.push", {}))
    assert result.ok and result.status_code == 200 and result.attempts == 2
    got = sink.received()
    assert got["rejected"] == [] and [a["id"] for a in got["accepted"]] == ["msg_dns_0"]


def test_non_ascii_retry_after_does_not_abort_the_batch(prefect_server, sink, nura_config) -> None:
    from nura.webhooks.delivery import submit_events

    nura_config(outgoing_config(sink.url))
    sink.control(fail_next=2, fail_status=429, retry_after="²")
    summary = submit_events("sandbox", _events(3, "sup"))
    assert summary.delivered == 3 and summary.pending == summary.exhausted == 0
    assert {a["id"] for a in sink.received()["accepted"]} == {f"msg_sup_{i}" for i in range(3)}
