"""Knowledge-base writes: our SigV4 signature is botocore's (and AWS's documented example),
and `put_document` stores body, SSE, metadata and content type as boto3 would (moto)."""

from __future__ import annotations

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from nura.core.errors import ClientError
from nura.kb import s3
from nura.kb.s3 import sigv4_headers

HEADERS = {
    "Content-Type": "text/markdown; charset=utf-8",
    "x-amz-server-side-encryption": "aws:kms",
    "x-amz-server-side-encryption-aws-kms-key-id": "alias/kb",
    "x-amz-meta-title": "T%C3%AFtle  with   runs",
    "x-amz-meta-source-url": "https://acme.atlassian.net/wiki/spaces/TECH/pages/1",
}


@pytest.mark.parametrize("token", [None, "session/token+=="])
@pytest.mark.parametrize(
    ("url", "host", "path"),
    [
        ("http://127.0.0.1:4566/kb/TECH/1.md", "127.0.0.1:4566", "/kb/TECH/1.md"),
        (
            "https://s3.eu-west-1.amazonaws.com/kb/git/o/r/caf%C3%A9%20x~_.md",
            "s3.eu-west-1.amazonaws.com",
            "/kb/git/o/r/caf%C3%A9%20x~_.md",
        ),
    ],
)
def test_signature_is_botocores(url: str, host: str, path: str, token: str | None) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    frozen = creds.get_frozen_credentials()
    body = "é body".encode()
    request = AWSRequest("PUT", url, headers=dict(HEADERS), data=body)
    S3SigV4Auth(frozen, "s3", "eu-west-1").add_auth(request)
    ours = sigv4_headers(
        "PUT",
        host,
        path,
        HEADERS,
        body,
        credentials=frozen,
        region="eu-west-1",
        amz_date=request.headers["X-Amz-Date"],
    )
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["x-amz-content-sha256"] == request.headers["X-Amz-Content-SHA256"]
    assert ours.get("x-amz-security-token") == token


def test_signature_of_the_aws_documented_put_object_example() -> None:
    # docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "PUT Object"
    creds = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    headers = sigv4_headers(
        "PUT",
        "examplebucket.s3.amazonaws.com",
        "/test%24file.text",
        {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
        b"Welcome to Amazon S3.",
        credentials=creds.get_frozen_credentials(),
        region="us-east-1",
        amz_date="20130524T000000Z",
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )


@pytest.mark.integration
def test_put_document_stores_what_boto3_would(sync_env) -> None:
    from nura.core.aws_clients import aws_client

    sync_env()
    s3.ensure_bucket()
    body = "# Café\n\n日本語 body\n".encode()
    key = "confluence/TECH/a b+é.md"
    s3.put_document(key, body, {"title": "Café 設計", "version": "3", "space": "TECH"})
    head = s3.head_document(key)
    assert head is not None
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "text/markdown; charset=utf-8"
    assert head["Metadata"] == {
        "title": "Caf%C3%A9 %E8%A8%AD%E8%A8%88",
        "version": "3",
        "space": "TECH",
    }
    stored = aws_client("s3").get_object(Bucket=s3.knowledge_base().bucket, Key=key)
    assert stored["Body"].read() == body
    for n in range(5):  # the writer's connections are reused or replaced, never stuck
        s3.put_json(f"_manifests/t{n}.json", {"n": n})
    assert s3.get_json("_manifests/t4.json") == {"n": 4}


@pytest.mark.integration
def test_a_missing_key_is_an_answer_not_an_s3_error(sync_env) -> None:
    """A first sync reads a manifest that does not exist yet: None, recorded as an ok call
    (counted as an error, it made the sandbox's first health run call S3 unhealthy)."""
    from nura import get_call_layer
    from nura.core.stores.tables import call_records

    sync_env()
    s3.ensure_bucket()
    assert s3.head_document("confluence/TECH/missing.md") is None
    assert s3.get_json("_manifests/missing.json") is None
    layer = get_call_layer()
    assert layer.recorder is not None
    layer.recorder.flush()
    with layer.recorder.engine.connect() as conn:
        rows = list(
            conn.execute(
                call_records.select().where(
                    call_records.c.operation.in_(["head_object", "get_object"])
                )
            )
        )
    assert [(r.operation, r.outcome, r.status_code) for r in rows] == [
        ("head_object", "ok", 404),
        ("get_object", "ok", 404),
    ]


@pytest.mark.integration
def test_put_document_errors_are_typed_with_the_s3_code(sync_env) -> None:
    sync_env()  # the bucket is not created
    with pytest.raises(ClientError) as info:
        s3.put_document("confluence/TECH/1.md", b"x", {})
    assert info.value.status == 404 and info.value.code == "NoSuchBucket"


def test_a_kept_alive_connection_the_server_closed_is_replaced_once() -> None:
    """S3 closes idle keep-alive connections; the next PUT on one must not fail."""
    import socket
    import threading

    from nura.kb.s3 import _Writer

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: list[int] = []

    def serve() -> None:
        for _ in range(2):
            conn, _addr = listener.accept()
            connections.append(1)
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(rest) < length:
                    rest += conn.recv(65536)
                # keep-alive answer, then the server drops the connection while it is idle
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    writer = _Writer(
        scheme="http",
        host=f"127.0.0.1:{port}",
        hostname="127.0.0.1",
        port=port,
        base_path="",
        region="us-east-1",
        credentials=Credentials("AKID", "secret"),
        timeout=5,
        proxied=False,
    )
    writer.put("/kb/a.md", b"one", {"Content-Type": "text/plain"})
    writer.put("/kb/b.md", b"two", {"Content-Type": "text/plain"})
    server.join(5)
    listener.close()
    assert len(connections) == 2
