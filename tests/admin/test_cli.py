"""`nura` operator commands: remote mode in a subprocess against the served admin API,
local mode in process against the store; both leave the same audit rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nura.core.stores import admin_overrides, audit
from tests.admin.conftest import AdminStack

pytestmark = pytest.mark.integration

NURA = str(Path(sys.executable).with_name("nura"))


def _nura(
    stack: AdminStack, role: str | None, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURA_ADMIN")}
    if role is not None:
        env["NURA_ADMIN_TOKEN"] = stack.tokens[role]
    return subprocess.run(
        [NURA, "--remote", stack.url, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_remote_commands_act_through_the_api(admin_stack: AdminStack) -> None:
    done = _nura(admin_stack, "admin", "budgets", "set", "cli-team", "--daily", "3")
    assert done.returncode == 0, done.stderr
    assert admin_overrides.budget_overrides(admin_stack.engine)["cli-team"]["daily_usd"] == 3
    row = audit.entries(admin_stack.engine, action="budgets.set", limit=1)[0]
    assert (row["actor"], row["target"], row["outcome"]) == ("t-admin", "cli-team", "ok")

    denied = _nura(admin_stack, "viewer", "breakers", "reset", "confluence")
    assert denied.returncode == 1
    assert "403" in denied.stderr and "needs role operator" in denied.stderr
    assert admin_stack.tokens["viewer"] not in denied.stderr + denied.stdout

    usage = _nura(admin_stack, "operator", "breakers", "reset", "no-such-service")
    assert usage.returncode == 2 and "unknown service" in usage.stderr

    no_token = _nura(admin_stack, None, "admin", "audit")
    assert no_token.returncode == 2 and "NURA_ADMIN_TOKEN" in no_token.stderr

    listed = _nura(admin_stack, "viewer", "admin", "audit", "--action", "budgets.set")
    assert listed.returncode == 0 and "t-admin" in listed.stdout


def test_remote_secret_rotation_reads_stdin(admin_stack: AdminStack) -> None:
    from prefect.blocks.system import Secret

    Secret(value="old").save("nura-test-cli-rotate", overwrite=True)
    done = _nura(
        admin_stack,
        "admin",
        "secrets",
        "rotate",
        "secret/nura-test-cli-rotate",
        "value",
        stdin="brand-new-value\n",
    )
    assert done.returncode == 0, done.stderr
    assert "brand-new-value" not in done.stdout + done.stderr
    assert Secret.load("nura-test-cli-rotate").get() == "brand-new-value"


def test_local_commands_write_the_store_and_audit(nura_config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nura.cli.main import app
    from nura.core.stores.db import get_engine

    store = f"sqlite:///{tmp_path / 'local.db'}"
    nura_config(
        {
            "webhooks": {
                "incoming": {"partner": {"url_path": "/webhooks/partner", "event_types": ["x"]}}
            }
        },
        store=store,
    )
    runner = CliRunner()
    off = runner.invoke(app, ["endpoints", "disable", "partner"])
    assert off.exit_code == 0, off.output
    unknown = runner.invoke(app, ["endpoints", "disable", "nope"])
    assert unknown.exit_code == 2 and "no incoming endpoint" in unknown.output
    engine = get_engine(store)
    assert admin_overrides.disabled_endpoints(engine) == {"partner"}
    rows = audit.entries(engine, action="endpoints.disable")
    assert [r["outcome"] for r in rows] == ["invalid", "ok"]
    assert all(r["actor"].startswith("cli:") and r["role"] is None for r in rows)
    shown = runner.invoke(app, ["admin", "audit", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [json.loads(line)["action"] for line in shown.output.splitlines()] == [
        "endpoints.disable",
        "endpoints.disable",
    ]
