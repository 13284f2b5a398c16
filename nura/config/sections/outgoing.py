"""`webhooks.outgoing`: signed deliveries, dead letters, redrive.

```yaml
webhooks:
  outgoing:
    retry_attempts: 3            # retries inside one delivery (408/429/5xx/timeouts)
    timeout_seconds: 30
    exponential_backoff: true
    allow_list: ["127.0.0.1"]    # private/loopback hosts or CIDRs that may be targets
    targets:
      partner-a:
        url: "https://hooks.partner-a.example/nura"
        secret_block: "partner-a"   # a saved `nura-webhook-secret` block (whsec_ secrets)
        x_signature: true           # also send the seed's X-Signature: sha256=<hex>
    dead_letters:
      redrive_base_minutes: 5       # the n-th redrive is due 5 * 2**n minutes after failure
      max_redrives: 5
```
"""

from __future__ import annotations

import ipaddress
import re

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from nura.config.sections.common import Section

_NUMERIC_HOST = re.compile(r"^(0x)?[0-9a-f.]*[0-9][0-9a-fx.]*$", re.IGNORECASE)
_HOSTNAME = re.compile(
    r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*\.?$", re.I
)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class OutgoingTarget(Section):
    """One partner endpoint that receives our signed events."""

    url: str = Field(pattern=r"^https?://", description="Where events are POSTed.")
    secret_block: str | None = Field(
        default=None, description="Name of a saved `nura-webhook-secret` block (preferred)."
    )
    secret: SecretStr | None = Field(
        default=None,
        description="Inline signing secret (`whsec_<base64>`), e.g. from ${ENV}; "
        "used when no secret_block is set (the local sandbox).",
    )
    x_signature: bool = Field(
        default=False, description="Also sign with the seed's `X-Signature: sha256=<hex>`."
    )
    enabled: bool = True
    event_types: list[str] = Field(
        default_factory=list, description="Event types this target takes; empty = all."
    )
    rate_limit_per_minute: int | None = Field(default=None, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    circuit_breaker_threshold: int | None = Field(default=None, gt=0)

    @field_validator("url")
    @classmethod
    def deliverable_url(cls, url: str) -> str:
        """Everything a delivery would find wrong with the URL, found at config load (the
        messages name the fault, never the URL, which may carry a token)."""
        try:
            parts = httpx.URL(url)
            port = parts.port
            host = parts.host
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ValueError(f"not a valid URL ({type(exc).__name__})") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("the scheme must be http or https")
        if not host:
            raise ValueError("the URL has no host")
        if parts.userinfo:
            raise ValueError("credentials in the URL: put them in the target's secret")
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"port {port} is outside 1-65535")
        if _NUMERIC_HOST.match(host) and not _is_ip(host):
            raise ValueError(
                "a numeric host that is not a dotted-quad IPv4 address (octal, hex or "
                "integer forms are read differently by different clients)"
            )
        return url

    @model_validator(mode="after")
    def _one_secret(self) -> OutgoingTarget:
        if self.secret_block is None and self.secret is None:
            raise ValueError("a target needs `secret_block` or `secret` (deliveries are signed)")
        return self


class DeadLetterSettings(Section):
    """The durable redrive of deliveries that used up their attempts."""

    redrive_interval_minutes: float = Field(
        default=5, gt=0, description="Schedule of the webhook-redrive deployment."
    )
    redrive_base_minutes: float = Field(
        default=5, gt=0, description="Redrive n is due base * 2**n minutes after the failure."
    )
    max_redrives: int = Field(default=5, ge=0, le=50)
    batch_size: int = Field(default=200, gt=0, le=10_000)
    lease_seconds: float = Field(
        default=300,
        gt=0,
        description="An in-flight delivery whose process died is picked up after this.",
    )
    retention_days: float = Field(default=30, gt=0, description="Delivered rows kept this long.")


class OutgoingSettings(Section):
    retry_attempts: int = Field(default=3, ge=0, le=20)
    timeout_seconds: float = Field(default=30, gt=0)
    exponential_backoff: bool = True
    rate_limit_per_minute: int = Field(
        default=6000, gt=0, description="Per-target call rate unless the target sets its own."
    )
    concurrency: int = Field(default=16, gt=0, le=256, description="Parallel deliveries.")
    circuit_breaker_threshold: int = Field(
        default=20,
        gt=0,
        description="Consecutive failed attempts that open a target's breaker. Higher than "
        "the API default: a partner failing 20 % of first attempts must not trip it.",
    )
    allow_list: list[str] = Field(
        default_factory=list,
        description="Hosts, IPs or CIDRs allowed although private/loopback (SSRF guard).",
    )

    @field_validator("allow_list")
    @classmethod
    def _hosts_or_networks(cls, items: list[str]) -> list[str]:
        for n, item in enumerate(items):
            entry = item.strip()
            try:
                ipaddress.ip_network(entry, strict=False)
                continue
            except ValueError:
                pass
            if _NUMERIC_HOST.match(entry) or not _HOSTNAME.match(entry):
                raise ValueError(f"entry {n} is neither a host name, an IP address nor a CIDR")
        return items

    auto_disable_after_hours: float = Field(
        default=24, gt=0, description="A target failing without success this long is disabled."
    )
    default_target: str = "sandbox"
    targets: dict[str, OutgoingTarget] = Field(default_factory=dict)
    dead_letters: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
