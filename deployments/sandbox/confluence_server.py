"""The Confluence test server: Confluence Cloud's REST API subset, written from Atlassian's docs.

v2 (cursor pagination, `_links.next` and a `Link: <...>; rel="next"` header):
  GET    /wiki/api/v2/spaces?keys=A,B            GET /wiki/api/v2/spaces/{id}/pages
  GET    /wiki/api/v2/pages?space-id=&status=&body-format=storage&limit=&cursor=
  GET    /wiki/api/v2/pages/{id}?body-format=storage
  POST   /wiki/api/v2/pages                      PUT /wiki/api/v2/pages/{id} (version rule, 409)
  DELETE /wiki/api/v2/pages/{id}[?purge=true]    (trash; purge a trashed page)
  GET    /wiki/api/v2/pages/{id}/labels
v1 (offset pagination for /content, cursor for /content/search; `_links.next` relative
to `_links.context` = "/wiki"):
  GET    /wiki/rest/api/content?spaceKey=&type=&title=&status=&start=&limit=&expand=
  GET    /wiki/rest/api/content/{id}?expand=     GET /wiki/rest/api/content/search?cql=
  GET    /wiki/rest/api/content/{id}/restriction/byOperation
  GET    /wiki/rest/api/content/{id}/label       POST /wiki/rest/api/content/{id}/label
  POST   /oauth/token   (grant_type=refresh_token; OAuth 2.0 access tokens as Bearer)
Documented behaviour followed (developer.atlassian.com, REST v2 reference and v1 search):
  - v2 listings: `limit` 1..250 (default 25; outside the range: 400), `status` repeated or
    comma-separated (default `current` and `archived`), `body-format=storage` puts each
    page's body under `body.storage` ({"representation": "storage", "value": ...}),
    else `body` is `{}`; the next page is `_links.next` (relative to the site, with the
    cursor) and `Link: <...>; rel="next", <site/wiki>; rel="base"`; an unknown cursor: 400.
  - GET /pages/{id}: a trashed or archived page is 404 unless its status is asked for.
  - POST/PUT /pages: 413 over 5 MB; a create under a parent that does not exist: 400.
  - v1 /content/search: at most 50 results a call with a body expanded, 200 with other
    expansions, 1000 without (whatever `limit` asks); cursor in `_links.next`.
Control (tests, benchmark and sandbox; no auth): POST /_control {"latency_ms", "fail_next",
"fail_status", "retry_after", "retry_after_header", "rate_limit": [limit, remaining],
"revoked_spaces": [keys], "broken_pages": [ids], "race_next_update": bool,
"listing_omits_body": [ids], "listing_truncates_body": {id: bytes}} (the last two make
bulk listings leave out or cut bodies: what a client must survive by fetching the page);
POST /_edit {"ids": [...] | "space": K, "count": N,
"action": "edit" | "trash" | "purge"}; GET /_stats; POST /_stats/reset.

Auth: Basic `email:api_token` (default bot@example.com / sandbox-token) or a Bearer token
it issued; anything else is 401 with Confluence's JSON error body.

OAuth 2.0 (3LO) through Atlassian's gateway (developer.atlassian.com, "Making calls to
API" and Confluence "OAuth 2.0 (3LO) apps"): 3LO requests are made via api.atlassian.com,
not the site. This one server plays the site, the gateway and api.atlassian.com:
  GET /oauth/token/accessible-resources   (Bearer) -> [{"id": cloudId, "name", "url": site,
                                           "scopes", "avatarUrl"}]
  /ex/confluence/{cloudId}/wiki/...        the site's API for a Bearer token (or Basic);
                                           an unknown cloud id: 404
  /wiki/...                                the site itself: a Bearer token is refused (401)
Through the gateway the answers are the site's: `_links.base` names the site
("https://<site>/wiki"), v1 `_links.next` is relative to it, v2 `_links.next` is
"/wiki/api/v2/...".
Errors: v2 paths answer `{"errors": [{"status", "code", "title", "detail"}]}` (the
REST v2 error shape), v1 paths `{"statusCode", "message"}` (the v1 reference).
Rate limiting (Confluence "Rate limiting"): 429, and transient 503s, may carry
`Retry-After`; `"retry_after_header": "Beta-Retry-After"` sends that header instead;
`"rate_limit": [limit, remaining]` sends `X-RateLimit-Limit`, `X-RateLimit-Remaining`
(counting down) and `X-RateLimit-NearLimit` (under 20 % left) on every answer.
Permissions: `revoke(space_key)` takes the bot's view permission on a space away; as the
v2 reference says of GET /pages/{id} and /spaces/{id}, a page or space the caller may not
view answers 404, and listings and searches leave it out.

    python -m deployments.sandbox.confluence_server --port 8702          # sample data
    python -m deployments.sandbox.confluence_server --pages 3000 --spaces TECH,DOCS,ARCH
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from deployments.sandbox.base import Faults, JsonHandler, LocalServer, serve_main
from deployments.sandbox.confluence_cql import CqlError, compile_cql
from deployments.sandbox.confluence_pages import generate_body, page_title

V2 = "/wiki/api/v2"
V1 = "/wiki/rest/api"
TAG = re.compile(r"<[^>]+>")
MAX_REQUEST_BYTES = 5 * 1024 * 1024  # "413: the request is too large in size (over 5 MB)"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _uncursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return max(0, int(raw.split(":", 1)[1]))
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise _HttpError(400, "Invalid cursor") from exc


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "REQUEST_ENTITY_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


def _error_body(path: str, status: int, message: str) -> dict[str, Any]:
    """Confluence's error body: v2's `errors` list, v1's `statusCode` + `message`."""
    if path.startswith(V2):
        code = ERROR_CODES.get(status, "ERROR")
        return {"errors": [{"status": status, "code": code, "title": message, "detail": None}]}
    return {"statusCode": status, "message": message}


