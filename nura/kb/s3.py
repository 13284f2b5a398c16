"""The S3 knowledge base: encrypted documents with provenance metadata, and JSON manifests.

Layout (ARCHITECTURE.md): `confluence/{space}/{page_id}.md`, `git/{owner}/{repo}/{branch}/{path}`,
manifests under `_manifests/`. Every object is written with server-side encryption
(AES256 by default, `aws:kms` with an optional key id from config).

These are plain functions, not Prefect tasks: a sync writes thousands of objects and a task
per object would cost 4-7 ms of orchestration each (PREFECT-FACTS.md); the flows wrap
batches of them in tasks instead.

Writes (`put_document`) are one PUT each, run by the call layer (`call("s3", "put_object",
...)`: rate limit, breaker, retries, call records), built from the process's boto3 client:
botocore resolves the endpoint and addressing style and signs with the client's
credentials, and the client's connection pool sends it (`_Writer`). Why not plain
`put_object`: a full Confluence sync writes thousands of objects and is CPU-bound, and
botocore's per-call pipeline (validation, serializer, event hooks, response parsing) is
most of a PUT's CPU: per 10 KB object against moto (`time.process_time`, one thread),
`put_object` ~0.95 ms, this ~0.58 ms (the earlier hand-written SigV4 on raw http.client
~0.26 ms; signing and endpoint resolution are ~0.1 ms of this, the urllib3 send the rest).
Reads, deletes and bucket set-up stay on boto3: they are few.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from nura import get_call_layer, get_config
from nura.core.aws_clients import aws_client
from nura.core.errors import ClientError
from nura.core.layer import classify_http


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

    def sse_headers(self) -> dict[str, str]:
        headers = {"x-amz-server-side-encryption": self.encryption}
        if self.encryption == "aws:kms" and self.kms_key_id:
            headers["x-amz-server-side-encryption-aws-kms-key-id"] = self.kms_key_id
        return headers


def knowledge_base() -> KnowledgeBase:
    s3 = get_config().external_services.aws.s3
    return KnowledgeBase(s3.bucket_name, s3.encryption, s3.kms_key_id)


def ascii_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """S3 user metadata travels in HTTP headers and must be ASCII: percent-encode the rest."""
    return {k: v if v.isascii() else quote(v, safe=" /:.,-_()") for k, v in metadata.items()}


# -- the writer: botocore's request, without botocore's per-call pipeline -----------------

ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")


class _Writer:
    """PutObject for one boto3 S3 client, with everything that decides what goes on the
    wire taken from that client: botocore's endpoint rule set resolves the URL (custom
    endpoint, region, FIPS/dual-stack, `Config(s3={"addressing_style": ...})`), the client's
    request signer signs it (S3 SigV4, with the client's credentials object: SSO, assumed
    roles and instance profiles refresh themselves before each signature), and the
    client's own urllib3 pool sends it (keep-alive, proxies, CA bundle, timeouts).

    What is skipped is the rest of `client.put_object`: parameter validation, the model
    serializer, the event hooks and response parsing (see the module docstring).
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.operation = client.meta.service_model.operation_model("PutObject")

    def _context(self) -> dict[str, Any]:
        """The request context `client.put_object` would start from (botocore.client)."""
        op = self.operation
        meta = self.client.meta
        auth_type = op.resolved_auth_type
        if op.auth and meta.config.auth_scheme_preference:
            from botocore.auth import resolve_auth_scheme_preference

            preferred = meta.config.auth_scheme_preference.split(",")
            auth_type = resolve_auth_scheme_preference(preferred, op.auth)
        return {
            "client_region": meta.region_name,
            "client_config": meta.config,
            "has_streaming_input": op.has_streaming_input,
            "auth_type": auth_type,
            "unsigned_payload": op.unsigned_payload,
            "auth_options": meta.service_model.metadata.get("auth"),
        }

    def request(self, bucket: str, key: str, body: bytes, headers: dict[str, str]) -> Any:
        """The signed `AWSPreparedRequest` of a PutObject (nothing is sent)."""
        from botocore.awsrequest import create_request_object, prepare_request_dict
        from botocore.utils import percent_encode

        context = self._context()
        # The rule set reads Bucket (not Key) for PutObject; botocore caches its answers.
        endpoint_url, endpoint_headers, properties = self.client._resolve_endpoint_ruleset(
            self.operation, {"Bucket": bucket}, context
        )
        if properties:
            context["endpoint_properties"] = properties
        request_dict: dict[str, Any] = {
            "method": "PUT",
            # S3 rule sets put the bucket in the endpoint URL (host or path, by the
            # addressing style); the key is encoded as botocore's serializer does.
            "url_path": "/" + percent_encode(key, safe="/~"),
            "query_string": "",
            "headers": {**endpoint_headers, **headers},
            "body": body,
            "context": context,
        }
        prepare_request_dict(request_dict, endpoint_url=endpoint_url)
        request = create_request_object(request_dict)
        self.client._request_signer.sign(self.operation.name, request)
        return request.prepare()

    def put(self, bucket: str, key: str, body: bytes, headers: dict[str, str]) -> None:
        """One signed PUT. Transport failures raise botocore's exceptions, which the call
        layer types (and retries); an S3 error answer raises its typed error here."""
        from botocore.exceptions import ConnectionClosedError, NoCredentialsError

        try:
            prepared = self.request(bucket, key, body, headers)
        except NoCredentialsError as exc:
            raise ClientError(
                "no AWS credentials: save an AwsCredentials block or set the "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment",
                service="s3",
                operation="put_object",
            ) from exc
        session = self.client._endpoint.http_session
        try:
            response = session.send(prepared)
        except ConnectionClosedError:
            # S3 closes kept-alive connections that idle; one it closed just as we reused
            # it fails at once (urllib3 drops it). A PUT is idempotent: once more, at once,
            # on a new connection; a second failure is the call layer's to retry.
            response = session.send(prepared)
        if response.status_code >= 300:
            error = classify_http(
                "s3",
                "put_object",
                httpx.Response(response.status_code, headers=dict(response.headers)),
                1,
            )
            code = ERROR_CODE.search(response.content or b"")
            if code and not error.code:
                error.code = code.group(1).decode(errors="replace")
            raise error


