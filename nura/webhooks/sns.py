"""SES bounce and complaint notifications arriving as SNS HTTP(S) messages.

Mounted by the webhook receiver at `POST /webhooks/ses-events`. Anyone can POST here, so
the cheap checks come first and in this order: the body is streamed with a 300 KB cap
(413 as soon as it is passed, or at once when Content-Length says so); it must be a JSON
object with string fields (400 otherwise, never a 5xx); its `TopicArn` must be in
`ses_feedback_topics` (403; an empty list refuses every topic unless the sandbox's
`ses_feedback_allow_any_topic` is set). Only then is the SNS signature verified:
SignatureVersion 1 (SHA1withRSA) and 2 (SHA256withRSA) over AWS's canonical string, with
the certificate downloaded only from `https://sns.<region>.<partition suffix>/
SimpleNotificationService-<id>.pem` for a real region of the aws, aws-us-gov and aws-cn
partitions (botocore's endpoint data). Downloads go through the call-layer service
`sns_certificates` (own rate limit and breaker, so forged messages never touch `ses`, which
sends alert email); good certificates are cached, failed URLs too (for
`FAILED_FETCH_TTL_SECONDS`), and at most `MAX_FETCHES_IN_FLIGHT` run at once. Then:

- `SubscriptionConfirmation`: the SubscribeURL (also AWS's, checked) is visited, 200.
- `Notification`: the SES event inside (`Bounce`, `Complaint`, `Delivery`) is recorded
  against the SES `MessageId` we stored when sending (`nura_notifications.feedback`) and in
  `nura_email_feedback`; SNS redelivering the same message is answered 200, recorded once.
- `UnsubscribeConfirmation`: logged, 200.

Answers: 200 handled · 400 malformed (not a JSON object, fields missing or not strings,
unknown type) · 401 bad signature, untrusted or failed certificate URL · 403 topic not
accepted · 413 body too large · 503 the store could not record it (SNS retries).
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nura.core.errors import CircuitOpen, RateLimited
from nura.webhooks.errors import SnsVerificationError

logger = logging.getLogger("nura.sns")

MAX_BODY = 300 * 1024  # SNS messages are at most 256 KB
FAILED_FETCH_TTL_SECONDS = 600.0  # a URL whose download failed is refused this long
MAX_FETCHES_IN_FLIGHT = 2
# The shape of a commercial, GovCloud or China region host; the region must also be one
# botocore knows (`_sns_hosts`), so a made-up region of the right shape is refused too.
_AWS_HOST = re.compile(r"^sns\.[a-z]{2}(-gov)?-[a-z]+-\d\.amazonaws\.com(\.cn)?$")
_CERT_PATH = re.compile(r"^/SimpleNotificationService-[A-Za-z0-9_-]+\.pem$")
_PARTITIONS = ("aws", "aws-us-gov", "aws-cn")
_REQUIRED = ("Type", "MessageId", "TopicArn", "Signature", "SignatureVersion", "Timestamp")
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


@functools.cache
def _sns_hosts() -> frozenset[str]:
    """`sns.<region>.<dnsSuffix>` for every region of the partitions SNS signs from."""
    from botocore.loaders import create_loader

    hosts: set[str] = set()
    for partition in create_loader().load_data("endpoints")["partitions"]:
        if partition["partition"] in _PARTITIONS:
            suffix = partition["dnsSuffix"]
            hosts.update(f"sns.{region}.{suffix}" for region in partition["regions"])
    return frozenset(h for h in hosts if _AWS_HOST.match(h))


def is_aws_sns_url(url: str, *, pem: bool = False) -> bool:
    """https on sns.<real region>.amazonaws.com(.cn), no credentials/port/query tricks;
    for certificates the path is AWS's `/SimpleNotificationService-<id>.pem`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    return (
        parts.scheme == "https"
        and host in _sns_hosts()
        and port in (None, 443)
        and not parts.username
        and not parts.password
        and (not pem or (bool(_CERT_PATH.match(parts.path)) and not parts.query))
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


