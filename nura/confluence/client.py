"""Confluence Cloud client: REST v2 for pages and spaces, v1 for CQL search and labels.

Every request goes through the call layer (`service="confluence"`): rate limit, breaker,
timeouts, retries of 429/503 with a capped `Retry-After` (or `Beta-Retry-After`). Pagination
follows `_links.next` (or the `Link: rel="next"` header) to the end, never stopping at a
batch, and always on this client's own base URL: with OAuth 2.0 (3LO) that is Atlassian's
gateway `https://api.atlassian.com/ex/confluence/{cloudId}` (the cloud id resolved from
`accessible-resources`), never the site a v1 answer's `_links.base` names.

    client = ConfluenceClient.from_config()
    space = client.get_space("TECH")
    for page in client.iter_pages(space["id"]): ...
    client.search(cql_and(cql_clause("space", "=", "TECH"), cql_clause("title", "~", q)))

CQL is only ever built from `cql_string`-escaped values and whitelisted fields/operators
(seed defect 10: a title containing `"` could rewrite the query).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from nura import get_call_layer, get_config
from nura.core.credentials import BlockAuth
from nura.core.errors import ClientError, IntegrationError, InvalidInput
from nura.core.layer import CallLayer

SERVICE = "confluence"
V2 = "/wiki/api/v2"
V1 = "/wiki/rest/api"

CQL_FIELDS = frozenset(
    {"space", "type", "title", "text", "label", "id", "parent", "ancestor", "lastmodified",
     "created", "creator", "contributor"}
)  # fmt: skip
CQL_OPERATORS = frozenset({"=", "!=", "~", "!~", ">", ">=", "<", "<="})
# Page sizes Atlassian documents: v2 listings take `limit` up to 250; v1 CQL search answers
# up to 50 results a call with a body expanded and 200 with other expansions.
LIST_LIMIT = 250
SEARCH_BODY_LIMIT = 50
LABELS_LIMIT = 200
GATEWAY = "https://api.atlassian.com"  # where OAuth 2.0 (3LO) tokens are accepted

logger = logging.getLogger("nura.confluence")


# -- errors ------------------------------------------------------------------------------


class ConfluenceError(IntegrationError):
    """A Confluence operation failed; the message says which and where (never a secret)."""

    default_service = SERVICE


class ConfluenceAuthError(ConfluenceError):
    """401/403: wrong or expired credentials. Not retried."""


class ConfluenceAccessUnconfirmed(ConfluenceAuthError):
    """A page answered 404 and the space it was in cannot be read either: Confluence says
    404 for what the caller may not view, so this may be lost access (a credentials or
    permission problem), not a deletion. Nothing is deleted on it."""


class ConfluenceInputError(ConfluenceError, InvalidInput):
    """An argument cannot be sent to Confluence (a page id, a CQL value); nothing was sent."""


class SpaceNotFound(ConfluenceError):
    pass


class PageNotFound(ConfluenceError):
    pass


class VersionConflict(ConfluenceError):
    """409 on update: someone else saved the page since we read it."""

    def __init__(self, message: str, page_id: str, sent_version: int) -> None:
        super().__init__(message, status=409, operation="pages.update")
        self.page_id = page_id
        self.sent_version = sent_version


# -- CQL ---------------------------------------------------------------------------------


def cql_string(value: str) -> str:
    """A CQL string literal: double-quoted, with `\\` and `"` escaped (nothing else is special
    inside quotes). Control characters cannot appear in a CQL literal: rejected."""
    if any(ord(c) < 32 for c in value):
        raise ConfluenceInputError("CQL values cannot contain control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cql_clause(field: str, op: str, value: str | datetime) -> str:
    """`field op "value"` from a whitelisted field and operator and an escaped value."""
    if field not in CQL_FIELDS:
        raise ConfluenceInputError(f"CQL field {field!r} is not allowed")
    if op not in CQL_OPERATORS:
        raise ConfluenceInputError(f"CQL operator {op!r} is not allowed")
    if isinstance(value, datetime):
        value = cql_datetime(value)
    return f"{field} {op} {cql_string(value)}"


def cql_and(*clauses: str) -> str:
    return " AND ".join(f"({c})" if " OR " in c else c for c in clauses)


def cql_or(*clauses: str) -> str:
    return "(" + " OR ".join(clauses) + ")"


def cql_datetime(when: datetime) -> str:
    """CQL's `yyyy-MM-dd HH:mm` (minute resolution), in UTC."""
    if when.tzinfo is None:
        raise ConfluenceInputError("CQL datetimes must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


# -- auth --------------------------------------------------------------------------------


class OAuthRefreshAuth(httpx.Auth):
    """Bearer token that refreshes itself once on 401 (rotating refresh tokens are kept).

    The refresh request is sent by the same pooled client inside the call layer's attempt,
    so it is rate limited and recorded with the call. `on_refresh(access, refresh)` lets
    the caller persist the rotated tokens (Atlassian invalidates the old refresh token).
    """

    requires_response_body = True

    def __init__(
        self,
        access_token: SecretStr,
        refresh_token: SecretStr | None,
        *,
        token_url: str,
        client_id: str | None,
        client_secret: SecretStr | None,
        on_refresh: Callable[[SecretStr, SecretStr], None] | None = None,
    ) -> None:
        self.access = access_token
        self.refresh = refresh_token
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.on_refresh = on_refresh
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        sent_with = self.access.get_secret_value()
        request.headers["Authorization"] = f"Bearer {sent_with}"
        response = yield request
        if response.status_code != 401 or self.refresh is None:
            return
        with self._lock:
            if self.access.get_secret_value() == sent_with:  # nobody refreshed meanwhile
                body = {
                    "grant_type": "refresh_token",
                    "refresh_token": self.refresh.get_secret_value(),
                }
                if self.client_id:
                    body["client_id"] = self.client_id
                if self.client_secret is not None:
                    body["client_secret"] = self.client_secret.get_secret_value()
                answer = yield httpx.Request("POST", self.token_url, json=body)
                if answer.status_code != 200:
                    return  # the original 401 stands: ConfluenceAuthError names the site
                tokens = answer.json()
                self.access = SecretStr(tokens["access_token"])
                if tokens.get("refresh_token"):
                    self.refresh = SecretStr(tokens["refresh_token"])
                if self.on_refresh is not None and self.refresh is not None:
                    self.on_refresh(self.access, self.refresh)
        request.headers["Authorization"] = f"Bearer {self.access.get_secret_value()}"
        yield request


def _auth_for_block(block: Any, save: Callable[[], None] | None = None) -> httpx.Auth:
    if block.oauth_access_token is not None:

        def persist(access: SecretStr, refresh: SecretStr) -> None:
            block.oauth_access_token = access
            block.oauth_refresh_token = refresh
            if save is not None:
                save()

        return OAuthRefreshAuth(
            block.oauth_access_token,
            block.oauth_refresh_token,
            token_url=block.oauth_token_url,
            client_id=block.oauth_client_id,
            client_secret=block.oauth_client_secret,
            on_refresh=persist,
        )
    return block.auth()  # type: ignore[no-any-return]


def load_site(layer: CallLayer | None = None) -> tuple[str, httpx.Auth, str]:
    """API base URL, auth and site URL from the configured credentials block, or the
    environment.

    Basic credentials from a block are wrapped in `BlockAuth`, so a rotated API token is
    picked up on the next 401 without restarting the worker. OAuth 2.0 (3LO) tokens are
    only accepted through Atlassian's gateway: the API base is then
    `{oauth_api_url}/ex/confluence/{cloudId}`, the cloud id the block's or the one
    `accessible-resources` gives for the block's site.
    """
    cfg = get_config().external_services.confluence
    block = _load_block(cfg.credentials_block)
    if block is not None:
        site = block.base_url.rstrip("/")
        if block.oauth_access_token is not None:
            name = cfg.credentials_block
            auth = _auth_for_block(block, save=lambda: block.save(name, overwrite=True))
            api = block.oauth_api_url.rstrip("/")
            cloud_id = block.oauth_cloud_id or resolve_cloud_id(
                layer or get_call_layer(), api, site, auth
            )
            return gateway_url(api, cloud_id), auth, site
        auth = BlockAuth(lambda: _load_block(cfg.credentials_block) or block, _auth_for_block)
        return site, auth, site
    email, token = os.environ.get("CONFLUENCE_EMAIL"), os.environ.get("CONFLUENCE_API_TOKEN")
    if not (email and token and cfg.base_url):
        raise ConfluenceAuthError(
            f"no Confluence credentials: save a nura-confluence-credentials block named "
            f"{cfg.credentials_block!r} or set CONFLUENCE_EMAIL and CONFLUENCE_API_TOKEN"
        )
    return cfg.base_url, httpx.BasicAuth(email, token), cfg.base_url


def gateway_url(api_url: str, cloud_id: str) -> str:
    """The site's API through Atlassian's gateway, for OAuth 2.0 (3LO) tokens."""
    if not cloud_id or "/" in cloud_id or "?" in cloud_id or "#" in cloud_id:
        raise ConfluenceInputError(f"invalid Atlassian cloud id {cloud_id[:60]!r}")
    return f"{api_url.rstrip('/')}/ex/confluence/{cloud_id}"


_cloud_ids: dict[tuple[str, str], str] = {}  # (gateway, site) -> cloud id: it never changes
_cloud_ids_lock = threading.Lock()


def resolve_cloud_id(layer: CallLayer, api_url: str, site_url: str, auth: httpx.Auth) -> str:
    """The cloud id of `site_url` among the sites the OAuth token can reach
    (`GET {api_url}/oauth/token/accessible-resources`: `id` is the cloud id, `url` the site).
    A token whose grant does not cover the site is a ConfluenceAuthError naming it."""
    key = (api_url.rstrip("/"), site_url.rstrip("/").lower())
    with _cloud_ids_lock:
        if key in _cloud_ids:
            return _cloud_ids[key]
    operation = "oauth.accessible_resources"
    try:
        response = layer.request(
            SERVICE,
            "GET",
            f"{key[0]}/oauth/token/accessible-resources",
            auth=auth,
            operation=operation,
            headers={"Accept": "application/json"},
        ).value
    except ClientError as exc:
        raise ConfluenceAuthError(
            f"Atlassian's gateway {key[0]} refused the OAuth token on {operation} "
            f"(HTTP {exc.status}); check the OAuth grant",
            status=exc.status,
            attempts=exc.attempts,
            operation=operation,
        ) from exc
    try:
        resources = response.json()
    except ValueError:
        resources = None
    if not isinstance(resources, list):
        raise ConfluenceError(
            f"{operation} answered with something other than a list of sites",
            status=response.status_code,
            operation=operation,
        )
    sites = [r for r in resources if isinstance(r, dict)]
    for resource in sites:
        if str(resource.get("url", "")).rstrip("/").lower() == key[1] and resource.get("id"):
            cloud_id = str(resource["id"])
            with _cloud_ids_lock:
                _cloud_ids[key] = cloud_id
            return cloud_id
    reachable = ", ".join(sorted(str(r.get("url")) for r in sites)) or "none"
    raise ConfluenceAuthError(
        f"the OAuth grant does not cover {site_url} (it reaches: {reachable[:300]}); "
        "grant the app access to that site",
        operation=operation,
    )


def _load_block(name: str) -> Any:
    from nura.confluence.blocks import ConfluenceCredentials
    from nura.core.blocks import load_block

    return load_block(ConfluenceCredentials, name)


# -- client ------------------------------------------------------------------------------


class ConfluenceClient:
    """`base_url` is where the API is called (the site, or the gateway for OAuth 2.0);
    `site_url` (default: `base_url`) is the site people browse, for page links."""

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        layer: CallLayer | None = None,
        site_url: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.site_url = (site_url or base_url).rstrip("/")
        self.auth = auth
        self._layer = layer
        # The last `X-RateLimit-*` Confluence sent (limit, remaining, near_limit): there is
        # no adaptive limiter yet, so it is kept here and logged when near the limit.
        self.rate_budget: dict[str, Any] = {}
        self.calls = 0  # requests made by this client (benchmarks, run summaries)
        self._calls_lock = threading.Lock()
        self._parent: ConfluenceClient | None = None

    def scoped(self) -> ConfluenceClient:
        """A view of this client with its own `calls` counter (one per space of a run: the
        spaces share the client, its auth and its connections, and each counts its own
        requests); requests still count on this client too."""
        view = copy.copy(self)
        view.calls = 0
        view._calls_lock = threading.Lock()
        view._parent = self
        return view

    def _count(self) -> None:
        with self._calls_lock:
            self.calls += 1
        if self._parent is not None:
            self._parent._count()

    @classmethod
    def from_config(cls, layer: CallLayer | None = None) -> ConfluenceClient:
        base_url, auth, site_url = load_site(layer)
        return cls(base_url, auth, layer=layer, site_url=site_url)

    @property
    def layer(self) -> CallLayer:
        return self._layer or get_call_layer()

    # -- transport ---------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: Any = None,
        json: Any = None,
        expected: tuple[int, ...] = (),
    ) -> httpx.Response:
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        self._count()
        try:
            result = self.layer.request(
                SERVICE,
                method,
                url,
                auth=self.auth,
                params=params,
                json=json,
                expected=expected,
                operation=operation,
                headers={"Accept": "application/json"},
                error_detail=_error_detail,  # v2 `errors[]` / v1 `message` into the error
            )
        except ClientError as exc:
            raise self._error(exc.status, operation, exc.attempts, exc.code, exc.detail) from exc
        response = result.value
        self._note_budget(response)
        return response

    def _error(
        self,
        status: int | None,
        operation: str,
        attempts: int,
        code: str | None,
        detail: str = "",
    ) -> ConfluenceError:
        kind = ConfluenceAuthError if status in (401, 403) else ConfluenceError
        hint = "; check the API token or OAuth grant" if kind is ConfluenceAuthError else ""
        return kind(
            f"Confluence at {self.base_url} answered HTTP {status} on {operation}"
            + (f": {detail}" if detail else "")
            + hint,
            status=status,
            attempts=attempts,
            operation=operation,
            code=code,
        )

    def _note_budget(self, response: httpx.Response) -> None:
        """Keep (and log when near the limit) the `X-RateLimit-*` budget Confluence sent."""
        headers = response.headers
        if "X-RateLimit-Remaining" not in headers:
            return
        budget = {
            "limit": headers.get("X-RateLimit-Limit"),
            "remaining": headers.get("X-RateLimit-Remaining"),
            "near_limit": headers.get("X-RateLimit-NearLimit", "").lower() == "true",
        }
        self.rate_budget = budget
        if self._parent is not None:
            self._parent.rate_budget = budget
        log = logger.warning if budget["near_limit"] else logger.debug
        log(
            "Confluence rate limit budget: %s of %s left%s",
            budget["remaining"],
            budget["limit"],
            " (near the limit)" if budget["near_limit"] else "",
        )

    def _next_url(self, response: httpx.Response, data: dict[str, Any]) -> str | None:
        """The next page's URL, always on `base_url`: v2 answers `/wiki/api/v2/...`, v1
        answers relative to `_links.base` (the site's `.../wiki`, also through the OAuth
        gateway, where a bearer token is refused); an absolute URL keeps only its path and
        query (credentials go nowhere else)."""
        links = data.get("_links") or {}
        nxt = links.get("next")
        if not nxt:
            header = response.links.get("next")
            nxt = header.get("url") if header else None
        if not nxt:
            return None
        parts = urlsplit(str(nxt))
        path = parts.path if parts.path.startswith("/") else "/" + parts.path
        base_path = urlsplit(self.base_url).path.rstrip("/")
        if base_path and path.startswith(base_path + "/"):
            path = path[len(base_path) :]
        if not path.startswith("/wiki/"):
            path = "/wiki" + path  # v1: relative to `_links.context` ("/wiki")
        return self.base_url + path + (f"?{parts.query}" if parts.query else "")

    def _paginate(
        self, path: str, params: dict[str, Any], operation: str
    ) -> Iterator[dict[str, Any]]:
        for results, _next in self._batches(path, params, operation):
            yield from results

    def _batches(
        self, path: str, params: dict[str, Any] | None, operation: str
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Each answer's results with the URL of the next answer (None at the end): the
        URL is the resume point a checkpoint keeps. `params` go with the first request
        only (the next URLs carry them)."""
        url: str | None = path
        first = True
        while url:
            response = self._request(
                "GET", url, operation=operation, params=params if first else None
            )
            first = False
            data = _json(response, operation)
            url = self._next_url(response, data)
            yield list(data.get("results", [])), url

    # -- spaces and pages --------------------------------------------------------------
    def get_space(self, key: str) -> dict[str, Any]:
        space = self.get_spaces([key]).get(key)
        if space is None:
            raise SpaceNotFound(f"Confluence space {key!r} does not exist at {self.base_url}")
        return space

    def get_spaces(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The spaces among `keys` that exist (key -> space), in one paginated listing."""
        if not keys:
            return {}
        params = {"keys": ",".join(keys), "limit": 250}
        wanted = set(keys)
        return {
            str(space["key"]): dict(space)
            for space in self._paginate(f"{V2}/spaces", params, "spaces.get")
            if space.get("key") in wanted
        }

    def get_space_by_id(self, space_id: str) -> dict[str, Any]:
        response = self._request(
            "GET", f"{V2}/spaces/{space_id}", operation="spaces.get", expected=(404,)
        )
        if response.status_code == 404:
            raise SpaceNotFound(f"Confluence space id {space_id} does not exist at {self.base_url}")
        return dict(_json(response, "spaces.get"))

    def iter_pages(
        self, space_id: str, *, body: bool = False, status: str = "current", limit: int = 250
    ) -> Iterator[dict[str, Any]]:
        """Every page of a space (v2, cursor pagination), optionally with storage bodies."""
        params: dict[str, Any] = {"limit": limit, "status": status}
        if body:
            params["body-format"] = "storage"
        yield from self._paginate(f"{V2}/spaces/{space_id}/pages", params, "pages.list")

    def trashed_pages(self, space_ids: list[str]) -> Iterator[dict[str, Any]]:
        """The trashed pages of all `space_ids` in one v2 listing (`space-id` takes a
        comma-separated list; CQL cannot find trashed content)."""
        params = {"space-id": ",".join(space_ids), "status": "trashed", "limit": LIST_LIMIT}
        yield from self._paginate(f"{V2}/pages", params, "pages.list")

    def page_batches(
        self, space_id: str, *, body: bool, resume: str | None = None, limit: int = LIST_LIMIT
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """The space's current pages, `LIST_LIMIT` (the documented maximum) an answer, with
        their storage bodies when `body`; each batch comes with the URL of the next one
        (None at the end), which a checkpoint keeps to `resume` from. A `resume` URL that
        Confluence no longer accepts (400: cursors are opaque and may expire) restarts the
        listing from the beginning."""
        params: dict[str, Any] = {"limit": limit, "status": "current"}
        if body:
            params["body-format"] = "storage"
        path = f"{V2}/spaces/{space_id}/pages"
        if resume:
            if not _same_site(resume, self.base_url, path):
                raise ConfluenceInputError("the checkpointed cursor is not a listing of this space")
            try:
                yield from self._batches(resume, None, "pages.list")
                return
            except ConfluenceError as exc:
                if exc.status != 400:
                    raise
                logger.warning("the checkpointed cursor was refused (%s); listing anew", exc)
        yield from self._batches(path, params, "pages.list")

    def page_labels(self, space_key: str) -> dict[str, list[str]]:
        """Page id -> its labels (sorted), for every page of the space that has any: one
        CQL search without bodies (Confluence answers up to 200 results a call when only
        metadata is expanded)."""
        cql = cql_and(cql_clause("space", "=", space_key), cql_clause("type", "=", "page"))
        labels: dict[str, list[str]] = {}
        for hit in self.search(cql, expand="metadata.labels", limit=LABELS_LIMIT):
            names = sorted(
                str(item.get("name"))
                for item in ((hit.get("metadata") or {}).get("labels") or {}).get("results", [])
                if item.get("name")
            )
            if names:
                labels[str(hit["id"])] = names
        return labels

    def confirm_gone(self, page_id: str, space_key: str) -> None:
        """Make sure a 404 for `page_id` means the page is gone: Confluence also answers
        404 for what the caller may not view, so the page's space must still be readable
        (a second authenticated read); else `ConfluenceAccessUnconfirmed`, and the caller
        deletes nothing."""
        if space_key in self.get_spaces([space_key]):
            return
        raise ConfluenceAccessUnconfirmed(
            f"page {page_id} answered 404 and its space {space_key} cannot be read at "
            f"{self.base_url} either: lost access (credentials or permissions), or the "
            "space was deleted; nothing is deleted until the space can be read",
            status=404,
            operation="pages.get",
            code="access_unconfirmed",
        )

    def get_page(self, page_id: str, *, body: bool = True) -> dict[str, Any] | None:
        """The current page with its storage body, or None if deleted or trashed."""
        page = self.get_page_any(page_id, body=body)
        return page if page is not None and page.get("status") == "current" else None

    def get_page_any(self, page_id: str, *, body: bool = True) -> dict[str, Any] | None:
        """The page whatever its status (`current`, `trashed`, `archived`: its `spaceId`
        tells where a trashed page was), or None when Confluence has no such page
        (purged, or never existed)."""
        _check_id(page_id)
        params: list[tuple[str, str]] = [("status", s) for s in ("current", "archived", "trashed")]
        if body:
            params.append(("body-format", "storage"))
        response = self._request(
            "GET", f"{V2}/pages/{page_id}", params=params, operation="pages.get", expected=(404,)
        )
        if response.status_code == 404:
            return None
        return dict(_json(response, "pages.get"))

    def search(
        self, cql: str, *, expand: str = "version,space", limit: int = 250
    ) -> Iterator[dict[str, Any]]:
        """CQL search (v1 `/content/search`, cursor pagination). Build `cql` with `cql_clause`."""
        params = {"cql": cql, "limit": limit, "expand": expand}
        yield from self._paginate(f"{V1}/content/search", params, "content.search")

    def changed_since(
        self, space_key: str, since: datetime, *, body: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Pages of the space modified since `since` (CQL, minute resolution), oldest
        first; with `body`, each with its storage body (Confluence then answers at most 50
        a call)."""
        cql = cql_and(
            cql_clause("space", "=", space_key),
            cql_clause("type", "=", "page"),
            cql_clause("lastmodified", ">=", since),
        )
        expand = "version,space,body.storage" if body else "version,space"
        limit = SEARCH_BODY_LIMIT if body else LABELS_LIMIT
        return self.search(cql + " ORDER BY lastmodified ASC", expand=expand, limit=limit)

    def find_page(self, space_key: str, title: str) -> dict[str, Any] | None:
        cql = cql_and(
            cql_clause("space", "=", space_key),
            cql_clause("type", "=", "page"),
            cql_clause("title", "=", title),
        )
        for hit in self.search(cql, limit=5):
            if hit.get("title") == title:
                return hit
        return None

    # -- writes ------------------------------------------------------------------------
    def create_page(
        self, space_id: str, title: str, storage: str, parent_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "spaceId": space_id,
            "status": "current",
            "title": title,
            "body": {"representation": "storage", "value": storage},
        }
        if parent_id:
            body["parentId"] = parent_id
        return dict(
            _json(
                self._request("POST", f"{V2}/pages", json=body, operation="pages.create"),
                "pages.create",
            )
        )

    def update_page(
        self, page_id: str, title: str, storage: str, version: int, message: str = ""
    ) -> dict[str, Any]:
        """Update with `version` (= current + 1); 409 becomes `VersionConflict`."""
        _check_id(page_id)
        body = {
            "id": page_id,
            "status": "current",
            "title": title,
            "body": {"representation": "storage", "value": storage},
            "version": {"number": version, "message": message},
        }
        response = self._request(
            "PUT", f"{V2}/pages/{page_id}", json=body, operation="pages.update", expected=(409,)
        )
        if response.status_code == 409:
            detail = _message(response)
            raise VersionConflict(
                f"page {page_id} changed in Confluence since it was read ({detail})",
                page_id,
                version,
            )
        return dict(_json(response, "pages.update"))

    def add_labels(self, page_id: str, labels: list[str]) -> None:
        _check_id(page_id)
        if not labels:
            return
        payload = [{"prefix": "global", "name": name} for name in labels]
        self._request("POST", f"{V1}/content/{page_id}/label", json=payload, operation="labels.add")

    def get_labels(self, page_id: str) -> list[str]:
        _check_id(page_id)
        data = _json(
            self._request("GET", f"{V1}/content/{page_id}/label", operation="labels.get"),
            "labels.get",
        )
        return [str(item["name"]) for item in data.get("results", [])]

    def page_url(self, page: dict[str, Any]) -> str:
        webui = (page.get("_links") or {}).get("webui") or f"/pages/{page.get('id')}"
        return f"{self.site_url}/wiki{webui}"


def _json(response: httpx.Response, operation: str) -> Any:
    """The response's JSON object, or a ConfluenceError saying the answer was malformed."""
    try:
        data = response.json()
    except ValueError as exc:
        raise ConfluenceError(
            f"Confluence answered {operation} with a body that is not JSON",
            status=response.status_code,
            operation=operation,
        ) from exc
    if not isinstance(data, dict):
        raise ConfluenceError(
            f"Confluence answered {operation} with JSON that is not an object",
            status=response.status_code,
            operation=operation,
        )
    return data


def _same_site(url: str, base_url: str, path: str) -> bool:
    """True when `url` is `path` on the site of `base_url` (relative or absolute): a
    checkpointed URL read back from S3 never sends our credentials anywhere else."""
    parts, base = urlsplit(url), urlsplit(base_url)
    if parts.scheme and (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
        return False
    return parts.path == path or parts.path == base.path.rstrip("/") + path


def _check_id(page_id: str) -> None:
    """Page ids are numeric; anything else must not reach a URL path."""
    if not str(page_id).isdigit():
        raise ConfluenceInputError(f"invalid Confluence page id {page_id!r}")


def _message(response: httpx.Response) -> str:
    return _error_detail(response)[1] or f"HTTP {response.status_code}"


def _error_detail(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) of a Confluence error body: v2 `{"errors": [{status, code, title,
    detail}]}` (every entry), v1 `{"statusCode", "message"}`; (None, "") when it is
    neither. At most 300 characters: it goes into an exception."""
    try:
        data = response.json()
    except ValueError:
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        parts, code = [], None
        for item in errors:
            if not isinstance(item, dict):
                continue
            code = code or (str(item["code"]) if item.get("code") else None)
            text = " - ".join(str(item[k]) for k in ("title", "detail") if item.get(k))
            parts.append(text or str(item.get("code") or ""))
        return code, "; ".join(p for p in parts if p)[:300]
    message = data.get("message")
    return None, (str(message)[:300] if message else "")


__all__ = [
    "ConfluenceAccessUnconfirmed",
    "ConfluenceAuthError",
    "ConfluenceClient",
    "ConfluenceError",
    "IntegrationError",
    "PageNotFound",
    "SpaceNotFound",
    "VersionConflict",
    "cql_and",
    "cql_clause",
    "cql_datetime",
    "cql_or",
    "cql_string",
    "gateway_url",
    "load_site",
    "resolve_cloud_id",
]
