"""Configuration-change alerts against a real Prefect server: a saved credentials block
and the configuration file change; one low alert per change, its diff names the keys,
and no secret value is stored, shown or sent. Stores on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from deployments.sandbox.webhook_sink import WebhookSink
from nura.confluence.blocks import ConfluenceCredentials
from nura.core.stores.alerts import history
from nura.core.stores.config_snapshots import snapshots
from nura.core.stores.db import get_engine
from nura.health.config_watch import Marker, check_config, diff, flatten

pytestmark = pytest.mark.integration
T0 = 1_800_000_000.0
OLD_TOKEN, NEW_TOKEN = "tok-OLD-1f2e3d", "tok-NEW-9a8b7c"


def _config(slack: WebhookSink, timeout: float | None = None) -> dict[str, Any]:
    alpha: dict[str, Any] = {"base_url": "http://127.0.0.1:9"}
    if timeout is not None:
        alpha["timeout_seconds"] = timeout
    return {
        "external_services": {
            "partners": {"alpha": alpha},
            "slack": {"circuit_breaker_threshold": 1000, "retry_attempts": 0},
        },
        "health_monitoring": {
            "notifications": {
                "slack_webhook_url": f"{slack.url}/slack/T0/B0/OPS",
                "routing": {"low": ["slack"]},
            }
        },
    }


def _secrets_absent(*texts: str) -> None:
    for text in texts:
        assert OLD_TOKEN not in text and NEW_TOKEN not in text


def test_block_and_file_changes_alert_once_without_secrets(
    prefect_server, nura_config, slack, store_url: str
) -> None:
    nura_config(_config(slack), store=store_url)
    engine = get_engine(store_url)
    name = f"cw-{uuid.uuid4().hex[:8]}"
    ConfluenceCredentials(
        base_url="https://acme.atlassian.net", email="bot@acme.io", api_token=SecretStr(OLD_TOKEN)
    ).save(name, overwrite=True)

    assert check_config(now=T0)["status"] == "baseline"  # the first snapshot: no alert
    assert check_config(now=T0 + 60)["status"] == "unchanged"
    assert history(engine, "config") == []

    # an operator edits the block: a non-secret key and the secret
    ConfluenceCredentials(
        base_url="https://acme.atlassian.net", email="ops@acme.io", api_token=SecretStr(NEW_TOKEN)
    ).save(name, overwrite=True)
    result = check_config(now=T0 + 300)
    assert result["status"] == "changed"
    prefix = f"block:nura-confluence-credentials/{name}"
    assert result["changes"] == [
        {"key": f"{prefix}.api_token", "change": "changed", "secret": True},
        {"key": f"{prefix}.email", "change": "changed", "old": "bot@acme.io", "new": "ops@acme.io"},
    ]
    assert any(
        w.startswith(f"block nura-confluence-credentials/{name} updated ")
        and w.endswith(" by unknown")
        for w in result["changed_by"]
    ), result["changed_by"]
    # the same state seen again (another monitor run) is not a second alert
    assert check_config(now=T0 + 360)["status"] == "unchanged"

    alerts = history(engine, "config")
    assert [(a["kind"], a["severity"]) for a in alerts] == [("changed", "low")]
    assert f"{prefix}.email: bot@acme.io -> ops@acme.io" in alerts[0]["reason"]
    assert f"{prefix}.api_token: changed (secret)" in alerts[0]["reason"]
    sent = [m["json"]["text"] for m in slack.received()["slack"]]
    assert len(sent) == 1 and "[LOW] CONFIG CHANGED 2 keys" in sent[0], sent
    assert "ops@acme.io" in sent[0]
    stored = json.dumps([{**s, "ts": s["ts"]} for s in snapshots(engine)])
    _secrets_absent(stored, alerts[0]["reason"], *sent, json.dumps(result))

    # the configuration file changes: a non-secret key, and who/what changed it
    nura_config(_config(slack, timeout=7), store=store_url)
    result = check_config(now=T0 + 600)
    assert result["status"] == "changed"
    assert result["changes"] == [
        {
            "key": "config.external_services.partners.alpha.timeout_seconds",
            "change": "changed",
            "old": "null",
            "new": "7.0",
        }
    ]
    assert result["changed_by"][0].startswith("config file ")
    assert len(history(engine, "config")) == 2


def test_diff_and_markers_never_carry_a_secret() -> None:
    marker = Marker("00" * 32)
    old = flatten(
        {"url": "postgresql://u:hunter2@db/x", "api_token": "abc", "name": "a", "n": 1},
        "config",
        {},
        marker,
    )
    new = flatten(
        {"url": "postgresql://u:hunter3@db/x", "api_token": "abd", "name": "b", "n": 1},
        "config",
        {},
        marker,
    )
    assert old["config.n"] == 1 and old["config.name"] == "a"
    assert old["config.url"].startswith("secret:") and old["config.api_token"].startswith("secret:")
    changes = diff(old, new)
    assert [c["key"] for c in changes] == ["config.api_token", "config.name", "config.url"]
    text = json.dumps(changes)
    assert "hunter" not in text and "abc" not in text and "abd" not in text
    # equal secrets at the same key compare equal; the key is part of the marker
    assert marker("k", "s") == marker("k", "s") != marker("j", "s")
    assert Marker("11" * 32)("k", "s") != marker("k", "s")  # keyed by the salt
