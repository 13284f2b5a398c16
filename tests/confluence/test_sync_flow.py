"""The confluence-sync flow end to end: test server (HTTP) -> moto S3, real Prefect server."""

from __future__ import annotations

import asyncio

import pytest

from flows.confluence_sync import ConfluenceSyncFailed, confluence_sync
from nura.confluence.state import load_manifest
from nura.confluence.sync import sync_space_impl
from nura.kb import s3

pytestmark = pytest.mark.integration


def fetched(server) -> int:
    return server.stats["GET /wiki/api/v2/pages/{id}"]


def ids(server, space: str) -> list[str]:
    return sorted(p["id"] for p in server.space_pages(space))


def test_full_then_incremental_sse_metadata_and_unchanged(confluence, sync_env) -> None:
    confluence.generate(["TECH", "DOCS"], 12, body_bytes=2000)
    sync_env()
    summary = confluence_sync()
    assert summary["TECH"]["created"] == 12 and summary["DOCS"]["created"] == 12
    assert summary["TECH"]["mode"] == "full"

    first = ids(confluence, "TECH")[0]
    head = s3.head_document(f"confluence/TECH/{first}.md")
    assert head is not None and head["ServerSideEncryption"] == "AES256"
    meta = head["Metadata"]
    assert {"source-url", "version", "sha256", "title", "last-modified"} <= set(meta)
    assert meta["source-url"].startswith(confluence.url + "/wiki/spaces/TECH/pages/")
    manifest = load_manifest("TECH")
    assert manifest.watermark and manifest.full_started is None and len(manifest.pages) == 12

    changed, same = ids(confluence, "TECH")[1], ids(confluence, "TECH")[2]
    confluence.edit(changed)
    confluence.edit(same, body=confluence.pages[same]["body"])  # new version, same content
    confluence.stats.clear()
    summary = confluence_sync()
    assert summary["TECH"]["mode"] == "incremental"
    assert (summary["TECH"]["updated"], summary["TECH"]["metadata"]) == (1, 1)
    assert summary["DOCS"]["updated"] == 0 and fetched(confluence) == 0
    # per space: a listing, a label search; TECH: one CQL search brings both bodies
    assert confluence.stats["GET /wiki/rest/api/content/search"] == 3
    assert summary["TECH"]["api_calls"] == 3 and summary["DOCS"]["api_calls"] == 2
    # same sha256: the content is not sent again, the metadata says version 2 (copy)
    assert s3.head_document(f"confluence/TECH/{same}.md")["Metadata"]["version"] == "2"
    assert load_manifest("TECH").pages[same]["version"] == 2
    assert s3.head_document(f"confluence/TECH/{changed}.md")["Metadata"]["version"] == "2"


def test_trashed_and_purged_pages_leave_the_knowledge_base(confluence, sync_env) -> None:
    confluence.generate(["TECH", "DOCS"], 6, body_bytes=500)
    sync_env()
    confluence_sync()
    trashed, purged = ids(confluence, "TECH")[:2]
    confluence.trash(trashed)
    confluence.purge(purged)
    summary = confluence_sync()
    assert summary["TECH"]["deleted"] == 2
    for page in (trashed, purged):
        assert s3.head_document(f"confluence/TECH/{page}.md") is None
        assert page not in load_manifest("TECH").pages


def test_resume_after_crash_does_not_refetch_stored_pages(confluence, sync_env) -> None:
    """A stopped full sync resumes from the listing cursor in its checkpoint: the pages
    before it are neither listed nor converted again, nothing is fetched page by page."""
    confluence.generate(["TECH"], 30, body_bytes=500)
    sync_env(spaces=["TECH"], checkpoint_pages=10, page_size=10)
    s3.ensure_bucket()
    with pytest.raises(RuntimeError, match="simulated crash"):
        sync_space_impl("TECH", crash_after=10)
    manifest = load_manifest("TECH")
    assert len(manifest.pages) == 10 and manifest.watermark is None and manifest.full_started
    assert manifest.cursor and "cursor=" in manifest.cursor
    confluence.stats.clear()
    summary = confluence_sync()
    assert summary["TECH"]["created"] == 20 and fetched(confluence) == 0
    assert confluence.stats["GET /wiki/api/v2/spaces/{id}/pages"] == 2  # from the cursor on
    final = load_manifest("TECH")
    assert final.watermark is not None and final.cursor is None and len(final.pages) == 30


