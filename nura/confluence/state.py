"""Per-space sync state: the manifest in S3 next to the documents it describes.

`{manifest_prefix}/{SPACE}.json` (default `_manifests/confluence/TECH.json`):

    {"schema": 1, "space": "TECH", "space_id": "98306",
     "watermark": "2026-11-29T00:00:00+00:00",      # start of the last complete sync
     "full_started": null,                          # set while a full sync is unfinished
     "cursor": null,                                # its listing's next page (resume point)
     "pages": {"123": {"version": 4, "sha256": "...", "key": "confluence/TECH/123.md",
                       "title": "...", "last_modified": "...", "parent_id": "...",
                       "labels": ["..."], "synced_at": "...", "flags": 0,
                       "seen": "..."}}}                # the full sync that listed it

Why S3 and not a database store: the manifest describes objects in the bucket, so it must
travel with them (a restored or copied bucket resyncs correctly, a fresh worker with an
empty database does not re-download a space), and every worker already has S3 access.
It is the checkpoint too: it is rewritten every `checkpoint_pages` pages with the cursor
of the listing's next answer, while the watermark only moves when a space completes
without failures. The `cursor` is a URL read back from S3: the client only follows it to
its own site's listing of the same space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nura import get_config
from nura.kb import s3

SCHEMA = 1


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Manifest:
    space: str
    space_id: str | None = None
    watermark: str | None = None
    full_started: str | None = None
    cursor: str | None = None
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return manifest_key(self.space)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "space": self.space,
            "space_id": self.space_id,
            "watermark": self.watermark,
            "full_started": self.full_started,
            "cursor": self.cursor,
            "pages": self.pages,
        }


def manifest_key(space: str) -> str:
    prefix = get_config().external_services.confluence.manifest_prefix.strip("/")
    return f"{prefix}/{space}.json"


def document_key(space: str, page_id: str) -> str:
    prefix = get_config().external_services.confluence.s3_prefix.strip("/")
    return f"{prefix}/{space}/{page_id}.md"


def load_manifest(space: str) -> Manifest:
    data = s3.get_json(manifest_key(space))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return Manifest(space)
    return Manifest(
        space=space,
        space_id=data.get("space_id"),
        watermark=data.get("watermark"),
        full_started=data.get("full_started"),
        cursor=data.get("cursor") if isinstance(data.get("cursor"), str) else None,
        pages=dict(data.get("pages") or {}),
    )


def save_manifest(manifest: Manifest) -> None:
    s3.put_json(manifest.key, manifest.to_json())
