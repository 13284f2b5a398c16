"""Embeddings through the call layer over real HTTP against the Bedrock stand-in: exact
cost in the ledger, hard budgets refusing, throttling retried, Cohere batches."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn
from nura.bedrock.models import BudgetExceeded, InvalidInvocation
from nura.core.runtime import store_url
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import CostLedger, to_pusd
from nura.kb.embed import embed_texts
from tests.kb.conftest import COHERE, TITAN

pytestmark = pytest.mark.integration


def ledger_rows() -> list[dict]:  # type: ignore[type-arg]
    return CostLedger(get_engine(store_url())).calls()


def test_titan_embeds_each_text_with_exact_cost_in_the_ledger(
    kb_config, embed_standin: BedrockStandIn, store_url: str
) -> None:
    kb_config(store=store_url)
    texts = ["Rotate the signing keys every quarter.", "Deploy with prefect deploy."]
    result = embed_texts(texts)
    assert len(result.vectors) == 2 and all(len(v) == 256 for v in result.vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-6) for v in result.vectors)
    assert result.calls == 2 and embed_standin.calls(TITAN) == 2
    assert result.cost_usd == Decimal(result.input_tokens) * Decimal("0.00002") / 1000
    rows = ledger_rows()
    assert len(rows) == 2
    assert {r["scope"] for r in rows} == {"kb-embeddings"}
    assert {r["model_id"] for r in rows} == {TITAN}
    assert sum(r["input_tokens"] for r in rows) == result.input_tokens
    assert sum(r["cost_pusd"] for r in rows) == to_pusd(result.cost_usd)
    assert all(r["output_tokens"] == 0 and not r["estimated"] for r in rows)


def test_hard_budget_refuses_before_any_call(kb_config, embed_standin: BedrockStandIn) -> None:
    budgets = {"scopes": {"kb-embeddings": {"daily_usd": "0.00000001"}}}
    kb_config(bedrock={"budgets": budgets})
    with pytest.raises(BudgetExceeded) as caught:
        embed_texts(["x" * 1000])  # up to 1,001 tokens x $0.00002/1k > $0.00000001
    assert caught.value.scope == "kb-embeddings"
    assert embed_standin.calls(TITAN) == 0
    assert ledger_rows() == []


def test_throttling_is_retried_by_the_call_layer(kb_config, embed_standin: BedrockStandIn) -> None:
    kb_config()
    embed_standin.script(TITAN, throttle=1)
    result = embed_texts(["one text"])
    assert len(result.vectors) == 1
    assert embed_standin.calls(TITAN) == 2  # the 429, then the answer
    assert len(ledger_rows()) == 1  # the throttled attempt billed nothing


def test_blank_text_is_refused_before_anything_is_sent(
    kb_config, embed_standin: BedrockStandIn
) -> None:
    kb_config()
    with pytest.raises(InvalidInvocation, match="blank"):
        embed_texts(["fine", "  \n"])
    assert embed_standin.calls() == 0


def test_cohere_sends_batches_of_96(kb_config, embed_standin: BedrockStandIn) -> None:
    kb_config(embedding_model=COHERE)
    texts = [f"document number {i} about topic {i % 7}" for i in range(100)]
    result = embed_texts(texts)
    assert embed_standin.calls(COHERE) == 2 and result.calls == 2
    assert len(result.vectors) == 100 and all(len(v) == 1024 for v in result.vectors)
    query = embed_texts([texts[5]], purpose="query").vectors[0]
    assert query == result.vectors[5]  # the stand-in embeds queries and documents alike
    assert result.cost_usd == Decimal(result.input_tokens) * Decimal("0.0001") / 1000
