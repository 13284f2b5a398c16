"""SES bounce and complaint notifications arriving as SNS HTTP(S) messages.

Mounted by the webhook receiver at `POST /webhooks/ses-events`. Every message's SNS
signature is verified before anything else: SignatureVersion 1 (SHA1withRSA) and 2
(SHA256withRSA) over AWS's canonical string, with the certificate downloaded only from an
`https://sns.<region>.amazonaws.com/...pem` URL (cached). Then:

- `SubscriptionConfirmation`: the SubscribeURL (also AWS's, checked) is visited, 200.
- `Notification`: the SES event inside (`Bounce`, `Complaint`, `Delivery`) is recorded
  against the SES `MessageId` we stored when sending (`nura_notifications.feedback`) and in
  `nura_email_feedback`; SNS redelivering the same message is answered 200, recorded once.
- `UnsubscribeConfirmation`: logged, 200.

Answers: 200 handled · 400 malformed (not JSON, fields missing, unknown type) · 401 bad
signature or untrusted certificate URL · 403 topic not in `ses_feedback_topics` ·
413 body too large · 503 the store could not record it (SNS retries).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nura.webhooks.errors import SnsVerificationError

logger = logging.getLogger("nura.sns")

MAX_BODY = 300 * 1024  # SNS messages are at most 256 KB
_AWS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED_KEYS["UnsubscribeConfirmation"] = _SIGNED_KEYS["SubscriptionConfirmation"]

CertificateLoader = Callable[[str], Awaitable[bytes]]


def is_aws_sns_url(url: str, *, pem: bool = False) -> bool:
    """https, on sns.<region>.amazonaws.com, no credentials/port tricks; `.pem` for certs."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return (
        parts.scheme == "https"
        and bool(_AWS_HOST.match(host))
        and parts.port in (None, 443)
        and not parts.username
        and (not pem or parts.path.endswith(".pem"))
    )


async def _download_certificate(url: str) -> bytes:
    from nura.notify.ses import fetch_sns_certificate

    return await anyio.to_thread.run_sync(fetch_sns_certificate, url)


class _CertCache:
    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.items: OrderedDict[str, Any] = OrderedDict()

    def get(self, url: str) -> Any:
        if url in self.items:
            self.items.move_to_end(url)
            return self.items[url]
        return None

    def put(self, url: str, key: Any) -> None:
        self.items[url] = key
        while len(self.items) > self.size:
            self.items.popitem(last=False)


_certificates = _CertCache()
_loader: CertificateLoader = _download_certificate
_extra_trust: Callable[[str], bool] | None = None  # tests only: a local certificate host


def set_certificate_loader(
    loader: CertificateLoader | None, *, trust_url: Callable[[str], bool] | None = None
) -> None:
    """Tests: inject a loader (and which URLs to trust); None restores AWS-only defaults."""
    global _loader, _extra_trust
    _loader = loader or _download_certificate
    _extra_trust = trust_url
    _certificates.items.clear()


def _trusted(url: str, *, pem: bool) -> bool:
    return is_aws_sns_url(url, pem=pem) or (_extra_trust is not None and _extra_trust(url))


def canonical_string(message: dict[str, Any]) -> bytes:
    """AWS's string to sign: `key\\nvalue\\n` for the type's keys, in order, if present."""
    keys = _SIGNED_KEYS.get(str(message.get("Type")))
    if keys is None:
        raise SnsVerificationError(f"unknown SNS message type {message.get('Type')!r}")
    out = []
    for key in keys:
        if key in message and message[key] is not None:
            out.append(f"{key}\n{message[key]}\n")
    return "".join(out).encode()


async def verify_signature(message: dict[str, Any]) -> None:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    version = str(message.get("SignatureVersion", ""))
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # noqa: S303 - SNS SignatureVersion 1 is SHA1withRSA
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise SnsVerificationError(f"unsupported SignatureVersion {version!r}")
    url = str(message.get("SigningCertURL") or message.get("SigningCertUrl") or "")
    if not _trusted(url, pem=True):
        raise SnsVerificationError("signing certificate URL is not AWS SNS's")
    key = _certificates.get(url)
    if key is None:
        try:
            cert = x509.load_pem_x509_certificate(await _loader(url))
        except Exception as exc:  # a bad download is a failed verification, never a crash
            raise SnsVerificationError(f"certificate unusable: {type(exc).__name__}") from exc
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsVerificationError("certificate key is not RSA")
        _certificates.put(url, key)
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError) as exc:
        raise SnsVerificationError("signature does not verify") from exc


