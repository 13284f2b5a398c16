"""ConverseStream: tokens as they arrive, usage from the metadata event, cut-off streams."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from deployments.sandbox.bedrock_server import BedrockStandIn
from nura.bedrock.invoke import get_invoker
from nura.bedrock.models import InvocationRequest
from nura.bedrock.pricing import max_cost_pusd
from nura.core.runtime import store_url
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import CostLedger, to_pusd
from tests.bedrock.conftest import HAIKU, NOVA, SONNET

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _prefect(prefect_server):  # type: ignore[no-untyped-def]
    return prefect_server


def test_stream_hands_out_pieces_and_bills_the_reported_usage(bedrock_config, standin) -> None:
    bedrock_config(lifecycle_check=False)
    standin.script(SONNET, throttle=1)  # refused before the stream starts: the chain moves on
    pieces: list[str] = []
    result = get_invoker().invoke(
        InvocationRequest(prompt="Tell me about flows", api="converse_stream"),
        on_text=pieces.append,
    )
    assert result.model_id == HAIKU and len(pieces) > 3 and "".join(pieces) == result.text
    assert result.stop_reason == "end_turn" and not result.cost_estimated
    (row,) = CostLedger(get_engine(store_url())).calls()
    assert row["api"] == "converse_stream" and not row["estimated"]
    assert row["output_tokens"] == result.output_tokens > 0
    assert row["cost_pusd"] == to_pusd(result.cost_usd)


def test_a_stream_cut_off_midway_is_billed_as_estimated_and_says_so(
    bedrock_config, standin: BedrockStandIn
) -> None:
    settings = bedrock_config(models=[NOVA], lifecycle_check=False).external_services.aws.bedrock
    standin.script(NOVA, cut=1)
    pieces: list[str] = []
    result = get_invoker().invoke(
        InvocationRequest(prompt="Tell me about flows", api="converse_stream", max_tokens=300),
        on_text=pieces.append,
    )
    assert pieces and result.stop_reason == "cut"
    assert result.cost_estimated and result.cost_unknown
    (row,) = CostLedger(get_engine(store_url())).calls()
    assert row["estimated"] and row["detail"] == "stream cut off midway: estimated"
    price = settings.price_for(NOVA, "us-east-1")
    bound = len(b"Tell me about flows") + 3 + 1
    assert row["cost_pusd"] == max_cost_pusd(price, bound, 300)


def test_cli_invoke_stream(bedrock_config, standin) -> None:
    from nura.cli.main import app

    bedrock_config(lifecycle_check=False)
    out = CliRunner().invoke(app, ["invoke", "Hello stream", "--model", NOVA, "--stream"])
    assert out.exit_code == 0, out.output
    assert f"answered by {NOVA}" in " ".join(out.output.split())
    assert standin.calls(NOVA) == 1