# One writer per boto3 client (weakly held: a client that aws_client() does not cache, one
# assuming a role, takes its writer with it).
_writers: weakref.WeakKeyDictionary[Any, _Writer] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def _writer(client: Any) -> _Writer:
    writer = _writers.get(client)
    if writer is None:
        with _writers_lock:
            writer = _writers.get(client)
            if writer is None:
                writer = _writers[client] = _Writer(client)
    return writer


def put_document(
    key: str,
    body: bytes,
    metadata: dict[str, str],
    content_type: str = "text/markdown; charset=utf-8",
) -> None:
    """PutObject with SSE and user metadata (see the module docstring for how it is sent)."""
    kb = knowledge_base()
    writer = _writer(aws_client("s3"))
    headers = {"Content-Type": content_type, **kb.sse_headers()}
    for name, value in ascii_metadata(metadata).items():
        headers[f"x-amz-meta-{name}"] = value
    get_call_layer().call(
        "s3", "put_object", writer.put, kb.bucket, key, body, headers, payload=body
    )


def update_metadata(
    key: str, metadata: dict[str, str], content_type: str = "text/markdown; charset=utf-8"
) -> None:
    """Replace an object's user metadata without sending its content again: a copy onto
    itself with `MetadataDirective=REPLACE` (S3 allows a copy in place only when something
    changes, which new metadata is), with the same server-side encryption."""
    kb = knowledge_base()
    client = aws_client("s3")
    args: dict[str, Any] = {
        "Bucket": kb.bucket,
        "Key": key,
        "CopySource": {"Bucket": kb.bucket, "Key": key},
        "Metadata": ascii_metadata(metadata),
        "MetadataDirective": "REPLACE",
        "ContentType": content_type,
        **kb.sse_args(),
    }
    get_call_layer().call("s3", "copy_object", client.copy_object, **args)


def delete_document(key: str) -> None:
    kb = knowledge_base()
    client = aws_client("s3")
    get_call_layer().call("s3", "delete_object", client.delete_object, Bucket=kb.bucket, Key=key)


def head_document(key: str) -> dict[str, Any] | None:
    """The object's head (metadata, SSE) or None when it does not exist (a missing key is
    an answer, not an S3 error: it does not count toward the service's error rate)."""
    kb = knowledge_base()
    client = aws_client("s3")
    return (
        get_call_layer()
        .call_or_none("s3", "head_object", client.head_object, Bucket=kb.bucket, Key=key)
        .value
    )


def get_json(key: str) -> Any | None:
    """The JSON object at `key`, or None when there is none (recorded as a successful call:
    a first sync reading its not-yet-written manifest is S3 working)."""
    return get_json_tagged(key)[0]


def _json_body(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, ensure_ascii=False).encode()


def put_json(key: str, data: Any) -> None:
    put_document(key, _json_body(data), {}, content_type="application/json")


def get_json_tagged(key: str) -> tuple[Any | None, str | None]:
    """The JSON object at `key` and its ETag (for `put_json_if`), or (None, None)."""
    kb = knowledge_base()
    client = aws_client("s3")
    obj = (
        get_call_layer()
        .call_or_none("s3", "get_object", client.get_object, Bucket=kb.bucket, Key=key)
        .value
    )
    if obj is None:
        return None, None
    return json.loads(obj["Body"].read()), str(obj.get("ETag") or "") or None


def put_json_if(key: str, data: Any, etag: str | None) -> bool:
    """Write `data` only if the object is still the one read with `etag` (None: only if
    there is none): S3's conditional write (If-Match / If-None-Match). False when another
    writer came first (412, or 409 for a conditional write racing another): read again."""
    kb = knowledge_base()
    client = aws_client("s3")
    body = _json_body(data)
    args: dict[str, Any] = {
        "Bucket": kb.bucket,
        "Key": key,
        "Body": body,
        "ContentType": "application/json",
        **({"IfMatch": etag} if etag else {"IfNoneMatch": "*"}),
        **kb.sse_args(),
    }
    written = (
        get_call_layer()
        .call_or_none(
            "s3",
            "put_object",
            lambda: client.put_object(**args),
            missing=("412", "PreconditionFailed", "409", "ConditionalRequestConflict"),
            payload=body,
        )
        .value
    )
    return written is not None


def ensure_bucket() -> None:
    """Create the knowledge-base bucket if missing (sandbox and tests; idempotent)."""
    kb = knowledge_base()
    client = aws_client("s3")
    layer = get_call_layer()
    try:
        layer.call("s3", "head_bucket", client.head_bucket, Bucket=kb.bucket)
    except ClientError:
        layer.call("s3", "create_bucket", client.create_bucket, Bucket=kb.bucket)
