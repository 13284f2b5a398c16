"""The S3 knowledge base: encrypted documents with provenance metadata, and JSON manifests.

Layout (ARCHITECTURE.md): `confluence/{space}/{page_id}.md`, `git/{owner}/{repo}/{path}`,
manifests under `_manifests/`. Every object is written with server-side encryption
(AES256 by default, `aws:kms` with an optional key id from config).

These are plain functions, not Prefect tasks: a sync writes thousands of objects and a task
per object would cost 4-7 ms of orchestration each (PREFECT-FACTS.md); the flows wrap
batches of them in tasks instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from nura import get_call_layer, get_config
from nura.errors import ClientError
from tasks.aws import aws_client


@dataclass(frozen=True)
class KnowledgeBase:
    bucket: str
    encryption: str
    kms_key_id: str | None

    def sse_args(self) -> dict[str, str]:
        args = {"ServerSideEncryption": self.encryption}
        if self.encryption == "aws:kms" and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args


def knowledge_base() -> KnowledgeBase:
    s3 = get_config().external_services.aws.s3
    return KnowledgeBase(s3.bucket_name, s3.encryption, s3.kms_key_id)


def ascii_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """S3 user metadata travels in HTTP headers and must be ASCII: percent-encode the rest."""
    return {k: v if v.isascii() else quote(v, safe=" /:.,-_()") for k, v in metadata.items()}


def put_document(
    key: str,
    body: bytes,
    metadata: dict[str, str],
    content_type: str = "text/markdown; charset=utf-8",
) -> None:
    kb = knowledge_base()
    client = aws_client("s3")
    args: dict[str, Any] = {
        "Bucket": kb.bucket,
        "Key": key,
        "Body": body,
        "ContentType": content_type,
        "Metadata": ascii_metadata(metadata),
        **kb.sse_args(),
    }
    get_call_layer().call("s3", "put_object", client.put_object, payload=body, **args)


def delete_document(key: str) -> None:
    kb = knowledge_base()
    client = aws_client("s3")
    get_call_layer().call("s3", "delete_object", client.delete_object, Bucket=kb.bucket, Key=key)


def head_document(key: str) -> dict[str, Any] | None:
    """The object's head (metadata, SSE) or None when it does not exist."""
    kb = knowledge_base()
    client = aws_client("s3")
    try:
        return (
            get_call_layer()
            .call("s3", "head_object", client.head_object, Bucket=kb.bucket, Key=key)
            .value
        )
    except ClientError as exc:
        if exc.status == 404 or exc.code in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def get_json(key: str) -> Any | None:
    kb = knowledge_base()
    client = aws_client("s3")
    try:
        obj = (
            get_call_layer()
            .call("s3", "get_object", client.get_object, Bucket=kb.bucket, Key=key)
            .value
        )
    except ClientError as exc:
        if exc.status == 404 or exc.code in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(obj["Body"].read())


def put_json(key: str, data: Any) -> None:
    body = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    put_document(key, body, {}, content_type="application/json")


def ensure_bucket() -> None:
    """Create the knowledge-base bucket if missing (sandbox and tests; idempotent)."""
    kb = knowledge_base()
    client = aws_client("s3")
    layer = get_call_layer()
    try:
        layer.call("s3", "head_bucket", client.head_bucket, Bucket=kb.bucket)
    except ClientError:
        layer.call("s3", "create_bucket", client.create_bucket, Bucket=kb.bucket)
