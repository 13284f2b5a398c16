"""A full sync in a dozen calls: bodies come with the listing; page GETs only for bodies a
listing omitted or cut. Against the test server over HTTP, moto S3 and a Prefect server.

The test server's listing follows Atlassian's REST v2 reference (checked first here):
`limit` 1..250, cursor pagination by `_links.next` and the `Link` header, bodies under
`body.storage`; v1 CQL search answers at most 50 results with bodies, 200 with other
expansions.
"""

from __future__ import annotations

import httpx
import pytest

from flows.confluence_sync import confluence_sync
from nura.confluence.markdown import storage_to_markdown
from nura.confluence.state import load_manifest
from nura.kb import s3

from .conftest import EMAIL, TOKEN

pytestmark = pytest.mark.integration


def _get(server, path: str, **params):  # type: ignore[no-untyped-def]
    return httpx.get(server.url + path, params=params, auth=(EMAIL, TOKEN), timeout=30)


def ids(server, space: str) -> list[str]:
    return sorted(p["id"] for p in server.space_pages(space))


def test_the_test_server_lists_as_atlassian_documents(confluence) -> None:
    confluence.generate(["TECH"], 260, body_bytes=300)
    space_id = confluence.spaces["TECH"]["id"]
    path = f"/wiki/api/v2/spaces/{space_id}/pages"
    assert _get(confluence, path, limit=251).status_code == 400  # maximum 250
    assert _get(confluence, path, limit=0).status_code == 400
    first = _get(confluence, path, limit=250, **{"body-format": "storage"})
    data = first.json()
    assert len(data["results"]) == 250
    body = data["results"][0]["body"]["storage"]
    assert body["representation"] == "storage" and body["value"].startswith("<ac:")
    nxt = data["_links"]["next"]
    assert nxt.startswith(path + "?") and "cursor=" in nxt
    assert first.headers["Link"].startswith(f'<{nxt}>; rel="next"')
    assert 'rel="base"' in first.headers["Link"]
    rest = httpx.get(confluence.url + nxt, auth=(EMAIL, TOKEN)).json()
    assert len(rest["results"]) == 10 and "next" not in rest["_links"]
    assert _get(confluence, path, limit=5).json()["results"][0]["body"] == {}  # no body-format
    assert _get(confluence, path, cursor="!!").status_code == 400
    # the default statuses are current and archived, never trashed
    confluence.trash(ids(confluence, "TECH")[0])
    listed = [p["id"] for p in _get(confluence, path, limit=250).json()["results"]]
    assert ids(confluence, "TECH")[0] not in listed
    # CQL search: at most 50 with a body, 200 with other expansions
    cql = 'space = "TECH" AND type = page'
    search = "/wiki/rest/api/content/search"
    assert (
        len(_get(confluence, search, cql=cql, limit=250, expand="body.storage").json()["results"])
        == 50
    )
    assert (
        len(_get(confluence, search, cql=cql, limit=250, expand="version").json()["results"]) == 200
    )
    # a trashed page is 404 unless its status is asked for
    trashed = ids(confluence, "TECH")[0]
    assert _get(confluence, f"/wiki/api/v2/pages/{trashed}").status_code == 404
    answer = httpx.get(
        f"{confluence.url}/wiki/api/v2/pages/{trashed}?status=current&status=trashed",
        auth=(EMAIL, TOKEN),
    )
    assert answer.status_code == 200 and answer.json()["status"] == "trashed"


def test_full_sync_lists_with_bodies_and_fetches_no_page(confluence, sync_env) -> None:
    confluence.generate(["TECH", "DOCS"], 260, body_bytes=400)
    sync_env(checkpoint_pages=250)
    confluence.stats.clear()
    summary = confluence_sync()
    assert summary["TECH"]["created"] == 260 and summary["DOCS"]["created"] == 260
    stats = confluence.stats
    assert stats["GET /wiki/api/v2/pages/{id}"] == 0  # no page fetched by itself
    assert stats["GET /wiki/api/v2/spaces/{id}/pages"] == 4  # 250 + 10, per space
    # per space: two listing answers and two label searches (200 a call); plus the space
    # lookup of the run: 9 calls for 520 pages (one GET a page made 520 and more)
    assert stats["requests"] == 9
    assert summary["TECH"]["api_calls"] == 4 and summary["DOCS"]["api_calls"] == 4
    head = s3.head_document(f"confluence/TECH/{ids(confluence, 'TECH')[3]}.md")
    assert head is not None and head["Metadata"]["labels"] == "generated,tech"


def test_bodies_the_listing_omits_or_cuts_are_fetched_page_by_page(confluence, sync_env) -> None:
    confluence.generate(["TECH"], 6, body_bytes=2000)
    omitted, cut = ids(confluence, "TECH")[:2]
    confluence.listing_omits_body = {omitted}
    confluence.listing_truncates_body = {cut: 500}
    sync_env(spaces=["TECH"])
    confluence.stats.clear()
    summary = confluence_sync()
    assert summary["TECH"]["created"] == 6 and summary["TECH"]["refetched"] == 2
    assert summary["TECH"]["flagged"] == 0  # the fetched page is whole: nothing malformed
    assert confluence.stats["GET /wiki/api/v2/pages/{id}"] == 2
    for page in (omitted, cut):  # the whole page, not the cut one
        expected = storage_to_markdown(
            confluence.pages[page]["body"], base_url=confluence.url, space="TECH", page_id=page
        )
        assert _markdown(page) == expected.markdown
        assert load_manifest("TECH").pages[page]["flags"] == 0


def test_incremental_takes_changed_bodies_from_one_search(confluence, sync_env) -> None:
    confluence.generate(["TECH"], 30, body_bytes=500)
    sync_env(spaces=["TECH"])
    confluence_sync()
    for page in ids(confluence, "TECH")[:5]:
        confluence.edit(page)
    confluence.stats.clear()
    summary = confluence_sync()
    assert summary["TECH"]["updated"] == 5 and summary["TECH"]["skipped"] == 25
    assert confluence.stats["GET /wiki/api/v2/pages/{id}"] == 0
    # listing (no bodies) + labels search + one CQL search with the five bodies
    assert confluence.stats["requests"] == 4 and summary["TECH"]["api_calls"] == 3


def _markdown(page_id: str) -> str:
    from nura import get_config
    from nura.core.aws_clients import aws_client

    bucket = get_config().external_services.aws.s3.bucket_name
    obj = aws_client("s3").get_object(Bucket=bucket, Key=f"confluence/TECH/{page_id}.md")
    return str(obj["Body"].read().decode())
