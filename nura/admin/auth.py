"""Admin tokens and roles: who a bearer token is, and whether that role may act.

    tokens = TokenStore(cfg.admin)          # values from Prefect `secret` blocks, cached
    who = await tokens.identify("Bearer ...")   # Identity(name="ops-1", role="operator") | None
    allowed(who.role, "admin")              # False: viewer < operator < admin

Only SHA-256 digests of the token values are kept in memory, and a presented token is
compared digest to digest with `hmac.compare_digest` against every configured token (no
early exit, so the time taken does not say which token nearly matched). Blocks are
re-read every `token_cache_seconds`: a rotated or deleted token block takes effect
without a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nura.config.sections.admin import AdminSettings, AdminToken, Role

logger = logging.getLogger("nura.admin")

ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")

# block name -> token value; tests and the sandbox inject one, the default reads Prefect.
TokenLoader = Callable[[str], Awaitable[str | None]]


def rank(role: str) -> int:
    return ROLES.index(role)  # type: ignore[arg-type]


def allowed(role: str, minimum: str) -> bool:
    """Does `role` reach `minimum` in viewer < operator < admin?"""
    return rank(role) >= rank(minimum)


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role


async def load_token_block(block: str) -> str | None:
    """The value of a Prefect `secret` block; None when the block does not exist."""
    from prefect.blocks.system import Secret
    from prefect.exceptions import ObjectNotFound

    try:
        secret: Secret[Any] = await Secret.aload(block)  # type: ignore[assignment]
    except ValueError as exc:  # Prefect wraps ObjectNotFound in a ValueError
        if isinstance(exc.__cause__, ObjectNotFound):
            return None
        raise
    value = secret.get()
    return value if isinstance(value, str) and value else None


class TokenStore:
    """Digests of the configured tokens, reloaded every `ttl` seconds.

    An unreachable Prefect API keeps the last digests loaded (the admin API must not lock
    operators out because Prefect blinked); a deleted block drops its token at once.
    """

    def __init__(
        self,
        settings: AdminSettings,
        *,
        loader: TokenLoader = load_token_block,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = list(settings.tokens)
        self.ttl = settings.token_cache_seconds
        self.loader = loader
        self.clock = clock
        self._digests: dict[str, bytes] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def _load_one(self, token: AdminToken) -> bytes | None:
        try:
            value = await self.loader(token.block)
        except Exception as exc:  # Prefect down: keep the last digest of this token
            logger.warning("admin token block %s not loaded: %s", token.block, type(exc).__name__)
            return self._digests.get(token.name)
        if value is None:
            logger.warning("admin token block %s is missing or empty: token off", token.block)
            return None
        return digest(value)

    async def refresh(self, force: bool = False) -> Mapping[str, bytes]:
        async with self._lock:
            now = self.clock()
            fresh = self._loaded_at is not None and now - self._loaded_at < self.ttl
            if force or not fresh:
                loaded = {t.name: await self._load_one(t) for t in self.tokens}
                self._digests = {n: d for n, d in loaded.items() if d is not None}
                self._loaded_at = now
            return self._digests

    async def identify(self, authorization: str | None) -> Identity | None:
        """The identity a `Bearer` header proves; None for anything else."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return None
        presented = digest(value)
        digests = await self.refresh()
        found: AdminToken | None = None
        for token in self.tokens:  # every token compared: no early exit
            known = digests.get(token.name)
            if known is not None and hmac.compare_digest(known, presented):
                found = token
        return None if found is None else Identity(found.name, found.role)