class ConfluenceServer(LocalServer):
    """An in-memory Confluence site. Mutate it directly in tests (`edit`, `trash`, `purge`)."""

    request_queue_size = 256

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        email: str = "bot@example.com",
        api_token: str = "sandbox-token",  # noqa: S107 - the stand-in's documented token
        latency_ms: float = 0.0,
        cloud_id: str = "9f3c2a1e-5b7d-4e21-8c6f-0a1b2c3d4e5f",
    ) -> None:
        super().__init__((host, port), _Handler)
        self.cloud_id = cloud_id
        self.retry_after_header = "Retry-After"
        self.rate_limit: list[int] | None = None  # [limit, remaining]
        self.revoked_spaces: set[str] = set()  # spaces the bot may no longer view
        self.email = email
        self.api_token = api_token
        self.lock = threading.RLock()
        self.spaces: dict[str, dict[str, Any]] = {}
        self.pages: dict[str, dict[str, Any]] = {}
        self.next_id = 100_000
        self.faults = Faults(fail_status=429, retry_after="1")
        self.faults.latency_ms = latency_ms
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.stats: Counter[str] = Counter()
        self.broken_pages: set[str] = set()  # GET of these answers 500 (a page that fails)
        # Bulk listings (v2 lists, CQL search) that leave out or cut these pages' bodies.
        self.listing_omits_body: set[str] = set()
        self.listing_truncates_body: dict[str, int] = {}
        self.race_next_update = False  # someone else saves just before our next PUT
        self.max_request_bytes = MAX_REQUEST_BYTES  # larger writes: 413 (tests lower it)
        self.clock = time.time

    @property
    def gateway_url(self) -> str:
        """The site's API through Atlassian's gateway (what OAuth 2.0 tokens must use)."""
        return f"{self.url}/ex/confluence/{self.cloud_id}"

    def revoke(self, space_key: str) -> None:
        """The bot loses the view permission on the space (a credentials problem)."""
        with self.lock:
            self.revoked_spaces.add(space_key)

    # -- data ----------------------------------------------------------------------------
    def add_space(self, key: str, name: str | None = None) -> dict[str, Any]:
        with self.lock:
            space = {"id": str(10_000 + len(self.spaces) + 1), "key": key, "name": name or key}
            self.spaces[key] = space
            return space

    def add_page(
        self,
        space_key: str,
        title: str,
        body: str,
        *,
        parent_id: str | None = None,
        labels: list[str] | None = None,
        modified_at: float | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            self.next_id += 1
            now = self.clock() if modified_at is None else modified_at
            page: dict[str, Any] = {
                "id": str(self.next_id),
                "space_key": space_key,
                "title": title,
                "body": body,
                "_text": "",
                "parent_id": parent_id,
                "status": "current",
                "version": 1,
                "created_at": now,
                "modified_at": now,
                "labels": list(labels or []),
                "type": "page",
            }
            self.pages[page["id"]] = page
            return page

    def generate(
        self, spaces: list[str], pages_per_space: int, body_bytes: int = 10_000, age_days: float = 2
    ) -> None:
        """Fill the site with realistic pages, last modified `age_days` ago."""
        when = self.clock() - age_days * 86400
        for key in spaces:
            self.add_space(key, f"{key} space")
            titles = [page_title(key, n) for n in range(pages_per_space)]
            for n in range(pages_per_space):
                number = len(self.pages)
                self.add_page(
                    key,
                    titles[n],
                    generate_body(key, number, titles, body_bytes),
                    labels=["generated", key.lower()],
                    modified_at=when,
                )

    def edit(self, page_id: str, body: str | None = None, title: str | None = None) -> None:
        """A user edits the page in the Confluence UI: new version, lastmodified now."""
        with self.lock:
            page = self.pages[page_id]
            page["version"] += 1
            page["modified_at"] = self.clock()
            if body is not None:
                page["body"] = body
            else:
                page["body"] += f"<p>Edited to version {page['version']}.</p>"
            if title is not None:
                page["title"] = title

    def trash(self, page_id: str) -> None:
        with self.lock:
            self.pages[page_id]["status"] = "trashed"
            self.pages[page_id]["modified_at"] = self.clock()

    def purge(self, page_id: str) -> None:
        with self.lock:
            self.pages.pop(page_id, None)

    def space_pages(self, key: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.pages.values() if p["space_key"] == key]

    # -- faults --------------------------------------------------------------------------
    def set_faults(
        self,
        *,
        latency_ms: float | None = None,
        fail_next: int | None = None,
        fail_status: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Script the faults; None leaves one as it is, `retry_after=""` sends none."""
        script = {"latency_ms": latency_ms, "fail_next": fail_next, "fail_status": fail_status}
        self.faults.control(**{k: v for k, v in script.items() if v is not None})
        if retry_after is not None:
            self.faults.control(retry_after=retry_after or None)

    # -- auth ----------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                email, _, token = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return secrets.compare_digest(
                f"{email}:{token}".encode(), f"{self.email}:{self.api_token}".encode()
            )
        if scheme.lower() == "bearer":
            with self.lock:
                return value in self.access_tokens
        return False

    def issue_tokens(self) -> dict[str, str]:
        with self.lock:
            access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
            self.access_tokens.add(access)
            self.refresh_tokens.add(refresh)
            return {"access_token": access, "refresh_token": refresh}

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()


# -- representation ----------------------------------------------------------------------


def _v2_page(
    server: ConfluenceServer, page: dict[str, Any], body_format: str | None, bulk: bool = False
) -> dict:
    space = server.spaces[page["space_key"]]
    out: dict[str, Any] = {
        "id": page["id"],
        "status": page["status"],
        "title": page["title"],
        "spaceId": space["id"],
        "parentId": page["parent_id"],
        "parentType": "page" if page["parent_id"] else None,
        "authorId": "557058:bot",
        "createdAt": _iso(page["created_at"]),
        "version": {
            "number": page["version"],
            "createdAt": _iso(page["modified_at"]),
            "message": "",
            "minorEdit": False,
            "authorId": "557058:bot",
        },
        "body": {},
        "_links": {
            "webui": f"/spaces/{page['space_key']}/pages/{page['id']}",
            "tinyui": f"/x/{page['id']}",
        },
    }
    if body_format == "storage":
        value = _listed_body(server, page) if bulk else page["body"]
        if value is not None:
            out["body"] = {"storage": {"representation": "storage", "value": value}}
    return out


def _listed_body(server: ConfluenceServer, page: dict[str, Any]) -> str | None:
    """A page's body as a bulk answer gives it: omitted or cut when the test says so."""
    if page["id"] in server.listing_omits_body:
        return None
    cut = server.listing_truncates_body.get(page["id"])
    return page["body"] if cut is None else page["body"][:cut]


def _v1_content(
    server: ConfluenceServer, page: dict[str, Any], expand: set[str], bulk: bool = False
) -> dict:
    out: dict[str, Any] = {
        "id": page["id"],
        "type": "page",
        "status": page["status"],
        "title": page["title"],
        "_links": {
            "webui": f"/spaces/{page['space_key']}/pages/{page['id']}",
            "self": f"{server.url}/wiki/rest/api/content/{page['id']}",
        },
        "_expandable": {},
    }
    if "version" in expand or any(e.startswith("version") for e in expand):
        out["version"] = {"number": page["version"], "when": _iso(page["modified_at"])}
    if "space" in expand:
        out["space"] = {"key": page["space_key"], "id": int(server.spaces[page["space_key"]]["id"])}
    if any(e.startswith("body.storage") for e in expand):
        value = _listed_body(server, page) if bulk else page["body"]
        out["body"] = {"storage": {"value": value or "", "representation": "storage"}}
        if value is None:
            out["body"] = {}
    if "history" in expand:
        out["history"] = {"latest": True, "createdDate": _iso(page["created_at"])}
    if "metadata.labels" in expand:
        out["metadata"] = {"labels": _labels(page)}
    if "ancestors" in expand:
        out["ancestors"] = [{"id": a, "type": "page"} for a in _ancestors(server, page)]
    return out


def _ancestors(server: ConfluenceServer, page: dict[str, Any]) -> list[str]:
    chain: list[str] = []
    parent = page.get("parent_id")
    while parent and parent in server.pages and parent not in chain:
        chain.insert(0, parent)
        parent = server.pages[parent].get("parent_id")
    return chain


def _labels(page: dict[str, Any]) -> dict[str, Any]:
    results = [
        {"prefix": "global", "name": name, "id": str(abs(hash(name)) % 10**9)}
        for name in page["labels"]
    ]
    return {"results": results, "start": 0, "limit": 200, "size": len(results)}


# -- HTTP --------------------------------------------------------------------------------


class _Handler(JsonHandler):
    server: ConfluenceServer
    content_type = "application/json; charset=utf-8"
    ensure_ascii = False

    def _body(self) -> Any:
        raw = self._read_body()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _HttpError(400, "Request body is not valid JSON") from exc

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super()._send(status, body, {**getattr(self, "_extra_headers", {}), **(headers or {})})

    def _dispatch(self, method: str) -> None:
        parsed = urlparse(self.path)
        path = parsed.path.rstrip("/") or "/"
        multi = parse_qs(parsed.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in multi.items()}
        # Array parameters (`status`) come repeated or comma-separated.
        query.update({k: ",".join(v) for k, v in multi.items() if k == "status"})
        srv = self.server
        self._extra_headers: dict[str, str] = {}
        gateway = re.match(r"/ex/confluence/([^/]+)(/.*)", path)
        if gateway:  # api.atlassian.com/ex/confluence/{cloudId}/wiki/...: the site's API
            path = gateway.group(2)
        try:
            if method in ("POST", "PUT") and int(self.headers.get("Content-Length") or 0) > (
                srv.max_request_bytes
            ):
                self._read_body()
                raise _HttpError(413, "Request entity too large")
            body = self._body()
            if path.startswith("/_") and not gateway:
                return self._control(method, path, body)
            with srv.lock:
                srv.stats["requests"] += 1
                srv.stats[f"{method} {'gateway ' if gateway else ''}{_route_name(path)}"] += 1
            if srv.faults.latency_ms:
                time.sleep(srv.faults.latency_ms / 1000)
            if path == "/oauth/token" and method == "POST" and not gateway:
                return self._oauth(body or {})
            authorization = self.headers.get("Authorization") or ""
            bearer = authorization.lower().startswith("bearer ")
            if path == "/oauth/token/accessible-resources" and method == "GET" and not gateway:
                if not (bearer and srv.authorized(authorization)):
                    raise _HttpError(401, "Unauthorized")
                return self._send(200, self._accessible_resources())
            if gateway and gateway.group(1) != srv.cloud_id:
                raise _HttpError(404, "Site not found")  # not a site this token can reach
            if bearer and not gateway:
                # "Requests that use OAuth 2.0 (3LO) are made via api.atlassian.com (not
                # https://your-domain.atlassian.net)": the site refuses the token.
                raise _HttpError(401, "Unauthorized; scope does not match")
            if not srv.authorized(authorization):
                raise _HttpError(401, "Current user not permitted to use Confluence")
            self._count_budget()
            fault = srv.faults.take()
            if fault.status is not None:
                waits = (
                    {srv.retry_after_header: fault.retry_after}
                    if fault.retry_after is not None
                    else {}
                )
                raise _HttpError(
                    fault.status,
                    "Rate limit exceeded" if fault.status == 429 else "Service unavailable",
                    waits,
                )
            self._route(method, path, query, body)
        except _HttpError as err:
            self._send(err.status, _error_body(path, err.status, err.message), err.headers)

    def _accessible_resources(self) -> list[dict[str, Any]]:
        srv = self.server
        return [
            {
                "id": srv.cloud_id,
                "name": "Sandbox site",
                "url": srv.url,
                "scopes": ["read:confluence-content.all", "write:confluence-content"],
                "avatarUrl": "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/site.png",
            }
        ]

    def _count_budget(self) -> None:
        """`X-RateLimit-*` on this answer when a budget is scripted (counting down)."""
        srv = self.server
        with srv.lock:
            if srv.rate_limit is None:
                return
            limit, remaining = srv.rate_limit
            remaining = max(0, remaining - 1)
            srv.rate_limit = [limit, remaining]
        self._extra_headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-NearLimit": "true" if remaining < limit * 0.2 else "false",
        }

    def _control(self, method: str, path: str, body: Any) -> None:
        srv = self.server
        if path == "/_control" and method == "POST":
            b = body or {}
            srv.set_faults(
                latency_ms=b.get("latency_ms"),
                fail_next=b.get("fail_next"),
                fail_status=b.get("fail_status"),
                retry_after=None if b.get("retry_after") is None else str(b["retry_after"]),
            )
            with srv.lock:
                if "retry_after_header" in b:
                    srv.retry_after_header = str(b["retry_after_header"])
                if "rate_limit" in b:
                    srv.rate_limit = None if b["rate_limit"] is None else list(b["rate_limit"])
                if "revoked_spaces" in b:
                    srv.revoked_spaces = {str(k) for k in b["revoked_spaces"]}
                if "broken_pages" in b:
                    srv.broken_pages = {str(i) for i in b["broken_pages"]}
                if "race_next_update" in b:
                    srv.race_next_update = bool(b["race_next_update"])
                if "listing_omits_body" in b:
                    srv.listing_omits_body = {str(i) for i in b["listing_omits_body"]}
                if "listing_truncates_body" in b:
                    srv.listing_truncates_body = {
                        str(k): int(v) for k, v in b["listing_truncates_body"].items()
                    }
            return self._send(200, {"ok": True})
        if path == "/_stats" and method == "GET":
            with srv.lock:
                return self._send(200, dict(srv.stats))
        if path == "/_edit" and method == "POST":
            b = body or {}
            ids = [str(i) for i in b.get("ids") or []]
            with srv.lock:
                if b.get("space") and b.get("count"):
                    pages = sorted(srv.space_pages(b["space"]), key=lambda p: int(p["id"]))
                    ids += [p["id"] for p in pages if p["status"] == "current"][: int(b["count"])]
                for page_id in ids:
                    if page_id in srv.pages:
                        {"trash": srv.trash, "purge": srv.purge}.get(b.get("action", ""), srv.edit)(
                            page_id
                        )
            return self._send(200, {"ids": ids})
        if path == "/_stats/reset" and method == "POST":
            with srv.lock:
                srv.stats.clear()
            return self._send(200, {"ok": True})
        raise _HttpError(404, "No such control endpoint")

    def _oauth(self, body: dict[str, Any]) -> None:
        srv = self.server
        token = body.get("refresh_token")
        if body.get("grant_type") != "refresh_token" or not token:
            raise _HttpError(400, "unsupported_grant_type")
        with srv.lock:
            if token not in srv.refresh_tokens:
                raise _HttpError(403, "invalid_grant")
            srv.refresh_tokens.discard(token)  # rotating refresh tokens, as Atlassian does
        tokens = srv.issue_tokens()
        self._send(200, {**tokens, "token_type": "Bearer", "expires_in": 3600})

    # -- routes --------------------------------------------------------------------------
    def _route(self, method: str, path: str, q: dict[str, str], body: Any) -> None:
        srv = self.server
        m = re.fullmatch(V2 + r"/pages/(\d+)", path)
        if m:
            return self._v2_page(method, m.group(1), q, body)
        m = re.fullmatch(V2 + r"/pages/(\d+)/labels", path)
        if m and method == "GET":
            page = self._page(m.group(1))
            results = [{"id": "1", "name": n, "prefix": "global"} for n in page["labels"]]
            return self._send(200, {"results": results, "_links": {}})
        if path == V2 + "/pages" and method == "POST":
            return self._v2_create(body or {})
        if path == V2 + "/pages" and method == "GET":
            space_ids = set(filter(None, q.get("space-id", "").split(",")))
            keys = {s["key"] for s in srv.spaces.values() if s["id"] in space_ids}
            return self._v2_list(path, q, lambda p: not space_ids or p["space_key"] in keys)
        m = re.fullmatch(V2 + r"/spaces/(\d+)/pages", path)
        if m and method == "GET":
            key = next((s["key"] for s in srv.spaces.values() if s["id"] == m.group(1)), None)
            if key is None or key in srv.revoked_spaces:
                raise _HttpError(404, f"Space {m.group(1)} not found")
            return self._v2_list(path, q, lambda p: p["space_key"] == key)
        m = re.fullmatch(V2 + r"/spaces/(\d+)", path)
        if m and method == "GET":
            space = next((s for s in srv.spaces.values() if s["id"] == m.group(1)), None)
            if space is None or space["key"] in srv.revoked_spaces:
                raise _HttpError(404, f"Space {m.group(1)} not found")
            return self._send(200, {**space, "type": "global", "status": "current"})
        if path == V2 + "/spaces" and method == "GET":
            keys = set(filter(None, q.get("keys", "").split(",")))
            spaces = [
                {**s, "type": "global", "status": "current"}
                for s in srv.spaces.values()
                if (not keys or s["key"] in keys) and s["key"] not in srv.revoked_spaces
            ]
            return self._paged_v2(path, q, spaces)
        if path == V1 + "/content/search" and method == "GET":
            return self._v1_search(q)
        m = re.fullmatch(V1 + r"/content/(\d+)/label", path)
        if m:
            return self._v1_labels(method, m.group(1), body)
        m = re.fullmatch(V1 + r"/content/(\d+)/restriction/byOperation", path)
        if m and method == "GET":
            self._page(m.group(1))
            empty = {"user": {"results": [], "size": 0}, "group": {"results": [], "size": 0}}
            return self._send(
                200,
                {
                    "read": {"operation": "read", "restrictions": empty},
                    "update": {"operation": "update", "restrictions": empty},
                },
            )
        m = re.fullmatch(V1 + r"/content/(\d+)", path)
        if m and method == "GET":
            page = self._page(m.group(1))
            return self._send(200, _v1_content(srv, page, _expand(q)))
        if path == V1 + "/content" and method == "GET":
            return self._v1_list(q)
        raise _HttpError(404, f"No route for {method} {path}")

    def _page(self, page_id: str, *, any_status: bool = True) -> dict[str, Any]:
        page = self.server.pages.get(page_id)
        if page is None or (not any_status and page["status"] != "current"):
            raise _HttpError(404, f"Page {page_id} not found")
        if page["space_key"] in self.server.revoked_spaces:  # "or no permission to view it"
            raise _HttpError(404, f"Page {page_id} not found")
        return page

    def _limit(self, q: dict[str, str], default: int, maximum: int, strict: bool = False) -> int:
        """`limit`, capped at `maximum` (v1's "fixed system limits"); `strict` (v2, whose
        reference gives the range 1..maximum): outside the range is a 400."""
        try:
            asked = int(q.get("limit") or default)
        except ValueError as exc:
            raise _HttpError(400, "limit must be an integer") from exc
        if strict and not 1 <= asked <= maximum:
            raise _HttpError(400, f"limit must be between 1 and {maximum}")
        return max(1, min(asked, maximum))

    def _paged_v2(self, path: str, q: dict[str, str], items: list[Any]) -> None:
        limit = self._limit(q, 25, 250, strict=True)
        offset = _uncursor(q.get("cursor"))
        self._send_v2_window(path, q, items[offset : offset + limit], offset + limit, len(items))

    def _send_v2_window(
        self, path: str, q: dict[str, str], window: list[Any], end: int, total: int
    ) -> None:
        """One v2 page of results; the next cursor starts at `end` when `total` goes on."""
        base = self.server.url + "/wiki"
        links: dict[str, str] = {"base": base}
        headers = {}
        if end < total:
            nq = {k: v for k, v in q.items() if k != "cursor"}
            nq["cursor"] = _cursor(end)
            links["next"] = f"{path}?{urlencode(nq)}"
            headers["Link"] = f'<{links["next"]}>; rel="next", <{base}>; rel="base"'
        self._send(200, {"results": window, "_links": links}, headers)

    def _v2_list(self, path: str, q: dict[str, str], where: Any) -> None:
        srv = self.server
        statuses = set((q.get("status") or "current,archived").split(","))
        title = q.get("title")
        with srv.lock:
            pages = [
                p
                for p in srv.pages.values()
                if where(p)
                and p["status"] in statuses
                and (title is None or p["title"] == title)
                and p["space_key"] not in srv.revoked_spaces
            ]
            pages.sort(key=lambda p: int(p["id"]))
            limit = self._limit(q, 25, 250, strict=True)
            # Keyset cursor (the last id answered): pages created or deleted meanwhile do
            # not shift the next window, as Atlassian says of its cursors.
            after = _uncursor(q.get("cursor"))
            rest = [p for p in pages if int(p["id"]) > after]
            window = rest[:limit]
            body_format = q.get("body-format")
            items = [_v2_page(srv, p, body_format, True) for p in window]
        last = int(window[-1]["id"]) if window else after
        self._send_v2_window(path, q, items, last, last + 1 if len(rest) > limit else last)

    def _v2_page(self, method: str, page_id: str, q: dict[str, str], body: Any) -> None:
        srv = self.server
        if method == "GET":
            if page_id in srv.broken_pages:
                raise _HttpError(500, "Internal server error")
            with srv.lock:
                page = self._page(page_id)
                asked = set((q.get("status") or "current").split(","))
                if page["status"] != "current" and page["status"] not in asked | {"any"}:
                    # Confluence answers 404 for a trashed page unless asked for that status
                    raise _HttpError(404, f"Page {page_id} not found")
                return self._send(200, _v2_page(srv, page, q.get("body-format")))
        if method == "PUT":
            return self._v2_update(page_id, body or {})
        if method == "DELETE":
            with srv.lock:
                page = self._page(page_id)
                if q.get("purge") == "true":
                    if page["status"] != "trashed":
                        raise _HttpError(400, "Only trashed pages can be purged")
                    srv.purge(page_id)
                else:
                    if page["status"] == "trashed":
                        raise _HttpError(404, f"Page {page_id} not found")
                    srv.trash(page_id)
            return self._send(204, None)
        raise _HttpError(405, "Method not allowed")

    def _v2_create(self, body: dict[str, Any]) -> None:
        srv = self.server
        space_id, title = body.get("spaceId"), body.get("title")
        value = (body.get("body") or {}).get("value")
        if not space_id or not title or value is None:
            raise _HttpError(400, "spaceId, title and body are required")
        with srv.lock:
            key = next((s["key"] for s in srv.spaces.values() if s["id"] == str(space_id)), None)
            if key is None:
                raise _HttpError(404, f"Space {space_id} not found")
            parent = body.get("parentId")
            if parent and parent not in srv.pages:
                # the reference's 404s for a create are about the space: a bad parent
                # is an invalid request
                raise _HttpError(400, f"Parent page {parent} does not exist")
            if any(
                p["title"] == title and p["space_key"] == key and p["status"] == "current"
                for p in srv.pages.values()
            ):
                raise _HttpError(400, "A page with this title already exists in this space")
            page = srv.add_page(key, title, value, parent_id=parent)
            self._send(200, _v2_page(srv, page, "storage"))

    def _v2_update(self, page_id: str, body: dict[str, Any]) -> None:
        srv = self.server
        with srv.lock:
            page = self._page(page_id, any_status=False)
            if srv.race_next_update:
                srv.race_next_update = False
                srv.edit(page_id)
            number = (body.get("version") or {}).get("number")
            if not isinstance(number, int):
                raise _HttpError(400, "version.number is required")
            if number != page["version"] + 1:
                raise _HttpError(
                    409,
                    f"Version must be incremented on update. Current version is: {page['version']}",
                )
            value = (body.get("body") or {}).get("value")
            page["version"] = number
            page["modified_at"] = srv.clock()
            if body.get("title"):
                page["title"] = body["title"]
            if value is not None:
                page["body"] = value
            self._send(200, _v2_page(srv, page, "storage"))

    def _v1_list(self, q: dict[str, str]) -> None:
        srv = self.server
        space, title = q.get("spaceKey"), q.get("title")
        status = q.get("status") or "current"
        ctype = q.get("type") or "page"
        try:
            start = max(0, int(q.get("start") or 0))
        except ValueError as exc:
            raise _HttpError(400, "start must be an integer") from exc
        limit = self._limit(q, 25, 200)
        expand = _expand(q)
        with srv.lock:
            pages = sorted(
                (
                    p
                    for p in srv.pages.values()
                    if (space is None or p["space_key"] == space)
                    and (title is None or p["title"] == title)
                    and (status == "any" or p["status"] == status)
                    and ctype == "page"
                    and p["space_key"] not in srv.revoked_spaces
                ),
                key=lambda p: int(p["id"]),
            )
            if space is not None and space not in srv.spaces:
                raise _HttpError(404, f"No space with key : {space}")
            chunk = [_v1_content(srv, p, expand) for p in pages[start : start + limit]]
        links: dict[str, str] = {"base": srv.url + "/wiki", "context": "/wiki"}
        if start + limit < len(pages):
            nq = {**q, "start": str(start + limit)}
            links["next"] = f"/rest/api/content?{urlencode(nq)}"
        self._send(
            200,
            {"results": chunk, "start": start, "limit": limit, "size": len(chunk), "_links": links},
        )

    def _v1_search(self, q: dict[str, str]) -> None:
        srv = self.server
        cql = q.get("cql")
        if not cql:
            raise _HttpError(400, "cql is required")
        try:
            predicate, order = compile_cql(cql)
        except CqlError as exc:
            raise _HttpError(400, str(exc)) from exc
        expand = _expand(q)
        with_body = any(e.startswith("body") for e in expand)
        limit = self._limit(q, 25, 50 if with_body else 200 if expand else 1000)
        offset = _uncursor(q.get("cursor"))
        with srv.lock:
            if "_text" in cql or "text" in cql.lower():
                for p in srv.pages.values():
                    if not p["_text"]:
                        p["_text"] = TAG.sub(" ", p["body"])
            matches = [
                p
                for p in srv.pages.values()
                if p["status"] == "current"
                and p["space_key"] not in srv.revoked_spaces
                and predicate(p)
            ]
            if order:
                field, desc = order
                attr = {"lastmodified": "modified_at", "created": "created_at"}.get(field, field)
                matches.sort(key=lambda p: (p.get(attr) or 0, int(p["id"])), reverse=desc)
            else:
                matches.sort(key=lambda p: int(p["id"]))
            chunk = [_v1_content(srv, p, expand, True) for p in matches[offset : offset + limit]]
        links: dict[str, str] = {"base": srv.url + "/wiki", "context": "/wiki"}
        if offset + limit < len(matches):
            nq = {k: v for k, v in q.items() if k != "cursor"}
            nq["cursor"] = _cursor(offset + limit)
            links["next"] = f"/rest/api/content/search?{urlencode(nq)}"
        self._send(
            200,
            {
                "results": chunk,
                "start": offset,
                "limit": limit,
                "size": len(chunk),
                "totalSize": len(matches),
                "cqlQuery": cql,
                "_links": links,
            },
        )

    def _v1_labels(self, method: str, page_id: str, body: Any) -> None:
        srv = self.server
        with srv.lock:
            page = self._page(page_id, any_status=False)
            if method == "POST":
                items = body if isinstance(body, list) else [body]
                for item in items:
                    name = (item or {}).get("name")
                    if not isinstance(name, str) or not re.fullmatch(r"[^\s:]{1,255}", name):
                        raise _HttpError(400, f"Invalid label name: {name!r}")
                    if name not in page["labels"]:
                        page["labels"].append(name)
            elif method != "GET":
                raise _HttpError(405, "Method not allowed")
            self._send(200, _labels(page))


def _expand(q: dict[str, str]) -> set[str]:
    return {e.strip() for e in (q.get("expand") or "").split(",") if e.strip()}


def _route_name(path: str) -> str:
    return re.sub(r"/\d+", "/{id}", path)


def sample_server(server: ConfluenceServer) -> ConfluenceServer:
    """The sandbox's sample site: spaces TECH, DOCS, ARCH with a few pages each."""
    server.generate(["TECH", "DOCS", "ARCH"], 8, body_bytes=3_000)
    return server


def main() -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--spaces", default="TECH,DOCS,ARCH")
        parser.add_argument("--pages", type=int, default=0, help="pages in total (0 = sample data)")
        parser.add_argument("--body-bytes", type=int, default=10_000)
        parser.add_argument("--latency-ms", type=float, default=0.0)
        parser.add_argument("--email", default="bot@example.com")
        parser.add_argument("--api-token", default="sandbox-token")

    def make(args: argparse.Namespace) -> ConfluenceServer:
        server = ConfluenceServer(
            args.host,
            args.port,
            email=args.email,
            api_token=args.api_token,
            latency_ms=args.latency_ms,
        )
        spaces = [s for s in args.spaces.split(",") if s]
        if args.pages:
            server.generate(spaces, args.pages // len(spaces), args.body_bytes)
        else:
            sample_server(server)
        return server

    serve_main(
        __doc__.splitlines()[0],
        8702,
        make,
        lambda s: f"Confluence test server on {s.url} ({len(s.pages)} pages)",
        add_arguments,
    )


if __name__ == "__main__":
    main()
