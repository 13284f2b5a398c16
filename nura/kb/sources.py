"""What a Confluence sync or a Git ingest changed, brought into the vector index.

    report = index_confluence("TECH", manifest.pages, bodies, complete=True)
    report = index_git(repo="acme/docs", stored=[GitDocument(...)], deleted=[key, ...])

Confluence: the space's manifest says what the knowledge base holds (page id -> key,
title, labels, sha256 of the Markdown). A page's index digest is computed from those
(`digest_of`), so comparing it with the index's needs no S3 read: only pages whose
digest differs are embedded, their Markdown taken from this run's writes (`bodies`) or
read back from S3 (a page an earlier run stored but could not embed). With
`complete=True` (a space sync) the index's pages of that space that the manifest no
longer has are removed in the same run, so a trashed or deleted page - or one an
earlier failed run left behind - never stays retrievable; a one-page ingest passes
`removed` instead.

Git: the files an ingest stored (those matching `kb.git_index_paths`) are embedded, the
deleted ones removed.

With `kb.enabled: false` nothing happens (None); with `kb.bedrock_knowledge_base` set,
Bedrock does the embedding (`nura.kb.bedrock_kb`): sidecars and an ingestion job.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nura import get_call_layer, get_config
from nura.core.aws_clients import aws_client
from nura.kb.index import DocumentRecord, open_index
from nura.kb.refresh import RefreshReport, digest_of, refresh


def confluence_doc_id(page_id: str) -> str:
    return f"confluence:{page_id}"


def git_doc_id(key: str) -> str:
    """`git:<owner>/<repo>/<branch>/<path>` from the S3 key `git/...`."""
    return "git:" + key.removeprefix("git/")


def read_document(key: str) -> tuple[bytes, dict[str, str]] | None:
    """The object's content and user metadata, or None when it is gone."""
    from nura.kb.s3 import knowledge_base

    client = aws_client("s3")
    obj = (
        get_call_layer()
        .call_or_none(
            "s3", "get_object", client.get_object, Bucket=knowledge_base().bucket, Key=key
        )
        .value
    )
    if obj is None:
        return None
    return obj["Body"].read(), dict(obj.get("Metadata") or {})


def _confluence_record(space: str, page_id: str, entry: dict[str, Any], url: str) -> DocumentRecord:
    labels = tuple(sorted(str(label) for label in entry.get("labels") or ()))
    title = str(entry.get("title") or "")
    return DocumentRecord(
        doc_id=confluence_doc_id(page_id),
        digest=digest_of(str(entry["sha256"]), title=title, labels=labels, space=space),
        title=title,
        url=url,
        source="confluence",
        space=space,
        labels=labels,
        key=str(entry["key"]),
    )


Bodies = dict[str, tuple[bytes | None, str]]


def index_confluence(
    space: str,
    pages: dict[str, dict[str, Any]],
    bodies: Bodies,
    *,
    removed: Iterable[str] = (),
    complete: bool = False,
) -> RefreshReport | None:
    """Bring the index's pages of `space` in line with `pages` (manifest entries).

    `bodies`: page id -> (Markdown, or None when only the metadata was rewritten; page
    URL) written by this run. `removed`: page ids gone. `complete`: `pages` is the whole
    space (also remove what it lacks)."""
    cfg = get_config()
    if not cfg.kb.enabled:
        return None
    if cfg.kb.bedrock_knowledge_base is not None:
        return _confluence_to_bedrock(space, pages, bodies, list(removed), complete)
    index = open_index(cfg)
    wanted = {pid: _confluence_record(space, pid, e, "") for pid, e in pages.items()}
    stored = index.digests(confluence_doc_id(pid) for pid in wanted)
    changed: list[tuple[DocumentRecord, str]] = []
    gone = [confluence_doc_id(pid) for pid in removed]
    for pid, record in wanted.items():
        if stored.get(record.doc_id) == record.digest:
            continue
        body, url = bodies.get(pid) or (None, "")
        if body is None:  # stored by an earlier run, or only its metadata changed
            read = read_document(str(pages[pid]["key"]))
            if read is None:  # the manifest names an object S3 no longer has
                gone.append(record.doc_id)
                continue
            body, url = read[0], url or read[1].get("source-url", "")
        changed.append((_with_url(record, url), body.decode("utf-8", "replace")))
    if complete:
        held = index.document_ids(source="confluence", space=space)
        gone += sorted(held - {confluence_doc_id(pid) for pid in wanted})
    return refresh(changed, gone, index=index, config=cfg)


