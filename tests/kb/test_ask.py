"""`nura.kb.ask` over a small indexed corpus: the Bedrock stand-in (embeddings and answers)
over real HTTP, the LanceDB index on disk, budgets and the ledger in the store, rate limits
on the real Prefect server; the kb-ask flow with its artifact, and `nura ask`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from deployments.sandbox.bedrock_server import BedrockStandIn
from nura.bedrock.models import BudgetExceeded
from nura.core.runtime import store_url
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import CostLedger
from tests.bedrock.conftest import HAIKU, SONNET, bedrock_section

pytestmark = pytest.mark.integration

EMBED = "amazon.titan-embed-text-v2:0"
PROJECT = Path(__file__).resolve().parents[2]

DOCS = {
    "confluence:101": (
        "TECH",
        "Ingest worker guide",
        "# Ingest worker guide\n\n## Retries\n\nThe ingest worker retries failed uploads "
        "three times with exponential backoff before it gives up.\n\n## Deploy\n\nThe "
        "worker is deployed by the platform pipeline every weekday.\n",
    ),
    "confluence:102": (
        "TECH",
        "Billing exports",
        "# Billing exports\n\n## Schedule\n\nInvoices are exported to the finance bucket "
        "at midnight in CSV format.\n",
    ),
    "confluence:201": (
        "OPS",
        "Ingest worker runbook",
        "# Ingest worker runbook\n\n## Restart\n\nRestart the ingest worker with the "
        "drain-and-restart runbook when uploads stall.\n",
    ),
}
RETRY_QUESTION = "How many times does the ingest worker retry failed uploads?"
RESTART_QUESTION = "How do I restart the ingest worker when uploads stall?"
UNRELATED = "What colour are the zebras of the Serengeti?"


@pytest.fixture
def standin(embed_standin: BedrockStandIn) -> BedrockStandIn:
    """The Bedrock stand-in of tests/kb/conftest.py (embeddings and answers), reset."""
    return embed_standin


@pytest.fixture
def kb(prefect_server, nura_config, standin: BedrockStandIn):  # type: ignore[no-untyped-def]
    """Factory: a config on the stand-in (overrides of the bedrock section merge in), the
    three documents indexed through `refresh`, the stand-in's counters reset."""
    from nura.bedrock.invoke import reset_invokers
    from nura.bedrock.limits import reset_token_leaser
    from nura.kb.index import reset_indexes

    def make(**bedrock: Any) -> dict[str, Any]:
        reset_invokers()
        reset_token_leaser()
        reset_indexes()
        section = bedrock_section(standin.url, **bedrock)
        section["model_limits"][EMBED] = {"requests_per_minute": 60000}
        data = {
            "api_gateway": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
            "external_services": {"aws": {"bedrock": section}},
        }
        nura_config(data)
        _index_corpus()
        standin.reset()  # count only what the question costs
        return data

    yield make
    reset_invokers()
    reset_token_leaser()
    reset_indexes()


def _index_corpus() -> None:
    from nura.kb.index import DocumentRecord
    from nura.kb.refresh import document_digest, refresh

    changed = [
        (
            DocumentRecord(
                doc_id=doc_id,
                digest=document_digest(text, title=title, space=space),
                title=title,
                url=f"https://wiki.example/spaces/{space}/pages/{doc_id.split(':')[1]}",
                source="confluence",
                space=space,
            ),
            text,
        )
        for doc_id, (space, title, text) in DOCS.items()
    ]
    report = refresh(changed, [])
    assert report.ok and report.embedded_docs == 3, report


def _generation_calls(standin: BedrockStandIn) -> int:
    return standin.calls() - standin.calls(EMBED)


def test_known_question_is_answered_with_the_right_citation(kb, standin) -> None:
    from nura.kb.ask import ask

    kb()
    answer = ask(RETRY_QUESTION)
    assert not answer.not_found
    assert "three times" in answer.text and answer.text.endswith("[1]")
    first = answer.citations[0]
    assert (first.n, first.doc_id, first.title) == (1, "confluence:101", "Ingest worker guide")
    assert first.url == "https://wiki.example/spaces/TECH/pages/101"
    assert "Retries" in first.section
    assert answer.model_id == SONNET and not answer.fallback_used
    assert answer.cost_usd == answer.embedding_cost_usd + answer.generation_cost_usd
    assert answer.embedding_cost_usd > 0 and answer.generation_cost_usd > 0
    rows = CostLedger(get_engine(store_url())).calls()
    answered = [r for r in rows if r["model_id"] == SONNET]
    assert len(answered) == 1 and answered[0]["scope"] == "kb-ask"
    assert standin.calls(EMBED) == 1 and _generation_calls(standin) == 1


