"""Per-service rate limits held by Prefect global concurrency limits, leased in batches.

Why not `prefect.concurrency.sync.rate_limit` per call: one acquire is a server round trip
(10-30 ms here), and the call layer must add < 1 ms. So each process *leases* a batch of
calls from the global limit in one request and spends them locally; a background refill
starts when the local batch runs low, so a limit that is not saturated never blocks a call.

Why the slots are scaled: the server decays `floor(decay * seconds since last update)`
and every acquire - granted or denied - resets that clock, so the fraction of a slot that
decayed before each update is lost (Prefect's own `rate_limit` runs ~20 % under its rate
here). One call occupies `SLOT_SCALE` slots, which makes that loss 1/SLOT_SCALE of a call.

Exactness: the server grants at most `limit + decay * t` slots over any t seconds, whatever
the number of processes; a leased call not spent within `token_ttl` is dropped, never
spent late, so calls over any window stay within the limit plus one burst. Unused calls
are not returned: giving slots back after they partly decayed would credit capacity that
other processes used, and the limit would no longer be a ceiling.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nura.core.errors import RateLimited

logger = logging.getLogger("nura.core.ratelimit")

SLOT_SCALE = 100
LIMIT_PREFIX = "nura-rate-"


def limit_name(service: str) -> str:
    return f"{LIMIT_PREFIX}{service}"


@dataclass(frozen=True)
class LimitSpec:
    """The global concurrency limit that implements `per_minute` calls for one service."""

    name: str
    per_minute: float
    burst_seconds: float = 1.0

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0

    @property
    def burst_calls(self) -> int:
        return max(1, math.ceil(self.per_second * self.burst_seconds))

    @property
    def limit(self) -> int:
        return self.burst_calls * SLOT_SCALE

    @property
    def slot_decay_per_second(self) -> float:
        return self.per_second * SLOT_SCALE


class Limiter(Protocol):
    def acquire(self, service: str, per_minute: float, timeout: float | None = None) -> None: ...

    def limited_within(self, service: str, seconds: float) -> bool:
        """Did the limit hold calls back in the last `seconds` (is it the bottleneck)?"""
        ...


class NoLimiter:
    """For unit tests of other decisions; production code uses `PrefectSlotLeaser`."""

    def acquire(self, service: str, per_minute: float, timeout: float | None = None) -> None:
        return None

    def limited_within(self, service: str, seconds: float) -> bool:
        return True  # no limiter, no evidence either way: dynamic adjustment decides alone


class _Bucket:
    """One limit's local lease; every field is guarded by `cond`."""

    def __init__(self, spec: LimitSpec, batch: int, ttl: float) -> None:
        self.spec = spec
        self.batch = batch
        self.ttl = ttl
        self.tokens = 0
        self.expires = 0.0
        self.cond = threading.Condition()
        self.refilling = False
        self.error: BaseException | None = None
        self.ensured = False
        self.need = 0  # units a waiting caller is short of beyond a batch (token limits)
        self.debt = 0  # units used beyond what was leased, owed to the server (token limits)

    def raise_error(self) -> None:
        """Hand a failed refill's error to one waiting caller."""
        if self.error is not None:
            err, self.error = self.error, None
            raise err


