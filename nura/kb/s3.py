"""The S3 knowledge base: encrypted documents with provenance metadata, and JSON manifests.

Layout (ARCHITECTURE.md): `confluence/{space}/{page_id}.md`, `git/{owner}/{repo}/{path}`,
manifests under `_manifests/`. Every object is written with server-side encryption
(AES256 by default, `aws:kms` with an optional key id from config).

These are plain functions, not Prefect tasks: a sync writes thousands of objects and a task
per object would cost 4-7 ms of orchestration each (PREFECT-FACTS.md); the flows wrap
batches of them in tasks instead.

Writes (`put_document`) are one SigV4-signed HTTP PUT each, on a small pool of keep-alive
connections, run by the call layer (`call("s3", "put_object", ...)`: rate limit, breaker,
retries, call records) with the endpoint, region and credentials of the process's boto3
client. Why not boto3's `put_object`: a full Confluence sync writes thousands of objects and
is CPU-bound, and per 10 KB object (against moto, `time.process_time`) botocore's request
pipeline costs ~4.8 ms of CPU, a PUT signed by botocore's `S3SigV4Auth` and sent by httpx
~2.7 ms, this one ~1 ms: together a quarter of the sync's CPU per page. Path-style
addressing (`{endpoint}/{bucket}/{key}`), which S3 accepts for every bucket and custom
endpoints (moto, MinIO) require. Where an HTTP proxy applies to the endpoint, writes go
through boto3 (which honours proxies). Reads, deletes and bucket set-up stay on boto3:
they are few.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import ssl
import threading
import time
import urllib.request
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from nura import get_call_layer, get_config
from nura.core.aws_clients import _credentials_block, aws_client
from nura.core.errors import ClientError, ServiceTimeout, ServiceUnavailable
from nura.core.http import tls_context
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


# -- SigV4 (S3, header auth, signed payload) ---------------------------------------------

_signing_keys: dict[tuple[str, str, str], bytes] = {}


def _signing_key(secret: str, day: str, region: str) -> bytes:
    key = _signing_keys.get((secret, day, region))
    if key is None:
        key = ("AWS4" + secret).encode()
        for part in (day, region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if len(_signing_keys) > 16:
            _signing_keys.clear()
        _signing_keys[(secret, day, region)] = key
    return key


def sigv4_headers(
    method: str,
    host: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    credentials: Any,
    region: str,
    amz_date: str | None = None,
) -> dict[str, str]:
    """`headers` plus Host, x-amz-date, x-amz-content-sha256 (and the session token) and the
    AWS Signature V4 `Authorization` over all of them. `path` is the URI-encoded path as
    sent (S3 signs it as is); `credentials` has access_key, secret_key, token."""
    amz_date = amz_date or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload = hashlib.sha256(body).hexdigest()
    out = {
        **headers,
        "Host": host,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload,
    }
    if credentials.token:
        out["x-amz-security-token"] = credentials.token
    canonical = {name.lower(): " ".join(value.split()) for name, value in out.items()}
    names = sorted(canonical)
    signed_headers = ";".join(names)
    request = "\n".join(
        [
            method,
            path,
            "",
            "".join(f"{name}:{canonical[name]}\n" for name in names),
            signed_headers,
            payload,
        ]
    )
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    to_sign = (
        f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
    )
    key = _signing_key(credentials.secret_key, amz_date[:8], region)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return out


# -- the writer: keep-alive connections to the S3 endpoint -------------------------------

ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
# A kept-alive connection the server has closed meanwhile: send once more on a new one.
STALE = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


@dataclass
class _Writer:
    scheme: str
    host: str  # the Host header, as signed
    hostname: str
    port: int
    base_path: str
    region: str
    credentials: Any  # botocore Credentials (refreshes itself when it is a role's)
    timeout: float
    proxied: bool
    idle: list[http.client.HTTPConnection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    tls: ssl.SSLContext | None = None

    def _connection(self) -> http.client.HTTPConnection:
        with self.lock:
            if self.idle:
                return self.idle.pop()
            if self.scheme == "https" and self.tls is None:
                self.tls = tls_context()  # one for all the writer's connections
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.hostname, self.port, timeout=self.timeout, context=self.tls
            )
        return http.client.HTTPConnection(self.hostname, self.port, timeout=self.timeout)

    def put(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        """One signed PUT; typed errors (the call layer decides about retries)."""
        signed = sigv4_headers(
            "PUT",
            self.host,
            path,
            headers,
            body,
            credentials=self.credentials.get_frozen_credentials(),
            region=self.region,
        )
        conn = self._connection()
        reused = conn.sock is not None  # open since an earlier keep-alive answer
        try:
            try:
                status, reply_headers, reply = _exchange(conn, path, body, signed)
            except STALE:
                if not reused:
                    raise
                conn.close()
                status, reply_headers, reply = _exchange(conn, path, body, signed)
        except TimeoutError as exc:
            conn.close()
            raise ServiceTimeout(
                f"timed out after {self.timeout}s", service="s3", operation="put_object"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ServiceUnavailable(
                f"transport failure: {type(exc).__name__}", service="s3", operation="put_object"
            ) from exc
        with self.lock:
            self.idle.append(conn)
        if status >= 300:
            error = classify_http(
                "s3", "put_object", httpx.Response(status, headers=reply_headers), 1
            )
            code = ERROR_CODE.search(reply)
            if code and not error.code:
                error.code = code.group(1).decode(errors="replace")
            raise error


def _exchange(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, list[tuple[str, str]], bytes]:
    conn.request("PUT", path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.getheaders(), response.read()


# One writer per boto3 client (weakly held: a client that aws_client() does not cache, one
# assuming a role, takes its writer with it).
_writers: weakref.WeakKeyDictionary[Any, _Writer] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def _writer() -> _Writer:
    """The writer for the process's boto3 S3 client: its endpoint, region, credentials."""
    client = aws_client("s3")
    block_name = get_config().external_services.aws.credentials_block
    writer = _writers.get(client)
    if writer is not None:
        return writer
    with _writers_lock:
        writer = _writers.get(client)
        if writer is None:
            if block_name:
                session = _credentials_block(block_name).get_boto3_session()
            else:
                import boto3

                session = boto3.session.Session()
            credentials = session.get_credentials()
            if credentials is None:
                raise ClientError(
                    "no AWS credentials: save an AwsCredentials block or set the "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment",
                    service="s3",
                    operation="put_object",
                )
            url = urlsplit(client.meta.endpoint_url)
            scheme = url.scheme or "https"
            default_port = 443 if scheme == "https" else 80
            port = url.port or default_port
            hostname = url.hostname or ""
            netloc = f"[{hostname}]" if ":" in hostname else hostname  # IPv6 literal
            writer = _Writer(
                scheme=scheme,
                host=netloc if port == default_port else f"{netloc}:{port}",
                hostname=hostname,
                port=port,
                base_path=url.path.rstrip("/"),
                region=client.meta.region_name,
                credentials=credentials,
                timeout=get_config().policies()["s3"].timeout_seconds,
                proxied=bool(
                    urllib.request.getproxies().get(scheme)
                    and not urllib.request.proxy_bypass(hostname)
                ),
            )
            _writers[client] = writer
    return writer


def put_document(
    key: str,
    body: bytes,
    metadata: dict[str, str],
    content_type: str = "text/markdown; charset=utf-8",
) -> None:
    """PutObject with SSE and user metadata (see the module docstring for how it is sent)."""
    kb = knowledge_base()
    writer = _writer()
    if writer.proxied:
        args: dict[str, Any] = {
            "Bucket": kb.bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
            "Metadata": ascii_metadata(metadata),
            **kb.sse_args(),
        }
        client = aws_client("s3")
        get_call_layer().call("s3", "put_object", client.put_object, payload=body, **args)
        return
    headers = {"Content-Type": content_type, **kb.sse_headers()}
    for name, value in ascii_metadata(metadata).items():
        headers[f"x-amz-meta-{name}"] = value
    path = f"{writer.base_path}/{quote(kb.bucket)}/{quote(key, safe='/~')}"
    get_call_layer().call("s3", "put_object", writer.put, path, body, headers, payload=body)


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
    kb = knowledge_base()
    client = aws_client("s3")
    obj = (
        get_call_layer()
        .call_or_none("s3", "get_object", client.get_object, Bucket=kb.bucket, Key=key)
        .value
    )
    if obj is None:
        return None
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
