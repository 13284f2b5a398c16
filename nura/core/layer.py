"""The resilient call layer: the one way any task calls out of the process.

For every call, in order: service known (UnknownService) -> breaker admits (CircuitOpen,
microseconds, no network) -> rate limit (Prefect global concurrency limit, leased) ->
attempt with the service's timeout -> classify the outcome -> retry retryable failures
with exponential backoff and full jitter, honouring a capped Retry-After -> on final
failure, an explicit fallback (marked as such) or a typed error -> one call record.

Limits per call: a total deadline over every attempt, wait and body read (the service's
`deadline_seconds`, by default 4x its timeout: a body dripping a byte a second is cut
there with `DeadlineExceeded`, a `ServiceTimeout`), and a response size cap (the
service's `max_response_bytes`, 16 MiB by default: the body is streamed and reading stops
past the cap with `ResponseTooLarge`). Nothing but an `IntegrationError` leaves the layer:
anything else raised inside a call is logged with its traceback and becomes
`UnexpectedError` (never retried, never a breaker failure, never answered by a fallback).

HTTP goes through `request` (the process's pooled httpx client); SDK calls such as boto3
go through `call`, with the SDK's own retries switched off (see `nura.core.aws`) so that this
layer alone decides. `arequest`/`acall` run the same logic off the event loop.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
import httpx

from nura.config import ServicePolicy
from nura.core.adaptive import AdaptiveRates
from nura.core.breaker import CircuitBreakers
from nura.core.call_records import CallRecord, CallRecorder, payload_digest
from nura.core.errors import (
    CircuitOpen,
    ClientError,
    DeadlineExceeded,
    IntegrationError,
    InvalidInput,
    RateLimited,
    ResponseTooLarge,
    ServerError,
    ServiceTimeout,
    ServiceUnavailable,
    TlsRefused,
    UnexpectedError,
    UnknownService,
)
from nura.core.http import tls_failure
from nura.core.ratelimit import Limiter
from nura.core.retry import (
    RATE_LIMITED_RETRIES,
    is_retryable_status,
    parse_retry_after,
    retry_delay,
    sane_retry_after,
)

logger = logging.getLogger("nura.calls")
T = TypeVar("T")
Fallback = Callable[[IntegrationError], Any]

# Failures that say the service itself is unwell: these move its breaker.
BREAKER_FAILURES = (ServerError, ServiceTimeout, ServiceUnavailable)

DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
DEADLINE_TIMEOUTS = 4.0  # default total deadline, in multiples of the service's timeout


def call_limits(policy: ServicePolicy, timeout: float) -> tuple[int, float]:
    """(max response bytes, total deadline seconds) of one call to `policy`'s service.

    Read with getattr: a policy built without the two settings takes the defaults.
    """
    cap = policy.max_response_bytes or DEFAULT_MAX_RESPONSE_BYTES
    deadline = policy.deadline_seconds or DEADLINE_TIMEOUTS * timeout
    return cap, deadline


class _Bounded(httpx.SyncByteStream):
    """A response body stream that stops past `cap` bytes or past the deadline `ends`."""

    def __init__(
        self,
        inner: httpx.SyncByteStream,
        cap: int,
        ends: float,
        clock: Callable[[], float],
        kw: dict[str, Any],
    ) -> None:
        self.inner, self.cap, self.ends, self.clock, self.kw = inner, cap, ends, clock, kw

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self.inner:
            size += len(chunk)
            if size > self.cap:
                raise ResponseTooLarge(f"response body over {self.cap} bytes", **self.kw)
            if self.clock() > self.ends:
                raise DeadlineExceeded("deadline passed while reading the body", **self.kw)
            yield chunk

    def close(self) -> None:
        self.inner.close()


@dataclass
class CallResult(Generic[T]):
    """What a call returned, how it went, and whether a fallback answered instead."""

    value: T
    service: str
    operation: str
    attempts: int
    latency_ms: float
    fallback_used: bool = False
    fallback_reason: str | None = None


def _flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def classify_http(service: str, operation: str, response: httpx.Response, attempts: int):  # type: ignore[no-untyped-def]
    """The typed error for a non-success HTTP answer (never includes the body or headers)."""
    status = response.status_code
    kw: dict[str, Any] = {
        "service": service,
        "status": status,
        "attempts": attempts,
        "operation": operation,
    }
    # Atlassian sends `Beta-Retry-After` where a newer limit applies (no Retry-After then).
    wait = response.headers.get("Retry-After") or response.headers.get("Beta-Retry-After")
    if status == 429:
        return RateLimited("rate limited by the service", retry_after=parse_retry_after(wait), **kw)
    if status == 503:
        # A 503 may say when to come back (RFC 9110 10.2.3; Confluence does when a
        # resource limit is reached): honoured like a 429's.
        unavailable = ServiceUnavailable("service unavailable", **kw)
        unavailable.retry_after = parse_retry_after(wait)
        return unavailable
    if status == 408:
        return ServiceTimeout("request timeout reported by the service", **kw)
    if is_retryable_status(status) and status >= 500:
        return ServerError("server error", **kw)
    if is_retryable_status(status):
        return ClientError("client error (retryable)", retryable=True, **kw)
    if 300 <= status < 400:
        return ClientError("unexpected redirect (redirects are not followed)", **kw)
    return ClientError("client error", **kw)


def _retry_after(err: IntegrationError, service: str) -> float | None:
    if not isinstance(err, (RateLimited, ServiceUnavailable)):
        return None
    return sane_retry_after(err.retry_after, service)


class CallLayer:
    def __init__(
        self,
        policies: Mapping[str, ServicePolicy],
        *,
        breakers: CircuitBreakers,
        limiter: Limiter,
        recorder: CallRecorder | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        rates: AdaptiveRates | None = None,
    ) -> None:
        self.policies = dict(policies)
        self.breakers = breakers
        self.limiter = limiter
        self.recorder = recorder
        self._http = http_client
        self.sleep = sleep
        self.clock = clock  # deadlines; `sleep` should advance it when faked
        self.rng = rng or random.Random()
        self._fallbacks: dict[str, Fallback] = {}
        self.rates = rates  # dynamic rate adjustment (nura.core.adaptive); None: fixed rates

    # -- registry ----------------------------------------------------------------------
    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            from nura.core.http import shared_client

            self._http = shared_client()
        return self._http

    def close(self) -> None:
        """Write the pending call records and stop the recorder's thread (the shared HTTP
        client belongs to the process, not to this layer)."""
        if self.recorder is not None:
            self.recorder.close()

    def policy(self, service: str) -> ServicePolicy:
        try:
            return self.policies[service]
        except KeyError:
            raise UnknownService(
                f"service {service!r} is not configured "
                f"(known: {', '.join(sorted(self.policies))})",
                service=service,
            ) from None

    def register_fallback(self, service: str, fallback: Fallback) -> None:
        """Answer for `service` when it fails retryably or its breaker is open.

        Used only where the service's config says `fallback_enabled: true`; the result is
        marked `fallback_used`, logged as a warning and recorded with outcome `fallback`.
        """
        self.policy(service)
        self._fallbacks[service] = fallback

    # -- the engine --------------------------------------------------------------------
    def _execute(
        self,
        service: str,
        operation: str,
        attempt: Callable[[int, float], tuple[T, int, int | None]],
        *,
        payload: bytes | str | None,
        fallback: Fallback | None,
        retries: int | None,
        deadline: float | None = None,
    ) -> CallResult[T]:
        """The boundary: whatever goes wrong, the caller sees an `IntegrationError`."""
        try:
            return self._run(service, operation, attempt, payload, fallback, retries, deadline)
        except IntegrationError:
            raise
        except Exception as exc:  # breaker store, limiter, recorder, fallback: a bug or outage
            raise self._unexpected(service, operation, exc, 0) from exc

    @staticmethod
    def _unexpected(service: str, operation: str, exc: Exception, attempts: int) -> UnexpectedError:
        logger.exception("unexpected %s in a call to %s %s", type(exc).__name__, service, operation)
        err = UnexpectedError(
            f"unexpected {type(exc).__name__} in the call layer",
            service=service,
            operation=operation,
            attempts=attempts,
        )
        err.__cause__ = exc
        return err

    def _run(
        self,
        service: str,
        operation: str,
        attempt: Callable[[int, float], tuple[T, int, int | None]],
        payload: bytes | str | None,
        fallback: Fallback | None,
        retries: int | None,
        deadline: float | None,
    ) -> CallResult[T]:
        policy = self.policy(service)
        started = time.perf_counter()
        ends = self.clock() + (deadline or call_limits(policy, policy.timeout_seconds)[1])
        max_retries = policy.retry_attempts if retries is None else retries
        admission = self.breakers.admit(service, policy.circuit_breaker_cooldown_seconds)
        attempts = 0
        # 429s have their own budget (RATE_LIMITED_RETRIES) under the service's policy; a
        # caller's explicit `retries` (a fallback chain moving on) or a policy of no
        # retries counts them with the rest.
        own_429_budget = retries is None and max_retries > 0
        throttled = 0
        if not admission.allowed:
            error: IntegrationError = CircuitOpen(
                f"circuit breaker open, next probe in {admission.retry_in:.1f}s",
                service=service,
                operation=operation,
            )
            return self._fail(policy, operation, error, started, payload, fallback, rejected=True)
        probe = admission.probe_token
        while True:
            rate = self.rates.effective(policy) if self.rates else policy.rate_limit_per_minute
            self.limiter.acquire(service, rate)
            attempts += 1
            sent = time.perf_counter()
            try:
                value, bytes_in, status = attempt(attempts, ends)
            except Exception as exc:
                err = (
                    exc
                    if isinstance(exc, IntegrationError)
                    else self._unexpected(service, operation, exc, attempts)
                )
                err.attempts = attempts
                breaker_open = False
                if isinstance(err, BREAKER_FAILURES) and not isinstance(err, UnexpectedError):
                    state = self.breakers.record_failure(
                        service, policy.circuit_breaker_threshold, admission
                    )
                    breaker_open = probe is not None or state != "closed"
                    probe = None
                if isinstance(err, RateLimited) and self.rates is not None:
                    self.rates.throttled(policy)  # the service said "too fast": slow down
                if not own_429_budget:
                    budget = attempts <= max_retries
                elif isinstance(err, RateLimited):
                    throttled += 1
                    budget = throttled <= RATE_LIMITED_RETRIES
                else:
                    budget = attempts - throttled <= max_retries
                if err.retryable and budget and not breaker_open:
                    delay = retry_delay(
                        attempts - 1,
                        base=policy.backoff_base_seconds,
                        cap=policy.backoff_max_seconds,
                        retry_after=_retry_after(err, service),
                        retry_after_cap=policy.retry_after_max_seconds,
                        rng=self.rng,
                    )
                    if self.clock() + delay >= ends:
                        logger.info(
                            "%s %s attempt %d failed (%s); no retry: the deadline would pass",
                            service,
                            operation,
                            attempts,
                            type(err).__name__,
                        )
                        return self._fail(policy, operation, err, started, payload, fallback)
                    logger.info(
                        "%s %s attempt %d failed (%s); retrying in %.2fs",
                        service,
                        operation,
                        attempts,
                        type(err).__name__,
                        delay,
                    )
                    self.sleep(delay)
                    continue
                return self._fail(policy, operation, err, started, payload, fallback)
            self.breakers.record_success(service, admission)
            if self.rates is not None:
                window = 2 * policy.adaptive.increase_interval_seconds
                bound = self.limiter.limited_within(service, window)
                self.rates.succeeded(policy, (time.perf_counter() - sent) * 1000, limited=bound)
            latency = (time.perf_counter() - started) * 1000
            self._record(
                CallRecord(
                    service=service,
                    operation=operation,
                    outcome="ok",
                    latency_ms=latency,
                    attempts=attempts,
                    status_code=status,
                    bytes_out=_size(payload),
                    bytes_in=bytes_in,
                    payload_sha256=payload_digest(payload),
                )
            )
            return CallResult(value, service, operation, attempts, latency)

    def _fail(
        self,
        policy: ServicePolicy,
        operation: str,
        error: IntegrationError,
        started: float,
        payload: bytes | str | None,
        fallback: Fallback | None,
        rejected: bool = False,
    ) -> CallResult[Any]:
        service = policy.name
        chosen = fallback or self._fallbacks.get(service)
        use_fallback = (
            chosen is not None
            and policy.fallback_enabled
            and not isinstance(error, (ClientError, UnexpectedError))
        )
        latency = (time.perf_counter() - started) * 1000
        record = CallRecord(
            service=service,
            operation=operation,
            outcome="fallback" if use_fallback else ("rejected" if rejected else "error"),
            latency_ms=latency,
            attempts=error.attempts,
            status_code=error.status,
            error_type=type(error).__name__,
            fallback=use_fallback,
            bytes_out=_size(payload),
            payload_sha256=payload_digest(payload),
            detail=str(error)[:500],
        )
        self._record(record)
        if not use_fallback:
            raise error
        assert chosen is not None
        logger.warning("FALLBACK answered for %s %s: %s", service, operation, error)
        return CallResult(
            chosen(error), service, operation, error.attempts, latency, True, str(error)
        )

    def _record(self, record: CallRecord) -> None:
        if self.recorder is None:
            return
        record.flow_run_id = _flow_run_id()
        self.recorder.record(record)

    # -- HTTP --------------------------------------------------------------------------
    def request(
        self,
        service: str,
        method: str,
        url: str,
        *,
        operation: str | None = None,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        json: Any = None,
        content: bytes | str | None = None,
        expected: Iterable[int] = (),
        timeout: float | None = None,
        retries: int | None = None,
        fallback: Fallback | None = None,
        max_response_bytes: int | None = None,
        deadline: float | None = None,
        client: httpx.Client | None = None,
        error_detail: Callable[[httpx.Response], tuple[str | None, str]] | None = None,
    ) -> CallResult[httpx.Response]:
        """One HTTP call through the layer; `expected` statuses (e.g. 404) are answers.

        `max_response_bytes` and `deadline` (seconds, over every attempt and wait) override
        the service's; `client` replaces the shared one (e.g. a guarded, pinned client).
        `error_detail` reads (code, message) from an error answer's body into the raised
        error's `code` and `detail`, so a caller learns what the service said while the
        call is still recorded as the failure it is.
        """
        policy = self.policy(service)
        if policy.base_url and not url.startswith(("http://", "https://")):
            url = policy.base_url.rstrip("/") + "/" + url.lstrip("/")
        try:
            op = operation or f"{method.upper()} {httpx.URL(url).path}"
            if json is not None and content is None:
                import json as _json

                content = _json.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"invalid request: {type(exc).__name__}",
                service=service,
                operation=operation or method.upper(),
            ) from exc
        ok = frozenset(expected)
        seconds = timeout or policy.timeout_seconds
        cap, total = call_limits(policy, seconds)
        cap, total = max_response_bytes or cap, deadline or total
        http = client or self.http

        def attempt(n: int, ends: float) -> tuple[httpx.Response, int, int | None]:
            kw: dict[str, Any] = {"service": service, "operation": op, "attempts": n}
            budget = min(seconds, ends - self.clock())
            if budget <= 0:
                raise DeadlineExceeded(f"deadline of {total}s passed", **kw)
            try:
                response = http.send(
                    http.build_request(
                        method, url, content=content, headers=headers, params=params, timeout=budget
                    ),
                    auth=auth or httpx.USE_CLIENT_DEFAULT,
                    stream=True,
                )
                status = response.status_code
                try:
                    size = self._read(response, cap, ends, {**kw, "status": status})
                except ResponseTooLarge:
                    response.close()
                    if status < 300 or status in ok:
                        raise
                    raise classify_http(service, op, response, n) from None
                except BaseException:
                    response.close()
                    raise
            except httpx.TimeoutException as exc:
                if budget < seconds:
                    raise DeadlineExceeded(f"deadline of {total}s passed", **kw) from exc
                raise ServiceTimeout(f"timed out after {seconds}s", **kw) from exc
            except httpx.RequestError as exc:
                tls = tls_failure(exc)
                if tls is not None:  # a version or certificate refusal: retrying cannot help
                    reason = tls.reason or type(tls).__name__
                    raise TlsRefused(f"TLS refused: {reason}", **kw) from exc
                raise ServiceUnavailable(f"transport failure: {type(exc).__name__}", **kw) from exc
            if status < 300 or status in ok:
                return response, size, status
            error = classify_http(service, op, response, n)
            if error_detail is not None:
                try:
                    code, detail = error_detail(response)
                except Exception:  # an unreadable body: the status says enough
                    code, detail = None, ""
                error.code = code or error.code
                error.detail = detail[:300]
            raise error

        return self._execute(
            service,
            op,
            attempt,
            payload=content,
            fallback=fallback,
            retries=retries,
            deadline=total,
        )

    def _read(self, response: httpx.Response, cap: int, ends: float, kw: dict[str, Any]) -> int:
        """Read the body, at most `cap` bytes and no later than `ends`; its decoded size."""
        declared = response.headers.get("Content-Length", "")
        if response.request.method == "HEAD" or response.status_code in (204, 304):
            declared = ""  # a length without a body
        if (
            declared.isascii()
            and declared.isdigit()
            and (len(declared) > 18 or int(declared) > cap)
        ):
            raise ResponseTooLarge(f"response body of {declared} bytes is over {cap}", **kw)
        response.stream = _Bounded(response.stream, cap, ends, self.clock, kw)  # type: ignore[arg-type]
        body = response.read()
        if len(body) > cap:  # decompressed past the cap
            raise ResponseTooLarge(f"decoded response body over {cap} bytes", **kw)
        return len(body)

    async def arequest(
        self, service: str, method: str, url: str, **kwargs: Any
    ) -> CallResult[httpx.Response]:
        """`request` off the event loop (the pooled client is thread-safe)."""
        return await anyio.to_thread.run_sync(
            functools.partial(self.request, service, method, url, **kwargs)
        )

    # -- SDK calls (boto3 and friends) -------------------------------------------------
    def call(
        self,
        service: str,
        operation: str,
        fn: Callable[..., T],
        *args: Any,
        payload: bytes | str | None = None,
        fallback: Fallback | None = None,
        retries: int | None = None,
        **kwargs: Any,
    ) -> CallResult[T]:
        """Run `fn(*args, **kwargs)` as one call to `service`; boto3 errors become typed errors."""
        return self._sdk_call(
            service, operation, fn, args, kwargs, payload, fallback, retries, frozenset()
        )

    def call_or_none(
        self,
        service: str,
        operation: str,
        fn: Callable[..., T],
        *args: Any,
        missing: Iterable[str] = ("404", "NoSuchKey", "NotFound"),
        payload: bytes | str | None = None,
        retries: int | None = None,
        **kwargs: Any,
    ) -> CallResult[T | None]:
        """`call`, where an error whose code or HTTP status is in `missing` is an answer:
        value None, recorded as a successful call (a read of a key that does not exist yet
        is the service working, and must not count toward its error rate)."""
        return self._sdk_call(
            service, operation, fn, args, kwargs, payload, None, retries, frozenset(missing)
        )

    def _sdk_call(
        self,
        service: str,
        operation: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        payload: bytes | str | None,
        fallback: Fallback | None,
        retries: int | None,
        missing: frozenset[str],
    ) -> CallResult[Any]:
        from nura.core.aws import classify_boto_error

        def attempt(n: int, ends: float) -> tuple[Any, int, int | None]:
            try:
                value = fn(*args, **kwargs)
            except IntegrationError:
                raise
            except Exception as exc:
                translated = classify_boto_error(service, operation, exc, n)
                if translated is None:
                    raise
                if missing and (translated.code in missing or str(translated.status) in missing):
                    return None, 0, translated.status
                raise translated from exc
            return value, 0, None

        return self._execute(
            service, operation, attempt, payload=payload, fallback=fallback, retries=retries
        )

    async def acall(
        self, service: str, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> CallResult[T]:
        return await anyio.to_thread.run_sync(
            functools.partial(self.call, service, operation, fn, *args, **kwargs)
        )


def _size(payload: bytes | str | None) -> int:
    if payload is None:
        return 0
    return len(payload.encode() if isinstance(payload, str) else payload)
