"""Webhook signing secrets with rotation: a current and a previous secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator


def _key_bytes(secret: str) -> bytes:
    """Standard Webhooks secrets are `whsec_<base64>`, decoded strictly (invalid base64 is
    an error, never used as text); anything else is used as UTF-8. Empty keys are refused.
    Error messages never include the secret."""
    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the whsec_ secret is not valid base64") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("the signing secret is empty")
    return key


def _ascii_bytes(value: str) -> bytes | None:
    """A received header value as bytes for a constant-time compare; None if it cannot be a
    signature. (`hmac.compare_digest` raises TypeError on non-ASCII str: a 5xx, not a 401.)"""
    return value.encode("ascii") if value.isascii() else None


def generic_message(msg_id: str, timestamp: str | int, body: bytes) -> bytes:
    """What the generic scheme signs: `{X-Delivery-Id}.{X-Timestamp}.{raw body}`.

    Header values are taken as the bytes received (ASGI gives latin-1 text)."""
    return f"{msg_id}.{timestamp}.".encode("latin-1", "replace") + body


class WebhookSigner:
    """Signs and verifies with every secret valid now (current, then previous)."""

    def __init__(self, secrets: list[SecretStr]) -> None:
        if not secrets:
            raise ValueError("no signing secret")
        self._secrets = secrets
        self._keys = [_key_bytes(s.get_secret_value()) for s in secrets]

    def keys(self) -> list[bytes]:
        return list(self._keys)

    def hex_digest(self, body: bytes, key: bytes | None = None) -> str:
        """`sha256=<hex>` over `body` (GitHub: the raw body; generic: `generic_message`)."""
        key = key if key is not None else self._keys[0]
        return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()

    def generic_signature(self, msg_id: str, timestamp: str | int, body: bytes) -> str:
        """`X-Signature` of the generic scheme: `sha256=<hex>` over `id.timestamp.body`."""
        return self.hex_digest(generic_message(msg_id, timestamp, body))

    def verify_hex(self, message: bytes, header: str | None) -> bool:
        if not header:
            return False
        given = _ascii_bytes(header.strip())
        if given is None:
            return False
        return any(
            hmac.compare_digest(self.hex_digest(message, k).encode(), given) for k in self._keys
        )

    def standard_signatures(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """`webhook-signature` value: `v1,<b64>` for each valid secret, space separated."""
        signed = f"{msg_id}.{timestamp}.".encode() + body
        return " ".join(
            "v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
            for k in self.keys()
        )

    def verify_standard(self, msg_id: str, timestamp: str, body: bytes, header: str | None) -> bool:
        if not header or not msg_id or not timestamp:
            return False
        signed = f"{msg_id}.{timestamp}.".encode() + body
        expected = [
            base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
            for k in self.keys()
        ]
        for part in header.split():
            version, _, sig = part.partition(",")
            given = _ascii_bytes(sig)
            if version != "v1" or given is None:
                continue
            if any(hmac.compare_digest(given, e.encode()) for e in expected):
                return True
        return False


class WebhookSecret(Block):
    """Signing secret of one webhook endpoint, with a previous secret during rotation.

    Example (rotation without downtime):
        ```python
        from nura.webhooks.blocks import WebhookSecret
        old = WebhookSecret.load("git-updates")
        WebhookSecret(current="new-secret", previous=old.current,
                      previous_expires_at="2026-12-01T00:00:00Z",
                      scheme=old.scheme).save("git-updates", overwrite=True)
        ```
    """

    _block_type_name = "Nura Webhook Secret"
    _block_type_slug = "nura-webhook-secret"
    _description = (
        "HMAC signing secret for a webhook endpoint, with a previous secret for rotation."
    )

    scheme: Literal["github", "generic", "standard"] = Field(
        default="generic", description="Signature scheme of the endpoint."
    )
    current: SecretStr = Field(description="The secret senders sign with now.")
    previous: SecretStr | None = Field(default=None, description="Still accepted until it expires.")
    previous_expires_at: datetime | None = Field(
        default=None,
        description="When the previous secret stops verifying (UTC); none = until removed.",
    )

    @field_validator("current", "previous")
    @classmethod
    def _usable(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            _key_bytes(v.get_secret_value())  # empty or invalid whsec_: a block error
        return v

    def valid_secrets(self, now: datetime | None = None) -> list[SecretStr]:
        now = now or datetime.now(UTC)
        secrets = [self.current]
        if self.previous is not None:
            expires = self.previous_expires_at
            if expires is not None and expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            if expires is None or now < expires:
                secrets.append(self.previous)
        return secrets

    def get_client(self, now: datetime | None = None) -> WebhookSigner:
        return WebhookSigner(self.valid_secrets(now))
