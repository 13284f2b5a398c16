"""`nura deliveries list|retry|purge|stats|endpoints` against a real store and the sink."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.outgoing.conftest import outgoing_config

pytestmark = pytest.mark.integration


def test_operator_lists_replays_and_purges_dead_letters(prefect_server, sink, nura_config) -> None:
    from nura.cli.main import app
    from nura.webhooks.delivery import OutgoingEvent, submit_events

    nura_config(outgoing_config(sink.url, retry_attempts=0))
    runner = CliRunner()
    sink.control(fail_next=2, fail_status=503)
    events = [OutgoingEvent(type="git.push", data={"n": i}, id=f"msg_cli_{i}") for i in range(2)]
    assert submit_events("sandbox", events).pending == 2
    sink.control(fail_next=1, fail_status=400)
    assert submit_events("sandbox", [OutgoingEvent(type="x", id="msg_cli_bad")]).exhausted == 1

    listed = runner.invoke(app, ["deliveries", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {"msg_cli_0", "msg_cli_1", "msg_cli_bad"} <= set(listed.output.split('"'))
    stats = runner.invoke(app, ["deliveries", "stats"])
    assert json.loads(stats.output)["count"] == 2

    replay = runner.invoke(app, ["deliveries", "retry", "msg_cli_0"])
    assert replay.exit_code == 0, replay.output
    assert "delivered 1" in replay.output
    assert [a["id"] for a in sink.received()["accepted"]] == ["msg_cli_0"]

    purge = runner.invoke(app, ["deliveries", "purge", "msg_cli_1", "--yes"])
    assert purge.exit_code == 0 and "purged 1" in purge.output
    replay_all = runner.invoke(app, ["deliveries", "retry", "--all-exhausted"])
    assert replay_all.exit_code == 0, replay_all.output
    assert {a["id"] for a in sink.received()["accepted"]} == {"msg_cli_0", "msg_cli_bad"}
    assert runner.invoke(app, ["deliveries", "retry"]).exit_code == 2
    after = runner.invoke(app, ["deliveries", "stats"])
    assert json.loads(after.output)["count"] == 0

    endpoints = runner.invoke(app, ["deliveries", "endpoints"])
    assert endpoints.exit_code == 0 and "sandbox" in endpoints.output
    send = runner.invoke(app, ["deliveries", "send", "--data", '{"hello": 1}'])
    assert send.exit_code == 0, send.output
    assert "delivered" in send.output
