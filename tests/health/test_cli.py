"""`nura health`: one round, a table, exit code 0 healthy / 1 degraded / 2 unhealthy."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nura.cli.main import app

pytestmark = pytest.mark.integration
RESPONSE_THRESHOLD = 2.0  # well above moto's latency on a busy machine


def run(*args: str):
    return CliRunner().invoke(app, ["health", *args])


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_exit_codes_follow_overall_status(world) -> None:
    healthy = run()
    assert healthy.exit_code == 0, healthy.output
    assert "alpha" in healthy.output and "healthy" in healthy.output
    assert "slack" not in healthy.output  # unknown services only with --all
    assert "slack" in run("--all").output

    world.control("alpha", latency_ms=2500)  # over the 2 s threshold, within the timeout
    degraded = run("--timeout", "5")
    assert degraded.exit_code == 1, degraded.output
    assert "degraded" in degraded.output

    # Dead: every connection is dropped (a stopped server would still answer on the
    # pooled keep-alive connection its handler thread holds).
    world.control("beta", down=True)
    unhealthy = run("--timeout", "1")
    assert unhealthy.exit_code == 2, unhealthy.output
    assert "unhealthy" in unhealthy.output


def test_unreadable_config_exits_3_not_unhealthy(tmp_path, monkeypatch) -> None:
    from nura.core.runtime import reset_runtime

    bad = tmp_path / "integrations.yaml"
    bad.write_text("health_monitoring:\n  check_timeout_seconds: -1\n")
    monkeypatch.setenv("NURA_CONFIG", str(bad))
    reset_runtime()
    try:
        result = run()
    finally:
        reset_runtime()
    assert result.exit_code == 3, result.output
    assert "Cannot judge health: configuration error" in result.output


def test_unreadable_store_exits_3_not_degraded(nura_config) -> None:
    from tests.support.servers import free_port

    nura_config({}, store=f"postgresql+psycopg://postgres:pw@127.0.0.1:{free_port()}/nura")
    result = run()
    assert result.exit_code == 3, result.output
    assert "the store cannot be read" in result.output
    assert "pw@" not in result.output  # the URL (and its password) is never printed
