"""The receiver's helpers: signing secrets with a short cache, rate limits, metrics."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from nura.config.sections.webhooks import IncomingEndpoint
from nura.webhooks.blocks import WebhookSecret

logger = logging.getLogger("nura.receiver")


@dataclass
class _Cached:
    secret: WebhookSecret
    loaded_at: float


class SecretProvider:
    """The `WebhookSecret` of each endpoint, reloaded every `ttl` seconds.

    Rotation takes effect within `ttl` without a restart. A reload happens in the
    background while the cached secret keeps answering (no request waits on the Prefect
    API once a secret is known), and a failed reload keeps the last good secret: an
    unreachable Prefect API must not stop webhooks from being accepted.
    """

    def __init__(
        self,
        ttl: float = 30.0,
        injected: Mapping[str, WebhookSecret] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.injected = dict(injected or {})
        self.clock = clock
        self._cache: dict[str, _Cached] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _load(self, name: str, ep: IncomingEndpoint) -> WebhookSecret:
        if ep.secret_env:
            value = os.environ.get(ep.secret_env)
            if not value:
                raise LookupError(f"environment variable {ep.secret_env} is empty")
            return WebhookSecret(current=SecretStr(value), scheme=ep.scheme or "generic")
        block = await WebhookSecret.aload(ep.block_name(name))
        assert isinstance(block, WebhookSecret)
        return block

    async def _refresh(self, name: str, ep: IncomingEndpoint) -> WebhookSecret | None:
        try:
            secret = await self._load(name, ep)
        except Exception as exc:  # Prefect down, block missing: keep what we have
            logger.warning("signing secret of %s not loaded: %s", name, type(exc).__name__)
            cached = self._cache.get(name)
            return cached.secret if cached else None
        self._cache[name] = _Cached(secret, self.clock())
        return secret

    async def get(self, name: str, ep: IncomingEndpoint) -> WebhookSecret | None:
        if name in self.injected:
            return self.injected[name]
        cached = self._cache.get(name)
        if cached is None:
            return await self._refresh(name, ep)
        if self.clock() - cached.loaded_at >= self.ttl and name not in self._refreshing:
            self._refreshing.add(name)
            task = asyncio.create_task(self._background(name, ep))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return cached.secret

    async def _background(self, name: str, ep: IncomingEndpoint) -> None:
        try:
            await self._refresh(name, ep)
        finally:
            self._refreshing.discard(name)


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