def _ses_event(message: dict[str, Any]) -> tuple[str, str | None, str | None, list[str]]:
    """(kind, SES MessageId, sub-type, recipients) from the SES notification JSON."""
    try:
        event = json.loads(message.get("Message") or "{}")
    except json.JSONDecodeError:
        return "other", None, None, []
    if not isinstance(event, dict):
        return "other", None, None, []
    kind = str(event.get("notificationType") or event.get("eventType") or "other").lower()
    mail = event.get("mail") or {}
    ses_id = mail.get("messageId") if isinstance(mail, dict) else None
    sub_type: str | None = None
    recipients: list[str] = []
    if kind == "bounce":
        bounce = event.get("bounce") or {}
        sub_type = "/".join(filter(None, [bounce.get("bounceType"), bounce.get("bounceSubType")]))
        recipients = [r.get("emailAddress", "") for r in bounce.get("bouncedRecipients") or []]
    elif kind == "complaint":
        complaint = event.get("complaint") or {}
        sub_type = complaint.get("complaintFeedbackType")
        recipients = [
            r.get("emailAddress", "") for r in complaint.get("complainedRecipients") or []
        ]
    elif kind == "delivery":
        recipients = list((event.get("delivery") or {}).get("recipients") or [])
    return kind, ses_id, sub_type or None, [r for r in recipients if r]


def _record(message: dict[str, Any]) -> tuple[bool, str, str | None]:
    from nura import store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.notifications import record_feedback

    kind, ses_id, sub_type, recipients = _ses_event(message)
    new = record_feedback(
        get_engine(store_url()),
        sns_message_id=str(message["MessageId"]),
        ses_message_id=ses_id,
        kind=kind,
        sub_type=sub_type,
        recipients=recipients,
    )
    return new, kind, ses_id


async def sns_endpoint(request: Request) -> Response:
    """`POST /webhooks/ses-events`: verify, then confirm or record (see module docstring)."""
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"error": "body too large"}, status_code=413)
    try:
        message = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return JSONResponse({"error": "body is not JSON"}, status_code=400)
    if not isinstance(message, dict):
        return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
    kind = message.get("Type")
    required = ("Type", "MessageId", "TopicArn", "Signature", "SignatureVersion", "Timestamp")
    missing = [k for k in required if not message.get(k)]
    if missing or kind not in _SIGNED_KEYS:
        reason = f"missing {', '.join(missing)}" if missing else f"unknown Type {kind!r}"
        return JSONResponse({"error": reason}, status_code=400)
    try:
        await verify_signature(message)
    except SnsVerificationError as exc:
        logger.warning("SNS message %s rejected: %s", message.get("MessageId"), exc)
        return JSONResponse({"error": "signature verification failed"}, status_code=401)
    from nura import get_config

    topics = get_config().health_monitoring.notifications.ses_feedback_topics
    if topics and message["TopicArn"] not in topics:
        return JSONResponse({"error": "topic not accepted"}, status_code=403)
    if kind == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL") or "")
        if not _trusted(url, pem=False):
            return JSONResponse({"error": "SubscribeURL is not AWS SNS's"}, status_code=400)
        from nura.notify.ses import confirm_sns_subscription

        try:
            await anyio.to_thread.run_sync(confirm_sns_subscription, url)
        except Exception as exc:  # typed call-layer error: SNS will resend the confirmation
            logger.error("SNS subscription to %s not confirmed: %s", message["TopicArn"], exc)
            return JSONResponse({"error": "confirmation failed"}, status_code=503)
        logger.info("SNS subscription to %s confirmed", message["TopicArn"])
        return JSONResponse({"status": "subscribed"})
    if kind == "UnsubscribeConfirmation":
        logger.warning("SNS unsubscribed from %s", message["TopicArn"])
        return JSONResponse({"status": "unsubscribed"})
    try:
        new, event_kind, ses_id = await anyio.to_thread.run_sync(_record, message)
    except Exception:
        logger.exception("SES feedback %s could not be stored", message.get("MessageId"))
        return JSONResponse({"error": "not stored"}, status_code=503)
    return JSONResponse(
        {"status": "recorded" if new else "duplicate", "kind": event_kind, "ses_message_id": ses_id}
    )