def test_space_filter_excludes_the_other_space(kb) -> None:
    from nura.kb.ask import ask

    kb()
    tech = ask(RESTART_QUESTION, space="TECH")
    assert all(s.doc_id != "confluence:201" for s in tech.sources)
    ops = ask(RESTART_QUESTION, space="OPS")
    assert [c.doc_id for c in ops.citations] == ["confluence:201"]
    assert "drain-and-restart" in ops.text


def test_nothing_relevant_is_not_found_without_a_generation_call(kb, standin) -> None:
    from nura.kb.ask import NOT_FOUND_TEXT, ask

    kb()
    answer = ask(UNRELATED)
    assert answer.not_found and answer.text == NOT_FOUND_TEXT and answer.citations == []
    assert answer.model_id is None and answer.generation_cost_usd == 0
    assert answer.cost_usd == answer.embedding_cost_usd > 0
    assert standin.calls(EMBED) == 1 and _generation_calls(standin) == 0
    # A space with no documents finds nothing either.
    assert ask(RETRY_QUESTION, space="NOPE").not_found
    assert _generation_calls(standin) == 0


def test_budget_refusal_is_a_typed_error_and_no_answer(kb, standin) -> None:
    from nura.kb.ask import ask

    kb(budgets={"scopes": {"kb-ask": {"daily_usd": "0.000000001"}}})
    with pytest.raises(BudgetExceeded) as caught:
        ask(RETRY_QUESTION)
    assert caught.value.scope == "kb-ask"
    assert _generation_calls(standin) == 0
    rows = CostLedger(get_engine(store_url())).calls()
    assert {r["model_id"] for r in rows} == {EMBED}  # the embeddings, no answer


def test_throttled_first_model_falls_back_to_the_next(kb, standin) -> None:
    from nura.kb.ask import ask

    kb()
    standin.script(SONNET, throttle=-1)
    answer = ask(RETRY_QUESTION)
    assert answer.model_id == HAIKU and answer.fallback_used
    assert answer.citations[0].doc_id == "confluence:101"
    assert standin.calls(SONNET) == 1 and standin.calls(HAIKU) == 1


def test_hostile_questions_are_refused_before_any_call(kb, standin) -> None:
    from nura.kb.ask import InvalidQuestion, ask

    kb()
    for question in ("", "  \n ", "x" * 2001):
        with pytest.raises(InvalidQuestion):
            ask(question)
    assert standin.calls() == 0


async def _artifact(flow_run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    ours = [a for a in artifacts if a.key == "kb-answer"]
    assert len(ours) == 1 and ours[0].type == "markdown"
    return ours[0].data


def test_flow_run_publishes_answer_sources_and_cost(kb) -> None:
    from flows.kb_ask import kb_ask

    kb()
    state = kb_ask(RETRY_QUESTION, space="TECH", return_state=True)
    assert state.is_completed()
    answer = state.result()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    markdown = asyncio.run(_artifact(run_id))
    assert answer.text in markdown
    assert "[Ingest worker guide](<https://wiki.example/spaces/TECH/pages/101>)" in markdown
    assert f"**Cost** ${answer.cost_usd:f}" in markdown
    rows = CostLedger(get_engine(store_url())).calls(flow_run_id=str(run_id))
    assert {r["model_id"] for r in rows} >= {SONNET}


def test_cli_budget_refusal_and_not_found(kb) -> None:
    from nura.cli.main import app

    kb(budgets={"scopes": {"kb-ask": {"daily_usd": "0.000000001"}}})
    runner = CliRunner()
    refused = runner.invoke(app, ["ask", RETRY_QUESTION])
    assert refused.exit_code == 1, refused.output
    assert "Budget spent" in refused.output and "no answer" in refused.output
    missing = runner.invoke(app, ["ask", UNRELATED, "--json"])
    assert missing.exit_code == 0, missing.output
    assert '"not_found": true' in missing.output


def test_cli_subprocess_prints_answer_sources_and_cost(kb, prefect_server) -> None:
    kb()
    env = {**os.environ, "PREFECT_API_URL": prefect_server.api_url, "NO_COLOR": "1"}
    env["COLUMNS"] = "200"
    nura = [sys.executable, "-m", "nura.cli.main"]
    done = subprocess.run(
        [*nura, "ask", RETRY_QUESTION, "--space", "TECH"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "three times" in out and "[1] Ingest worker guide" in out
    assert "https://wiki.example/spaces/TECH/pages/101" in out and "cost $" in out
    bad = subprocess.run(
        [*nura, "ask", "   "], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=240
    )
    assert bad.returncode == 2 and "empty question" in bad.stderr + bad.stdout
    assert Decimal(out.split("cost $")[1].split()[0]) > 0
