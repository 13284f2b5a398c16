"""`POST /webhooks/ses-events` under attack: certificate fetches, topics first, bodies.

Unauthenticated senders control every field of an SNS message. None of them may cost a
certificate fetch unless the topic is allowed and the URL is a real AWS region's, a failed
fetch is not repeated, no fetch touches the `ses` service's breaker (alert email), and no
body - however large, deep or broken - is read whole or answered with a 5xx.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from nura.webhooks import sns
from tests.outgoing.test_sns import CERT_URL, TOPIC, bounce, signed
from tests.outgoing.test_sns import keypair as keypair  # the fixture, re-exported

PATH = "/webhooks/ses-events"
ALLOWED = {"health_monitoring": {"notifications": {"ses_feedback_topics": [TOPIC]}}}
MADE_UP_HOSTS = [
    "sns.xx-fake-1.amazonaws.com",
    "sns.us-east-99.amazonaws.com",
    "sns.evil.amazonaws.com",
    "sns.us-east-1-a.amazonaws.com",
    "sns.zz-north-7.amazonaws.com.cn",
    "sns.cn-north-1.amazonaws.com",  # a China region outside the .cn partition
]


def _app() -> Starlette:
    return Starlette(routes=[Route(PATH, sns.sns_endpoint, methods=["POST"])])


@pytest.fixture
def fetches(keypair) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """Every certificate fetch the endpoint makes (the real AWS one answers the test key)."""
    seen: list[str] = []

    async def loader(url: str) -> bytes:
        seen.append(url)
        if url != CERT_URL:
            raise httpx.ConnectError("name or service not known")
        return keypair[1]

    sns.set_certificate_loader(loader)
    yield seen
    sns.set_certificate_loader(None)


@pytest.fixture
def client(fetches) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(_app(), raise_server_exceptions=False) as c:
        yield c


def _forged(keypair: Any, url: str, n: int, topic: str = TOPIC) -> dict[str, Any]:
    message = signed(keypair[0], {**bounce(f"forged-{n}", "x"), "TopicArn": topic})
    message["SigningCertURL"] = url
    return message


# -- 1. certificate fetches ---------------------------------------------------------------
def test_unlisted_topic_is_refused_before_any_fetch(client, fetches, keypair, nura_config) -> None:
    nura_config(ALLOWED)
    for n, host in enumerate(["sns.us-east-1.amazonaws.com", *MADE_UP_HOSTS]):
        url = f"https://{host}/SimpleNotificationService-{n}.pem"
        message = _forged(keypair, url, n, topic="arn:aws:sns:us-east-1:666:attacker")
        assert client.post(PATH, json=message).status_code == 403
    assert fetches == []


def test_empty_allow_list_refuses_outside_the_sandbox(
    client, fetches, keypair, nura_config
) -> None:
    nura_config({})
    answer = client.post(PATH, json=signed(keypair[0], bounce("sns-e1", "ses-e1")))
    assert answer.status_code == 403
    assert fetches == []
    # The sandbox's config says so explicitly (nura/platform/sandbox.py sets the flag).
    nura_config({"health_monitoring": {"notifications": {"ses_feedback_allow_any_topic": True}}})
    answer = client.post(PATH, json=signed(keypair[0], bounce("sns-e2", "ses-e2")))
    assert answer.status_code == 200, answer.text
    assert fetches == [CERT_URL]


def test_made_up_regions_are_never_fetched(client, fetches, keypair, nura_config) -> None:
    nura_config(ALLOWED)
    for n, host in enumerate(MADE_UP_HOSTS):
        url = f"https://{host}/SimpleNotificationService-{n}.pem"
        assert client.post(PATH, json=_forged(keypair, url, n)).status_code == 401
    assert fetches == []


def test_real_region_names_are_accepted() -> None:
    for host in [
        "sns.us-east-1.amazonaws.com",
        "sns.eu-central-2.amazonaws.com",
        "sns.us-gov-west-1.amazonaws.com",
        "sns.cn-northwest-1.amazonaws.com.cn",
    ]:
        assert sns.is_aws_sns_url(f"https://{host}/SimpleNotificationService-ab12.pem", pem=True)
    assert not sns.is_aws_sns_url("https://sns.us-east-1.amazonaws.com/a/b/c.pem", pem=True)


def test_a_failed_fetch_is_not_repeated(client, fetches, keypair, nura_config) -> None:
    nura_config(ALLOWED)
    bad = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-gone.pem"
    for n in range(10):
        assert client.post(PATH, json=_forged(keypair, bad, n)).status_code == 401
    assert fetches == [bad]
    # A good certificate URL is unaffected.
    answer = client.post(PATH, json=signed(keypair[0], bounce("sns-ok", "ses-ok")))
    assert answer.status_code == 200, answer.text
    assert fetches == [bad, CERT_URL]


@pytest.mark.integration
def test_forged_messages_never_open_the_ses_breaker_and_email_still_works(
    prefect_server, moto_reset, nura_config, keypair, monkeypatch
) -> None:
    """The network answers every certificate download with a DNS failure (a made-up
    region has no DNS name); SES is moto. Alert email must still go out afterwards."""
    import boto3

    from nura import get_call_layer
    from nura.notify.ses import send_email_message

    cfg = {
        "external_services": {
            "aws": {"region": "us-east-1", "ses": {"endpoint_url": moto_reset}},
        },
        "health_monitoring": {"notifications": {"ses_feedback_topics": [TOPIC]}},
    }
    nura_config(cfg)
    downloads: list[str] = []

    def network(request: httpx.Request) -> httpx.Response:
        downloads.append(str(request.url))
        raise httpx.ConnectError("name or service not known", request=request)

    fake = httpx.Client(transport=httpx.MockTransport(network))
    monkeypatch.setattr("nura.core.http.shared_client", lambda: fake)
    sns.set_certificate_loader(None)
    try:
        with TestClient(_app(), raise_server_exceptions=False) as client:
            urls = [f"https://{h}/SimpleNotificationService-1.pem" for h in MADE_UP_HOSTS]
            urls += ["https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem"] * 8
            urls += [
                f"https://sns.us-east-2.amazonaws.com/SimpleNotificationService-{i}.pem"
                for i in range(6)
            ]
            answers = [
                client.post(PATH, json=_forged(keypair, url, n)).status_code
                for n, url in enumerate(urls)
            ]
    finally:
        sns.set_certificate_loader(None)
    assert set(answers) == {401}
    assert len(downloads) <= 8, downloads
    layer = get_call_layer()
    ses = layer.breakers.snapshot("ses", fresh=True)
    assert ses.state == "closed" and ses.failures == 0
    boto3.client("ses", region_name="us-east-1", endpoint_url=moto_reset).verify_email_identity(
        EmailAddress="alerts@nura.ai"
    )
    sent = send_email_message(
        sender="alerts@nura.ai",
        recipients=["oncall@nura.ai"],
        subject="[Nura] still alerting",
        text="t",
        html="<p>t</p>",
    )
    assert sent.message_id


# -- 2. bodies ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 50000,
        b"1" * 5000,
        b'{"Type": ' + b"9" * 5000 + b"}",
        b"\xff\xfe\x00{",
        b'{"Type": "Notification", "x": "\xc3\x28"}',
        b'"just a string"',
        b"[]",
        b"null",
        json.dumps({"Type": ["Notification"], "MessageId": {"a": 1}}).encode(),
    ],
    ids=[
        "deep",
        "big-int",
        "big-int-field",
        "utf16ish",
        "bad-utf8",
        "string",
        "list",
        "null",
        "field-types",
    ],
)
def test_malformed_bodies_are_400_never_5xx(client, nura_config, body) -> None:
    nura_config(ALLOWED)
    answer = client.post(PATH, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, (answer.status_code, answer.text[:200])


def test_non_string_fields_are_400(client, keypair, nura_config) -> None:
    nura_config(ALLOWED)
    message = signed(keypair[0], bounce("sns-f", "ses-f"))
    for key, value in [
        ("Type", ["Notification"]),
        ("TopicArn", [TOPIC]),
        ("Signature", 7),
        ("SigningCertURL", {"u": CERT_URL}),
    ]:
        answer = client.post(PATH, json={**message, key: value})
        assert answer.status_code in (400, 401), (key, answer.status_code)
        assert answer.status_code < 500


async def _asgi_post(
    chunks: Iterator[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, int]:
    """POST through the ASGI interface; (status, body chunks the app pulled)."""
    pulled = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await _app()(scope, receive, send)
    return status, pulled


def _endless(size: int = 64 * 1024, count: int = 64) -> Iterator[bytes]:
    """4 MiB in 64 KiB chunks: far over the limit, bounded so a reader that reads it all
    fails the test rather than the machine."""
    for _ in range(count):
        yield b" " * size


async def test_chunked_oversize_body_is_413_as_soon_as_the_limit_passes(nura_config) -> None:
    nura_config(ALLOWED)
    chunks = _endless()
    status, pulled = await _asgi_post(chunks, [(b"transfer-encoding", b"chunked")])
    assert status == 413
    assert pulled <= sns.MAX_BODY // (64 * 1024) + 1


async def test_declared_oversize_body_is_413_before_reading(nura_config) -> None:
    nura_config(ALLOWED)
    declared = str(300 * 1024 * 1024).encode()
    status, pulled = await _asgi_post(_endless(), [(b"content-length", declared)])
    assert (status, pulled) == (413, 0)
    status, pulled = await _asgi_post(_endless(), [(b"content-length", b"9" * 5000)])
    assert (status, pulled) == (413, 0)
    status, pulled = await _asgi_post(_endless(), [(b"content-length", b"lots")])
    assert (status, pulled) == (400, 0)


def test_oversize_body_through_the_client_is_413(client, nura_config) -> None:
    nura_config(ALLOWED)

    def chunked() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * (32 * 1024)

    answer = client.post(PATH, content=chunked())
    assert answer.status_code == 413
