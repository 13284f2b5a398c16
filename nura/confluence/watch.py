"""Change events without webhooks: poll CQL, emit `confluence.page.updated` / `.removed`.

    result = poll(["TECH", "DOCS"], state, now)    # one CQL call when nothing changed
    emit_changes(result.changes)                   # Prefect events; an automation ingests

Many Confluence Cloud sites cannot send webhooks (no Connect or Forge app). The
`confluence-watch` deployment runs `run_watch` every minute:

- **Edits**: one CQL search over every configured space,
  `(space = "A" OR space = "B") AND type = "page" AND lastmodified >= "<since>"`.
  CQL dates have minute resolution (`yyyy-MM-dd HH:mm`) and the search index lags behind
  an edit, so `since` is the latest modification seen minus `watch.overlap_minutes`: the
  pages of the overlap come back poll after poll, and the (page id, version) pairs kept in
  the state tell them apart. Nothing changed = that one call (and one S3 read of the state).
- **Trash**: CQL cannot find trashed content (its `cqlcontext` statuses are current, draft
  and archived only), so every `watch.trash_check_seconds` one v2 listing
  `GET /pages?space-id=<all>&status=trashed` is compared with the trash seen before. The
  first listing is the baseline (the scheduled sync handles older deletions).
- **Events** have a deterministic id, uuid5 of `confluence-page:<id>:<version>` (removals:
  `...:removed`). Prefect's trigger service drops an event id it has seen (30 minutes),
  so two polls that both saw one version (overlapping runs, a lost state) still make one
  ingest run. The state is saved only after the Prefect server took the events.

The state is a JSON object in S3 beside the sync manifests (`<manifest_prefix>/_watch.json`):
every worker shares it, and it travels with the knowledge base as the manifests do. It is
written with S3's conditional write (If-Match the ETag read): a watch run that finds it
changed - the scheduled poll and webhook page reads run at once - reads it and polls again
(up to `STATE_ATTEMPTS`), so no run's record is lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from nura import get_config
from nura.confluence.client import (
    LABELS_LIMIT,
    ConfluenceClient,
    cql_and,
    cql_clause,
    cql_or,
)
from nura.confluence.state import iso, parse_iso
from nura.core.errors import IntegrationError
from nura.kb import s3

if TYPE_CHECKING:
    from prefect.events import Event
    from prefect.events.schemas.automations import AutomationCore

logger = logging.getLogger("nura.confluence.watch")

UPDATED = "confluence.page.updated"
REMOVED = "confluence.page.removed"
AUTOMATION = "nura-confluence-watch-ingest"
_NS = uuid.UUID("0d6c51f2-7f43-4b8e-9c3a-2f1f8f0b6a77")
STATE_SCHEMA = 1
STATE_ATTEMPTS = 5  # conditional writes of the state before giving up


class WatchStateConflict(IntegrationError):
    """The watch state kept changing under this run (many watch runs at once)."""


def dedupe_key(page_id: str, version: int, kind: Literal["updated", "removed"]) -> str:
    """One key per page version (a removal has its own): both event paths derive it."""
    key = f"confluence-page:{page_id}:{version}"
    return key if kind == "updated" else f"{key}:removed"


@dataclass(frozen=True)
class PageChange:
    kind: Literal["updated", "removed"]
    page_id: str
    space: str
    version: int
    title: str

    @property
    def event(self) -> str:
        return UPDATED if self.kind == "updated" else REMOVED

    @property
    def key(self) -> str:
        return dedupe_key(self.page_id, self.version, self.kind)

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.uuid5(_NS, self.key)

    def resource(self) -> dict[str, str]:
        return {
            "prefect.resource.id": f"confluence.page.{self.page_id}",
            "prefect.resource.name": self.title[:200],
            "confluence.space": self.space,
        }

    def payload(self) -> dict[str, Any]:
        return {
            "page_id": self.page_id,
            "space": self.space,
            "version": self.version,
            "title": self.title,
            "dedupe_key": self.key,
        }


@dataclass
class WatchState:
    """What the watch remembers between polls (JSON in S3)."""

    watermark: str | None = None  # the latest `version.when` seen (ISO, UTC)
    seen: dict[str, list[Any]] = field(default_factory=dict)  # page id -> [version, when]
    trashed: dict[str, int] = field(default_factory=dict)  # page id -> version, in the trash
    trash_checked_at: str | None = None
    space_ids: dict[str, str] = field(default_factory=dict)  # space key -> id (v2 listings)

    def to_json(self) -> dict[str, Any]:
        return {"schema": STATE_SCHEMA, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> WatchState:
        if not isinstance(data, dict) or data.get("schema") != STATE_SCHEMA:
            return cls()
        return cls(
            watermark=data.get("watermark"),
            seen={str(k): list(v) for k, v in (data.get("seen") or {}).items()},
            trashed={str(k): int(v) for k, v in (data.get("trashed") or {}).items()},
            trash_checked_at=data.get("trash_checked_at"),
            space_ids={str(k): str(v) for k, v in (data.get("space_ids") or {}).items()},
        )


@dataclass
class WatchResult:
    changes: list[PageChange]
    state: WatchState
    calls: int  # Confluence requests this poll made
    trash_checked: bool = False
    state_changed: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "updated": sum(c.kind == "updated" for c in self.changes),
            "removed": sum(c.kind == "removed" for c in self.changes),
            "confluence_calls": self.calls,
            "trash_checked": self.trash_checked,
            "watermark": self.state.watermark,
        }


# -- polling ---------------------------------------------------------------------------


def changes_query(spaces: list[str], since: datetime) -> str:
    """The one CQL search of a poll: every space, pages modified since `since` (minutes)."""
    in_spaces = [cql_clause("space", "=", key) for key in spaces]
    return (
        cql_and(
            in_spaces[0] if len(in_spaces) == 1 else cql_or(*in_spaces),
            cql_clause("type", "=", "page"),
            cql_clause("lastmodified", ">=", since),
        )
        + " ORDER BY lastmodified ASC"
    )


def poll(
    spaces: list[str],
    state: WatchState,
    now: datetime,
    *,
    client: ConfluenceClient | None = None,
    overlap: timedelta | None = None,
    trash_every: timedelta | None = None,
) -> WatchResult:
    """One poll: the edits since the state's watermark and, when due, the trash.

    `state` is updated in place (and returned in the result); save it after the changes
    were delivered."""
    settings = get_config().external_services.confluence.watch
    overlap = timedelta(minutes=settings.overlap_minutes) if overlap is None else overlap
    if trash_every is None:
        trash_every = timedelta(seconds=settings.trash_check_seconds)
    client = (client or ConfluenceClient.from_config()).scoped()
    before = state.to_json()
    changes = _edits(client, spaces, state, now, overlap)
    checked_at = parse_iso(state.trash_checked_at)
    trash_due = checked_at is None or now - checked_at >= trash_every
    if trash_due:
        changes += _trash(client, spaces, state, now)
    return WatchResult(changes, state, client.calls, trash_due, state.to_json() != before)


def _edits(
    client: ConfluenceClient,
    spaces: list[str],
    state: WatchState,
    now: datetime,
    overlap: timedelta,
) -> list[PageChange]:
    since = (parse_iso(state.watermark) or now) - overlap
    changes = []
    latest = parse_iso(state.watermark)
    for hit in client.search(changes_query(spaces, since), limit=LABELS_LIMIT):
        page_id, version = str(hit["id"]), int((hit.get("version") or {}).get("number") or 0)
        when = parse_iso((hit.get("version") or {}).get("when"))
        if when is not None and (latest is None or when > latest):
            latest = when
        known = state.seen.get(page_id)
        if known and int(known[0]) >= version:
            continue  # the overlap brought it back
        state.seen[page_id] = [version, iso(when) if when else iso(now)]
        state.trashed.pop(page_id, None)  # restored from the trash
        space = str((hit.get("space") or {}).get("key") or "")
        changes.append(PageChange("updated", page_id, space, version, str(hit.get("title", ""))))
    if latest is not None:
        state.watermark = iso(latest)
    _forget_before(state, (latest or now) - overlap - timedelta(minutes=1))
    return changes


def _forget_before(state: WatchState, floor: datetime) -> None:
    """Pages last seen before the next query's window cannot come back unchanged."""
    for page_id, (_version, when) in list(state.seen.items()):
        seen_at = parse_iso(when)
        if seen_at is not None and seen_at < floor:
            del state.seen[page_id]