def test_missing_space_and_failed_page_fail_the_run_not_the_others(confluence, sync_env) -> None:
    confluence.generate(["TECH", "DOCS"], 5, body_bytes=500)
    broken = ids(confluence, "TECH")[0]
    confluence.listing_omits_body = {broken}  # so it is fetched by itself, and that fails
    confluence.broken_pages = {broken}
    sync_env(spaces=["TECH", "NOPE", "DOCS"])
    state = confluence_sync(return_state=True)
    assert state.is_failed()
    assert "NOPE" in state.message and broken in state.message
    assert len(load_manifest("DOCS").pages) == 5
    tech = load_manifest("TECH")
    assert len(tech.pages) == 4 and tech.watermark is None  # watermark waits for the page
    confluence.broken_pages = set()
    confluence.stats.clear()
    summary = confluence_sync(spaces=["TECH"])
    assert summary["TECH"]["created"] == 1 and fetched(confluence) == 1


def test_single_page_ingest_and_its_deletion(confluence, sync_env) -> None:
    confluence.generate(["TECH", "DOCS"], 3, body_bytes=500)
    sync_env()
    page = ids(confluence, "DOCS")[1]
    summary = confluence_sync(page_id=page)  # space looked up from the page
    assert summary["DOCS"]["created"] == 1
    assert s3.head_document(f"confluence/DOCS/{page}.md") is not None
    confluence.trash(page)
    summary = confluence_sync(page_id=page, space="DOCS")
    assert summary["DOCS"]["deleted"] == 1
    assert s3.head_document(f"confluence/DOCS/{page}.md") is None


def _run_artifacts(key: str, run_id) -> list:  # type: ignore[no-untyped-def]
    """The artifacts with `key` that flow run `run_id` created."""
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
                    key=ArtifactFilterKey(any_=[key]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                )
            )

    return asyncio.run(read())


def test_page_ingest_has_its_own_artifact_key(confluence, sync_env) -> None:
    """A one-page ingest does not become the space's latest `confluence-sync-*` result."""
    confluence.generate(["TECH"], 3, body_bytes=300)
    sync_env(spaces=["TECH"])
    state = confluence_sync(page_id=ids(confluence, "TECH")[0], space="TECH", return_state=True)
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    table = _run_artifacts("confluence-page-ingest-tech", run_id)
    assert table and '"mode": "page"' in str(table[0].data).replace("'", '"')
    assert _run_artifacts("confluence-sync-tech", run_id) == []


def test_process_pool_and_artifacts(confluence, sync_env) -> None:
    confluence.generate(["TECH"], 8, body_bytes=3000)
    sync_env(spaces=["TECH"], process_pool_min_pages=1, convert_processes=2)
    state = confluence_sync(return_state=True)
    assert state.is_completed() and state.result()["TECH"]["created"] == 8

    run_id = state.state_details.flow_run_id

    def artifacts(key: str) -> list:  # type: ignore[type-arg]
        return _run_artifacts(key, run_id)

    table = artifacts("confluence-sync-tech")
    assert table and '"created": 8' in str(table[0].data).replace("'", '"')
    progress = artifacts("confluence-sync-progress")
    assert artifacts("confluence-page-ingest-tech") == []
    assert progress and float(progress[0].data) == 100.0


def test_rejects_wrong_credentials_with_the_base_url(confluence, sync_env, monkeypatch) -> None:
    confluence.generate(["TECH"], 2, body_bytes=200)
    sync_env()
    monkeypatch.setenv("CONFLUENCE_API_TOKEN", "wrong")
    state = confluence_sync(return_state=True)
    assert state.is_failed() and confluence.url in state.message
    assert confluence.stats["requests"] == 1  # no retries of a 401


def test_flow_failure_is_typed(confluence, sync_env) -> None:
    confluence.generate(["TECH"], 1, body_bytes=200)
    sync_env(spaces=["NOPE"])
    with pytest.raises(ConfluenceSyncFailed, match="NOPE"):
        confluence_sync()


