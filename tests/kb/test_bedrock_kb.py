"""The stand-in's bedrock-agent ingestion jobs as AWS documents them, and
`sync_knowledge_base` tracking a job to its end (injected sleep)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from deployments.sandbox.bedrock_server import BedrockStandIn

KB, DS = "KB12345678", "DS12345678"
TOKEN = "t" * 40


@pytest.fixture
def agent(embed_standin: BedrockStandIn) -> Any:
    embed_standin.knowledge_bases.add(KB, DS)
    return boto3.client(
        "bedrock-agent",
        endpoint_url=embed_standin.url,
        region_name="us-east-1",
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )


def test_an_ingestion_job_moves_to_complete(agent: Any) -> None:
    job = agent.start_ingestion_job(knowledgeBaseId=KB, dataSourceId=DS, clientToken=TOKEN)
    job = job["ingestionJob"]
    assert job["status"] == "STARTING" and job["knowledgeBaseId"] == KB
    again = agent.start_ingestion_job(knowledgeBaseId=KB, dataSourceId=DS, clientToken=TOKEN)
    assert again["ingestionJob"]["ingestionJobId"] == job["ingestionJobId"]  # idempotent
    seen = [
        agent.get_ingestion_job(
            knowledgeBaseId=KB, dataSourceId=DS, ingestionJobId=job["ingestionJobId"]
        )["ingestionJob"]["status"]
        for _ in range(3)
    ]
    assert seen == ["STARTING", "IN_PROGRESS", "COMPLETE"]


def test_refusals(agent: Any) -> None:
    agent.start_ingestion_job(knowledgeBaseId=KB, dataSourceId=DS)
    with pytest.raises(ClientError) as caught:
        agent.start_ingestion_job(knowledgeBaseId=KB, dataSourceId=DS)
    assert caught.value.response["Error"]["Code"] == "ConflictException"
    for kb, ds in (("NOSUCHKB00", DS), (KB, "NOSUCHDS00")):
        with pytest.raises(ClientError) as caught:
            agent.start_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds)
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        agent.get_ingestion_job(knowledgeBaseId=KB, dataSourceId=DS, ingestionJobId="NOPE000000")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.integration
def test_sync_knowledge_base_writes_sidecars_and_tracks_the_job(
    kb_config, embed_standin: BedrockStandIn, moto_reset: str
) -> None:
    from nura.kb import s3
    from nura.kb.bedrock_kb import sync_knowledge_base
    from nura.kb.index import DocumentRecord

    embed_standin.knowledge_bases.add(KB, DS)
    kb_config(  # moto for S3 (the sidecars), the stand-in for bedrock-agent
        aws={"endpoint_url": moto_reset, "s3": {"bucket_name": "nura-kb-sidecars"}},
        bedrock_knowledge_base={"knowledge_base_id": KB, "data_source_id": DS, "poll_seconds": 5},
    )
    s3.ensure_bucket()
    record = DocumentRecord("git:acme/docs/main/a.md", "d", "a.md", "https://git/a", "git",
                            repo="acme/docs", key="git/acme/docs/main/a.md")  # fmt: skip
    pauses: list[float] = []
    report = sync_knowledge_base([(record.key or "", record)], ["git/acme/docs/main/old.md"],
                                 sleep=pauses.append)  # fmt: skip
    assert report.ok and report.ingestion_job is not None
    assert report.ingestion_job["status"] == "COMPLETE" and pauses == [5, 5, 5]
    assert s3.get_json("git/acme/docs/main/a.md.metadata.json") == {
        "metadataAttributes": {
            "doc_id": "git:acme/docs/main/a.md",
            "title": "a.md",
            "url": "https://git/a",
            "source": "git",
            "repo": "acme/docs",
        }
    }
    assert (report.embedded_docs, report.removed_docs) == (1, 1)


@pytest.mark.integration
def test_a_job_that_cannot_start_or_fails_fails_the_documents(
    kb_config, embed_standin: BedrockStandIn, moto_reset: str
) -> None:
    from nura.kb import s3
    from nura.kb.bedrock_kb import sync_knowledge_base
    from nura.kb.index import DocumentRecord

    embed_standin.knowledge_bases.add(KB, DS)
    kb_config(
        aws={"endpoint_url": moto_reset, "s3": {"bucket_name": "nura-kb-sidecars"}},
        bedrock_knowledge_base={"knowledge_base_id": KB, "data_source_id": "DSOTHER000"},
    )
    s3.ensure_bucket()
    record = DocumentRecord("confluence:1", "d", "T", "u", "confluence", "TECH", key="c/1.md")
    report = sync_knowledge_base([("c/1.md", record)], sleep=lambda _: None)
    assert not report.ok and "ResourceNotFoundException" in report.failed["confluence:1"]
    embed_standin.knowledge_bases.add(KB, "DSOTHER000")
    embed_standin.knowledge_bases.fail_next("The data source's bucket is not readable")
    report = sync_knowledge_base([("c/1.md", record)], sleep=lambda _: None)
    assert report.ingestion_job is not None and report.ingestion_job["status"] == "FAILED"
    assert "not readable" in report.failed["confluence:1"]