def _trash(
    client: ConfluenceClient, spaces: list[str], state: WatchState, now: datetime
) -> list[PageChange]:
    missing = [key for key in spaces if key not in state.space_ids]
    if missing:  # once: the v2 listing takes space ids
        found = client.get_spaces(missing)
        state.space_ids.update({key: str(space["id"]) for key, space in found.items()})
    keys = {state.space_ids[k]: k for k in spaces if k in state.space_ids}
    baseline = state.trash_checked_at is None
    trashed: dict[str, int] = {}
    changes = []
    for page in client.trashed_pages(sorted(keys)) if keys else ():
        page_id, version = str(page["id"]), int((page.get("version") or {}).get("number") or 0)
        trashed[page_id] = version
        if baseline or state.trashed.get(page_id) == version:
            continue
        space = keys.get(str(page.get("spaceId")), "")
        changes.append(PageChange("removed", page_id, space, version, str(page.get("title", ""))))
    state.trashed = trashed
    state.trash_checked_at = iso(now)
    return changes


# -- events, state, the run ------------------------------------------------------------


def to_events(changes: Iterable[PageChange], now: datetime) -> list[Event]:
    from prefect.events import Event

    return [
        Event(
            id=c.event_id,
            occurred=now,  # type: ignore[arg-type]  # a pendulum DateTime in the stubs
            event=c.event,
            resource=c.resource(),  # type: ignore[arg-type]
            payload=c.payload(),
        )
        for c in changes
    ]


