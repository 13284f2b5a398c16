"""Confluence page events as the services send them (issue 23, items 7-8).

Bodies as documented:
- Confluence Data Center webhooks (confluence.atlassian.com/doc/managing-webhooks-1021225606.html;
  developer.atlassian.com/server/confluence/webhooks/): the event name in the body's
  `event` (`page_created`, `page_updated`, `page_trashed`, `page_removed`, `page_restored`,
  `page_moved`), the page as `page` - often its `id` only, no space;
- Confluence Cloud Forge product events (developer.atlassian.com/platform/forge/
  events-reference/confluence/): `eventType` `avi:confluence:<action>:page`, `atlassianId`,
  `content` {id, type, status, title, space {id, key, ...}}, `prevContent` when moved.

The packaged `confluence_updates` endpoint is Confluence Cloud only (item 8): a Forge app
relays the events signed with the generic scheme; the page ingest then reads the page from
Cloud's REST v2 (the Confluence stand-in), never from the event.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from nura.webhooks.dispatcher import flow_parameters
from nura.webhooks.schemes import parse_payload
from tests.confluence.conftest import confluence, sync_env  # noqa: F401 - fixtures
from tests.webhooks.helpers import SECRET, generic_headers

PAGE_INGEST = "confluence-sync/confluence-page-ingest"
WATCH = "confluence-watch/confluence-watch"
# What the watch can also see goes through it (one ingest run per page version, whichever
# path saw it first); moves, restores and archiving keep the version: straight to the ingest.
ROUTES = {
    **{f"confluence.page.{e}": WATCH for e in ("created", "updated", "trashed", "removed")},
    **{
        f"confluence.page.{e}": PAGE_INGEST for e in ("restored", "moved", "archived", "unarchived")
    },
}


def _forge(event: str, page_id: str, space: str | None, status: str = "current") -> dict:
    content: dict[str, Any] = {"id": page_id, "type": "page", "status": status, "title": "T"}
    if space is not None:
        content["space"] = {"id": 98306, "key": space, "name": space, "type": "global"}
    return {"eventType": event, "atlassianId": "5b10ac8d82e05b22cc7d4ef5", "content": content}


def _dc(event: str, page_id: int, space: str | None = None) -> dict:
    page: dict[str, Any] = {"id": page_id}
    if space is not None:
        page.update(spaceKey=space, title="T", contentType="page", version=2)
    return {"timestamp": 1768246501113, "event": event, "userKey": "ff80818", "page": page,
            "updateTrigger": "edit_page"}  # fmt: skip


CASES = [
    (_dc("page_created", 1015809, "TECH"), "confluence.page.created", "TECH"),
    (_dc("page_updated", 1015809), "confluence.page.updated", None),
    (_dc("page_trashed", 1015809, "TECH"), "confluence.page.trashed", "TECH"),
    (_dc("page_removed", 1015809), "confluence.page.removed", None),
    (_dc("page_restored", 1015809, "TECH"), "confluence.page.restored", "TECH"),
    (_dc("page_moved", 1015809, "DOCS"), "confluence.page.moved", "DOCS"),
    (_forge("avi:confluence:created:page", "1015809", "TECH"), "confluence.page.created", "TECH"),
    (_forge("avi:confluence:updated:page", "1015809", "TECH"), "confluence.page.updated", "TECH"),
    (_forge("avi:confluence:trashed:page", "1015809", "TECH", "trashed"),
     "confluence.page.trashed", "TECH"),
    (_forge("avi:confluence:deleted:page", "1015809", None), "confluence.page.removed", None),
    (_forge("avi:confluence:restored:page", "1015809", "TECH"), "confluence.page.restored",
     "TECH"),
    ({**_forge("avi:confluence:moved:page", "1015809", "DOCS"),
      "prevContent": _forge("x", "1015809", "TECH")["content"]}, "confluence.page.moved", "DOCS"),
    (_forge("avi:confluence:archived:page", "1015809", "TECH", "archived"),
     "confluence.page.archived", "TECH"),
    (_forge("avi:confluence:unarchived:page", "1015809", "TECH"), "confluence.page.unarchived",
     "TECH"),
]  # fmt: skip


def _packaged() -> Any:
    """The packaged defaults (nura/config/integrations.yaml)."""
    from nura.config.loader import DEFAULT_PATH, load_config

    return load_config(DEFAULT_PATH)


def _post(app: Any, payload: dict, delivery: str) -> int:
    body = json.dumps(payload).encode()
    headers = generic_headers(body, delivery)
    del headers["X-Event-Type"]  # a relay forwards the body; the body names the event
    with TestClient(app) as c:
        return c.post("/webhooks/confluence", content=body, headers=headers).status_code


def _app(tmp_path: Any) -> tuple[Any, Any, Any]:
    from nura.core.stores.db import get_engine
    from nura.platform.receiver_app import create_app
    from nura.webhooks.blocks import WebhookSecret

    cfg = _packaged()
    engine = get_engine(f"sqlite:///{tmp_path / 'inbox.db'}")
    secret = WebhookSecret(scheme="generic", current=SecretStr(SECRET))
    app = create_app(
        cfg, engine=engine, secrets={"confluence_updates": secret}, run_dispatcher=False
    )
    return app, engine, cfg


@pytest.mark.parametrize(("payload", "event_type", "space"), CASES)
def test_every_page_event_is_accepted_and_routed(
    tmp_path: Any, payload: dict, event_type: str, space: str | None
) -> None:
    from nura.core.stores.inbox import get_entry

    app, engine, cfg = _app(tmp_path)
    assert _post(app, payload, "d-1") == 202
    entry = get_entry(engine, "confluence_updates", "d-1")
    assert entry is not None and entry["event_type"] == event_type
    assert cfg.webhooks.routing[event_type] == ROUTES[event_type]
    stored = parse_payload(entry["body"], "application/json")
    assert flow_parameters(event_type, stored) == {"page_id": "1015809", "space": space}


def test_other_confluence_events_are_not_page_ingests(tmp_path: Any) -> None:
    """Likes and views change nothing stored: refused by the endpoint (422), not queued."""
    app, engine, _ = _app(tmp_path)
    assert _post(app, _forge("avi:confluence:viewed:page", "1", "TECH"), "v-1") == 422
    assert _post(app, _dc("space_created", 1), "v-2") == 422


def test_the_packaged_endpoint_is_confluence_cloud_only() -> None:
    """Item 8: the client speaks Cloud REST v2 only, so the endpoint takes the signed
    generic form a Forge relay sends (id and timestamp signed), not Data Center's
    body-only `X-Hub-Signature`."""
    ep = _packaged().webhooks.incoming["confluence_updates"]
    assert (ep.scheme, ep.signature) == ("generic", "id-timestamp-body")


def _dispatch_and_run(tmp_path: Any, payload: dict) -> dict:
    """What the dispatcher does with a stored delivery: its flow's parameters; then, in
    process, the routed flow and what follows it. Routed to the watch: the watch reads the
    page and reports the change (its Prefect event and the automation are
    tests/confluence/test_watch_e2e.py's), then the page ingest runs with the event's
    payload, as the automation's parameters say."""
    from datetime import UTC, datetime

    from flows.confluence_sync import confluence_sync
    from nura.confluence.watch import WatchState, hint
    from nura.core.stores.inbox import get_entry

    tmp_path.mkdir(parents=True, exist_ok=True)
    app, engine, cfg = _app(tmp_path)
    assert _post(app, payload, f"run-{id(payload)}") == 202
    entry = get_entry(engine, "confluence_updates", f"run-{id(payload)}")
    assert entry is not None
    route = cfg.webhooks.routing[entry["event_type"]]
    assert route == ROUTES[entry["event_type"]]
    params = flow_parameters(entry["event_type"], parse_payload(entry["body"], "application/json"))
    if route == PAGE_INGEST:
        return dict(confluence_sync(**params))
    (change,) = hint(params["page_id"], WatchState(), datetime.now(UTC)).changes
    event = change.payload()  # the automation: page_id and space from the event's payload
    return dict(confluence_sync(page_id=event["page_id"], space=event["space"]))


@pytest.mark.integration
def test_removal_without_a_space_is_resolved_from_the_manifest(
    confluence: Any,  # noqa: F811
    sync_env: Any,  # noqa: F811
    tmp_path: Any,
) -> None:
    """Data Center's `page_removed` names the page only; Forge's deleted page may carry no
    space: the ingest finds the page in the manifests of the configured spaces."""
    from flows.confluence_sync import confluence_sync
    from nura.confluence.state import load_manifest
    from nura.kb import s3

    confluence.generate(["TECH", "DOCS"], 3, body_bytes=300)
    sync_env()
    confluence_sync()
    first, second = sorted(p["id"] for p in confluence.space_pages("DOCS"))[:2]
    assert first in load_manifest("DOCS").pages
    confluence.purge(first)
    confluence.purge(second)
    summary = _dispatch_and_run(tmp_path, _dc("page_removed", int(first)))
    assert summary["DOCS"]["deleted"] == 1
    assert s3.head_document(f"confluence/DOCS/{first}.md") is None
    forge = _forge("avi:confluence:deleted:page", second, None, "deleted")
    assert _dispatch_and_run(tmp_path / "2", forge)["DOCS"]["deleted"] == 1
    assert {first, second}.isdisjoint(load_manifest("DOCS").pages)


@pytest.mark.integration
def test_forge_events_through_the_page_ingest(
    confluence: Any,  # noqa: F811
    sync_env: Any,  # noqa: F811
    tmp_path: Any,
) -> None:
    """Cloud: a created page is stored, a trashed one leaves the knowledge base."""
    from nura.kb import s3

    confluence.generate(["TECH"], 2, body_bytes=300)
    sync_env(spaces=["TECH"])
    page = sorted(p["id"] for p in confluence.space_pages("TECH"))[0]
    created = _dispatch_and_run(tmp_path, _forge("avi:confluence:created:page", page, "TECH"))
    assert created["TECH"]["created"] == 1
    assert s3.head_document(f"confluence/TECH/{page}.md") is not None
    confluence.trash(page)
    trashed = _forge("avi:confluence:trashed:page", page, "TECH", "trashed")
    assert _dispatch_and_run(tmp_path / "2", trashed)["TECH"]["deleted"] == 1
    assert s3.head_document(f"confluence/TECH/{page}.md") is None
