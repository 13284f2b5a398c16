"""Credentials from saved blocks that follow rotation without a worker restart.

A running worker keeps its httpx auth for hours; when ops save a block anew (key rotation),
`BlockAuth` picks the new secret up on the next 401 (reload and resend once) or after
`ttl` seconds, whichever comes first. The block is never logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import httpx


def _apply(auth: httpx.Auth, request: httpx.Request) -> httpx.Request:
    return next(auth.auth_flow(request))


class BlockAuth(httpx.Auth):
    def __init__(
        self,
        load_block: Callable[[], Any],
        make_auth: Callable[[Any], httpx.Auth | None],
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_block = load_block
        self._make_auth = make_auth
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._auth: httpx.Auth | None = None
        self._fingerprint: str | None = None
        self._loaded_at = float("-inf")

    def _refresh(self, force: bool = False) -> bool:
        """Reload the block if stale (or forced); True when the credentials changed."""
        with self._lock:
            if not force and self._clock() - self._loaded_at < self._ttl:
                return False
            block = self._load_block()
            fingerprint = _fingerprint(block)
            changed = fingerprint != self._fingerprint
            self._auth = self._make_auth(block)
            self._fingerprint = fingerprint
            self._loaded_at = self._clock()
            return changed

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._refresh()
        auth = self._auth
        response = yield _apply(auth, request) if auth else request
        if response.status_code == 401 and self._refresh(force=True):
            auth = self._auth
            yield _apply(auth, request) if auth else request


def _fingerprint(block: Any) -> str:
    import hashlib

    data = block.model_dump(mode="python")
    parts = []
    for key in sorted(data):
        value = getattr(block, key, None)
        secret = getattr(value, "get_secret_value", None)
        parts.append(f"{key}={secret() if secret else data[key]!r}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
