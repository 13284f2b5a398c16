"""The vector index of the knowledge base: LanceDB, embedded or on S3.

    index = open_index()            # kb.index_uri: None -> <state_dir>/kb-index (no server)
    index.upsert_document(doc, chunks, vectors)
    index.search(query_vector, k=5, filters={"space": "TECH", "labels": ["howto"]})

Why LanceDB (docs/knowledge-base.md): it is embedded (a library over files, no server),
the same tables work on a local directory and on S3 (`s3://bucket/prefix`, every worker
sharing one index: the scale path), and it filters on metadata inside the vector search
(SQL `WHERE`, pre-filtered). sqlite-vec would need `sqlite3.enable_load_extension`, which
this Python's sqlite3 is built without.

Two tables per (embedding model, dimensions), so vectors of different models never mix:
`documents_<slug>` (one row per document: digest and provenance) and `chunks_<slug>` (one
row per chunk: text, section, vector and the document's filterable fields). A document's
chunks are replaced first and its digest written last, so a write cut midway leaves the
old digest and the next refresh embeds the document again. Scores are cosine similarity.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nura.kb.chunks import Chunk

if TYPE_CHECKING:
    from nura.config.schema import IntegrationsConfig

Source = Literal["confluence", "git"]
FILTER_KEYS = ("space", "repo", "source", "labels")
_IN_BATCH = 500  # doc ids per `IN (...)` lookup


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str  # "confluence:<page_id>" / "git:<owner>/<repo>/<branch>/<path>"
    digest: str  # sha256 of the Markdown that was chunked
    title: str
    url: str
    source: Source
    space: str | None = None  # Confluence space key
    repo: str | None = None  # Git "owner/repo"
    labels: tuple[str, ...] = ()
    key: str | None = None  # its S3 object key (where Bedrock Knowledge Base sidecars go)


@dataclass(frozen=True)
class Hit:
    doc_id: str
    chunk_ordinal: int
    score: float  # cosine similarity, 1 = same direction
    text: str
    title: str
    url: str
    section: str
    source: str
    space: str | None
    repo: str | None
    labels: tuple[str, ...]


# One table pair per embedding model: f"{CHUNKS_PREFIX}{slug}", f"{DOCUMENTS_PREFIX}{slug}".
CHUNKS_PREFIX, DOCUMENTS_PREFIX = "chunks_", "documents_"


def sql_quote(value: str) -> str:
    """A SQL string literal (LanceDB filters are DataFusion SQL)."""
    return "'" + value.replace("'", "''") + "'"


def doc_ids_clause(ids: list[str]) -> str:
    """The SQL filter of the rows of these documents."""
    return f"doc_id IN ({', '.join(sql_quote(i) for i in ids)})"


def where_clause(filters: dict[str, Any] | None) -> str | None:
    """The SQL filter of `filters`: space / repo / source equal, labels any-of."""
    if not filters:
        return None
    unknown = set(filters) - set(FILTER_KEYS)
    if unknown:
        raise ValueError(f"unknown filter(s) {sorted(unknown)}; use {', '.join(FILTER_KEYS)}")
    parts = []
    for key in ("space", "repo", "source"):
        value = filters.get(key)
        if value:
            parts.append(f"{key} = {sql_quote(str(value))}")
    labels = filters.get("labels")
    if labels:
        if isinstance(labels, str):
            labels = [labels]
        listed = ", ".join(sql_quote(str(label)) for label in labels)
        parts.append(f"array_has_any(labels, [{listed}])")
    return " AND ".join(parts) or None


class VectorIndex:
    """The chunk and document tables of one embedding model; thread-safe."""

    def __init__(self, db: Any, slug: str, dimensions: int) -> None:
        import pyarrow as pa

        self.dimensions = dimensions
        self._lock = threading.Lock()
        provenance = [
            ("doc_id", pa.string()),
            ("title", pa.string()),
            ("url", pa.string()),
            ("source", pa.string()),
            ("space", pa.string()),
            ("repo", pa.string()),
            ("labels", pa.list_(pa.string())),
        ]
        chunk_schema = pa.schema(
            [
                *provenance,
                ("ordinal", pa.int32()),
                ("section", pa.string()),
                ("text", pa.string()),
                ("vector", pa.list_(pa.float32(), dimensions)),
            ]
        )
        doc_schema = pa.schema([*provenance, ("digest", pa.string()), ("chunks", pa.int32())])
        self.chunks = db.create_table(f"{CHUNKS_PREFIX}{slug}", schema=chunk_schema, exist_ok=True)
        self.documents = db.create_table(
            f"{DOCUMENTS_PREFIX}{slug}", schema=doc_schema, exist_ok=True
        )

    # -- writes --------------------------------------------------------------------------
    def upsert_document(
        self, doc: DocumentRecord, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]
    ) -> None:
        """Replace the document's chunks, then record its digest."""
        self.upsert_documents([(doc, chunks, vectors)])

    def upsert_documents(
        self,
        items: Sequence[tuple[DocumentRecord, Sequence[Chunk], Sequence[Sequence[float]]]],
    ) -> None:
        """`upsert_document` for many documents in three table commits (a LanceDB commit
        costs the same for one row as for thousands)."""
        rows: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for doc, chunks, vectors in items:
            rows += self._chunk_rows(doc, chunks, vectors)
            records.append({**_provenance(doc), "digest": doc.digest, "chunks": len(chunks)})
        if not records:
            return
        ids = list(dict.fromkeys(r["doc_id"] for r in records))
        with self._lock:
            for start in range(0, len(ids), _IN_BATCH):
                self.chunks.delete(doc_ids_clause(ids[start : start + _IN_BATCH]))
            if rows:
                self.chunks.add(rows)
            (
                self.documents.merge_insert("doc_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(records)
            )

    def _chunk_rows(
        self, doc: DocumentRecord, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]
    ) -> list[dict[str, Any]]:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        for vector in vectors:
            if len(vector) != self.dimensions:
                raise ValueError(f"a vector of {len(vector)} dimensions, not {self.dimensions}")
        base = _provenance(doc)
        return [
            {**base, "ordinal": c.ordinal, "section": c.section, "text": c.text, "vector": list(v)}
            for c, v in zip(chunks, vectors, strict=True)
        ]

    def remove_document(self, doc_id: str) -> int:
        """Remove a document and its chunks; how many chunks there were."""
        where = f"doc_id = {sql_quote(doc_id)}"
        with self._lock:
            count = int(self.chunks.count_rows(where))
            self.chunks.delete(where)
            self.documents.delete(where)
        return count

    def optimize(self) -> None:
        """Compact the small files many upserts leave (LanceDB writes a fragment each)."""
        with self._lock:
            self.chunks.optimize()
            self.documents.optimize()

    # -- reads ---------------------------------------------------------------------------
    def digest(self, doc_id: str) -> str | None:
        return self.digests([doc_id]).get(doc_id)

    def digests(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """Stored digest per document id (ids not in the index are absent)."""
        ids = list(dict.fromkeys(doc_ids))
        found: dict[str, str] = {}
        for start in range(0, len(ids), _IN_BATCH):
            batch = ids[start : start + _IN_BATCH]
            rows = (
                self.documents.search()
                .where(doc_ids_clause(batch))
                .select(["doc_id", "digest"])
                .limit(len(batch))
                .to_list()
            )
            found.update({r["doc_id"]: r["digest"] for r in rows})
        return found

    def document_ids(self, **filters: Any) -> set[str]:
        """Ids of the indexed documents (filters as in `search`: space, repo, source)."""
        where = where_clause(filters)
        query = self.documents.search().select(["doc_id"])
        if where:
            query = query.where(where)
        total = max(1, int(self.documents.count_rows()))
        return {r["doc_id"] for r in query.limit(total).to_list()}

    def count_chunks(self, doc_id: str | None = None) -> int:
        where = f"doc_id = {sql_quote(doc_id)}" if doc_id is not None else None
        return int(self.chunks.count_rows(where))

    def search(
        self, vector: Sequence[float], k: int = 5, filters: dict[str, Any] | None = None
    ) -> list[Hit]:
        """The `k` chunks nearest `vector` (cosine), best first, within `filters`."""
        if len(vector) != self.dimensions:
            raise ValueError(f"a query of {len(vector)} dimensions, not {self.dimensions}")
        if k < 1:
            raise ValueError("k must be at least 1")
        query = self.chunks.search(list(vector)).distance_type("cosine").limit(k)
        where = where_clause(filters)
        if where:
            query = query.where(where, prefilter=True)
        return [_hit(row) for row in query.to_list()]


def _provenance(doc: DocumentRecord) -> dict[str, Any]:
    return {
        "doc_id": doc.doc_id,
        "title": doc.title,
        "url": doc.url,
        "source": doc.source,
        "space": doc.space,
        "repo": doc.repo,
        "labels": list(doc.labels),
    }


def _hit(row: dict[str, Any]) -> Hit:
    return Hit(
        doc_id=row["doc_id"],
        chunk_ordinal=int(row["ordinal"]),
        score=1.0 - float(row["_distance"]),
        text=row["text"],
        title=row["title"],
        url=row["url"],
        section=row["section"],
        source=row["source"],
        space=row["space"],
        repo=row["repo"],
        labels=tuple(row["labels"] or ()),
    )


def model_slug(model_id: str, dimensions: int) -> str:
    return re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_") + f"_{dimensions}"


def index_location(config: IntegrationsConfig) -> str:
    """`kb.index_uri`, else `<platform.state_dir>/kb-index`."""
    if config.kb.index_uri:
        return config.kb.index_uri
    platform = config.platform
    # The shipped file sets state_dir from NURA_STATE_DIR; a config that leaves it unset
    # follows the environment as the stores do (`default_store_url`).
    explicit = "state_dir" in platform.model_fields_set
    base = (platform.state_dir if explicit else None) or os.environ.get("NURA_STATE_DIR")
    base = base or platform.state_dir or ".nura"
    return str(Path(base).resolve() / "kb-index")


def embedding_dimensions(model_id: str, dimensions: int) -> int:
    """What the model answers: Cohere v3 always 1,024; Titan V2 what it is asked."""
    return 1024 if model_id.startswith("cohere.") else dimensions


_indexes: dict[tuple[str, str, int], VectorIndex] = {}
_indexes_lock = threading.Lock()


def open_index(config: IntegrationsConfig | None = None) -> VectorIndex:
    """The index of this configuration's embedding model (cached per location and model)."""
    import lancedb

    if config is None:
        from nura import get_config

        config = get_config()
    kb = config.kb
    uri = index_location(config)
    dimensions = embedding_dimensions(kb.embedding_model, kb.dimensions)
    key = (uri, kb.embedding_model, dimensions)
    with _indexes_lock:
        index = _indexes.get(key)
        if index is None:
            if "://" not in uri:
                Path(uri).mkdir(parents=True, exist_ok=True)
            options = dict(kb.index_storage_options) or None
            db = lancedb.connect(uri, storage_options=options)
            index = VectorIndex(db, model_slug(kb.embedding_model, dimensions), dimensions)
            _indexes[key] = index
        return index


def reset_indexes() -> None:
    """Forget opened indexes (tests)."""
    with _indexes_lock:
        _indexes.clear()