class _FailedUrls:
    """URLs whose certificate could not be used, refused without a download for `ttl`."""

    def __init__(
        self, ttl: float, size: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self.until: OrderedDict[str, float] = OrderedDict()
        self.lock = threading.Lock()

    def failed_recently(self, url: str) -> bool:
        with self.lock:
            until = self.until.get(url)
            if until is None:
                return False
            if until <= self.clock():
                del self.until[url]
                return False
            return True

    def add(self, url: str) -> None:
        with self.lock:
            self.until[url] = self.clock() + self.ttl
            self.until.move_to_end(url)
            while len(self.until) > self.size:
                self.until.popitem(last=False)


class _InFlight:
    """At most `limit` downloads at once; the rest are refused, not queued (SNS retries)."""

    def __init__(self, limit: int) -> None:
        self.slots = threading.BoundedSemaphore(limit)

    def __enter__(self) -> None:
        if not self.slots.acquire(blocking=False):
            raise SnsVerificationError("too many certificate downloads in flight")

    def __exit__(self, *exc: object) -> None:
        self.slots.release()


_certificates = _CertCache()
_failed = _FailedUrls(FAILED_FETCH_TTL_SECONDS)
_in_flight = _InFlight(MAX_FETCHES_IN_FLIGHT)
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
    with _failed.lock:
        _failed.until.clear()


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
    url = message.get("SigningCertURL") or message.get("SigningCertUrl") or ""
    if not isinstance(url, str) or not _trusted(url, pem=True):
        raise SnsVerificationError("signing certificate URL is not AWS SNS's")
    key = _certificates.get(url)
    if key is None:
        if _failed.failed_recently(url):
            raise SnsVerificationError("certificate URL failed recently")
        with _in_flight:
            try:
                cert = x509.load_pem_x509_certificate(await _loader(url))
            except Exception as exc:  # a bad download is a failed verification, never a crash
                if not isinstance(exc, CircuitOpen | RateLimited):  # not the URL's fault
                    _failed.add(url)
                raise SnsVerificationError(f"certificate unusable: {type(exc).__name__}") from exc
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            _failed.add(url)
            raise SnsVerificationError("certificate key is not RSA")
        _certificates.put(url, key)
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError) as exc:
        raise SnsVerificationError("signature does not verify") from exc


def _ses_event(message: dict[str, Any]) -> tuple[str, str | None, str | None, list[str]]:
    """(kind, SES MessageId, sub-type, recipients) from the SES notification JSON."""
    raw = message.get("Message") or "{}"
    try:
        event = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError:
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


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def _read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, streamed: refused before reading when Content-Length declares more than
    `limit`, and as soon as the bytes received pass it (chunked bodies have no length)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise _Refused(400, "Content-Length is not a number")
        if len(declared) > 12 or int(declared) > limit:
            raise _Refused(413, "body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, "body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> dict[str, Any]:
    """The SNS message: a JSON object whose required fields are non-empty strings.

    orjson rejects what would crash or stall `json` (nesting deeper than 1024 raises
    RecursionError there; a 5,000-digit number ValueError) and non-UTF-8 bytes."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Refused(400, "body is not JSON") from None
    if not isinstance(message, dict):
        raise _Refused(400, "body is not a JSON object")
    missing = [k for k in _REQUIRED if not message.get(k)]
    if missing:
        raise _Refused(400, f"missing {', '.join(missing)}")
    wrong = [k for k in _REQUIRED if not isinstance(message[k], str)]
    if wrong:
        raise _Refused(400, f"not a string: {', '.join(wrong)}")
    if message["Type"] not in _SIGNED_KEYS:
        raise _Refused(400, "unknown Type")
    return message


def _topic_accepted(topic: str) -> bool:
    from nura import get_config

    notifications = get_config().health_monitoring.notifications
    if notifications.ses_feedback_topics:
        return topic in notifications.ses_feedback_topics
    return notifications.ses_feedback_allow_any_topic


async def sns_endpoint(request: Request) -> Response:
    """`POST /webhooks/ses-events`: verify, then confirm or record (see module docstring)."""
    try:
        message = _parse(await _read_body(request))
    except _Refused as refused:
        return JSONResponse({"error": refused.reason}, status_code=refused.status)
    kind = message["Type"]
    # Before any certificate download: an unlisted topic costs nothing.
    if not _topic_accepted(message["TopicArn"]):
        return JSONResponse({"error": "topic not accepted"}, status_code=403)
    try:
        await verify_signature(message)
    except SnsVerificationError as exc:
        logger.warning("SNS message %s rejected: %s", message.get("MessageId"), exc)
        return JSONResponse({"error": "signature verification failed"}, status_code=401)
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