def _confluence_to_bedrock(
    space: str,
    pages: dict[str, dict[str, Any]],
    bodies: Bodies,
    removed: list[str],
    complete: bool,
) -> RefreshReport:
    """Bedrock Knowledge Base mode: sidecars for this run's pages, an ingestion job."""
    from nura.kb.bedrock_kb import SIDECAR, sync_knowledge_base

    documents = [
        (str(pages[pid]["key"]), _confluence_record(space, pid, pages[pid], url))
        for pid, (_, url) in bodies.items()
        if pid in pages
    ]
    # The knowledge base's layout (nura.kb.s3): confluence/{space}/{page_id}.md
    gone = [f"confluence/{space}/{pid}.md" for pid in removed]
    if complete:
        held = {str(e["key"]) for e in pages.values()}
        for key in list_keys(f"confluence/{space}/"):
            if key.endswith(SIDECAR) and key.removesuffix(SIDECAR) not in held:
                gone.append(key.removesuffix(SIDECAR))
    return sync_knowledge_base(documents, sorted(set(gone)))


def list_keys(prefix: str) -> list[str]:
    """Every key under `prefix` (ListObjectsV2, page by page, through the call layer)."""
    from nura.kb.s3 import knowledge_base

    client = aws_client("s3")
    keys: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": knowledge_base().bucket, "Prefix": prefix}
    while True:
        page = get_call_layer().call("s3", "list_objects_v2", client.list_objects_v2, **kwargs)
        keys += [o["Key"] for o in page.value.get("Contents") or []]
        token = page.value.get("NextContinuationToken") if page.value.get("IsTruncated") else None
        if not token:
            return keys
        kwargs["ContinuationToken"] = token


def _with_url(record: DocumentRecord, url: str) -> DocumentRecord:
    from dataclasses import replace

    return replace(record, url=url)


@dataclass(frozen=True)
class GitDocument:
    key: str  # the S3 key git/{owner}/{repo}/{branch}/{path}
    path: str
    url: str
    data: bytes


def git_indexed(path: str) -> bool:
    """Is a stored Git file embedded (`kb.git_index_paths`)?"""
    return any(fnmatch.fnmatchcase(path, p) for p in get_config().kb.git_index_paths)


def index_git(repo: str, stored: list[GitDocument], deleted: list[str]) -> RefreshReport | None:
    """Embed the Git files an ingest stored, remove the deleted keys' chunks."""
    cfg = get_config()
    if not cfg.kb.enabled:
        return None
    records = []
    for doc in stored:
        sha = hashlib.sha256(doc.data).hexdigest()
        title = doc.path.rsplit("/", 1)[-1]
        record = DocumentRecord(
            doc_id=git_doc_id(doc.key),
            digest=digest_of(sha, title=title, labels=(), repo=repo),
            title=title,
            url=doc.url,
            source="git",
            repo=repo,
            key=doc.key,
        )
        records.append((record, doc.data.decode("utf-8", "replace")))
    if cfg.kb.bedrock_knowledge_base is not None:
        from nura.kb.bedrock_kb import sync_knowledge_base

        return sync_knowledge_base([(r.key or "", r) for r, _ in records], deleted)
    return refresh(records, [git_doc_id(k) for k in deleted], config=cfg)
