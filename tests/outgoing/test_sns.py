"""SES bounces/complaints over SNS: signatures (v1, v2), certificate URLs, recording."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from nura.webhooks import sns

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
TOPICS = {"health_monitoring": {"notifications": {"ses_feedback_topics": [TOPIC]}}}


@pytest.fixture(scope="module")
def keypair() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def client(keypair, nura_config, tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    nura_config(TOPICS)
    fetched: list[str] = []

    async def loader(url: str) -> bytes:
        fetched.append(url)
        return keypair[1]

    sns.set_certificate_loader(loader)
    app = Starlette(routes=[Route("/webhooks/ses-events", sns.sns_endpoint, methods=["POST"])])
    with TestClient(app) as c:
        c.fetched = fetched  # type: ignore[attr-defined]
        yield c
    sns.set_certificate_loader(None)


def signed(key: rsa.RSAPrivateKey, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
    message = {
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "Timestamp": "2026-11-29T00:00:00.000Z",
        "TopicArn": TOPIC,
        **message,
    }
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    signature = key.sign(sns.canonical_string(message), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


def bounce(sns_id: str, ses_id: str) -> dict[str, Any]:
    event = {
        "notificationType": "Bounce",
        "mail": {"messageId": ses_id, "destination": ["gone@example.com"]},
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "gone@example.com"}],
        },
    }
    return {"Type": "Notification", "MessageId": sns_id, "Message": json.dumps(event)}


@pytest.mark.parametrize("version", ["1", "2"])
def test_bounce_is_verified_and_recorded_against_the_ses_message(client, keypair, version) -> None:
    from nura import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.notifications import (
        feedback_for,
        notification_by_message_id,
        record_notification,
    )

    engine = get_engine(store_url())
    record_notification(
        engine, channel="email", severity="high", title="t", status="sent", message_id="ses-1"
    )
    message = signed(keypair[0], bounce(f"sns-{version}", "ses-1"), version)
    answer = client.post("/webhooks/ses-events", json=message)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "recorded", "kind": "bounce", "ses_message_id": "ses-1"}
    row = notification_by_message_id(engine, "ses-1")
    assert row is not None and row["feedback"] == "bounce"
    [fb] = feedback_for(engine, "ses-1")
    assert fb["sub_type"] == "Permanent/General" and fb["recipients"] == "gone@example.com"
    # SNS redelivers: answered 200, recorded once; the certificate was fetched once.
    again = client.post("/webhooks/ses-events", json=message)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert len(feedback_for(engine, "ses-1")) == 1
    assert client.fetched == [CERT_URL]  # type: ignore[attr-defined]


def test_complaint_is_recorded(client, keypair) -> None:
    event = {
        "notificationType": "Complaint",
        "mail": {"messageId": "ses-2"},
        "complaint": {
            "complaintFeedbackType": "abuse",
            "complainedRecipients": [{"emailAddress": "a@example.com"}],
        },
    }
    message = signed(
        keypair[0], {"Type": "Notification", "MessageId": "sns-c", "Message": json.dumps(event)}
    )
    answer = client.post("/webhooks/ses-events", json=message)
    assert answer.status_code == 200 and answer.json()["kind"] == "complaint"


def test_tampered_or_unsigned_messages_are_401(client, keypair) -> None:
    message = signed(keypair[0], bounce("sns-t", "ses-3"))
    message["Message"] = message["Message"].replace("Permanent", "Transient")
    assert client.post("/webhooks/ses-events", json=message).status_code == 401
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert (
        client.post("/webhooks/ses-events", json=signed(other_key, bounce("s", "x"))).status_code
        == 401
    )
    unsupported = signed(keypair[0], bounce("sns-v3", "ses-3"))
    unsupported["SignatureVersion"] = "3"
    assert client.post("/webhooks/ses-events", json=unsupported).status_code == 401


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
        "https://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.pem?x=1",
        "https://sns.xx-fake-1.amazonaws.com/SimpleNotificationService-a.pem",
    ],
)
def test_certificates_come_only_from_aws_sns(client, keypair, url) -> None:
    message = bounce("sns-u", "ses-4")
    message["SigningCertURL"] = url
    message = signed(keypair[0], {**message})
    message["SigningCertURL"] = url
    assert client.post("/webhooks/ses-events", json=message).status_code == 401
    assert client.fetched == []  # type: ignore[attr-defined]


def test_malformed_bodies(client, keypair) -> None:
    post = client.post
    assert post("/webhooks/ses-events", content=b"not json").status_code == 400
    assert post("/webhooks/ses-events", json=[1]).status_code == 400
    assert post("/webhooks/ses-events", json={"Type": "Notification"}).status_code == 400
    odd = signed(keypair[0], bounce("sns-o", "x"))
    odd["Type"] = "Surprise"
    assert post("/webhooks/ses-events", json=odd).status_code == 400
    assert post("/webhooks/ses-events", content=b"x" * (sns.MAX_BODY + 1)).status_code == 413


def test_topic_allow_list(client, keypair, nura_config) -> None:
    nura_config({"health_monitoring": {"notifications": {"ses_feedback_topics": ["arn:other"]}}})
    answer = client.post("/webhooks/ses-events", json=signed(keypair[0], bounce("s9", "x")))
    assert answer.status_code == 403


@pytest.mark.integration
def test_subscription_confirmation_visits_the_subscribe_url(
    prefect_server, keypair, nura_config, flaky_service
) -> None:
    nura_config(TOPICS)

    async def loader(url: str) -> bytes:
        return keypair[1]

    sns.set_certificate_loader(loader, trust_url=lambda u: u.startswith(flaky_service.url))
    try:
        app = Starlette(routes=[Route("/e", sns.sns_endpoint, methods=["POST"])])
        with TestClient(app) as client:
            message = signed(
                keypair[0],
                {
                    "Type": "SubscriptionConfirmation",
                    "MessageId": "sub-1",
                    "Token": "tok",
                    "Message": "You have chosen to subscribe",
                    "SubscribeURL": f"{flaky_service.url}/health?Action=ConfirmSubscription",
                },
                "2",
            )
            answer = client.post("/e", json=message)
        assert answer.status_code == 200 and answer.json() == {"status": "subscribed"}
        assert len(flaky_service.state.times) == 1
    finally:
        sns.set_certificate_loader(None)


def test_aws_url_check() -> None:
    assert sns.is_aws_sns_url(CERT_URL, pem=True)
    china = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem"
    assert sns.is_aws_sns_url(china, pem=True)
    user = "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem"
    assert not sns.is_aws_sns_url(user, pem=True)
    assert not sns.is_aws_sns_url("https://sns.us-east-1.amazonaws.com:99999/", pem=False)
