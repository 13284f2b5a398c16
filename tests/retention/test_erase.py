"""Erasure end to end: the project's own Confluence sync and Git ingest fill a knowledge base
in moto S3 (real boto3 over HTTP), the store holds payloads that mention the documents,
then `erase` removes the document and everything derived from it, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, insert, select

from deployments.sandbox.github_server import ZERO
from nura.core.stores import audit
from nura.core.stores import dead_letters as dl
from nura.core.stores.db import get_engine
from nura.core.stores.inbox import inbox
from nura.retention import erase
from tests.retention.conftest import BUCKET

# Real servers on a shared 2-core machine: the default 300 s is tight under load.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def store_inbox(engine: Engine, delivery: str, payload: Any, status: str = "dispatched") -> None:
    """An inbox row as the receiver stores it (the body byte for byte as it arrived)."""
    with engine.begin() as conn:
        conn.execute(
            insert(inbox).values(
                endpoint="hooks", delivery_id=delivery, event_type="x", status=status,
                received_at=1.0, body=orjson.dumps(payload), content_type="application/json",
                headers="{}", attempts=0, next_attempt_at=1.0,
            )
        )  # fmt: skip


def bodies(engine: Engine) -> dict[str, tuple[str, bytes]]:
    with engine.connect() as conn:
        query = select(inbox.c.delivery_id, inbox.c.status, inbox.c.body)
        return {d: (s, b) for d, s, b in conn.execute(query)}


def ingest_git(github: Any, payload: dict[str, Any]) -> None:
    from nura.git.ingest import changed_files, parse_push, sync_files

    push = parse_push(payload)
    sync_files(push, changed_files(push))


def keys(prefix: str) -> list[str]:
    from nura.core.aws_clients import aws_client

    listed = aws_client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents") or [])


def versions(key: str) -> int:
    from nura.core.aws_clients import aws_client

    listed = aws_client("s3").list_object_versions(Bucket=BUCKET, Prefix=key)
    found = [*(listed.get("Versions") or []), *(listed.get("DeleteMarkers") or [])]
    return sum(1 for v in found if v["Key"] == key)


def fill_index(cfg: Any, page_id: str, marker: str) -> None:
    """The page's chunks in the vector index of the configured model, with `marker` in
    their text (the index is written with its own functions; vectors are given)."""
    from nura.kb.chunks import Chunk
    from nura.kb.index import DocumentRecord, open_index

    index = open_index(cfg)
    doc = DocumentRecord(f"confluence:{page_id}", "d", "T", "u", "confluence", "TECH")
    chunks = [Chunk(f"{marker} one", "", 0), Chunk(f"{marker} two", "A", 1)]
    index.upsert_document(doc, chunks, [[1.0] + [0.0] * (index.dimensions - 1)] * 2)


def files_holding(root: Path, marker: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]


def test_erase_confluence_page(
    confluence: Any, kb_env: Any, store_url: str, tmp_path: Path
) -> None:
    from nura.config.schema import IntegrationsConfig
    from nura.confluence.state import load_manifest
    from nura.confluence.sync import sync_page_impl
    from nura.kb.index import open_index, reset_indexes

    cfg = kb_env(kb={"index_uri": str(tmp_path / "kb-index"), "dimensions": 256})
    engine = get_engine(store_url)
    confluence.generate(["TECH"], 3, body_bytes=400)
    target, other, third = sorted(p["id"] for p in confluence.space_pages("TECH"))
    title = confluence.pages[target]["title"]
    for page in (target, other, third):  # the page ingest a webhook starts
        assert sync_page_impl(page).created == 1
    event = {"event": "page_updated", "page": {"id": int(target), "title": title}}
    store_inbox(engine, "mentions", event)
    store_inbox(engine, "escaped", {"url": f"https://x/wiki/pages/{target}/T"}, "accepted")
    store_inbox(engine, "other", {"event": "page_updated", "page": {"id": int(other)}})
    store_inbox(engine, "longer-id", {"page": {"id": int(target + "7")}})  # not a mention
    outgoing = json.dumps({"type": "kb.updated", "data": {"page_id": target}})
    dl.enqueue(engine, "partner", [("m1", "kb.updated", outgoing)], lease_seconds=60)
    reset_indexes()
    fill_index(cfg, target, "SECRET-CHUNK")
    fill_index(cfg, other, "OTHER-CHUNK")
    older_model = IntegrationsConfig.model_validate(
        {"kb": {**cfg.kb.model_dump(), "dimensions": 512}}
    )
    fill_index(older_model, target, "SECRET-CHUNK")  # an earlier embedding model's table
    assert files_holding(tmp_path / "kb-index", "SECRET-CHUNK")

    dry = erase(engine, cfg, confluence_page=target, actor="cli:test", dry_run=True)
    assert dry.found and dry.s3_objects == [f"confluence/TECH/{target}.md"]
    assert keys(f"confluence/TECH/{target}.md") and not audit.entries(engine, action="erase")

    report = erase(engine, cfg, confluence_page=target, actor="cli:test", now=1000.0)

    assert report.s3_objects == [f"confluence/TECH/{target}.md"]
    assert report.manifest_entries == 1 and not report.versioned_bucket
    assert dry.index_chunks == 4 and report.index_chunks == 4  # two models' tables
    assert files_holding(tmp_path / "kb-index", "SECRET-CHUNK") == []  # old versions too
    reset_indexes()
    assert open_index(cfg).count_chunks(f"confluence:{other}") == 2
    assert open_index(cfg).count_chunks(f"confluence:{target}") == 0
    assert report.stores == {
        "inbox_payloads": 2, "dead_letters": 1, "notification_outbox": 0, "notifications": 0,
    }  # fmt: skip
    assert dry.counts() == {**report.counts(), "s3_versions": 0}
    assert keys("confluence/TECH/") == sorted(f"confluence/TECH/{p}.md" for p in (other, third))
    pages = load_manifest("TECH").pages
    assert target not in pages and other in pages
    left = bodies(engine)
    assert left["mentions"] == ("dispatched", b"") and left["escaped"] == ("failed", b"")
    assert left["other"][1] and left["longer-id"][1]
    assert dl.get(engine, "m1", "partner") is None
    (row,) = audit.entries(engine, action="erase")
    assert row["actor"] == "cli:test" and row["outcome"] == "ok" and row["ts"] == 1000.0
    assert row["target"] == f"confluence_page:sha256:{report.digest}"
    assert row["detail"]["counts"]["inbox_payloads"] == 2
    stored = json.dumps(row)
    assert target not in stored and title not in stored and "confluence/" not in stored

    again = erase(engine, cfg, confluence_page=target, actor="cli:test")
    assert not again.found


def test_erase_git_path_every_branch_and_version(
    fake_github: Any, kb_env: Any, store_url: str
) -> None:
    cfg = kb_env(versioned=True)
    engine = get_engine(store_url)
    c1 = fake_github.commit("octo", "docs", {"people/ana.md": b"Ana\n", "readme.md": b"hi\n"})
    c2 = fake_github.commit("octo", "docs", {"people/ana.md": b"Ana P.\n"}, parent=c1)
    first = fake_github.push_payload("octo", "docs", ZERO, c1)
    ingest_git(fake_github, first)
    ingest_git(fake_github, fake_github.push_payload("octo", "docs", c1, c2))
    ingest_git(fake_github, fake_github.push_payload("octo", "docs", ZERO, c2, branch="dev"))
    store_inbox(engine, "push", first)
    store_inbox(engine, "other-repo", {**first, "repository": {"full_name": "octo/web"}})
    main, dev = "git/octo/docs/main/people/ana.md", "git/octo/docs/dev/people/ana.md"
    assert versions(main) == 2 and versions(dev) == 1

    report = erase(engine, cfg, git_path="octo/docs:people/ana.md", actor="cli:test")

    assert report.s3_objects == [dev, main] and report.versioned_bucket
    assert report.s3_versions == 3 and versions(main) == 0 and versions(dev) == 0
    assert keys("git/") == ["git/octo/docs/dev/readme.md", "git/octo/docs/main/readme.md"]
    assert report.stores["inbox_payloads"] == 1
    left = bodies(engine)
    assert left["push"][1] == b"" and left["other-repo"][1]  # another repository's push stays
    (row,) = audit.entries(engine, action="erase")
    assert "ana" not in json.dumps(row) and row["detail"]["counts"]["s3_versions"] == 3