def emit_changes(changes: list[PageChange], now: datetime) -> None:
    """Send the events and return once the Prefect server took them: `emit_event` hands
    events to a background worker that only logs a failed send, and the state must not
    record a change whose event was lost."""
    if not changes:
        return
    from prefect.events.clients import get_events_client

    async def send() -> None:
        async with get_events_client() as events:
            for event in to_events(changes, now):
                await events.emit(event)

    asyncio.run(send())


def state_key() -> str:
    prefix = get_config().external_services.confluence.manifest_prefix.strip("/")
    return f"{prefix}/_watch.json"


def load_state() -> tuple[WatchState, str | None]:
    """The state and its ETag, for `save_state`."""
    data, etag = s3.get_json_tagged(state_key())
    return WatchState.from_json(data), etag


def save_state(state: WatchState, etag: str | None) -> bool:
    """Write the state if it is still the one read with `etag`; False if another watch run
    (the schedule's poll, a webhook's page read) wrote it in between."""
    return s3.put_json_if(state_key(), state.to_json(), etag)


def hint(
    page_id: str,
    state: WatchState,
    now: datetime,
    *,
    spaces: list[str] | None = None,
    client: ConfluenceClient | None = None,
) -> WatchResult:
    """A webhook named `page_id`: read the page (one call; the search index may not have
    the edit yet) and report its version as a poll would, so a webhook and a poll that see
    the same version make the same event (the same id: one ingest run).

    A page of a space not in `spaces` (default: the configured spaces) makes no event: a
    site sends the events of every space, and the poll does not watch that one either.
    The spaces' ids are looked up once (one more call) and kept in the state."""
    client = (client or ConfluenceClient.from_config()).scoped()
    keys = list(spaces or get_config().external_services.confluence.spaces)
    before = state.to_json()
    missing = [key for key in keys if key not in state.space_ids]
    if missing:
        found = client.get_spaces(missing)
        state.space_ids.update({key: str(space["id"]) for key, space in found.items()})
    page = client.get_page_any(page_id, body=False)
    version = int(((page or {}).get("version") or {}).get("number") or 0)
    by_id = {state.space_ids[k]: k for k in keys if k in state.space_ids}
    space = by_id.get(str((page or {}).get("spaceId")), "")
    title = str((page or {}).get("title", ""))
    changes: list[PageChange] = []
    if page is not None and not space:
        logger.info(
            "page %s is in space id %s, which is not watched (%s): no event",
            page_id,
            str(page.get("spaceId"))[:40],
            ", ".join(keys),
        )
    elif page is not None and page.get("status") == "current":
        known = state.seen.get(page_id)
        if not known or int(known[0]) < version:
            when = (page.get("version") or {}).get("createdAt") or iso(now)
            state.seen[page_id] = [version, when]
            changes.append(PageChange("updated", page_id, space, version, title))
    elif state.trashed.get(page_id) != version or page is None:
        if page is not None:
            state.trashed[page_id] = version
        changes.append(PageChange("removed", page_id, space, version, title))
    return WatchResult(changes, state, client.calls, False, state.to_json() != before)


