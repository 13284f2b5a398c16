"""The receiver's helpers: signing secrets with a short cache, rate limits, metrics."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr, ValidationError

from nura.config.sections.webhooks import IncomingEndpoint
from nura.webhooks.blocks import WebhookSecret

logger = logging.getLogger("nura.receiver")


class SecretMissing(LookupError):
    """The endpoint's secret does not exist (block deleted, env variable empty) or is not
    usable (invalid `whsec_`, empty): stop verifying with whatever was cached."""


Loader = Callable[[str, IncomingEndpoint], Awaitable[WebhookSecret]]


async def load_secret(name: str, ep: IncomingEndpoint) -> WebhookSecret:
    """The endpoint's secret from its env variable or its `nura-webhook-secret` block.

    `SecretMissing` when it is gone or invalid; anything else (the Prefect API unreachable)
    propagates as is, and the caller keeps the last good secret.
    """
    from prefect.exceptions import ObjectNotFound

    if ep.secret_env:
        value = os.environ.get(ep.secret_env)
        if not value:
            raise SecretMissing(f"environment variable {ep.secret_env} is empty")
        try:
            return WebhookSecret(current=SecretStr(value), scheme=ep.scheme or "generic")
        except ValidationError:
            raise SecretMissing(f"environment variable {ep.secret_env}: invalid secret") from None
    try:
        block = await WebhookSecret.aload(ep.block_name(name))
    except ValidationError:  # saved with an empty or invalid secret: never used
        raise SecretMissing(f"block {ep.block_name(name)!r} holds an invalid secret") from None
    except ValueError as exc:  # Prefect wraps ObjectNotFound in a ValueError
        if isinstance(exc.__cause__, ObjectNotFound):
            raise SecretMissing(f"block {ep.block_name(name)!r} not found") from None
        raise
    if not isinstance(block, WebhookSecret):
        raise SecretMissing(f"block {ep.block_name(name)!r} is not a nura-webhook-secret")
    return block


@dataclass
class _Cached:
    secret: WebhookSecret | None  # None: known missing (negative entry)
    loaded_at: float


class SecretProvider:
    """The `WebhookSecret` of each endpoint, reloaded every `ttl` seconds.

    - Rotation and deletion take effect within `ttl` without a restart: past `ttl / 2` a
      request starts a reload in the background; past `ttl` a request waits for the reload
      (at most `reload_wait` s, then the last good secret answers).
    - A missing or invalid secret is cached too (negative entry, `max(ttl, 1)` s): requests
      to an endpoint without a secret do not each call the Prefect API.
    - One load per endpoint at a time, however many requests wait for it.
    - An unreachable Prefect API keeps the last good secret: it must not stop webhooks from
      being accepted. A deleted block (or one now invalid) stops verifying.
    """

    reload_wait = 2.0

    def __init__(
        self,
        ttl: float = 30.0,
        injected: Mapping[str, WebhookSecret] | None = None,
        clock: Callable[[], float] = time.monotonic,
        loader: Loader | None = None,
    ) -> None:
        self.ttl = ttl
        self.injected = dict(injected or {})
        self.clock = clock
        self.loader: Loader = loader or load_secret
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Task[WebhookSecret | None]] = {}

    async def _refresh(self, name: str, ep: IncomingEndpoint) -> WebhookSecret | None:
        try:
            secret: WebhookSecret | None = await self.loader(name, ep)
        except SecretMissing as exc:
            logger.error("signing secret of %s unusable: %s; not verifying", name, exc)
            secret = None
        except Exception as exc:  # Prefect down: keep what we have (negative if nothing)
            logger.warning("signing secret of %s not loaded: %s", name, type(exc).__name__)
            cached = self._cache.get(name)
            if cached is not None and cached.secret is not None:
                return cached.secret
            secret = None
        self._cache[name] = _Cached(secret, self.clock())
        return secret

    def _reload(self, name: str, ep: IncomingEndpoint) -> asyncio.Task[WebhookSecret | None]:
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.create_task(self._refresh(name, ep))
            self._inflight[name] = task
            task.add_done_callback(lambda _t: self._inflight.pop(name, None))
        return task

    async def get(self, name: str, ep: IncomingEndpoint) -> WebhookSecret | None:
        if name in self.injected:
            return self.injected[name]
        cached = self._cache.get(name)
        if cached is None:
            return await asyncio.shield(self._reload(name, ep))
        age = self.clock() - cached.loaded_at
        if cached.secret is None:
            if age < max(self.ttl, 1.0):
                return None
            return await asyncio.shield(self._reload(name, ep))
        if age < self.ttl / 2:
            return cached.secret
        task = self._reload(name, ep)
        if age < self.ttl:
            return cached.secret
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.reload_wait)
        except TimeoutError:
            return cached.secret


class RateLimiter:
    """Token bucket per endpoint: `per_minute` burst, refilled at `per_minute`/60 per second.

    Kept in the process (an acquire from a Prefect global concurrency limit is a 10-30 ms
    round trip and would make accepting depend on the Prefect API); on start it is seeded
    from the inbox so a restart does not reset the budget. With several receivers, each
    enforces the endpoint's limit on its own.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, updated)

    def seed(self, name: str, per_minute: int, used: int) -> None:
        self._buckets[name] = (max(0.0, float(per_minute - used)), self.clock())

    def peek(self, name: str, per_minute: int) -> float | None:
        """Like `acquire` without taking a token: checked before a body is read, so a
        request over the limit costs neither its body nor an HMAC."""
        now = self.clock()
        tokens, updated = self._buckets.get(name, (float(per_minute), now))
        rate = per_minute / 60.0
        tokens = min(float(per_minute), tokens + max(0.0, now - updated) * rate)
        return None if tokens >= 1.0 else (1.0 - tokens) / rate

    def acquire(self, name: str, per_minute: int) -> float | None:
        """None when admitted, else seconds until a token is available."""
        now = self.clock()
        tokens, updated = self._buckets.get(name, (float(per_minute), now))
        rate = per_minute / 60.0
        tokens = min(float(per_minute), tokens + max(0.0, now - updated) * rate)
        if tokens >= 1.0:
            self._buckets[name] = (tokens - 1.0, now)
            return None
        self._buckets[name] = (tokens, now)
        return (1.0 - tokens) / rate


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class ReceiverMetrics:
    """Counters rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.signature_failures: Counter[str] = Counter()

    def observe(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] += 1

    def render(
        self,
        depth: int | None,
        oldest_age: float | None,
        lag: float | None,
        dispatched: int,
        dispatch_errors: int,
    ) -> str:
        out = [
            "# HELP nura_webhook_requests_total Webhook requests by endpoint and status.",
            "# TYPE nura_webhook_requests_total counter",
        ]
        for (endpoint, status), n in sorted(self.requests.items()):
            out.append(
                f'nura_webhook_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}'
            )
        out += [
            "# HELP nura_webhook_signature_failures_total Requests whose signature failed.",
            "# TYPE nura_webhook_signature_failures_total counter",
        ]
        for endpoint, n in sorted(self.signature_failures.items()):
            out.append(f'nura_webhook_signature_failures_total{{endpoint="{endpoint}"}} {n}')
        out += [
            "# HELP nura_webhook_inbox_depth Accepted deliveries not yet dispatched.",
            "# TYPE nura_webhook_inbox_depth gauge",
            f"nura_webhook_inbox_depth {depth if depth is not None else 'NaN'}",
            "# HELP nura_webhook_inbox_oldest_age_seconds Age of the oldest undispatched entry.",
            "# TYPE nura_webhook_inbox_oldest_age_seconds gauge",
            f"nura_webhook_inbox_oldest_age_seconds {oldest_age if oldest_age is not None else 0}",
            "# HELP nura_webhook_dispatch_lag_seconds Receipt to flow run, last dispatch batch.",
            "# TYPE nura_webhook_dispatch_lag_seconds gauge",
            f"nura_webhook_dispatch_lag_seconds {lag if lag is not None else 0}",
            "# HELP nura_webhook_dispatched_total Deliveries turned into flow runs or events.",
            "# TYPE nura_webhook_dispatched_total counter",
            f"nura_webhook_dispatched_total {dispatched}",
            "# HELP nura_webhook_dispatch_errors_total Dispatch attempts that failed.",
            "# TYPE nura_webhook_dispatch_errors_total counter",
            f"nura_webhook_dispatch_errors_total {dispatch_errors}",
        ]
        return "\n".join(out) + "\n"
