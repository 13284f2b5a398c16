"""Keep the vector index in step with the knowledge base after a sync or an ingest.

    report = refresh(changed=[(doc_record, markdown), ...], removed=["confluence:123"])
    report.embedded_docs, report.embedded_chunks, report.skipped_unchanged,
    report.removed_docs, report.cost_usd, report.failed  ({doc_id: why}), report.ok

In one run: removed documents lose their chunks; a changed document whose digest equals
the index's is skipped (nothing embedded: `document_digest` covers the text, the
provenance that lands in the chunks and the chunk settings); the others are chunked
(`nura.kb.chunks`), embedded in groups (`nura.kb.embed`: call layer, budgets, ledger)
and replace their old chunks. A group whose embedding fails leaves its documents as they
were (old chunks, old digest: the next refresh tries again) and lands in
`report.failed`; the run goes on with the next group, except after BudgetExceeded, which
would refuse every further group too. A failure is never reported as success:
callers turn `failed` into a failed or partial result.

When `kb.bedrock_knowledge_base` is configured, Bedrock embeds instead
(`nura.kb.bedrock_kb`): the caller writes metadata sidecars and starts an ingestion job,
and this module is not used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from nura.core.errors import IntegrationError
from nura.kb.chunks import Chunk, chunk_markdown
from nura.kb.embed import embed_texts
from nura.kb.index import DocumentRecord, VectorIndex, open_index

if TYPE_CHECKING:
    from nura.config.schema import IntegrationsConfig

logger = logging.getLogger("nura.kb.refresh")
GROUP_CHUNKS = 128  # chunks embedded per `embed_texts` call (its calls run concurrently)


@dataclass
class RefreshReport:
    embedded_docs: int = 0
    embedded_chunks: int = 0
    skipped_unchanged: int = 0
    removed_docs: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)
    input_tokens: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # doc_id -> why
    # A Bedrock Knowledge Base's ingestion job (nura.kb.bedrock_kb): id, status, statistics
    ingestion_job: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def row(self) -> dict[str, object]:
        return {
            "embedded_docs": self.embedded_docs,
            "embedded_chunks": self.embedded_chunks,
            "skipped_unchanged": self.skipped_unchanged,
            "removed_docs": self.removed_docs,
            "cost_usd": f"{self.cost_usd:f}",
            "input_tokens": self.input_tokens,
            "failed": len(self.failed),
        }


def document_digest(
    markdown: str,
    *,
    title: str,
    labels: tuple[str, ...] = (),
    space: str | None = None,
    repo: str | None = None,
    config: IntegrationsConfig | None = None,
) -> str:
    """The index digest of a document's Markdown (see `digest_of`)."""
    content = hashlib.sha256(markdown.encode("utf-8", "replace")).hexdigest()
    return digest_of(content, title=title, labels=labels, space=space, repo=repo, config=config)


def digest_of(
    content_sha256: str,
    *,
    title: str,
    labels: tuple[str, ...] = (),
    space: str | None = None,
    repo: str | None = None,
    config: IntegrationsConfig | None = None,
) -> str:
    """sha256 of what a document's chunks are made of: the content's sha256, the
    provenance stored with each chunk (title, labels, space, repo), the chunk settings and
    the embedding model - a change of any of them re-embeds the document."""
    if config is None:
        from nura import get_config

        config = get_config()
    kb = config.kb
    parts: list[Any] = [content_sha256, title, sorted(labels), space, repo]
    parts += [kb.chunk_max_chars, kb.chunk_overlap_chars, kb.embedding_model, kb.dimensions]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def embedding_text(title: str, chunk: Chunk) -> str:
    """What is embedded for a chunk: where it sits (title > section), then its text."""
    where = " > ".join(p for p in (title.strip(), chunk.section) if p)
    return f"{where}\n\n{chunk.text}" if where else chunk.text


def refresh(
    changed: list[tuple[DocumentRecord, str]],
    removed: list[str],
    *,
    index: VectorIndex | None = None,
    config: IntegrationsConfig | None = None,
) -> RefreshReport:
    """Bring the index up to date with `changed` documents and without `removed` ones."""
    if config is None:
        from nura import get_config

        config = get_config()
    index = index or open_index(config)
    report = RefreshReport()
    _remove(index, removed, report)
    todo = _changed_only(index, changed, report)
    stopped: str | None = None
    for group in _groups(todo, config):
        if stopped is not None:  # the budget is spent: the rest would be refused too
            for doc, _ in group:
                report.failed[doc.doc_id] = f"not embedded: {stopped}"
        elif not _embed_group(index, group, report):
            stopped = report.failed[group[0][0].doc_id]
    if report.embedded_docs or report.removed_docs:
        index.optimize()
    _log(report)
    return report


def _remove(index: VectorIndex, removed: list[str], report: RefreshReport) -> None:
    present = index.digests(removed)
    for doc_id in dict.fromkeys(removed):
        index.remove_document(doc_id)
        report.removed_docs += doc_id in present


def _changed_only(
    index: VectorIndex, changed: list[tuple[DocumentRecord, str]], report: RefreshReport
) -> list[tuple[DocumentRecord, str]]:
    """The documents whose digest differs from the index's (the last entry per id)."""
    latest = {doc.doc_id: (doc, text) for doc, text in changed}
    stored = index.digests(latest)
    todo = []
    for doc_id, (doc, text) in latest.items():
        if stored.get(doc_id) == doc.digest:
            report.skipped_unchanged += 1
        else:
            todo.append((doc, text))
    return todo


def _groups(
    todo: list[tuple[DocumentRecord, str]], config: IntegrationsConfig
) -> Iterator[list[tuple[DocumentRecord, list[Chunk]]]]:
    """Documents with their chunks, in groups of about GROUP_CHUNKS chunks."""
    kb = config.kb
    group: list[tuple[DocumentRecord, list[Chunk]]] = []
    size = 0
    for doc, markdown in todo:
        chunks = chunk_markdown(
            markdown, max_chars=kb.chunk_max_chars, overlap_chars=kb.chunk_overlap_chars
        )
        group.append((doc, chunks))
        size += len(chunks)
        if size >= GROUP_CHUNKS:
            yield group
            group, size = [], 0
    if group:
        yield group


def _embed_group(
    index: VectorIndex, group: list[tuple[DocumentRecord, list[Chunk]]], report: RefreshReport
) -> bool:
    """Embed and store one group; False when the run must stop (budget spent)."""
    from nura.bedrock.models import BudgetExceeded

    texts = [embedding_text(doc.title, c) for doc, chunks in group for c in chunks]
    try:
        result = embed_texts(texts) if texts else None
    except IntegrationError as exc:
        why = f"{type(exc).__name__}: {exc.args[0] if exc.args else exc}"
        logger.warning("embedding %d document(s) failed: %s", len(group), why)
        for doc, _ in group:
            report.failed[doc.doc_id] = why
        return not isinstance(exc, BudgetExceeded)
    vectors = result.vectors if result else []
    if result:
        report.cost_usd += result.cost_usd
        report.input_tokens += result.input_tokens
    items = []
    at = 0
    for doc, chunks in group:
        items.append((doc, chunks, vectors[at : at + len(chunks)]))
        at += len(chunks)
    index.upsert_documents(items)
    report.embedded_docs += len(items)
    report.embedded_chunks += at
    return True


def _log(report: RefreshReport) -> None:
    if report.failed:
        logger.warning("knowledge-base index refresh partial: %s", report.row())
    else:
        logger.info("knowledge-base index refreshed: %s", report.row())
