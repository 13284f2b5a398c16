"""Issue 23, items 9-11, against the Confluence stand-in (written from Atlassian's docs):
OAuth 2.0 (3LO) only through Atlassian's gateway, a 404 never deletes before the
disappearance is confirmed, Confluence's error bodies and rate limit headers read.

- 9: "Requests that use OAuth 2.0 (3LO) are made via api.atlassian.com (not
  https://your-domain.atlassian.net)"; the cloud id is the `id` of the site's entry in
  `GET /oauth/token/accessible-resources` (developer.atlassian.com, "Making calls to API").
  The stand-in refuses bearer tokens on the site URL, and through the gateway its v1
  `_links.base` names the site, as Confluence's does.
- 10: GET /pages/{id} and /spaces/{id} answer 404 when "the calling user does not have
  permission to view" (REST v2 reference): a 404 alone is not a deletion.
- 11: v2 errors are `{"errors": [{status, code, title, detail}]}`; "Some transient 5XX
  errors are accompanied by a Retry-After header", e.g. a 503 when a resource limit is
  reached (Confluence "Rate limiting"); `Beta-Retry-After`, `X-RateLimit-*`.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import SecretStr

from nura.confluence.blocks import BearerAuth
from nura.confluence.client import ConfluenceError, VersionConflict, cql_and, cql_clause


def _bearer(confluence: Any) -> BearerAuth:
    return BearerAuth(SecretStr(confluence.issue_tokens()["access_token"]))


# -- item 9: OAuth 2.0 (3LO) through the gateway ----------------------------------------


def test_v1_and_v2_pagination_stay_on_the_gateway(confluence, make_client) -> None:
    """Through the gateway a v1 answer's `_links.base` is the site, where the token is
    refused: every next page is asked of the gateway."""
    confluence.generate(["TECH"], 12, body_bytes=100)
    client = make_client(confluence, auth=_bearer(confluence), base_url=confluence.gateway_url)
    cql = cql_and(cql_clause("space", "=", "TECH"), cql_clause("type", "=", "page"))
    assert len(list(client.search(cql, limit=5))) == 12  # three answers
    space_id = confluence.spaces["TECH"]["id"]
    assert len(list(client.iter_pages(space_id, limit=5))) == 12
    site_calls = [k for k in confluence.stats if k.startswith("GET /wiki")]
    assert site_calls == [] and confluence.stats["GET gateway /wiki/rest/api/content/search"] == 3


def test_the_site_refuses_a_bearer_token(confluence, make_client) -> None:
    """The stand-in's premise, from Atlassian's docs: the same token, the site URL: 401."""
    from nura.confluence.client import ConfluenceAuthError

    confluence.add_space("TECH")
    auth = _bearer(confluence)
    with pytest.raises(ConfluenceAuthError):
        make_client(confluence, auth=auth).get_space("TECH")
    assert make_client(confluence, auth=auth, base_url=confluence.gateway_url).get_space("TECH")


def test_cloud_id_is_resolved_from_accessible_resources(confluence, make_client) -> None:
    from nura.confluence.client import ConfluenceAuthError, gateway_url, resolve_cloud_id

    auth = _bearer(confluence)
    layer = make_client(confluence).layer
    cloud_id = resolve_cloud_id(layer, confluence.url, confluence.url + "/", auth)
    assert cloud_id == confluence.cloud_id
    assert gateway_url(confluence.url, cloud_id) == confluence.gateway_url
    with pytest.raises(ConfluenceAuthError, match="does not cover https://other.atlassian.net"):
        resolve_cloud_id(layer, confluence.url, "https://other.atlassian.net", auth)
    with pytest.raises(ConfluenceAuthError, match="refused the OAuth token"):
        resolve_cloud_id(
            layer, confluence.url, "https://x.invalid", BearerAuth(SecretStr("not-issued"))
        )


@pytest.mark.integration
def test_an_oauth_block_syncs_through_the_gateway(confluence, sync_env) -> None:
    """The configured block (site URL, OAuth tokens): the client asks accessible-resources
    for the cloud id, then every call, the token refresh's retry included, goes through
    the gateway; the stored documents link to the site."""
    from nura.confluence.blocks import ConfluenceCredentials
    from nura.confluence.client import ConfluenceClient
    from nura.confluence.sync import sync_space_impl
    from nura.kb import s3

    confluence.generate(["TECH"], 30, body_bytes=300)
    tokens = confluence.issue_tokens()
    ConfluenceCredentials(
        base_url=confluence.url,
        oauth_access_token=SecretStr(tokens["access_token"]),
        oauth_refresh_token=SecretStr(tokens["refresh_token"]),
        oauth_client_id="client",
        oauth_token_url=f"{confluence.url}/oauth/token",
        oauth_api_url=confluence.url,
    ).save("nura-test-oauth-gateway", overwrite=True)
    sync_env(spaces=["TECH"], credentials_block="nura-test-oauth-gateway", page_size=10)
    s3.ensure_bucket()
    client = ConfluenceClient.from_config()
    assert client.base_url == confluence.gateway_url and client.site_url == confluence.url
    confluence.expire_access_tokens()  # the first call refreshes, then retries on the gateway
    report = sync_space_impl("TECH", full=True, client=client)
    assert report.created == 30 and report.failed == 0
    assert [k for k in confluence.stats if k.startswith("GET /wiki")] == []
    page = sorted(p["id"] for p in confluence.space_pages("TECH"))[0]
    head = s3.head_document(f"confluence/TECH/{page}.md")
    assert head is not None
    assert any(str(v).startswith(confluence.url + "/wiki/") for v in head["Metadata"].values())
    assert not any("/ex/confluence/" in str(v) for v in head["Metadata"].values())


# -- item 10: a 404 is confirmed before anything is deleted -----------------------------


@pytest.mark.integration
def test_a_404_while_access_is_lost_deletes_nothing(confluence, sync_env) -> None:
    """The bot loses the view permission on TECH: its pages answer 404. The page ingest
    and the syncer's page fetch read the space once more, cannot, and delete nothing; a
    purge once the space is readable again is a deletion."""
    from nura.confluence.client import ConfluenceAuthError, ConfluenceClient
    from nura.confluence.state import load_manifest
    from nura.confluence.sync import PageResult, PageSyncer, Work, sync_page_impl, sync_space_impl
    from nura.kb import s3

    confluence.generate(["TECH"], 3, body_bytes=300)
    sync_env(spaces=["TECH"])
    s3.ensure_bucket()
    client = ConfluenceClient.from_config()
    assert sync_space_impl("TECH", full=True, client=client).created == 3
    first, second = sorted(p["id"] for p in confluence.space_pages("TECH"))[:2]
    confluence.revoke("TECH")
    # ConfluenceAccessUnconfirmed (an auth error: the syncer stops on it)
    with pytest.raises(ConfluenceAuthError, match="nothing is deleted"):
        sync_page_impl(first, "TECH", client=client)
    with pytest.raises(ConfluenceAuthError, match="nothing is deleted"):
        sync_page_impl(first, None, client=client)  # no space in the event: the manifest's
    manifest = load_manifest("TECH")
    results: list[PageResult] = []
    syncer = PageSyncer(client, "TECH", manifest)
    with pytest.raises(ConfluenceAuthError):  # a body the listing left out
        syncer.run([Work(second, {"id": second, "title": "x"}, None)], results.append)
    assert [r.outcome for r in results] != ["deleted"]
    assert {first, second} <= set(load_manifest("TECH").pages)
    assert s3.head_document(f"confluence/TECH/{first}.md") is not None
    confluence.revoked_spaces.clear()
    confluence.purge(first)
    assert sync_page_impl(first, None, client=client).deleted == 1
    assert s3.head_document(f"confluence/TECH/{first}.md") is None


# -- item 11: error bodies, 503 + Retry-After, Beta-Retry-After, X-RateLimit-* ----------


def test_v2_error_bodies_give_the_message_and_code(confluence, make_client) -> None:
    space = confluence.add_space("TECH")
    client = make_client(confluence)
    with pytest.raises(ConfluenceError) as info:
        client.create_page(space["id"], "T", "<p>x</p>", parent_id="999")
    assert info.value.status == 400 and info.value.code == "BAD_REQUEST"
    assert "Parent page 999 does not exist" in str(info.value)
    page = client.create_page(space["id"], "T", "<p>x</p>")
    with pytest.raises(VersionConflict, match="Current version is: 1"):
        client.update_page(page["id"], "T", "<p>y</p>", 5)


def test_a_503_with_retry_after_is_honoured_like_a_429(confluence, make_client, sleeps) -> None:
    confluence.add_space("TECH")
    confluence.set_faults(fail_next=1, fail_status=503, retry_after="7")
    client = make_client(confluence, gateway={"retry_after_max_seconds": 30})
    assert client.get_space("TECH")["key"] == "TECH"
    assert sleeps == [7.0]


def test_beta_retry_after_is_honoured(confluence, make_client, sleeps) -> None:
    confluence.add_space("TECH")
    confluence.retry_after_header = "Beta-Retry-After"
    confluence.set_faults(fail_next=2, fail_status=429, retry_after="5")
    client = make_client(confluence, gateway={"retry_after_max_seconds": 30})
    assert client.get_space("TECH")["key"] == "TECH"
    assert sleeps == [5.0, 5.0]


def test_the_rate_limit_budget_is_kept_and_logged_near_the_limit(
    confluence, make_client, caplog
) -> None:
    confluence.add_space("TECH")
    confluence.rate_limit = [100, 22]
    client = make_client(confluence)
    client.get_space("TECH")
    assert client.rate_budget == {"limit": "100", "remaining": "21", "near_limit": False}
    with caplog.at_level(logging.WARNING, logger="nura.confluence"):
        client.get_space("TECH")
        client.get_space("TECH")
    assert client.rate_budget["remaining"] == "19" and client.rate_budget["near_limit"]
    assert "19 of 100 left (near the limit)" in caplog.text


@pytest.mark.integration
def test_the_health_check_of_an_oauth_block_goes_through_the_gateway(confluence, sync_env) -> None:
    """The authenticated Confluence health check: with OAuth tokens it probes the gateway
    (the site refuses bearer tokens: before, the service always showed unhealthy)."""
    from nura import get_call_layer, get_config
    from nura.confluence.blocks import ConfluenceCredentials
    from nura.health.checks import _confluence, load_confluence_auth

    confluence.generate(["TECH"], 1, body_bytes=100)
    tokens = confluence.issue_tokens()
    ConfluenceCredentials(
        base_url=confluence.url,
        oauth_access_token=SecretStr(tokens["access_token"]),
        oauth_refresh_token=SecretStr(tokens["refresh_token"]),
        oauth_client_id="client",
        oauth_token_url=f"{confluence.url}/oauth/token",
        oauth_api_url=confluence.url,
    ).save("nura-test-oauth-health", overwrite=True)
    sync_env(spaces=["TECH"], credentials_block="nura-test-oauth-health")
    cfg = get_config()
    loaded = load_confluence_auth(cfg)
    assert not isinstance(loaded, Exception), loaded
    assert loaded[0] == confluence.gateway_url
    result = _confluence(get_call_layer(), cfg, 10.0, loaded)
    assert result.ok, result
