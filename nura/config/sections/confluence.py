"""`external_services.confluence`: the site, spaces, sync and publish settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nura.config.sections.common import Section, ServiceSettings


class ConfluenceWatchSettings(Section):
    """The `confluence-watch` deployment: change events without webhooks (CQL polling)."""

    interval_seconds: float = Field(
        default=60, ge=10, description="How often the watch polls Confluence (its schedule)."
    )
    overlap_minutes: float = Field(
        default=2,
        ge=1,
        description="Each poll asks CQL for pages modified since the last change seen minus "
        "this (CQL `lastmodified` has minute resolution and the search index lags); pages "
        "seen twice are told apart by (page id, version).",
    )
    trash_check_seconds: float = Field(
        default=300,
        ge=0,
        description="How often the watch lists the trash of the spaces (CQL cannot find "
        "trashed pages: one v2 listing more); 0 checks on every poll.",
    )


class ConfluenceSettings(ServiceSettings):
    base_url: str | None = "https://company.atlassian.net"
    sync_interval_hours: float = Field(default=6, gt=0)
    spaces: list[str] = Field(default_factory=lambda: ["TECH", "DOCS", "ARCH"])
    # Name of the saved `nura-confluence-credentials` block; its base_url wins over
    # `base_url` above. Without a block, CONFLUENCE_EMAIL + CONFLUENCE_API_TOKEN are used.
    credentials_block: str = "confluence"
    # Incremental syncs ask for pages modified since the last watermark minus this overlap
    # (CQL has minute resolution, and clocks and indexing lag behind).
    overlap_minutes: float = Field(default=10, ge=0)
    # Parallel page fetches (also bounded by rate_limit_per_minute / 60).
    concurrency: int = Field(default=8, ge=1, le=64)
    # Processes converting storage XHTML to Markdown (0 = one per CPU).
    convert_processes: int = Field(default=0, ge=0, le=64)
    # Below this many pages to convert, conversion stays in-process (no pool start-up).
    process_pool_min_pages: int = Field(default=50, ge=0)
    # Pages per checkpoint of the manifest (at least one listing answer: the checkpoint
    # keeps the listing's cursor, and a resumed sync starts from there).
    checkpoint_pages: int = Field(default=250, ge=1)
    # Pages per v2 listing answer (Confluence's maximum, 250, makes the fewest calls).
    page_size: int = Field(default=250, ge=1, le=250)
    # Labels of every page go into the object metadata: one CQL search without bodies per
    # space and run (200 pages an answer). Off: fewer calls, no `labels` metadata.
    sync_labels: bool = True
    # S3 puts in flight at once.
    s3_concurrency: int = Field(default=16, ge=1, le=128)
    # On 409 Conflict when publishing: fail (never overwrite a newer remote edit
    # silently), overwrite (re-read and write version + 1), skip (leave the remote page).
    publish_conflict_policy: Literal["fail", "overwrite", "skip"] = "fail"
    # S3 key prefixes of the knowledge base.
    s3_prefix: str = "confluence"
    manifest_prefix: str = "_manifests/confluence"
    watch: ConfluenceWatchSettings = Field(
        default_factory=ConfluenceWatchSettings,
        description="Change events without webhooks (docs/confluence.md).",
    )
