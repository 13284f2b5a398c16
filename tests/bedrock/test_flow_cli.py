"""The bedrock-invoke flow on a real Prefect server (artifact, ledger run ids) and the CLI."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from deployments.sandbox.bedrock_server import BedrockStandIn
from nura.bedrock.models import AllModelsFailed, InvocationRequest
from nura.core.runtime import store_url
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import CostLedger
from tests.bedrock.conftest import HAIKU, SONNET, TITAN

pytestmark = pytest.mark.integration


async def _artifact_rows(flow_run_id: str) -> list[dict]:  # type: ignore[type-arg]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    ours = [a for a in artifacts if a.key == "bedrock-costs"]  # a failed run has others too
    assert len(ours) == 1 and ours[0].type == "table"
    data = ours[0].data
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]


def test_flow_run_publishes_cost_table_and_ledger_has_run_id(
    prefect_server, bedrock_config, standin: BedrockStandIn
) -> None:

    from flows.bedrock_invoke import bedrock_invoke

    bedrock_config()
    standin.script(SONNET, throttle=-1)
    state = asyncio.run(
        bedrock_invoke(InvocationRequest(prompt="Hello from a flow"), return_state=True)
    )
    assert state.is_completed()
    result = state.result()
    assert result.model_id == HAIKU and result.fallback_used
    run_id = str(state.state_details.flow_run_id)
    rows = CostLedger(get_engine(store_url())).calls(flow_run_id=run_id)
    assert [r["model_id"] for r in rows] == [HAIKU]
    table = asyncio.run(_artifact_rows(run_id))
    assert [(r["model"], r["outcome"]) for r in table[:-1]] == [
        (SONNET, "throttled"),
        (HAIKU, "ok (fallback)"),
    ]
    assert table[-1]["invocation"] == "TOTAL" and table[-1]["cost_usd"] == f"{result.cost_usd:f}"


def test_flow_run_with_every_model_throttled_fails_with_outcomes_in_artifact(
    prefect_server, bedrock_config, standin: BedrockStandIn
) -> None:
    from flows.bedrock_invoke import bedrock_invoke

    bedrock_config(retry_attempts=0)
    standin.script("*", throttle=-1)
    state = asyncio.run(bedrock_invoke(InvocationRequest(prompt="hi"), return_state=True))
    assert state.is_failed()
    with pytest.raises(AllModelsFailed):
        state.result()
    table = asyncio.run(_artifact_rows(str(state.state_details.flow_run_id)))
    assert [(r["model"], r["outcome"]) for r in table[:-1]] == [
        (SONNET, "throttled"),
        (HAIKU, "throttled"),
        (TITAN, "throttled"),
    ]


def test_flow_with_default_parameters_works_against_the_stand_in(
    prefect_server, bedrock_config, standin: BedrockStandIn
) -> None:
    from flows.bedrock_invoke import bedrock_invoke

    bedrock_config()
    result = asyncio.run(bedrock_invoke())
    assert result.model_id == SONNET and result.text


def test_cli_invoke_and_costs(prefect_server, bedrock_config, standin: BedrockStandIn) -> None:
    from nura.cli.main import app

    bedrock_config(budgets={"scopes": {"global": {"daily_usd": "10", "monthly_usd": "100"}}})
    runner = CliRunner()
    out = runner.invoke(app, ["invoke", "Hello CLI", "--model", HAIKU, "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output[out.output.index("{") :])
    assert payload["model_id"] == HAIKU and payload["output_tokens"] > 0
    bad = runner.invoke(app, ["invoke", "   "])
    assert bad.exit_code == 2 and "empty prompt" in bad.output
    assert standin.calls() == 1
    costs = runner.invoke(app, ["costs", "--json"])
    assert costs.exit_code == 0, costs.output
    report = json.loads(costs.output)
    assert [m["model_id"] for m in report["by_model"]] == [HAIKU]
    assert report["by_model"][0]["cost_usd"] == payload["cost_usd"]
    daily, monthly = report["budgets"]
    assert (daily["scope"], daily["limit_usd"], monthly["limit_usd"]) == ("global", "10", "100")
    assert daily["spent_usd"] == payload["cost_usd"]
