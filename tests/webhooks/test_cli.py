"""`nura webhooks send` signs with the endpoint's secret; the running receiver accepts it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.webhooks.conftest import ReceiverThread


def test_send_then_inbox(nura_config, monkeypatch, tmp_path):
    from nura.cli.main import app
    from nura.platform.receiver_app import create_app

    monkeypatch.setenv("NURA_TEST_WH_SECRET", "from-env")
    incoming = {
        name: {
            "url_path": f"/webhooks/{name}",
            "event_types": events,
            "scheme": scheme,
            "secret_env": "NURA_TEST_WH_SECRET",
        }
        for name, events, scheme in [
            ("gh", ["git.push"], "github"),
            ("gen", ["user.activity"], "generic"),
            ("std", ["system.alert"], "standard"),
        ]
    }
    cfg = nura_config(
        {"webhooks": {"incoming": incoming, "dispatcher": {"run_in_receiver": False}}}
    )
    receiver = ReceiverThread(create_app(cfg)).start()
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"ref": "refs/heads/main"}))
    runner = CliRunner()
    try:
        for name, event in [("gh", "git.push"), ("gen", "user.activity"), ("std", "system.alert")]:
            result = runner.invoke(
                app,
                [
                    "webhooks",
                    "send",
                    name,
                    "--event",
                    event,
                    "--file",
                    str(payload),
                    "--url",
                    receiver.url,
                    "--delivery-id",
                    "x1",
                ],
            )
            assert result.exit_code == 0, result.output
            assert "202" in result.output
        result = runner.invoke(
            app,
            [
                "webhooks",
                "send",
                "gh",
                "--event",
                "git.push",
                "--file",
                str(payload),
                "--url",
                receiver.url,
                "--delivery-id",
                "x1",
            ],
        )
        assert result.exit_code == 0 and "duplicate" in result.output
        monkeypatch.setenv("NURA_TEST_WH_SECRET", "other")  # sender and receiver disagree
        receiver.app.state.receiver.secrets.ttl = 3600
        result = runner.invoke(
            app,
            [
                "webhooks",
                "send",
                "gen",
                "--event",
                "user.activity",
                "--file",
                str(payload),
                "--url",
                receiver.url,
            ],
        )
        assert result.exit_code == 1 and "401" in result.output
    finally:
        receiver.stop()
    result = runner.invoke(app, ["webhooks", "inbox"])
    assert result.exit_code == 0, result.output
    assert "depth: 3" in result.output
