"""The vector index side of an erasure: a document's chunks (their text included) in every
embedding model's tables of the knowledge-base index (`nura.kb.index`, LanceDB).

LanceDB keeps every version of a table: a DELETE only writes a deletion file and the
chunk text stays in the data files older versions point to. An erasure therefore also
drops every older version (`optimize(cleanup_older_than=0)`), which LanceDB warns may fail
a reader or writer still on an older version at that moment: a concurrent `nura ask` or
index refresh fails once and is run again.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from nura.config.schema import IntegrationsConfig
from nura.kb.index import CHUNKS_PREFIX, DOCUMENTS_PREFIX, doc_ids_clause

TABLE_PREFIXES = (CHUNKS_PREFIX, DOCUMENTS_PREFIX)  # one pair per embedding model


def doc_ids(kind: str, page_id: str | None, keys: list[str]) -> list[str]:
    """The index's ids of the erased documents (`nura.kb.sources`)."""
    from nura.kb.sources import confluence_doc_id, git_doc_id

    if kind == "confluence_page" and page_id is not None:
        return [confluence_doc_id(page_id)]
    return [git_doc_id(k) for k in keys] if kind == "git_path" else []


def _connect(cfg: IntegrationsConfig) -> Any | None:
    """The index's database, or None when this installation has none (never created)."""
    import lancedb

    from nura.kb.index import index_location

    uri = index_location(cfg)
    if "://" not in uri and not Path(uri).is_dir():
        return None
    return lancedb.connect(uri, storage_options=dict(cfg.kb.index_storage_options) or None)


def _tables(db: Any) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = db.list_tables(page_token=token)
        for name in page.tables:
            if name.startswith(TABLE_PREFIXES):
                yield db.open_table(name)
        token = page.page_token
        if not token:
            return


def chunks_held(cfg: IntegrationsConfig, ids: list[str]) -> int:
    """Chunk rows of these documents, over every model's table."""
    db = _connect(cfg) if ids else None
    if db is None:
        return 0
    return sum(
        int(t.count_rows(doc_ids_clause(ids)))
        for t in _tables(db)
        if t.name.startswith(CHUNKS_PREFIX)
    )


def remove(cfg: IntegrationsConfig, ids: list[str]) -> int:
    """Delete the documents' rows from every table and drop older versions; the chunk
    rows removed."""
    db = _connect(cfg) if ids else None
    if db is None:
        return 0
    removed = 0
    for table in _tables(db):
        held = int(table.count_rows(doc_ids_clause(ids)))
        if not held:
            continue
        table.delete(doc_ids_clause(ids))
        with warnings.catch_warnings():
            # LanceDB warns that dropping older versions can fail a concurrent reader:
            # wanted here (module docstring).
            warnings.simplefilter("ignore", UserWarning)
            table.optimize(cleanup_older_than=timedelta(0))
        removed += held if table.name.startswith(CHUNKS_PREFIX) else 0
    return removed
