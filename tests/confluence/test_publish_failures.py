"""Issue 19, item 3: a page that Confluence refuses (400, 413) gets its `failed` row; the
other pages are still published, the table artifact is written, and the run fails at the
end naming the failed pages. The flow against the test server, with a Prefect server."""

from __future__ import annotations

import asyncio

import pytest

from flows.confluence_publish import PublishPage, confluence_publish

pytestmark = pytest.mark.integration


def _artifact_rows(run_id) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    async def read():  # type: ignore[no-untyped-def]
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["confluence-publish"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                )
            )

    (artifact,) = asyncio.run(read())
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else list(data)


def test_refused_pages_fail_alone_and_the_run_names_them(confluence, sync_env) -> None:
    confluence.add_space("ARCH")
    sync_env(spaces=["ARCH"])
    confluence.max_request_bytes = 4000  # Confluence's is 5 MB: a smaller one, same 413
    huge = "x" * 5000
    pages = [
        PublishPage(title="Orphan", content="# O\n", parent_id="999999999"),  # 400
        PublishPage(title="Too big", content=huge),
        PublishPage(title="Fine", content="# Fine\n"),
    ]
    state = confluence_publish(pages=pages, return_state=True)
    assert state.is_failed()
    assert "Orphan" in state.message and "Too big" in state.message
    assert "Fine" not in state.message.split("PublishFailed", 1)[-1].split(":")[0]
    assert any(p["title"] == "Fine" for p in confluence.pages.values())  # still published
    rows = {r["title"]: r for r in _artifact_rows(state.state_details.flow_run_id)}
    assert rows["Orphan"]["action"] == "failed" and "400" in rows["Orphan"]["detail"]
    assert rows["Too big"]["action"] == "failed" and "413" in rows["Too big"]["detail"]
    assert rows["Fine"]["action"] == "created"
