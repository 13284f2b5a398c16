"""A Confluence sync (test server over HTTP -> moto S3, real Prefect) keeps the vector index
in step: the index answers with the right page, an edit re-embeds only that page, a
trashed page's chunks go in the same run, a failed embedding fails the run and the next
run heals it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn
from deployments.sandbox.confluence_server import ConfluenceServer
from flows.confluence_sync import confluence_sync
from nura.kb.embed import embed_texts
from nura.kb.index import open_index
from tests.kb.conftest import TITAN, kb_config_data

pytestmark = pytest.mark.integration
EMAIL, TOKEN = "bot@example.com", "sandbox-token"

PAGES = {
    "Rotating signing secrets": "<h1>Rotation</h1><p>Rotate the webhook signing secret "
    "every quarter and keep the previous secret valid for one day.</p>",
    "Deploying flows": "<h1>Deploy</h1><p>Deploy flows with prefect deploy; workers poll "
    'the work pool.</p><ac:structured-macro ac:name="code"><ac:plain-text-body>'
    "<![CDATA[prefect deploy --all]]></ac:plain-text-body></ac:structured-macro>",
    "Paging policy": "<h1>Paging</h1><p>The on-call engineer is paged for critical "
    "alerts.</p><h2>Escalation</h2><p>Escalate to the platform lead after thirty minutes.</p>",
}


@pytest.fixture
def confluence() -> Iterator[ConfluenceServer]:
    server = ConfluenceServer(email=EMAIL, api_token=TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def env(confluence, moto_reset, nura_config, embed_standin, tmp_path, prefect_server, monkeypatch):  # type: ignore[no-untyped-def]
    from nura.bedrock.invoke import reset_invokers
    from nura.kb.index import reset_indexes

    monkeypatch.setenv("CONFLUENCE_EMAIL", EMAIL)
    monkeypatch.setenv("CONFLUENCE_API_TOKEN", TOKEN)
    data: dict[str, Any] = kb_config_data(embed_standin.url, tmp_path / "kb-index")
    data["external_services"]["aws"].update(
        endpoint_url=moto_reset,
        s3={"bucket_name": "nura-kb-test", "rate_limit_per_minute": 60000},
    )
    data["external_services"]["confluence"] = {
        "base_url": confluence.url,
        "rate_limit_per_minute": 60000,
        "spaces": ["TECH"],
        "credentials_block": "nura-test-no-such-block",
        "retry_attempts": 1,
        "process_pool_min_pages": 10_000,
    }
    reset_invokers()
    reset_indexes()
    confluence.add_space("TECH")
    ids = {title: confluence.add_page("TECH", title, body, labels=["howto"])["id"]
           for title, body in PAGES.items()}  # fmt: skip
    cfg = nura_config(data)
    from nura import get_call_layer

    get_call_layer().limiter.client  # type: ignore[attr-defined]  # noqa: B018
    yield cfg, ids, data
    reset_invokers()
    reset_indexes()


def top(question: str) -> str:
    vector = embed_texts([question], purpose="query").vectors[0]
    hits = open_index().search(vector, 1, {"space": "TECH", "labels": ["howto"]})
    return hits[0].doc_id if hits else ""


def test_sync_keeps_the_index_in_step(
    env: Any, confluence: ConfluenceServer, embed_standin: BedrockStandIn
) -> None:
    _, ids, _ = env
    confluence_sync()
    index = open_index()
    assert index.document_ids(space="TECH") == {f"confluence:{i}" for i in ids.values()}
    assert top("how often should the webhook signing secret be rotated") == (
        f"confluence:{ids['Rotating signing secrets']}"
    )
    assert top("who gets paged for critical alerts") == f"confluence:{ids['Paging policy']}"
    hit = open_index().search(embed_texts(["escalate platform lead"]).vectors[0], 1)[0]
    assert hit.section == "Paging > Escalation" and hit.title == "Paging policy"
    assert hit.url.startswith(confluence.url) and hit.labels == ("howto",)

    # An edit re-embeds that page only (embedding calls counted at the stand-in).
    deploy = ids["Deploying flows"]
    confluence.edit(deploy, body="<h1>Deploy</h1><p>Deployments run on serverless pools.</p>")
    calls = embed_standin.calls(TITAN)
    confluence_sync()
    assert embed_standin.calls(TITAN) - calls == index.count_chunks(f"confluence:{deploy}") == 1

    # A trashed page leaves the index in the same run.
    paging = ids["Paging policy"]
    confluence.trash(paging)
    confluence_sync()
    assert index.count_chunks(f"confluence:{paging}") == 0
    assert top("who gets paged for critical alerts") != f"confluence:{paging}"


def test_a_failed_embedding_fails_the_run_and_the_next_run_heals(
    env: Any, confluence: ConfluenceServer, embed_standin: BedrockStandIn
) -> None:
    _, ids, _ = env
    embed_standin.script(TITAN, validation=-1)
    state = confluence_sync(return_state=True)
    assert state.is_failed() and "knowledge-base index" in state.message
    assert open_index().document_ids() == set()
    embed_standin.reset()
    confluence_sync()  # nothing changed in Confluence: the index's digests say what is missing
    assert len(open_index().document_ids()) == len(ids)


def test_page_ingest_indexes_and_removes_one_page(
    env: Any, confluence: ConfluenceServer, embed_standin: BedrockStandIn
) -> None:
    _, ids, _ = env
    page = confluence.add_page("TECH", "Caching", "<p>Cache the manifests in S3.</p>")["id"]
    confluence_sync(page_id=page)
    index = open_index()
    assert index.document_ids() == {f"confluence:{page}"}  # only the ingested page
    confluence.trash(page)
    confluence_sync(page_id=page, space="TECH")
    assert index.document_ids() == set()


def test_with_a_bedrock_knowledge_base_sidecars_and_an_ingestion_job(
    env: Any, confluence: ConfluenceServer, embed_standin: BedrockStandIn, nura_config: Any
) -> None:
    """`kb.bedrock_knowledge_base` set: nothing is embedded by nura; each stored page gets
    its `.metadata.json` sidecar, a removed page loses it, one ingestion job per run."""
    from nura.kb import s3

    _, ids, data = env
    embed_standin.knowledge_bases.add("KB12345678", "DS12345678")
    data["kb"]["bedrock_knowledge_base"] = {
        "knowledge_base_id": "KB12345678",
        "data_source_id": "DS12345678",
        "poll_seconds": 0.01,
    }
    nura_config(data)
    confluence_sync()
    assert embed_standin.calls(TITAN) == 0 and embed_standin.knowledge_bases.started() == 1
    page = ids["Paging policy"]
    sidecar = s3.get_json(f"confluence/TECH/{page}.md.metadata.json")
    attributes = sidecar["metadataAttributes"]
    assert attributes["title"] == "Paging policy" and attributes["space"] == "TECH"
    assert attributes["labels"] == ["howto"] and attributes["doc_id"] == f"confluence:{page}"
    assert attributes["url"].startswith(confluence.url)
    confluence.trash(page)
    embed_standin.knowledge_bases.fail_next("S3 access denied")
    state = confluence_sync(return_state=True)
    assert s3.get_json(f"confluence/TECH/{page}.md.metadata.json") is None
    assert state.is_failed() and "S3 access denied" in state.message  # the job failed
