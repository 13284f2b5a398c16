"""The Knowledge Bases part of a local `bedrock-agent`: StartIngestionJob and
GetIngestionJob, served by the Bedrock stand-in (moto has knowledge bases but neither data
sources nor ingestion jobs). Written from AWS's API reference:

  PUT /knowledgebases/{knowledgeBaseId}/datasources/{dataSourceId}/ingestionjobs/
      {"clientToken", "description"} -> 202 {"ingestionJob": {...}}
  GET /knowledgebases/{knowledgeBaseId}/datasources/{dataSourceId}/ingestionjobs/{jobId}
      -> 200 {"ingestionJob": {...}}

An ingestion job is {knowledgeBaseId, dataSourceId, ingestionJobId, status (STARTING |
IN_PROGRESS | COMPLETE | FAILED | STOPPING | STOPPED), statistics, failureReasons,
startedAt, updatedAt}. Unknown knowledge base or data source: 404
ResourceNotFoundException; a second job while one runs on the data source: 409
ConflictException; the same clientToken again: the same job (idempotent).

A job moves one step per GetIngestionJob (STARTING -> IN_PROGRESS -> COMPLETE), so a
test sees every status without waiting; `fail_next` makes the next job end FAILED with a
reason. The statistics are zeros: the stand-in does not read the bucket.
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

_START = re.compile(r"^/knowledgebases/([^/]+)/datasources/([^/]+)/ingestionjobs/?$")
_GET = re.compile(r"^/knowledgebases/([^/]+)/datasources/([^/]+)/ingestionjobs/([^/]+)$")
RUNNING = ("STARTING", "IN_PROGRESS")
STATS = (
    "numberOfDocumentsScanned",
    "numberOfMetadataDocumentsScanned",
    "numberOfNewDocumentsIndexed",
    "numberOfModifiedDocumentsIndexed",
    "numberOfMetadataDocumentsModified",
    "numberOfDocumentsDeleted",
    "numberOfDocumentsFailed",
)


class AgentError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class KnowledgeBases:
    """Knowledge bases, their data sources and ingestion jobs (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.sources: dict[str, set[str]] = {}  # knowledge base id -> data source ids
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}  # clientToken -> job id
        self.failures: list[str] = []  # reasons for the next jobs to fail with

    def add(self, knowledge_base_id: str, data_source_id: str) -> None:
        with self.lock:
            self.sources.setdefault(knowledge_base_id, set()).add(data_source_id)

    def fail_next(self, reason: str) -> None:
        with self.lock:
            self.failures.append(reason)

    def started(self) -> int:
        with self.lock:
            return len(self.jobs)

    def handles(self, path: str) -> bool:
        return path.startswith("/knowledgebases/")

    def _check(self, kb: str, ds: str) -> None:
        if kb not in self.sources:
            raise AgentError(404, "ResourceNotFoundException", f"Knowledge base {kb} not found")
        if ds not in self.sources[kb]:
            raise AgentError(404, "ResourceNotFoundException", f"Data source {ds} not found")

    def start(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        match = _START.match(path)
        if match is None:
            raise AgentError(404, "UnknownOperationException", "unknown operation")
        kb, ds = match.groups()
        token = body.get("clientToken")
        if token is not None and not (isinstance(token, str) and 33 <= len(token) <= 256):
            raise AgentError(400, "ValidationException", "clientToken: length 33 to 256")
        with self.lock:
            self._check(kb, ds)
            if token in self.tokens:
                return {"ingestionJob": dict(self.jobs[self.tokens[token]])}
            busy = [
                j
                for j in self.jobs.values()
                if (j["knowledgeBaseId"], j["dataSourceId"]) == (kb, ds) and j["status"] in RUNNING
            ]
            if busy:
                raise AgentError(
                    409,
                    "ConflictException",
                    f"An ingestion job {busy[0]['ingestionJobId']} is already in progress "
                    "for this data source.",
                )
            job_id = uuid.uuid4().hex[:10].upper()
            job: dict[str, Any] = {
                "knowledgeBaseId": kb,
                "dataSourceId": ds,
                "ingestionJobId": job_id,
                "description": str(body.get("description") or ""),
                "status": "STARTING",
                "statistics": dict.fromkeys(STATS, 0),
                "startedAt": _now(),
                "updatedAt": _now(),
                "_fail": self.failures.pop(0) if self.failures else None,
            }
            self.jobs[job_id] = job
            if token is not None:
                self.tokens[token] = job_id
            return {"ingestionJob": _shown(job)}

    def get(self, path: str) -> dict[str, Any]:
        match = _GET.match(path)
        if match is None:
            raise AgentError(404, "UnknownOperationException", "unknown operation")
        kb, ds, job_id = match.groups()
        with self.lock:
            self._check(kb, ds)
            job = self.jobs.get(job_id)
            if job is None or (job["knowledgeBaseId"], job["dataSourceId"]) != (kb, ds):
                raise AgentError(404, "ResourceNotFoundException", f"Job {job_id} not found")
            shown = _shown(job)
            _advance(job)
            return {"ingestionJob": shown}


def _advance(job: dict[str, Any]) -> None:
    if job["status"] == "STARTING":
        job["status"] = "IN_PROGRESS"
    elif job["status"] == "IN_PROGRESS":
        job["status"] = "FAILED" if job["_fail"] else "COMPLETE"
        if job["_fail"]:
            job["failureReasons"] = [job["_fail"]]
    job["updatedAt"] = _now()


def _shown(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if not k.startswith("_")}
