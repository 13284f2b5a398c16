"""Webhook signing secrets with rotation: a current and a previous secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


def _key_bytes(secret: str) -> bytes:
    """Standard Webhooks secrets are `whsec_<base64>`; anything else is used as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


class WebhookSigner:
    """Signs and verifies with every secret valid now (current, then previous)."""

    def __init__(self, secrets: list[SecretStr]) -> None:
        self._secrets = secrets

    def keys(self) -> list[bytes]:
        return [_key_bytes(s.get_secret_value()) for s in self._secrets]

    def hex_digest(self, body: bytes, key: bytes | None = None) -> str:
        """`sha256=<hex>` over the raw body (GitHub and generic schemes)."""
        key = key if key is not None else self.keys()[0]
        return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()

    def verify_hex(self, body: bytes, header: str | None) -> bool:
        if not header:
            return False
        return any(
            hmac.compare_digest(self.hex_digest(body, k), header.strip()) for k in self.keys()
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
            if version == "v1" and any(hmac.compare_digest(sig, e) for e in expected):
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