def run_watch(
    spaces: list[str] | None = None,
    page_id: str | None = None,
    space: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One poll of the `confluence-watch` deployment (load the state, poll, emit, save);
    with `page_id` (a webhook routed here), that page only. `space` is the webhook's and
    is not trusted: the page's own space comes from Confluence."""
    keys = list(dict.fromkeys(spaces or get_config().external_services.confluence.spaces))
    now = now or datetime.now(UTC)
    emitted: dict[str, PageChange] = {}
    for attempt in range(1, STATE_ATTEMPTS + 1):
        state, etag = load_state()
        result = hint(str(page_id), state, now, spaces=keys) if page_id else poll(keys, state, now)
        fresh = [c for c in result.changes if c.key not in emitted]  # not sent by this run
        emit_changes(fresh, now)
        emitted.update((c.key, c) for c in fresh)
        if not result.state_changed or save_state(result.state, etag):
            break
        # Another watch run saved first: poll again on its state (what this run already
        # sent is recorded in the state again, not sent twice).
        logger.info("the watch state changed meanwhile (attempt %d): reading it again", attempt)
    else:
        raise WatchStateConflict(
            f"the watch state {state_key()} changed under every one of {STATE_ATTEMPTS} "
            "attempts; the events were sent (a next poll repeats them with the same ids)"
        )
    result.changes = list(emitted.values())
    for change in result.changes:
        logger.info("%s %s v%s (%s)", change.event, change.page_id, change.version, change.space)
    return result.summary()


# -- the automation that ingests -------------------------------------------------------


def ingest_automation(deployment_id: uuid.UUID) -> AutomationCore:
    """Every `confluence.page.updated` / `.removed` event -> one run of the page ingest
    (parameters from the event's payload). Reactive, threshold 1: each event fires once;
    a repeated event id is dropped by Prefect before it reaches the trigger."""
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=AUTOMATION,
        description="Runs confluence-page-ingest for the confluence-watch change events.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "confluence.page.*"},
            expect={UPDATED, REMOVED},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=deployment_id,
                parameters={
                    "page_id": "{{ event.payload.page_id }}",
                    "space": "{{ event.payload.space }}",
                },
                job_variables=None,
            )
        ],
    )


__all__ = [
    "AUTOMATION",
    "REMOVED",
    "UPDATED",
    "PageChange",
    "WatchResult",
    "WatchState",
    "WatchStateConflict",
    "changes_query",
    "dedupe_key",
    "emit_changes",
    "hint",
    "ingest_automation",
    "load_state",
    "poll",
    "run_watch",
    "save_state",
]
