"""`webhooks` section: incoming endpoints, the receiver, inbox and dispatcher.

`outgoing` is its own module (nura/config/sections/outgoing.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from nura.config.sections.common import Section
from nura.config.sections.outgoing import OutgoingSettings

Scheme = Literal["github", "generic", "standard"]
# What the generic scheme's `X-Signature` covers: `{X-Delivery-Id}.{X-Timestamp}.{body}`
# (as Standard Webhooks), or, for senders that cannot do better (Confluence Data Center,
# Bitbucket), the body alone: then the id and timestamp are unsigned, a captured request
# can be replayed with new ones, and only the body-digest dedupe stands in the way.
Signature = Literal["id-timestamp-body", "legacy-body-only"]

# Where each event type goes unless an endpoint says otherwise: "flow-name/deployment-name".
PAGE_INGEST = "confluence-sync/confluence-page-ingest"
WATCH = "confluence-watch/confluence-watch"
# Page events the watch can also see (an edit, the trash, a purge) go through it: it reads
# the page and emits the event a poll would, with the same id, so a page version that
# arrives by both paths makes one ingest run. The others (a move or a restore keeps the
# version; archiving) only come by webhook and go straight to the page ingest.
WATCHED_PAGE_EVENTS = ("created", "updated", "trashed", "removed")
DEFAULT_ROUTING = {
    "git.push": "git-ingest/git-ingest",
    # every Confluence page event (nura.webhooks.schemes.CONFLUENCE_PAGE_EVENTS)
    **{
        f"confluence.page.{action}": WATCH if action in WATCHED_PAGE_EVENTS else PAGE_INGEST
        for action in "created updated trashed removed restored moved archived unarchived".split()
    },
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
    # Generic scheme: what `X-Signature` covers. `legacy-body-only` is logged as a warning
    # when the receiver starts (replays are then only caught by the body-digest dedupe).
    signature: Signature = Field(
        default="id-timestamp-body",
        description="Generic scheme: X-Signature over `{X-Delivery-Id}.{X-Timestamp}.{body}`; "
        "`legacy-body-only` = over the body alone (Confluence DC; warned at start, replays "
        "deduped on the body's digest only).",
    )
    # Generic `legacy-body-only` only: reject requests without `X-Timestamp` (Confluence DC
    # sends none). The signed form always requires it: it is part of what is signed.
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

    @model_validator(mode="after")
    def _legacy_is_generic(self) -> IncomingEndpoint:
        if self.signature == "legacy-body-only" and self.scheme not in (None, "generic"):
            raise ValueError("signature: legacy-body-only applies to the generic scheme only")
        return self

    def block_name(self, endpoint: str) -> str:
        return self.secret_block or endpoint.replace("_", "-")


class ReceiverSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8780, gt=0, lt=65536)
    # Required for /metrics (and anything but webhooks and /healthz) off loopback, behind a
    # proxy (`trusted_proxies` set), or whenever a request carries X-Forwarded-For/Forwarded.
    bearer_token: SecretStr | None = None
    # Addresses of the reverse proxies in front of the receiver; any entry means /metrics
    # is reachable from elsewhere even though the receiver listens on loopback.
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies in front of the receiver; set: /metrics needs the bearer "
        "token even when listening on loopback.",
    )
    # How long a loaded WebhookSecret block is reused: rotation applies within this time.
    secret_cache_seconds: float = Field(default=30, ge=0)
    timestamp_tolerance_seconds: float = Field(default=300, gt=0)
    # Schemes whose delivery id is not signed (github, generic legacy-body-only): a body
    # already stored for the endpoint within this window is a duplicate (200, no run).
    replay_window_seconds: float = Field(
        default=86400,
        gt=0,
        description="Unsigned delivery ids (github, legacy-body-only): the same body within "
        "this window is a duplicate (200, no run).",
    )
    # Aggregate limits (all answered before a byte of the body is verified):
    # open connections + requests in progress (uvicorn `limit_concurrency`; over it: 503).
    max_concurrency: int = Field(
        default=256,
        gt=0,
        description="Open connections plus requests in progress (uvicorn limit_concurrency); "
        "over it uvicorn answers 503.",
    )
    # Request bodies held in memory at once, across all requests (over it: 503 Retry-After).
    max_buffered_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Request bodies held in memory at once across all requests; over it: "
        "503 over_capacity with Retry-After.",
    )
    # The whole body must arrive within this time from the headers (else 408): slowloris.
    body_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="The whole body must arrive within this time after the headers (else 408).",
    )
    # Request headers: how many, and their total size in bytes (over either: 431).
    max_header_count: int = Field(
        default=100, gt=0, description="Most request headers accepted (else 431)."
    )
    max_header_bytes: int = Field(
        default=32 * 1024, gt=0, description="Total size of the request headers (else 431)."
    )
    # Bodies at least this large are verified off the event loop (HMAC in a thread).
    hmac_thread_bytes: int = Field(
        default=256 * 1024,
        gt=0,
        description="Bodies at least this large are verified in a thread, off the event loop.",
    )
    tls_certfile: str | None = Field(
        default=None,
        description="PEM certificate (chain) to serve HTTPS with; set together with "
        "tls_keyfile. The minimum TLS version is platform.tls_min_version.",
    )
    tls_keyfile: str | None = Field(
        default=None, description="PEM private key of tls_certfile (HTTPS served when both set)."
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ReceiverSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile are set together (or neither)")
        return self

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
    # A cycle claims its entries this long: another dispatcher (another receiver on the same
    # store) skips them meanwhile; a dispatcher that died frees them when it ends.
    claim_lease_seconds: float = Field(default=30.0, gt=0)
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
