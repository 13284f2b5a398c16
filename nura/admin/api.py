"""The admin HTTP API, served by the receiver under `admin.path_prefix` when
`admin.enabled` (off: its paths are 404 like any unknown path).

    curl -H "Authorization: Bearer $NURA_ADMIN_TOKEN" http://host:8780/admin/v1/status
    curl -X POST -H "Authorization: Bearer $T" -d '{"service": "confluence"}' \\
         http://host:8780/admin/v1/breakers/reset

One route per action of `nura.admin.actions` (`breakers.reset` -> `POST
{prefix}/breakers/reset`); reads are GET with query parameters, changes POST with a JSON
object. Order of checks: token (401 + `WWW-Authenticate`), role (403), parameters (400),
the action (404 unknown target, 501 feature absent, 500 failed). Every call, refused ones
too, is one audit row (actor = the token's name, never the token).
"""

from __future__ import annotations

import logging
from typing import Any, get_origin

import anyio
import orjson
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nura.admin.actions import ACTIONS, Action, AdminError, Context, perform, record_refused
from nura.admin.auth import Identity, TokenStore, allowed
from nura.admin.gate import EndpointFlags
from nura.config import IntegrationsConfig

logger = logging.getLogger("nura.admin")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="nura-admin"'}


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS),
        status,
        headers=headers,
        media_type="application/json",
    )


def _error(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return _answer(status, {"error": error, "message": message}, headers)


class AdminApi:
    """The handlers, bound to one receiver's config, store, tokens and endpoint flags."""

    def __init__(
        self,
        cfg: IntegrationsConfig,
        engine: Engine,
        flags: EndpointFlags,
        tokens: TokenStore | None = None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.flags = flags
        self.tokens = tokens or TokenStore(cfg.admin)

    def routes(self) -> list[Route]:
        prefix = self.cfg.admin.path_prefix
        return [
            Route(prefix + act.path, self._endpoint(act), methods=[act.method])
            for act in ACTIONS.values()
        ]

    def _endpoint(self, act: Action) -> Any:
        async def endpoint(request: Request) -> Response:
            return await self.handle(act, request)

        return endpoint

    def _changed(self, name: str) -> None:
        if name.startswith("endpoints."):
            self.flags.invalidate()

    def _context(self, who: Identity | None, header: str | None) -> Context:
        if who is None:  # the token itself is never recorded, only that one was sent
            actor = "invalid-token" if header else "anonymous"
            return Context(self.engine, self.cfg, actor=actor, changed=self._changed)
        return Context(self.engine, self.cfg, actor=who.name, role=who.role, changed=self._changed)

    async def handle(self, act: Action, request: Request) -> Response:
        header = request.headers.get("authorization")
        who = await self.tokens.identify(header)
        ctx = self._context(who, header)
        if who is None:
            await anyio.to_thread.run_sync(record_refused, ctx, act.name, "denied", 401)
            return _error(401, "unauthorized", "a valid bearer token is required", CHALLENGE)
        if not allowed(who.role, act.role):
            await anyio.to_thread.run_sync(record_refused, ctx, act.name, "denied", 403)
            return _error(
                403, "forbidden", f"{act.name} needs role {act.role}; {who.name} is {who.role}"
            )
        try:
            raw = await self._params(act, request)
        except AdminError as exc:
            await anyio.to_thread.run_sync(record_refused, ctx, act.name, "invalid", 400)
            return _error(exc.status, exc.error, exc.message)
        try:
            result = await anyio.to_thread.run_sync(perform, act.name, raw, ctx)
        except AdminError as exc:  # audited by perform
            return _error(exc.status, exc.error, exc.message)
        except Exception as exc:  # audited as `error` by perform; no traceback to the caller
            logger.exception("admin action %s failed", act.name)
            return _error(500, "action_failed", f"{act.name} failed ({type(exc).__name__})")
        return _answer(200, result)

    async def _params(self, act: Action, request: Request) -> dict[str, Any]:
        if act.method == "GET":
            return _query(act, request)
        body = await request.body()
        try:
            raw = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            raw = None
        if not isinstance(raw, dict):
            raise AdminError(400, "invalid_json", "the body must be a JSON object")
        return raw


def _query(act: Action, request: Request) -> dict[str, Any]:
    """Query parameters; list-typed fields take every repeated value."""
    out: dict[str, Any] = {}
    for key in request.query_params:
        info = act.params.model_fields.get(key)
        many = info is not None and get_origin(info.annotation) is list
        values = request.query_params.getlist(key)
        out[key] = values if many else values[-1]
    return out


def admin_routes(cfg: IntegrationsConfig, engine: Engine, flags: EndpointFlags) -> list[Route]:
    """The API's routes, or none when `admin.enabled` is off (every path then 404)."""
    if not cfg.admin.enabled:
        return []
    return AdminApi(cfg, engine, flags).routes()
