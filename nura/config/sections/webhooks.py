"""`webhooks` section: incoming endpoints, the receiver, inbox and dispatcher.

`outgoing` is its own module (nura/config/sections/outgoing.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from nura.config.sections.common import Section
from nura.config.sections.outgoing import OutgoingSettings

Scheme = Literal["github", "generic", "standard"]

# Where each event type goes unless an endpoint says otherwise: "flow-name/deployment-name".
DEFAULT_ROUTING = {
    "git.push": "git-ingest/git-ingest",
    "confluence.page.updated": "confluence-sync/confluence-page-ingest",
}


class IncomingEndpoint(Section):
    url_path: str
    event_types: list[str] = Field(min_length=1)
    rate_limit_per_minute: int = Field(default=60, gt=0)
    enabled: bool = True
    # Signature scheme; unset = the scheme saved in the endpoint's WebhookSecret block.
    scheme: Scheme | None = None
    # Name of the `nura-webhook-secret` block; unset = the endpoint name with "_" -> "-".
    secret_block: str | None = None
    # Alternative for the sandbox/benchmarks: an environment variable holding the secret.
    secret_env: str | None = None
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    # Generic scheme: reject requests without `X-Timestamp` (Confluence DC sends none).
    require_timestamp: bool = True
    # Sender event names -> our event types (e.g. Confluence DC "page_updated").
    event_map: dict[str, str] = Field(default_factory=dict)
    # Event type -> deployment for this endpoint only (overrides `webhooks.routing`).
    routing: dict[str, str] = Field(default_factory=dict)

    @field_validator("url_path")
    @classmethod
    def _under_webhooks(cls, v: str) -> str:
        if not v.startswith("/webhooks/") or len(v) <= len("/webhooks/"):
            raise ValueError("url_path must look like /webhooks/<name>")
        return v.rstrip("/")

    def block_name(self, endpoint: str) -> str:
        return self.secret_block or endpoint.replace("_", "-")


class ReceiverSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8780, gt=0, lt=65536)
    # Required for /metrics (and anything but webhooks and /healthz) off loopback.
    bearer_token: SecretStr | None = None
    # How long a loaded WebhookSecret block is reused: rotation applies within this time.
    secret_cache_seconds: float = Field(default=30, ge=0)
    timestamp_tolerance_seconds: float = Field(default=300, gt=0)

    @field_validator("bearer_token", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v in ("", None) else v


class InboxSettings(Section):
    # Largest group commit; one fsync acknowledges every request of the batch.
    batch_max: int = Field(default=512, gt=0)
    # SQLite durability of the inbox writer: FULL survives power loss, NORMAL a crash.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"


class DispatcherSettings(Section):
    run_in_receiver: bool = True
    batch_size: int = Field(default=100, gt=0, le=100)  # the bulk endpoint takes 100 at most
    concurrency: int = Field(default=2, gt=0, le=64)
    poll_interval_seconds: float = Field(default=0.2, gt=0)
    backoff_base_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=60.0, gt=0)
    # Deliveries whose run cannot be created (unknown deployment, bad parameters) fail
    # after this many attempts; an unreachable Prefect API never fails them.
    max_attempts: int = Field(default=10, gt=0)
    reconcile_interval_seconds: float = Field(default=10.0, gt=0)
    # While the Prefect API is down the loop probes /health, doubling up to this delay.
    outage_probe_max_seconds: float = Field(default=5.0, gt=0)


class WebhooksSettings(Section):
    incoming: dict[str, IncomingEndpoint] = Field(default_factory=dict)
    outgoing: OutgoingSettings = Field(default_factory=OutgoingSettings)
    receiver: ReceiverSettings = Field(default_factory=ReceiverSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    dispatcher: DispatcherSettings = Field(default_factory=DispatcherSettings)
    routing: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ROUTING))

    def deployment_for(self, endpoint: str, event_type: str) -> str | None:
        ep = self.incoming.get(endpoint)
        if ep is not None and event_type in ep.routing:
            return ep.routing[event_type]
        return self.routing.get(event_type)
