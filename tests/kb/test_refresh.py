"""refresh(): only changed documents are embedded (counted at the stand-in), removed ones
lose their chunks in the same run, failures are reported and leave the index as it was."""

from __future__ import annotations

import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn
from nura.kb.chunks import chunk_markdown
from nura.kb.embed import embed_texts
from nura.kb.index import DocumentRecord, open_index
from nura.kb.refresh import document_digest, refresh
from tests.kb.conftest import TITAN

pytestmark = pytest.mark.integration

PAGES = {
    "1": ("Key rotation", "# Rotate keys\n\nRotate the webhook signing secret every quarter."),
    "2": ("Deploying", "# Deploy\n\nDeploy flows with prefect deploy and a work pool."),
    "3": ("Budgets", "# Budgets\n\nBedrock budgets refuse calls past the daily limit."),
    "4": ("On call", "# Paging\n\nThe on-call engineer is paged for critical alerts.\n\n"
          "## Escalation\n\nEscalate to the platform lead after thirty minutes."),
}  # fmt: skip


def record(pid: str, title: str, text: str, space: str = "TECH") -> tuple[DocumentRecord, str]:
    digest = document_digest(text, title=title, space=space)
    return DocumentRecord(f"confluence:{pid}", digest, title, f"https://wiki/{pid}",
                          "confluence", space), text  # fmt: skip


def docs() -> list[tuple[DocumentRecord, str]]:
    return [record(pid, title, text) for pid, (title, text) in PAGES.items()]


def chunks_of(text: str) -> int:
    return len(chunk_markdown(text))


def ask(question: str, **filters: str) -> list[str]:
    vector = embed_texts([question], purpose="query").vectors[0]
    return [h.doc_id for h in open_index().search(vector, 3, filters or None)]


def test_only_the_changed_document_is_embedded_again(
    kb_config, embed_standin: BedrockStandIn
) -> None:
    kb_config()
    first = refresh(docs(), [])
    total = sum(chunks_of(t) for _, t in PAGES.values())
    assert (first.embedded_docs, first.embedded_chunks, first.skipped_unchanged) == (4, total, 0)
    assert embed_standin.calls(TITAN) == total and first.ok and first.cost_usd > 0
    assert ask("how often is the webhook signing secret rotated")[0] == "confluence:1"

    edited = "# Deploy\n\nDeploy flows with prefect deploy; workers poll the pool."
    changed = [record(p, t, x) for p, (t, x) in PAGES.items() if p != "2"]
    changed.append(record("2", "Deploying", edited))
    before = embed_standin.calls(TITAN)
    second = refresh(changed, [])
    assert (second.embedded_docs, second.skipped_unchanged) == (1, 3)
    assert embed_standin.calls(TITAN) - before == chunks_of(edited) == second.embedded_chunks
    again = refresh(changed, [])
    assert (again.embedded_docs, again.skipped_unchanged, again.cost_usd) == (0, 4, 0)


def test_a_removed_document_loses_its_chunks_in_the_same_run(
    kb_config, embed_standin: BedrockStandIn
) -> None:
    kb_config()
    refresh(docs(), [])
    assert ask("who gets paged for critical alerts")[0] == "confluence:4"
    report = refresh([record("5", "New", "# New\n\nA brand new page about caching.")],
                     ["confluence:4", "confluence:unknown"])  # fmt: skip
    assert (report.removed_docs, report.embedded_docs) == (1, 1)
    index = open_index()
    assert index.count_chunks("confluence:4") == 0 and index.digest("confluence:4") is None
    assert "confluence:4" not in ask("who gets paged for critical alerts")


def test_search_filters_by_space(kb_config, embed_standin: BedrockStandIn) -> None:
    kb_config()
    ops = record("9", "Ops rotation", "# Rotate\n\nRotate the ops pager weekly.", space="OPS")
    refresh([*docs(), ops], [])
    assert ask("rotate", space="OPS") == ["confluence:9"]
    assert "confluence:9" not in ask("rotate", space="TECH")


def test_a_failed_embedding_is_reported_and_keeps_the_old_chunks(
    kb_config, embed_standin: BedrockStandIn
) -> None:
    kb_config()
    refresh(docs(), [])
    old = open_index().digest("confluence:1")
    embed_standin.script(TITAN, server_error=-1)
    report = refresh([record("1", "Key rotation", "# Rotate keys\n\nNow monthly.")], [])
    assert not report.ok and list(report.failed) == ["confluence:1"]
    assert (
        "ServerError" in report.failed["confluence:1"] or "Circuit" in report.failed["confluence:1"]
    )
    assert report.embedded_docs == 0
    assert open_index().digest("confluence:1") == old  # the next run tries again
    assert open_index().count_chunks("confluence:1") > 0


def test_a_spent_budget_stops_the_run_with_every_document_failed(
    kb_config, embed_standin: BedrockStandIn
) -> None:
    kb_config(bedrock={"budgets": {"scopes": {"kb-embeddings": {"daily_usd": "0.00000001"}}}})
    report = refresh(docs(), [])
    assert not report.ok and len(report.failed) == 4
    assert all("BudgetExceeded" in why for why in report.failed.values())
    assert embed_standin.calls(TITAN) == 0