class PrefectSlotLeaser:
    """Leases calls from Prefect global concurrency limits (mode `rate_limit`, slot decay).

    `client_factory` returns a Prefect `SyncPrefectClient`-like object (has `request`) and is
    injectable for tests; missing limits are created from the spec (never silently skipped).
    """

    burst_seconds = 1.0  # a limit holds this many seconds of its rate (`LimitSpec`)

    def __init__(
        self,
        client_factory: Callable[[], Any] | None = None,
        *,
        lease_seconds: float = 0.5,
        token_ttl: float = 1.0,
        max_wait_step: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client_factory = client_factory or _default_client
        self._client: Any = None
        self._client_lock = threading.Lock()
        self.lease_seconds = lease_seconds
        self.token_ttl = token_ttl
        self.max_wait_step = max_wait_step
        self.clock = clock
        self.sleep = sleep
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.leases = 0  # number of server round trips, for benchmarks and tests
        self._denied_at: dict[str, float] = {}  # limit name -> last 423 (the limit was full)
        self._denials_count_from: dict[str, float] = {}  # limit name -> a spec's start + burst

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def _bucket(self, service: str, per_minute: float) -> _Bucket:
        bucket = self._buckets.get(service)
        if bucket is None or bucket.spec.per_minute != per_minute:
            with self._lock:
                bucket = self._buckets.get(service)
                if bucket is None or bucket.spec.per_minute != per_minute:
                    spec = LimitSpec(limit_name(service), per_minute, self.burst_seconds)
                    batch = max(
                        1, min(spec.burst_calls, math.ceil(spec.per_second * self.lease_seconds))
                    )
                    bucket = _Bucket(spec, batch, self.token_ttl)
                    # A new spec's first burst meets the occupancy leased under the
                    # previous one: denials then say nothing about demand.
                    self._denials_count_from[spec.name] = self.clock() + self.burst_seconds
                    self._buckets[service] = bucket
        return bucket

    def acquire(self, service: str, per_minute: float, timeout: float | None = None) -> None:
        """Take one call's worth of the service's rate; blocks while the limit is saturated."""
        bucket = self._bucket(service, per_minute)
        deadline = None if timeout is None else self.clock() + timeout
        with bucket.cond:
            while True:
                now = self.clock()
                if bucket.tokens > 0 and now < bucket.expires:
                    bucket.tokens -= 1
                    if bucket.tokens <= bucket.batch // 2 and not bucket.refilling:
                        self._start_refill(bucket)  # prefetch: the hot path never waits
                    return
                bucket.raise_error()
                if not bucket.refilling:
                    self._start_refill(bucket)
                remaining = None if deadline is None else deadline - now
                if remaining is not None and remaining <= 0:
                    raise RateLimited(
                        f"local rate limit wait exceeded {timeout}s", service=service, attempts=0
                    )
                bucket.cond.wait(timeout=min(remaining or 1.0, 1.0))

    def limited_within(self, service: str, seconds: float) -> bool:
        """Did the server deny a lease of `service`'s limit in the last `seconds`? A denial
        means the calls of every process together fill the limit: raising it can help."""
        denied = self._denied_at.get(limit_name(service))
        return denied is not None and self.clock() - denied <= seconds

    def _start_refill(self, bucket: _Bucket) -> None:
        bucket.refilling = True
        threading.Thread(target=self._refill, args=(bucket,), daemon=True).start()

    def _refill(self, bucket: _Bucket) -> None:
        """Lease a batch (more when a caller needs more, plus any debt) in the background."""
        try:
            if not bucket.ensured:
                # Once per process and service: the limit matches this process's config.
                ensure_limit(self.client, bucket.spec)
                bucket.ensured = True
            with bucket.cond:
                debt = bucket.debt
                wanted = min(max(bucket.batch, bucket.need) + debt, bucket.spec.burst_calls)
                bucket.need = bucket.debt = 0
            granted = self._lease(bucket.spec, wanted)
            with bucket.cond:
                now = self.clock()
                if now >= bucket.expires:
                    bucket.tokens = 0
                bucket.tokens += granted
                # The debt, and any booked while this lease was in flight, is paid from it.
                bucket.debt += debt
                pay = min(bucket.debt, max(bucket.tokens, 0))
                bucket.tokens -= pay
                bucket.debt -= pay
                bucket.expires = now + bucket.ttl
        except BaseException as exc:  # handed to the waiting caller, never swallowed
            with bucket.cond:
                bucket.error = exc
        finally:
            with bucket.cond:
                bucket.refilling = False
                bucket.cond.notify_all()

    def _lease(self, spec: LimitSpec, calls: int) -> int:
        """One granted increment of `calls * SLOT_SCALE` slots; waits on 423 as told."""
        while True:
            self.leases += 1
            response = self.client.request(
                "POST",
                "/v2/concurrency_limits/increment",
                json={"names": [spec.name], "slots": calls * SLOT_SCALE, "mode": "rate_limit"},
            )
            if response.status_code == 423:
                if self.clock() >= self._denials_count_from.get(spec.name, 0.0):
                    self._denied_at[spec.name] = self.clock()
                self.sleep(self._wait_for(spec, calls, response))
                continue
            if response.status_code == 422:
                # Our spec changed (config edited) and the limit is smaller than a batch.
                ensure_limit(self.client, spec)
                continue
            response.raise_for_status()
            if not response.json():
                # rate_limit on a missing limit silently does nothing: create it instead.
                logger.warning("concurrency limit %s was missing; created from config", spec.name)
                ensure_limit(self.client, spec)
                continue
            return calls

    def _wait_for(self, spec: LimitSpec, calls: int, denied: Any) -> float:
        """Exactly how long until `calls` fit, from the limit's decayed occupancy.

        The server's Retry-After counts every denied request as waiting slots and is
        jittered upwards, which made leases here run at ~55 % of the configured rate; one
        read of the limit gives the exact figure instead.
        """
        current = self.client.request("GET", f"/v2/concurrency_limits/{spec.name}")
        if current.status_code == 200:
            active = float(current.json().get("active_slots") or 0)
            if active > spec.limit:
                active = clamp_occupancy(self.client, spec)
            missing = active + calls * SLOT_SCALE - spec.limit
            wait = missing / spec.slot_decay_per_second
        else:
            wait = float(denied.headers.get("Retry-After", "0.1") or 0.1)
        return min(max(wait, 0.005), self.max_wait_step)


class _PrefectApi:
    """Prefect's own HTTP client (API URL or ephemeral server) answering raw responses.

    The leaser needs the raw 423 and its Retry-After to wait exactly as the server says,
    so HTTP status errors are turned back into responses here.
    """

    def __init__(self) -> None:
        from prefect.client.orchestration import get_client

        self._prefect = get_client(sync_client=True)
        self._prefect.__enter__()
        self._http = self._prefect._client

    def request(self, method: str, path: str, json: Any = None) -> Any:
        import httpx

        try:
            return self._http.request(method, path, json=json)
        except httpx.HTTPStatusError as exc:
            return exc.response


def _default_client() -> Any:
    return _PrefectApi()


def clamp_occupancy(client: Any, spec: LimitSpec) -> float:
    """Cap the limit's occupancy at "full" when it is above the limit (left by a bigger spec:
    the config was changed, or another process still runs an older one).

    Why: the server applies decay only on a granted or released increment; a denied one
    resets the decay clock without decaying (Prefect 3.9 `bulk_update_denied_slots`), so
    occupancy above the limit, retried more often than it takes to drain, never drains.
    """
    patched = client.request(
        "PATCH", f"/v2/concurrency_limits/{spec.name}", json={"active_slots": spec.limit}
    )
    patched.raise_for_status()
    return float(spec.limit)


def ensure_limit(client: Any, spec: LimitSpec) -> None:
    """Create or update the global concurrency limit for `spec` (idempotent)."""
    body = {
        "name": spec.name,
        "limit": spec.limit,
        "slot_decay_per_second": spec.slot_decay_per_second,
        "active": True,
    }
    response = client.request("GET", f"/v2/concurrency_limits/{spec.name}")
    if response.status_code == 404:
        created = client.request("POST", "/v2/concurrency_limits/", json=body)
        if created.status_code == 409:
            return  # created by another process meanwhile
        created.raise_for_status()
        return
    response.raise_for_status()
    current = response.json()
    if (
        current.get("limit") != spec.limit
        or abs(float(current.get("slot_decay_per_second") or 0) - spec.slot_decay_per_second) > 1e-9
        or not current.get("active", True)
        or float(current.get("active_slots") or 0) > spec.limit
    ):
        # The server reads occupancy decayed, but stores it undecayed and does not decay it
        # on an update: without setting it here, a PATCH would bring back slots that had
        # long decayed (and above the new limit they would never drain: clamp_occupancy).
        body["active_slots"] = min(int(float(current.get("active_slots") or 0)), spec.limit)
        patched = client.request("PATCH", f"/v2/concurrency_limits/{spec.name}", json=body)
        patched.raise_for_status()
