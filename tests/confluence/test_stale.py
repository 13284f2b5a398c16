"""Knowledge that must not go stale or get lost (issue 19, items 1, 2, 4, 5): metadata
follows the page, a trashed page leaves without an event space, calls are counted per
space, an open breaker ends with a named failure. Test server (HTTP) -> moto S3, Prefect.
"""

from __future__ import annotations

import pytest

from flows.confluence_sync import ConfluenceSyncFailed, confluence_sync
from nura.confluence.state import load_manifest
from nura.kb import s3

pytestmark = pytest.mark.integration


def ids(server, space: str) -> list[str]:
    return sorted(p["id"] for p in server.space_pages(space))


def meta(space: str, page: str) -> dict[str, str]:
    head = s3.head_document(f"confluence/{space}/{page}.md")
    assert head is not None
    return dict(head["Metadata"])


def test_title_labels_and_parent_changes_reach_the_object_metadata(confluence, sync_env) -> None:
    """Item 1: same Markdown, new title (a new version) -> the object says so (a copy in
    place: same content, same encryption); a label or a move (no new version) too."""
    confluence.generate(["TECH"], 4, body_bytes=500)
    renamed, labelled, moved, parent = ids(confluence, "TECH")
    sync_env(spaces=["TECH"])
    confluence_sync()
    before = meta("TECH", renamed)
    assert before["version"] == "1"

    confluence.clock = lambda: 4_102_444_800.0  # 2100-01-01: a visibly new last-modified
    confluence.edit(renamed, body=confluence.pages[renamed]["body"], title="Renamed page")
    confluence.pages[labelled]["labels"].append("runbook")
    confluence.pages[moved]["parent_id"] = parent
    summary = confluence_sync()["TECH"]
    after = meta("TECH", renamed)
    assert after["title"] == "Renamed page" and after["version"] == "2"
    assert summary["metadata"] == 3 and summary["updated"] == 0 and summary["created"] == 0
    assert after["last-modified"].startswith("2100-01-01") != before["last-modified"]
    assert after["sha256"] == before["sha256"]
    head = s3.head_document(f"confluence/TECH/{renamed}.md")
    assert head is not None and head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"].startswith("text/markdown")
    assert meta("TECH", labelled)["labels"] == "generated,runbook,tech"
    assert meta("TECH", moved)["parent-id"] == parent
    entry = load_manifest("TECH").pages[renamed]
    assert entry["title"] == "Renamed page" and entry["version"] == 2
    # nothing changed since: nothing is rewritten
    summary = confluence_sync()["TECH"]
    assert summary["metadata"] == 0 and summary["skipped"] == 4


def test_trashed_page_ingest_without_space_leaves_the_knowledge_base(confluence, sync_env) -> None:
    """Item 2: the event names no space; the trashed page's own spaceId says where it was."""
    confluence.generate(["TECH", "DOCS"], 2, body_bytes=300)
    sync_env()
    confluence_sync()
    page = ids(confluence, "DOCS")[1]
    confluence.trash(page)
    state = confluence_sync(page_id=page, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["DOCS"]["deleted"] == 1
    assert s3.head_document(f"confluence/DOCS/{page}.md") is None
    assert page not in load_manifest("DOCS").pages
    assert len(load_manifest("TECH").pages) == 2


def test_api_calls_are_counted_per_space(confluence, sync_env) -> None:
    """Item 4: each space's row counts its own requests, not the run's."""
    confluence.generate(["TECH"], 30, body_bytes=200)
    confluence.generate(["DOCS"], 3, body_bytes=200)
    sync_env()
    confluence.stats.clear()
    summary = confluence_sync()
    requests = confluence.stats["requests"]
    confluence.edit(ids(confluence, "TECH")[0])
    confluence.edit(ids(confluence, "TECH")[1])
    later = confluence_sync()
    # full: per space a listing answer and a label search; and the run's space lookup
    assert summary["TECH"]["api_calls"] == 2 and summary["DOCS"]["api_calls"] == 2
    assert requests == 2 + 2 + 1
    # incremental: TECH's two changed bodies come from one more (CQL) call
    assert later["TECH"]["api_calls"] == 3 and later["DOCS"]["api_calls"] == 2


def test_open_breaker_ends_the_space_with_a_named_failure(confluence, sync_env) -> None:
    """Item 5: Confluence failing mid-space opens the breaker; the run ends with
    ConfluenceSyncFailed naming the space and what was kept, the watermark stays."""
    confluence.generate(["TECH"], 12, body_bytes=300)
    sync_env(spaces=["TECH"], circuit_breaker_threshold=2, retry_attempts=0, concurrency=1)
    confluence_sync()
    watermark = load_manifest("TECH").watermark
    pages = ids(confluence, "TECH")
    for page in pages:
        confluence.edit(page)
    # the bodies must be fetched one by one, and those GETs fail: the breaker opens
    confluence.listing_omits_body = set(pages)
    confluence.broken_pages = set(pages)
    with pytest.raises(ConfluenceSyncFailed) as err:
        confluence_sync(spaces=["TECH"], full=True)
    message = str(err.value)
    assert "TECH" in message and "circuit breaker open" in message
    assert "kept 12 page(s)" in message and "watermark stays" in message
    manifest = load_manifest("TECH")
    assert manifest.watermark == watermark and len(manifest.pages) == 12
