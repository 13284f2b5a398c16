"""The LanceDB index: upsert replaces, removal, digests, filtered search; on a local
directory and on S3 (moto server) - the same tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from nura.config.schema import IntegrationsConfig
from nura.kb.chunks import Chunk
from nura.kb.index import DocumentRecord, open_index, reset_indexes, where_clause


def config(**kb: Any) -> IntegrationsConfig:
    return IntegrationsConfig.model_validate({"kb": {"enabled": True, "dimensions": 256, **kb}})


def unit(slot: int, dims: int = 256) -> list[float]:
    vector = [0.0] * dims
    vector[slot] = 1.0
    return vector


TECH = DocumentRecord(
    "confluence:1", "d1", "Keys", "https://wiki/1", "confluence", "TECH", None, ("howto", "ops")
)
OPS = DocumentRecord(
    "confluence:2", "d2", "O'Brien's runbook", "https://wiki/2", "confluence", "OPS"
)
GIT = DocumentRecord(
    "git:acme/docs/main/README.md", "d3", "README.md", "u", "git", None, "acme/docs"
)


def fill(index: Any) -> None:
    index.upsert_document(
        TECH, [Chunk("rotate", "A", 0), Chunk("b", "A > B", 1)], [unit(0), unit(1)]
    )
    index.upsert_document(OPS, [Chunk("ops", "", 0)], [unit(2)])
    index.upsert_document(GIT, [Chunk("readme", "", 0)], [unit(0)])


@pytest.fixture
def local_index(tmp_path: Path) -> Any:
    reset_indexes()
    yield open_index(config(index_uri=str(tmp_path / "idx")))
    reset_indexes()


def test_search_filters_and_scores(local_index: Any) -> None:
    fill(local_index)
    hits = local_index.search(unit(0), k=2)
    assert {h.doc_id for h in hits} == {"confluence:1", "git:acme/docs/main/README.md"}
    assert all(h.score == pytest.approx(1.0) for h in hits)
    top = local_index.search(unit(0), k=1, filters={"space": "TECH"})[0]
    assert (top.doc_id, top.chunk_ordinal, top.section, top.labels) == (
        "confluence:1",
        0,
        "A",
        ("howto", "ops"),
    )
    assert top.title == "Keys" and top.url == "https://wiki/1" and top.source == "confluence"
    assert [h.doc_id for h in local_index.search(unit(0), 5, {"repo": "acme/docs"})] == [GIT.doc_id]
    assert {h.doc_id for h in local_index.search(unit(0), 5, {"labels": ["ops", "x"]})} == {
        TECH.doc_id
    }
    assert local_index.search(unit(0), 5, {"space": "OPS"})[0].title == "O'Brien's runbook"
    assert local_index.search(unit(0), 5, {"space": "NONE"}) == []
    with pytest.raises(ValueError, match="unknown filter"):
        local_index.search(unit(0), 5, {"author": "x"})


def test_upsert_replaces_and_remove_deletes(local_index: Any) -> None:
    fill(local_index)
    assert local_index.digest(TECH.doc_id) == "d1"
    newer = DocumentRecord(**{**TECH.__dict__, "digest": "d1b"})
    local_index.upsert_document(newer, [Chunk("only one now", "A", 0)], [unit(3)])
    assert local_index.digest(TECH.doc_id) == "d1b"
    assert local_index.count_chunks(TECH.doc_id) == 1
    assert local_index.remove_document(TECH.doc_id) == 1
    assert local_index.digest(TECH.doc_id) is None
    assert local_index.remove_document(TECH.doc_id) == 0
    assert local_index.document_ids(source="confluence") == {OPS.doc_id}
    assert all(h.doc_id != TECH.doc_id for h in local_index.search(unit(3), 10))


def test_wrong_sizes_are_refused(local_index: Any) -> None:
    with pytest.raises(ValueError, match="2 chunks but 1 vectors"):
        local_index.upsert_document(TECH, [Chunk("a", "", 0), Chunk("b", "", 1)], [unit(0)])
    with pytest.raises(ValueError, match="dimensions"):
        local_index.upsert_document(TECH, [Chunk("a", "", 0)], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="dimensions"):
        local_index.search([1.0, 0.0])


def test_sql_in_filters_is_quoted() -> None:
    assert where_clause({"space": "x' OR '1'='1"}) == "space = 'x'' OR ''1''=''1'"


def test_each_model_has_its_own_tables(tmp_path: Path) -> None:
    reset_indexes()
    a = open_index(config(index_uri=str(tmp_path / "i"), dimensions=256))
    b = open_index(config(index_uri=str(tmp_path / "i"), dimensions=512))
    a.upsert_document(OPS, [Chunk("x", "", 0)], [unit(1)])
    assert b.digest(OPS.doc_id) is None and a.digest(OPS.doc_id) == "d2"
    reset_indexes()


@pytest.mark.integration
def test_the_same_index_on_s3(moto_reset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scale path: LanceDB tables in the knowledge-base bucket (moto in server mode)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=moto_reset, region_name="us-east-1")
    s3.create_bucket(Bucket="nura-kb-index")
    options = {"aws_endpoint": moto_reset, "allow_http": "true"}
    reset_indexes()
    index = open_index(
        config(index_uri="s3://nura-kb-index/vectors", index_storage_options=options)
    )
    fill(index)
    assert index.remove_document(OPS.doc_id) == 1
    reset_indexes()  # a second worker opening the same tables sees the same index
    again = open_index(
        config(index_uri="s3://nura-kb-index/vectors", index_storage_options=options)
    )
    assert again.search(unit(0), 1, {"space": "TECH"})[0].text == "rotate"
    assert again.digest(OPS.doc_id) is None
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="nura-kb-index")["Contents"]]
    assert any(k.startswith("vectors/chunks_") for k in keys)
    reset_indexes()
