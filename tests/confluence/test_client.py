"""The Confluence client over real HTTP against the test server (call layer, no Prefect)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from nura.confluence.client import (
    ConfluenceAuthError,
    OAuthRefreshAuth,
    SpaceNotFound,
    cql_and,
    cql_clause,
)

HUGE = "9223372036854775807"


def test_v2_pagination_follows_next_to_the_end(confluence, make_client) -> None:
    confluence.generate(["TECH"], 600, body_bytes=200)
    client = make_client(confluence)
    space = client.get_space("TECH")
    before = confluence.stats["GET /wiki/api/v2/spaces/{id}/pages"]
    pages = list(client.iter_pages(space["id"]))
    assert len({p["id"] for p in pages}) == 600
    assert confluence.stats["GET /wiki/api/v2/spaces/{id}/pages"] - before == 3  # 250+250+100


def test_get_spaces_resolves_many_keys_in_one_request(confluence, make_client) -> None:
    confluence.generate(["TECH", "DOCS", "ARCH"], 1, body_bytes=100)
    client = make_client(confluence)
    found = client.get_spaces(["TECH", "NOPE", "ARCH"])
    assert sorted(found) == ["ARCH", "TECH"]
    assert found["TECH"]["id"] == confluence.spaces["TECH"]["id"]
    assert confluence.stats["GET /wiki/api/v2/spaces"] == 1
    assert client.get_spaces([]) == {}


def test_v1_search_cursor_pagination(confluence, make_client) -> None:
    confluence.generate(["TECH", "DOCS"], 130, body_bytes=200)
    client = make_client(confluence)
    query = cql_and(cql_clause("space", "=", "DOCS"), cql_clause("type", "=", "page"))
    hits = list(client.search(query, limit=50))
    assert len({h["id"] for h in hits}) == 130
    assert confluence.stats["GET /wiki/rest/api/content/search"] == 3


def test_link_header_is_followed_when_body_has_no_next(confluence, make_client) -> None:
    client = make_client(confluence)
    response = httpx.Response(
        200, headers={"Link": '</wiki/api/v2/pages?cursor=abc>; rel="next"'}, json={}
    )
    assert client._next_url(response, {}) == f"{confluence.url}/wiki/api/v2/pages?cursor=abc"
    v1 = {"_links": {"next": "/rest/api/content?start=25", "base": f"{confluence.url}/wiki"}}
    assert client._next_url(httpx.Response(200), v1) == (
        f"{confluence.url}/wiki/rest/api/content?start=25"
    )


def test_wrong_credentials_clear_401_no_retries(confluence, make_client, sleeps) -> None:
    client = make_client(confluence, auth=httpx.BasicAuth("bot@example.com", "wrong"))
    with pytest.raises(ConfluenceAuthError) as info:
        client.get_space("TECH")
    assert confluence.url in str(info.value) and "401" in str(info.value)
    assert "wrong" not in str(info.value)
    assert confluence.stats["requests"] == 1 and sleeps == []


def test_absurd_retry_after_is_ignored_not_slept(confluence, make_client, sleeps) -> None:
    """A Retry-After no server means is treated as absent: normal backoff (base 0.01 s
    here), not the cap (7 s) on every call (issue 19, item 6)."""
    confluence.add_space("TECH")
    confluence.set_faults(fail_next=5, fail_status=429, retry_after=HUGE)
    client = make_client(confluence, gateway={"retry_after_max_seconds": 7})
    assert client.get_space("TECH")["key"] == "TECH"  # five 429s: their own retry budget
    assert len(sleeps) == 5 and max(sleeps) < 1.0


def test_503_is_retried_then_succeeds(confluence, make_client, sleeps) -> None:
    confluence.add_space("TECH")
    confluence.set_faults(fail_next=2, fail_status=503, retry_after="")
    assert make_client(confluence).get_space("TECH")["key"] == "TECH"
    assert len(sleeps) == 2 and confluence.stats["requests"] == 3


def test_missing_space_is_a_clear_error(confluence, make_client) -> None:
    with pytest.raises(SpaceNotFound, match="'NOPE' does not exist"):
        make_client(confluence).get_space("NOPE")


def test_page_ids_are_checked_before_reaching_a_url(confluence, make_client) -> None:
    with pytest.raises(ValueError):
        make_client(confluence).get_page("../spaces")


def test_oauth_access_token_refreshes_once_on_401(confluence, make_client) -> None:
    confluence.add_space("TECH")
    tokens = confluence.issue_tokens()
    rotated: list[tuple[str, str]] = []
    auth = OAuthRefreshAuth(
        SecretStr(tokens["access_token"]),
        SecretStr(tokens["refresh_token"]),
        token_url=f"{confluence.url}/oauth/token",
        client_id="client",
        client_secret=SecretStr("secret"),
        on_refresh=lambda a, r: rotated.append((a.get_secret_value(), r.get_secret_value())),
    )
    client = make_client(confluence, auth=auth, base_url=confluence.gateway_url)
    assert client.get_space("TECH")["key"] == "TECH"
    confluence.expire_access_tokens()
    assert client.get_space("TECH")["key"] == "TECH"
    assert len(rotated) == 1 and rotated[0][1] != tokens["refresh_token"]
    assert tokens["refresh_token"] not in confluence.refresh_tokens  # rotated server-side


def test_oauth_refresh_failure_surfaces_the_401(confluence, make_client) -> None:
    confluence.add_space("TECH")
    auth = OAuthRefreshAuth(
        SecretStr("expired"),
        SecretStr("revoked"),
        token_url=f"{confluence.url}/oauth/token",
        client_id="client",
        client_secret=None,
    )
    with pytest.raises(ConfluenceAuthError, match=confluence.gateway_url):
        make_client(confluence, auth=auth, base_url=confluence.gateway_url).get_space("TECH")


def test_checkpointed_cursor_only_resumes_this_spaces_listing(confluence, make_client) -> None:
    """The cursor comes back from S3: never followed to another site or space; one that
    Confluence refuses (400: expired) restarts the listing."""
    from nura.confluence.client import ConfluenceInputError

    confluence.generate(["TECH"], 3, body_bytes=100)
    client = make_client(confluence)
    space_id = confluence.spaces["TECH"]["id"]
    listing = f"/wiki/api/v2/spaces/{space_id}/pages"
    for elsewhere in (
        f"https://evil.example{listing}?cursor=x",
        f"{confluence.url}/wiki/api/v2/spaces/999/pages?cursor=x",
        f"{confluence.url}/wiki/rest/api/content?cursor=x",
    ):
        with pytest.raises(ConfluenceInputError):
            list(client.page_batches(space_id, body=False, resume=elsewhere))
    expired = f"{confluence.url}{listing}?limit=250&cursor=!!"
    pages = [
        p for batch, _ in client.page_batches(space_id, body=False, resume=expired) for p in batch
    ]
    assert len(pages) == 3
