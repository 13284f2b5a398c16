"""Knowledge-base writes: botocore builds and signs every PUT (endpoint, addressing style,
credentials, refresh included), and `put_document` stores body, SSE, metadata and content
type as boto3 would (moto)."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    Credentials,
    RefreshableCredentials,
)
from botocore.session import get_session

from nura.core.errors import ClientError
from nura.kb import s3
from nura.kb.s3 import _Writer

HEADERS = {
    "Content-Type": "text/markdown; charset=utf-8",
    "x-amz-server-side-encryption": "aws:kms",
    "x-amz-server-side-encryption-aws-kms-key-id": "alias/kb",
    "x-amz-meta-title": "T%C3%AFtle  with   runs",
    "x-amz-meta-source-url": "https://acme.atlassian.net/wiki/spaces/TECH/pages/1",
}
SIGNED_AT = datetime.datetime(2024, 5, 24, 12, 30, 0, tzinfo=datetime.UTC)


class _Provider(CredentialProvider):
    METHOD = "nura-test"

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    def load(self) -> Any:
        return self.credentials


def s3_client(endpoint_url: str, credentials: Any, region: str = "eu-west-1", **config: Any) -> Any:
    """A boto3 S3 client whose botocore session resolves exactly `credentials` (None: no
    credentials anywhere), configured as nura.core.aws configures its clients."""
    session = get_session()
    providers = [_Provider(credentials)] if credentials is not None else []
    session.register_component("credential_provider", CredentialResolver(providers))
    return boto3.session.Session(botocore_session=session).client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, **config),
    )


def botocore_put(client: Any, bucket: str, key: str) -> AWSRequest:
    """The request `client.put_object` would send (stopped before the network)."""
    sent: list[AWSRequest] = []

    class Sent(Exception):
        pass

    def capture(request: AWSRequest, **_: Any) -> None:
        sent.append(request)
        raise Sent

    client.meta.events.register_first("before-send.s3.PutObject", capture)
    try:
        with pytest.raises(Sent):
            client.put_object(Bucket=bucket, Key=key, Body=b"x")
    finally:
        client.meta.events.unregister("before-send.s3.PutObject", capture)
    return sent[0]


def resign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
) -> str:
    """The Authorization header botocore's S3 SigV4 signer gives the same request (its
    signed headers, its X-Amz-Date)."""
    signed = next(
        part.split("=", 1)[1].split(";")
        for part in headers["Authorization"].split(", ")
        if part.startswith("SignedHeaders=")
    )
    lower = {name.lower(): value for name, value in headers.items()}
    request = AWSRequest(
        method,
        url,
        headers={name: lower[name] for name in signed if name != "host"},
        data=body,
    )
    when = datetime.datetime.strptime(lower["x-amz-date"], "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        S3SigV4Auth(credentials.get_frozen_credentials(), "s3", region).add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize("token", [None, "session/token+=="])
@pytest.mark.parametrize(
    ("endpoint_url", "config", "url"),
    [
        (
            "https://s3.eu-west-1.amazonaws.com",
            {"s3": {"addressing_style": "virtual"}},
            "https://nura-kb.s3.eu-west-1.amazonaws.com/git/o/r/caf%C3%A9%20x~_%2B.md",
        ),
        (
            None,  # botocore's own endpoint for the region; "auto" is virtual for AWS
            {},
            "https://nura-kb.s3.eu-west-1.amazonaws.com/git/o/r/caf%C3%A9%20x~_%2B.md",
        ),
        (
            "https://s3.eu-west-1.amazonaws.com",
            {"s3": {"addressing_style": "path"}},
            "https://s3.eu-west-1.amazonaws.com/nura-kb/git/o/r/caf%C3%A9%20x~_%2B.md",
        ),
        (
            "http://127.0.0.1:4566",  # moto, MinIO: an IP endpoint is always path style
            {},
            "http://127.0.0.1:4566/nura-kb/git/o/r/caf%C3%A9%20x~_%2B.md",
        ),
    ],
)
def test_the_request_is_botocores(
    endpoint_url: str | None, config: dict[str, Any], url: str, token: str | None
) -> None:
    """URL, host and addressing style are the ones `put_object` uses, and the signature is
    the one botocore's S3 SigV4 signer gives the same request at the same time."""
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    client = s3_client(endpoint_url, creds, **config)  # type: ignore[arg-type]
    key = "git/o/r/café x~_+.md"
    body = "é body".encode()
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        prepared = _Writer(client).request("nura-kb", key, body, dict(HEADERS))
    assert prepared.url == url
    assert prepared.url == botocore_put(client, "nura-kb", key).url
    assert prepared.method == "PUT" and prepared.body == body
    headers = dict(prepared.headers)
    assert headers["X-Amz-Date"] == "20240524T123000Z"
    assert headers.get("X-Amz-Security-Token") == token
    for name, value in HEADERS.items():
        assert headers[name] == value
    authorization = headers["Authorization"]
    assert authorization.startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240524/eu-west-1/s3/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;"
    )
    # botocore's signer, given the same request at the same time, signs it alike: the host
    # signed is the one the request goes to (virtual-hosted: the bucket's own name).
    expected = AWSRequest("PUT", url, headers=dict(HEADERS), data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        S3SigV4Auth(creds.get_frozen_credentials(), "s3", "eu-west-1").add_auth(expected)
    assert authorization == expected.headers["Authorization"]
    assert resign("PUT", url, headers, body, creds, "eu-west-1") == authorization


class _Capture(BaseHTTPRequestHandler):
    """Answers every PUT 200 on a kept-alive connection and records what it got."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, dict[str, str], bytes]]

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(("PUT", self.path, dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[tuple[str, list[tuple[str, str, dict[str, str], bytes]]]]:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    handler = type("Handler", (_Capture,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_refreshed_credentials_sign_the_next_put(capture) -> None:
    """Role, SSO and instance-profile credentials expire: once they have, the next PUT is
    signed with the keys their refresh returned (botocore refreshes them on use)."""
    url, seen = capture
    clock = [datetime.datetime(2024, 5, 24, 12, 0, tzinfo=datetime.UTC)]
    issued: list[str] = []

    def refresh() -> dict[str, str]:
        issued.append(f"ASIAROTATED{len(issued) + 1}")
        return {
            "access_key": issued[-1],
            "secret_key": f"secret-{len(issued)}",
            "token": f"token-{len(issued)}",
            "expiry_time": (clock[0] + datetime.timedelta(hours=1)).isoformat(),
        }

    creds = RefreshableCredentials(
        "ASIAFIRST",
        "secret-0",
        "token-0",
        clock[0] + datetime.timedelta(hours=1),
        refresh,
        "assume-role",
        time_fetcher=lambda: clock[0],
    )
    client = s3_client(url, creds, region="us-east-1")
    writer = _Writer(client)
    writer.put("nura-kb", "confluence/TECH/1.md", b"one", {"Content-Type": "text/plain"})
    clock[0] += datetime.timedelta(minutes=59)  # inside botocore's refresh window
    writer.put("nura-kb", "confluence/TECH/2.md", b"two", {"Content-Type": "text/plain"})
    clock[0] += datetime.timedelta(minutes=5)
    writer.put("nura-kb", "confluence/TECH/3.md", b"three", {"Content-Type": "text/plain"})

    assert issued == ["ASIAROTATED1"]
    assert {h["Host"] for *_, h, _ in seen} == {url.removeprefix("http://")}
    assert [path for _, path, _, _ in seen] == [
        "/nura-kb/confluence/TECH/1.md",
        "/nura-kb/confluence/TECH/2.md",
        "/nura-kb/confluence/TECH/3.md",
    ]
    credential = [h["Authorization"].split("Credential=")[1].split("/")[0] for *_, h, _ in seen]
    assert credential == ["ASIAFIRST", "ASIAROTATED1", "ASIAROTATED1"]
    assert [h["X-Amz-Security-Token"] for *_, h, _ in seen] == ["token-0", "token-1", "token-1"]
    method, path, headers, body = seen[1]
    rotated = Credentials("ASIAROTATED1", "secret-1", "token-1")
    assert (
        resign(method, url + path, headers, body, rotated, "us-east-1")
        == (headers["Authorization"])
    )


def test_no_credentials_is_a_client_error(capture) -> None:
    url, seen = capture
    writer = _Writer(s3_client(url, None, region="us-east-1"))
    with pytest.raises(ClientError, match="no AWS credentials"):
        writer.put("nura-kb", "confluence/TECH/1.md", b"x", {})
    assert seen == []


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


def _read_request(conn: Any) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += conn.recv(65536)
    return head


@pytest.mark.parametrize("closes", ["while idle", "as it is reused"])
def test_a_kept_alive_connection_the_server_closed_is_replaced_once(closes: str) -> None:
    """S3 closes idle keep-alive connections; the next PUT on one must not fail, also when
    the server closes it just as the writer reuses it (the request is sent once more)."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answered: list[bytes] = []
    connections: list[int] = []

    def serve() -> None:
        for n in range(2):
            conn, _addr = listener.accept()
            connections.append(1)
            with conn:
                answered.append(_read_request(conn).split(b"\r\n")[0])
                # a keep-alive answer, then the server drops the connection
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                if closes == "as it is reused" and n == 0:
                    _read_request(conn)  # the next PUT arrived on it: closed unanswered

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    client = s3_client(f"http://127.0.0.1:{port}", Credentials("AKID", "secret"), "us-east-1")
    writer = _Writer(client)
    writer.put("nura-kb", "a.md", b"one", {"Content-Type": "text/plain"})
    if closes == "while idle":
        time.sleep(0.2)
    writer.put("nura-kb", "b.md", b"two", {"Content-Type": "text/plain"})
    server.join(5)
    listener.close()
    assert len(connections) == 2
    assert answered == [b"PUT /nura-kb/a.md HTTP/1.1", b"PUT /nura-kb/b.md HTTP/1.1"]
