"""When a Bedrock Knowledge Base reads the bucket: metadata sidecars and ingestion jobs.

    report = sync_knowledge_base([(key, record), ...], removed_keys=[...])
    report.ingestion_job  # {"id", "status", "statistics", "failure_reasons"}

Bedrock Knowledge Bases embed the bucket's documents themselves; nura then only
(1) writes each changed document's metadata beside it as `<key>.metadata.json` in
AWS's format `{"metadataAttributes": {...}}` (title, url, source, space or repo,
labels - the fields retrieval filters on), deletes the sidecars of removed documents, and
(2) starts an ingestion job for the data source (`bedrock-agent` StartIngestionJob, with
a client token so a retried call starts one job) and tracks it with GetIngestionJob until
it ends or `wait_seconds` pass. Every call goes through the call layer (service
`bedrock`). A job that FAILED or STOPPED, or that could not start (ConflictException:
one is already running on the data source), marks the documents failed in the report:
the run fails and a later run's job picks them up (a job scans the whole data source).

The embedding cost is then billed by Bedrock to the account and is not in nura's ledger:
GetIngestionJob reports document counts, not tokens.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from nura import get_call_layer, get_config
from nura.core.errors import ClientError
from nura.kb import s3
from nura.kb.index import DocumentRecord
from nura.kb.refresh import RefreshReport

SIDECAR = ".metadata.json"
ENDED = ("COMPLETE", "FAILED", "STOPPED")


def sidecar(record: DocumentRecord) -> dict[str, Any]:
    """The document's metadata file in Bedrock Knowledge Bases' format."""
    attributes: dict[str, Any] = {
        "doc_id": record.doc_id,
        "title": record.title,
        "url": record.url,
        "source": record.source,
    }
    if record.space:
        attributes["space"] = record.space
    if record.repo:
        attributes["repo"] = record.repo
    if record.labels:
        attributes["labels"] = list(record.labels)
    return {"metadataAttributes": attributes}


def _agent_client() -> Any:
    from nura.bedrock.invoke import _credentials
    from nura.core.aws import boto_client

    cfg = get_config()
    settings = cfg.external_services.aws.bedrock
    credentials, region, endpoint = _credentials(settings, settings.endpoint_url or None)
    return boto_client(
        "bedrock-agent",
        credentials=credentials,
        region=region or settings.region or cfg.external_services.aws.region,
        endpoint_url=endpoint,
        timeout=cfg.policies()["bedrock"].timeout_seconds,
    )


def sync_knowledge_base(
    documents: Sequence[tuple[str, DocumentRecord]],
    removed_keys: Sequence[str] = (),
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RefreshReport:
    """Sidecars for `documents` (S3 key, record), none for `removed_keys`, one ingestion job."""
    settings = get_config().kb.bedrock_knowledge_base
    assert settings is not None, "kb.bedrock_knowledge_base is not configured"
    report = RefreshReport()
    for key, record in documents:
        s3.put_json(key + SIDECAR, sidecar(record))
        report.embedded_docs += 1
    for key in removed_keys:
        s3.delete_document(key + SIDECAR)
        report.removed_docs += 1
    if not documents and not removed_keys:
        return report
    client = _agent_client()
    layer = get_call_layer()
    ids: dict[str, Any] = {
        "knowledgeBaseId": settings.knowledge_base_id,
        "dataSourceId": settings.data_source_id,
    }
    try:
        started = layer.call(
            "bedrock",
            "start_ingestion_job",
            client.start_ingestion_job,
            clientToken=uuid.uuid4().hex + uuid.uuid4().hex[:8],  # 33-256 characters
            description=f"nura: {len(documents)} changed, {len(removed_keys)} removed",
            **ids,
        ).value["ingestionJob"]
    except ClientError as exc:
        _fail(report, documents, f"ingestion job not started: {exc.code or ''} {exc.args[0]}")
        return report
    job = _track(client, ids, started, settings.wait_seconds, settings.poll_seconds, sleep, clock)
    report.ingestion_job = {
        "id": job["ingestionJobId"],
        "status": job["status"],
        "statistics": job.get("statistics") or {},
        "failure_reasons": job.get("failureReasons") or [],
    }
    if job["status"] in ("FAILED", "STOPPED"):
        reasons = "; ".join(job.get("failureReasons") or []) or "no reason given"
        _fail(
            report, documents, f"ingestion job {job['ingestionJobId']} {job['status']}: {reasons}"
        )
    return report


def _track(
    client: Any,
    ids: dict[str, Any],
    job: dict[str, Any],
    wait_seconds: float,
    poll_seconds: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> dict[str, Any]:
    """GetIngestionJob until the job ends or `wait_seconds` pass (then: as last seen)."""
    layer = get_call_layer()
    deadline = clock() + wait_seconds
    while job["status"] not in ENDED and clock() < deadline:
        sleep(poll_seconds)
        job = layer.call(
            "bedrock",
            "get_ingestion_job",
            client.get_ingestion_job,
            ingestionJobId=job["ingestionJobId"],
            **ids,
        ).value["ingestionJob"]
    return job


def _fail(report: RefreshReport, documents: Sequence[tuple[str, DocumentRecord]], why: str) -> None:
    """The documents the job was for failed; a job for removals only fails as itself."""
    for _, record in documents:
        report.failed[record.doc_id] = why
    if not documents:
        report.failed["bedrock-ingestion-job"] = why
