"""A Git ingest (GitHub stand-in -> moto S3) embeds the stored Markdown, not the other
files, removes a deleted file's chunks in the same run, and fails loudly when embedding
fails (the files stay stored)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn
from deployments.sandbox.github_server import ZERO
from nura.kb.embed import embed_texts
from nura.kb.index import open_index
from tests.kb.conftest import TITAN, kb_config_data

pytestmark = pytest.mark.integration


@pytest.fixture
def fake_github() -> Iterator[Any]:
    from deployments.sandbox.github_server import FakeGitHub

    server = FakeGitHub().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def git_kb(fake_github, embed_standin, nura_config, moto_reset, prefect_server, tmp_path: Path):  # type: ignore[no-untyped-def]
    from nura.bedrock.invoke import reset_invokers
    from nura.kb.index import reset_indexes
    from nura.kb.s3 import ensure_bucket

    data = kb_config_data(
        embed_standin.url,
        tmp_path / "kb-index",
        aws={"endpoint_url": moto_reset, "s3": {"bucket_name": "kb-git"}},
    )
    data["external_services"]["git"] = {
        "base_url": fake_github.url,
        "branches": ["main"],
        "repositories": ["octo/docs"],
        "rate_limit_per_minute": 60000,
    }
    reset_invokers()
    reset_indexes()
    nura_config(data)
    ensure_bucket()
    yield
    reset_invokers()
    reset_indexes()


def ingest(payload: dict[str, Any]) -> list[dict[str, Any]]:
    from nura.git.ingest import changed_files, parse_push, sync_files

    push = parse_push(payload)
    return sync_files(push, changed_files(push))


def test_markdown_is_embedded_and_a_deleted_file_leaves_the_index(
    fake_github: Any, git_kb: None, embed_standin: BedrockStandIn
) -> None:
    files = {
        "docs/rotate.md": b"# Rotation\n\nRotate the deploy keys every month.\n",
        "docs/budget.md": b"# Budgets\n\nThe daily budget refuses calls past its limit.\n",
        "src/app.py": b"print('not embedded')\n",
    }
    c1 = fake_github.commit("octo", "docs", files)
    ingest(fake_github.push_payload("octo", "docs", ZERO, c1))
    index = open_index()
    assert index.document_ids(repo="octo/docs") == {
        "git:octo/docs/main/docs/rotate.md",
        "git:octo/docs/main/docs/budget.md",
    }
    vector = embed_texts(["how often are deploy keys rotated"], purpose="query").vectors[0]
    hit = index.search(vector, 1, {"repo": "octo/docs"})[0]
    assert hit.doc_id == "git:octo/docs/main/docs/rotate.md" and hit.source == "git"
    assert hit.url.endswith("/blob/" + c1 + "/docs/rotate.md")

    c2 = fake_github.commit("octo", "docs", {"docs/rotate.md": None})
    calls = embed_standin.calls(TITAN)
    ingest(fake_github.push_payload("octo", "docs", c1, c2))
    assert index.document_ids(repo="octo/docs") == {"git:octo/docs/main/docs/budget.md"}
    assert embed_standin.calls(TITAN) == calls  # nothing changed was left to embed


def test_a_failed_embedding_fails_the_ingest_after_storing(
    fake_github: Any, git_kb: None, embed_standin: BedrockStandIn
) -> None:
    from nura.git.ingest import KnowledgeIndexError
    from nura.kb import s3

    c1 = fake_github.commit("octo", "docs", {"a.md": b"# A\n\nSome text.\n"})
    embed_standin.script(TITAN, validation=-1)
    with pytest.raises(KnowledgeIndexError, match="stored but not embedded"):
        ingest(fake_github.push_payload("octo", "docs", ZERO, c1))
    assert s3.head_document("git/octo/docs/main/a.md") is not None
    embed_standin.reset()
    ingest(fake_github.push_payload("octo", "docs", ZERO, c1))  # the retried run
    assert open_index().document_ids() == {"git:octo/docs/main/a.md"}
