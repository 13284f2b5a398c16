"""Tokens-per-minute limits per model, held by Prefect global concurrency limits.

Requests-per-minute need nothing new: each model is its own call-layer service
(`bedrock:<model-id>`, see `nura.bedrock.invoke`), so the layer's `PrefectSlotLeaser` acquires
one call of `nura-rate-bedrock:<model-id>` per attempt.

Tokens are different: a call occupies as many slots as it will use tokens, and that is
only known afterwards. So, per call:
1. **reserve** the estimate (input estimate + max_tokens) from the local lease of
   `nura-rate-bedrock-tpm:<model-id>`, blocking at most `limit_wait_seconds`; when the
   model's TPM is saturated that long, the chain moves to the next model instead of
   queueing (`rate_limited_locally`);
2. **settle** to the actual usage the service reported: an over-estimate goes back to the
   local lease (still unexpired, so never credited twice to the server); an
   under-estimate becomes a debt that the next lease from the server pays first.
Leasing is the same batch scheme as `nura.core.ratelimit` (one server round trip per batch,
refilled in the background), because one acquire per call costs 10-30 ms.

The limit's burst is `BURST_SECONDS` of the rate (not 1 s as for request limits): a single
Claude call of 4,096 output tokens must fit in the bucket at all. A request larger than
the whole burst reserves the burst (it cannot be split) - documented, not hidden.
"""

from __future__ import annotations

import threading
from typing import Any

from nura.core.ratelimit import LimitSpec, PrefectSlotLeaser

BURST_SECONDS = 10.0
# A first lease slower than this (limit creation on a cold server) counts as saturation.
COLD_LEASE_SECONDS = 30.0


def tpm_service(model_id: str) -> str:
    return f"bedrock-tpm:{model_id}"


class TokenLeaser(PrefectSlotLeaser):
    """`reserve(model, tpm, estimate)` / `settle(...)`; thread-safe, one per process."""

    burst_seconds = BURST_SECONDS

    def reserve(
        self, service: str, per_minute: float, units: int, timeout: float | None = None
    ) -> int:
        """Take `units` tokens (clamped to the burst); returns what was reserved."""
        bucket = self._bucket(service, per_minute)
        units = max(1, min(units, bucket.spec.burst_calls))
        started = self.clock()
        deadline = None if timeout is None else started + timeout
        with bucket.cond:
            while True:
                now = self.clock()
                if bucket.tokens >= units and now < bucket.expires:
                    bucket.tokens -= units
                    low = bucket.tokens <= max(bucket.batch // 2, units)
                    ageing = now > bucket.expires - bucket.ttl / 2
                    if (low or ageing) and not bucket.refilling:
                        # Prefetch before the lease runs out or expires: the hot path
                        # does not wait for a server round trip while the limit has room.
                        self._start_refill(bucket)
                    return units
                bucket.raise_error()
                held = bucket.tokens if now < bucket.expires else 0
                bucket.need = max(bucket.need, units - held)
                if not bucket.refilling:
                    self._start_refill(bucket)
                remaining = None if deadline is None else deadline - now
                # The wait counts only while the server says the limit is full: a slow
                # first lease (limit creation, a cold server) is not saturation.
                if (
                    remaining is not None
                    and remaining <= 0
                    and bucket.spec.name not in self._saturated
                    and now - started < COLD_LEASE_SECONDS
                ):
                    remaining = 0.05
                elif remaining is not None and remaining <= 0:
                    from nura.core.errors import RateLimited

                    bucket.need = 0
                    raise RateLimited(
                        f"tokens-per-minute limit: {units} tokens not available within {timeout}s",
                        service=service,
                    )
                bucket.cond.wait(timeout=min(remaining or 1.0, 1.0))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Names of limits whose last increment the server denied (423); see `_wait_for`.
        self._saturated: set[str] = set()

    def _wait_for(self, spec: LimitSpec, calls: int, denied: Any) -> float:
        self._saturated.add(spec.name)
        return super()._wait_for(spec, calls, denied)

    def _lease(self, spec: LimitSpec, calls: int) -> int:
        granted = super()._lease(spec, calls)
        self._saturated.discard(spec.name)
        return granted

    def settle(self, service: str, per_minute: float, reserved: int, actual: int) -> None:
        """Correct a reservation to the tokens the service actually counted."""
        bucket = self._bucket(service, per_minute)
        delta = reserved - actual
        with bucket.cond:
            if delta > 0:
                if self.clock() < bucket.expires:
                    bucket.tokens += delta  # unused reservation back to the live lease
            elif delta < 0:
                live = bucket.tokens if self.clock() < bucket.expires else 0
                take = min(max(live, 0), -delta)
                bucket.tokens -= take
                bucket.debt += -delta - take


_leaser: TokenLeaser | None = None
_lock = threading.Lock()


def token_leaser(client_factory: Any = None) -> TokenLeaser:
    """The process-wide token leaser (tests may reset it with `reset_token_leaser`)."""
    global _leaser
    with _lock:
        if _leaser is None:
            _leaser = TokenLeaser(client_factory)
        return _leaser


def reset_token_leaser() -> None:
    global _leaser
    with _lock:
        _leaser = None
