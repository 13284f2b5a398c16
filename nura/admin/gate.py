"""The receiver's view of operator endpoint flags (`nura endpoints disable NAME`).

A disabled endpoint answers exactly like a path with no endpoint (404 `unknown_endpoint`),
before anything of the request is read: a sender, or someone probing, cannot tell a
disabled endpoint from one that never existed. Flags live in the store
(`nura_endpoint_flags`); each receiver re-reads them every `endpoint_flag_cache_seconds`
(off the event loop), and the one that served an admin API change applies it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from nura.config import IntegrationsConfig
from nura.core.stores.admin_overrides import disabled_endpoints

logger = logging.getLogger("nura.admin")

_NOT_FOUND = b'{"error":"unknown_endpoint","message":"no enabled webhook endpoint at this path"}'


class EndpointFlags:
    """Which configured endpoints an operator disabled, cached for `ttl` seconds."""

    def __init__(
        self,
        cfg: IntegrationsConfig,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.ttl = cfg.admin.endpoint_flag_cache_seconds
        self.clock = clock
        self.by_path = {ep.url_path: name for name, ep in cfg.webhooks.incoming.items()}
        self.disabled: set[str] = set()
        self.loaded_at: float | None = None

    def invalidate(self) -> None:
        self.loaded_at = None

    def stale(self) -> bool:
        return self.loaded_at is None or self.clock() - self.loaded_at >= self.ttl

    async def reload(self) -> None:
        self.loaded_at = self.clock()  # one reload at a time; others use the current set
        try:
            self.disabled = await anyio.to_thread.run_sync(disabled_endpoints, self.engine)
        except Exception as exc:  # store down: keep the last flags, say so
            logger.warning("endpoint flags not re-read: %s", type(exc).__name__)


class EndpointGate:
    """ASGI middleware in front of the receiver: 404 for a disabled endpoint's path."""

    def __init__(
        self,
        app: ASGIApp,
        flags: EndpointFlags,
        observe: Callable[[str, int], None] | None = None,
    ) -> None:
        self.app = app
        self.flags = flags
        self.observe = observe  # the receiver's request counter (/metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            flags = self.flags
            name = flags.by_path.get(scope["path"].rstrip("/"))
            if name is not None and flags.stale():  # the hot path: no await when fresh
                await flags.reload()
            if name is not None and name in flags.disabled:
                if self.observe is not None:
                    self.observe(name, 404)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 404,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_NOT_FOUND)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _NOT_FOUND})
                return
        await self.app(scope, receive, send)