def _keys(prefix: str) -> list[str]:
    from nura import get_config
    from nura.core.aws_clients import aws_client

    bucket = get_config().external_services.aws.s3.bucket_name
    listed = aws_client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_page_ingest_takes_the_space_from_confluence_not_the_event(confluence, sync_env) -> None:
    """The event's `space` is only a hint: the page is stored under the space Confluence
    says it is in; a hint that disagrees is reported (`event_space`) and never builds a key."""
    confluence.generate(["TECH", "DOCS"], 2, body_bytes=300)
    sync_env()
    page = ids(confluence, "DOCS")[0]
    state = confluence_sync(page_id=page, space="TECH", return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert list(summary) == ["DOCS"] and summary["DOCS"]["created"] == 1
    assert summary["DOCS"]["event_space"] == "TECH"
    assert s3.head_document(f"confluence/DOCS/{page}.md") is not None
    assert _keys("confluence/TECH/") == [] and load_manifest("TECH").pages == {}
    hostile = "../_manifests/confluence/TECH"
    summary = confluence_sync(page_id=page, space=hostile)
    assert list(summary) == ["DOCS"] and summary["DOCS"]["unchanged"] == 1
    assert summary["DOCS"]["event_space"] == hostile
    assert load_manifest("TECH").pages == {}
    # matching hint: nothing reported
    assert "event_space" not in confluence_sync(page_id=page, space="DOCS")["DOCS"]


def test_page_of_an_unconfigured_space_is_ignored_not_failed(confluence, sync_env) -> None:
    """A page-updated event of a space outside `external_services.confluence.spaces` is a
    legitimate event out of scope: the run completes, says why, and stores nothing."""
    confluence.generate(["TECH", "ARCH"], 2, body_bytes=300)
    sync_env(spaces=["TECH"])
    page = ids(confluence, "ARCH")[0]
    for hint in (None, "ARCH", "TECH"):
        state = confluence_sync(page_id=page, space=hint, return_state=True)
        assert state.is_completed(), state.message
        row = state.result()["ARCH"]
        assert "external_services.confluence.spaces" in row["ignored"]
        assert (row["created"], row["updated"], row["api_calls"] <= 2) == (0, 0, True)
    assert _keys("confluence/ARCH/") == [] and _keys("_manifests/confluence/ARCH") == []


def test_deleted_page_is_removed_from_its_configured_space_whatever_the_event_says(
    confluence, sync_env
) -> None:
    confluence.generate(["TECH", "DOCS"], 2, body_bytes=300)
    sync_env()
    page = ids(confluence, "TECH")[0]
    confluence_sync(page_id=page)
    confluence.trash(page)
    summary = confluence_sync(page_id=page, space="../NOPE")  # hint not configured: ignored
    assert summary["TECH"]["deleted"] == 1
    assert s3.head_document(f"confluence/TECH/{page}.md") is None
    assert page not in load_manifest("TECH").pages
    assert _keys("_manifests/confluence/../") == [] and _keys("_manifests/confluence/NOPE") == []
    # a page gone that no configured space holds: nothing to do, not a failure
    summary = confluence_sync(page_id=page, space="DOCS")
    assert list(summary) == ["TECH"] and summary["TECH"]["deleted"] == 0


def test_resume_retries_a_page_that_failed_before_the_crash(confluence, sync_env) -> None:
    """The checkpointed cursor never moves past a listing answer with a failed page: the
    resumed full sync lists it again and retries the page before the watermark moves."""
    confluence.generate(["TECH"], 30, body_bytes=300)
    broken = ids(confluence, "TECH")[12]  # in the second listing answer
    confluence.listing_omits_body = {broken}
    confluence.broken_pages = {broken}
    sync_env(spaces=["TECH"], checkpoint_pages=10, page_size=10, retry_attempts=0)
    s3.ensure_bucket()
    with pytest.raises(RuntimeError, match="simulated crash"):
        sync_space_impl("TECH", crash_after=25)
    manifest = load_manifest("TECH")
    assert broken not in manifest.pages and manifest.cursor and manifest.watermark is None
    confluence.broken_pages = set()
    summary = confluence_sync()
    assert summary["TECH"]["failed"] == 0 and summary["TECH"]["created"] >= 1
    final = load_manifest("TECH")
    assert broken in final.pages and len(final.pages) == 30 and final.watermark is not None
