"""The webhook receiver: verified webhooks in, durable inbox entries out, flow runs later.

    nura webhooks serve            # host/port from `webhooks.receiver` (default 127.0.0.1:8780)

`POST /webhooks/{endpoint}`, for each request in this order (ARCHITECTURE.md contract):
headers within `max_header_count`/`max_header_bytes` (431, any path) -> endpoint exists
and enabled (404) -> the endpoint's rate-limit bucket not already empty (429 +
Retry-After; before a byte of the body is read) -> declared length within the limit (413)
-> JSON or GitHub's form encoding (415) -> signing secret loaded (503) -> room in the
receiver's `max_buffered_bytes` (503 + Retry-After) -> body read raw within the limit
(413) and within `body_timeout_seconds` (408) -> signature, current or previous secret
(401) -> timestamp within ±5 min where the scheme has one (401) -> JSON parses (400) ->
event type present (400) and accepted by the endpoint (422) -> a rate-limit token (429 +
Retry-After) -> one durable insert: new (202) or a repeated delivery id, or a body already
stored within the replay window where the id is unsigned (200 duplicate); 503 when the
inbox could not commit. Errors are JSON `{"error", "message"}`.

`GET /healthz` (open), `GET /metrics` (Prometheus; bearer token off loopback or behind a
proxy). Connections beyond `max_concurrency` get uvicorn's 503 (`nura.platform.receiver_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nura.config import IntegrationsConfig
from nura.config.sections.webhooks import IncomingEndpoint
from nura.core.security_events import SecurityEventBuffer
from nura.core.stores.inbox import (
    Delivery,
    InboxWriter,
    StoreUnavailable,
    inbox_stats,
    recent_count,
)
from nura.webhooks.blocks import WebhookSecret
from nura.webhooks.receiver_support import (
    RateLimiter,
    ReceiverMetrics,
    SecretProvider,
    retry_after_header,
)
from nura.webhooks.schemes import (
    FORM_TYPE,
    Rejection,
    check_timestamp,
    delivery_id,
    event_type,
    kept_headers,
    parse_payload,
    verify,
)

logger = logging.getLogger("nura.receiver")

JSON_TYPES = ("application/json",)
# Refusals that count as security events (nura.health.security), by their error code.
SECURITY_KINDS = {
    "bad_signature": "signature_failure",
    "missing_timestamp": "signature_failure",
    "missing_delivery_id": "signature_failure",
    "stale_timestamp": "stale_delivery",
    "bad_timestamp": "stale_delivery",
}


def _json(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


# (status, JSON body, extra headers): what the pipeline answers, before it is sent.
Answer = tuple[int, dict[str, Any], Mapping[str, str] | None]


def _rejected(
    status: int, error: str, message: str, headers: Mapping[str, str] | None = None
) -> Answer:
    return status, {"error": error, "message": message}, headers


def _error(
    status: int, error: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return _json(*_rejected(status, error, message, headers))


# Answers after which the connection must not be reused: the rest of the request body
# may still be on its way (uvicorn honours `connection: close` from the app).
_CLOSE_AFTER = frozenset({408, 413, 431})
_CLOSE_ERRORS = frozenset({"over_capacity"})
# Request headers that say the request came through a proxy.
FORWARDED_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


async def _send_answer(send: Send, answer: Answer) -> None:
    status, body, headers = answer
    content = orjson.dumps(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]
    if headers:
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if status in _CLOSE_AFTER or body.get("error") in _CLOSE_ERRORS:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


class WebhookFastPath:
    """ASGI middleware: `POST` to a configured endpoint path goes straight to the receiver.

    The webhooks are the one hot path: Starlette's router, exception middleware, `Request`
    and `Response` cost ~30 % of a request's CPU there, and on two cores CPU is what sets
    throughput and latency under load. Everything else (other methods and paths, unknown
    endpoints, /healthz, /metrics) takes the routed app; the answers are the same.
    """

    def __init__(self, app: ASGIApp, receiver: Receiver, skip: frozenset[str]) -> None:
        self.app = app
        self.receiver = receiver
        self.paths = frozenset(receiver.by_path) - skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # httptools (uvicorn's parser here) has no header limits of its own.
            too_big = self.receiver.header_limits(scope)
            if too_big is not None:
                path = scope["path"].rstrip("/")
                found = self.receiver.by_path.get(path)
                self.receiver.metrics.observe(found[0] if found else "unknown", 431)
                await _send_answer(send, too_big)
                return
            if scope["method"] == "POST" and scope["path"].rstrip("/") in self.paths:
                await _send_answer(send, await self.receiver.handle(scope, receive))
                return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _media_type(raw: str) -> str:
    return raw.split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


class Receiver:
    """Holds the per-process state of the app: config, inbox writer, limits, metrics."""

    def __init__(
        self,
        cfg: IntegrationsConfig,
        engine: Engine,
        *,
        secrets: Mapping[str, WebhookSecret] | None = None,
        clock: Callable[[], float] = time.time,
        dispatcher_factory: Callable[[], Any] | None = None,
        extra_metrics: Callable[[Engine], str] | None = None,
        listen_host: str | None = None,
        freeze_heap: bool = False,
    ) -> None:
        wh = cfg.webhooks
        self.dispatcher_factory = dispatcher_factory
        self.extra_metrics = extra_metrics
        self.freeze_heap = freeze_heap
        self.cfg = cfg
        self.engine = engine
        self.clock = clock
        self.tolerance = wh.receiver.timestamp_tolerance_seconds
        limits = wh.receiver
        self.max_header_count = limits.max_header_count
        self.max_header_bytes = limits.max_header_bytes
        self.max_buffered = limits.max_buffered_bytes
        self.body_timeout = limits.body_timeout_seconds
        self.hmac_thread_bytes = limits.hmac_thread_bytes
        self.buffered = 0  # body bytes held (or reserved) by requests in progress
        self.by_path: dict[str, tuple[str, IncomingEndpoint]] = {
            ep.url_path: (name, ep) for name, ep in wh.incoming.items()
        }
        self.secrets = SecretProvider(wh.receiver.secret_cache_seconds, secrets)
        self.limiter = RateLimiter(clock)
        self.metrics = ReceiverMetrics()
        self.security = SecurityEventBuffer(engine, clock=clock)  # refusals only, no I/O
        self.writer = InboxWriter(
            engine,
            batch_max=wh.inbox.batch_max,
            synchronous=wh.inbox.sqlite_synchronous,
            replay_window=wh.receiver.replay_window_seconds,
        )
        self.dispatcher: Any = None
        self._dispatch_task: asyncio.Task[None] | None = None
        host = listen_host if listen_host is not None else wh.receiver.host
        # /metrics needs the token off loopback, and behind a proxy (configured, or seen
        # per request in `authorized`): a proxy on loopback makes it reachable from anywhere.
        self.protected = not is_loopback(host) or bool(wh.receiver.trusted_proxies)
        token = wh.receiver.bearer_token
        self.token = token.get_secret_value() if token else None

    # -- lifecycle -----------------------------------------------------------------------
    def seed_rate_limits(self) -> None:
        since = self.clock() - 60
        for name, ep in self.cfg.webhooks.incoming.items():
            try:
                used = recent_count(self.engine, name, since)
            except SQLAlchemyError as exc:  # serve anyway, but say the limit starts full
                logger.warning(
                    "could not count the last minute's deliveries of %s (%s): its rate "
                    "limit starts with a full bucket",
                    name,
                    type(exc).__name__,
                )
                used = 0
            self.limiter.seed(name, ep.rate_limit_per_minute, used)

    def warn_legacy(self) -> None:
        for name, ep in self.cfg.webhooks.incoming.items():
            if ep.enabled and ep.signature == "legacy-body-only":
                logger.warning(
                    "endpoint %s uses signature: legacy-body-only: its X-Signature covers the "
                    "body only, so delivery id and timestamp are unsigned; replays are caught "
                    "only by the body-digest dedupe (%gs). Move the sender to the signed "
                    "id.timestamp.body form.",
                    name,
                    self.cfg.webhooks.receiver.replay_window_seconds,
                )

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.warn_legacy()
        self.writer.start()
        self.security.start()
        await anyio.to_thread.run_sync(self.seed_rate_limits)
        task = None
        if self.dispatcher_factory is not None:
            self.dispatcher = self.dispatcher_factory()
            task = self._dispatch_task = asyncio.create_task(self.dispatcher.run())
            task.add_done_callback(_report_dispatcher_end)
        if self.freeze_heap:
            # Everything imported so far (Prefect, pydantic, SQLAlchemy: ~175k objects)
            # lives as long as the process. Left in the GC's care, every full collection
            # walks it with the GIL held, and no request is answered meanwhile (the p99 it
            # cost: docs/benchmarks.md). Frozen, a collection only walks what requests
            # allocated.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if task is not None:
                self.dispatcher.stop()
                try:
                    await asyncio.wait_for(asyncio.shield(task), 10)
                except TimeoutError:
                    logger.error("the dispatcher did not stop within 10 s: cancelled")
                    task.cancel()
                except Exception:  # noqa: S110 - already logged by _report_dispatcher_end
                    pass
            await anyio.to_thread.run_sync(self.writer.stop)
            await anyio.to_thread.run_sync(self.security.stop)

    # -- the pipeline --------------------------------------------------------------------
    async def handle(self, scope: Scope, receive: Receive) -> Answer:
        """One `POST /webhooks/...`: the whole contract, as (status, JSON body, headers)."""
        path = str(scope["path"]).rstrip("/")
        found = self.by_path.get(path)
        name = found[0] if found else "unknown"
        answer: Answer
        try:
            answer = await self._pipeline(scope, receive, found)
        except Rejection as rej:
            if rej.error in ("bad_signature", "missing_timestamp", "missing_delivery_id"):
                self.metrics.signature_failures[name] += 1
            if rej.error in SECURITY_KINDS and found is not None:
                self.security.note(
                    SECURITY_KINDS[rej.error], name, error=rej.error, client=_peer(scope)
                )
            answer = _rejected(rej.status, rej.error, rej.message, rej.headers)
        except ClientDisconnect:
            answer = _rejected(400, "client_disconnected", "the request body was cut off")
        except Exception as exc:  # never a 500 or a traceback; nothing was stored
            logger.exception("unexpected receiver error on %s", name)
            answer = _rejected(
                503,
                "unavailable",
                f"could not process the delivery ({type(exc).__name__}); retry later",
                {"Retry-After": "5"},
            )
        self.metrics.observe(name, answer[0])
        return answer

    async def webhook(self, request: Request) -> Response:
        """The routed path (unknown endpoints; the fast path takes the configured ones)."""
        status, body, headers = await self.handle(request.scope, request.receive)
        return _json(status, body, headers)

    def header_limits(self, scope: Scope) -> Answer | None:
        """431 when the request's headers are too many or too large (any path)."""
        headers = scope["headers"]
        if len(headers) > self.max_header_count:
            return _rejected(
                431, "headers_too_large", f"more than {self.max_header_count} request headers"
            )
        size = 0
        for k, v in headers:
            size += len(k) + len(v) + 4
            if size > self.max_header_bytes:
                return _rejected(
                    431, "headers_too_large", f"request headers over {self.max_header_bytes} bytes"
                )
        return None

    def _reserve(self, n: int) -> None:
        if self.buffered + n > self.max_buffered:
            raise Rejection(
                503,
                "over_capacity",
                "the receiver holds too many request bodies at once; retry later",
                {"Retry-After": "5"},
            )
        self.buffered += n

    async def _read_body(
        self, receive: Receive, declared: int | None, limit: int, held: list[int]
    ) -> bytes:
        """The raw body, holding its bytes in `buffered` (`held[0]`: what this request
        reserved, given back by the caller). 408 when it does not arrive in time."""
        if declared is not None:
            self._reserve(declared)
            held[0] += declared
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientDisconnect()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise Rejection(413, "too_large", f"body over {limit} bytes")
                    if size > held[0]:  # chunked, or more than declared: hold the excess
                        self._reserve(size - held[0])
                        held[0] = size
                    if chunk:
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise Rejection(
                408, "body_timeout", f"the body did not arrive within {self.body_timeout:g}s"
            ) from None

    async def _pipeline(
        self, scope: Scope, receive: Receive, found: tuple[str, IncomingEndpoint] | None
    ) -> Answer:
        held = [0]
        try:
            return await self._steps(scope, receive, found, held)
        finally:
            self.buffered -= held[0]

    async def _verify(
        self, scheme: str, signer: Any, headers: dict[str, str], body: bytes, ep: IncomingEndpoint
    ) -> Any:
        def run() -> Any:
            return verify(
                scheme,
                signer,
                headers,
                body,
                require_timestamp=ep.require_timestamp,
                legacy_body_only=ep.signature == "legacy-body-only",
            )

        if len(body) >= self.hmac_thread_bytes:  # hashlib releases the GIL on large buffers
            return await anyio.to_thread.run_sync(run)
        return run()

    async def _steps(
        self,
        scope: Scope,
        receive: Receive,
        found: tuple[str, IncomingEndpoint] | None,
        held: list[int],
    ) -> Answer:
        if found is None or not found[1].enabled:
            raise Rejection(404, "unknown_endpoint", "no enabled webhook endpoint at this path")
        name, ep = found
        # Over the limit already: answered before the body is read or verified.
        wait = self.limiter.peek(name, ep.rate_limit_per_minute)
        if wait is not None:
            raise self._rate_limited(ep, wait)
        # ASGI header names are lower-case bytes; one plain dict is cheaper than Starlette's
        # Headers for the dozen lookups below (a repeated header: the last one counts).
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        declared = self._declared_length(headers, ep.max_body_bytes)
        media = _media_type(headers.get("content-type", ""))
        if not (_is_json(media) or media == FORM_TYPE):
            raise Rejection(
                415, "unsupported_media_type", "send application/json or GitHub's form encoding"
            )
        secret = await self.secrets.get(name, ep)
        if secret is None:
            raise Rejection(
                503, "secret_unavailable", "signing secret not loaded", {"Retry-After": "5"}
            )
        body = await self._read_body(receive, declared, ep.max_body_bytes, held)
        scheme = ep.scheme or secret.scheme
        signer = secret.get_client(datetime.fromtimestamp(self.clock(), UTC))
        env = await self._verify(scheme, signer, headers, body, ep)
        check_timestamp(env, self.clock(), self.tolerance)
        payload = parse_payload(body, media)
        etype = event_type(scheme, env, payload, ep.event_map)
        if etype not in ep.event_types:
            raise Rejection(422, "event_not_accepted", f"{name} does not accept {etype!r}")
        wait = self.limiter.acquire(name, ep.rate_limit_per_minute)
        if wait is not None:
            raise self._rate_limited(ep, wait)
        delivery = Delivery(
            endpoint=name,
            delivery_id=delivery_id(env, body),
            event_type=etype,
            body=body,
            content_type=media,
            headers=kept_headers(headers),
            received_at=self.clock(),
            body_digest=None if env.id_signed else hashlib.sha256(body).hexdigest(),
        )
        try:
            inserted = await self.writer.write(delivery)
        except StoreUnavailable:
            raise Rejection(
                503, "store_unavailable", "the inbox could not store it", {"Retry-After": "5"}
            ) from None
        if not inserted:
            self.security.note("replayed_delivery", name, client=_peer(scope))
            return 200, {"status": "duplicate", "delivery_id": delivery.delivery_id}, None
        if self.dispatcher is not None:
            self.dispatcher.poke()
        return 202, {"status": "accepted", "delivery_id": delivery.delivery_id}, None

    @staticmethod
    def _declared_length(headers: Mapping[str, str], limit: int) -> int | None:
        declared = headers.get("content-length")
        if declared is None:
            return None
        try:
            n = int(declared)
        except ValueError:
            raise Rejection(400, "bad_length", "Content-Length is not a number") from None
        if n < 0:
            raise Rejection(400, "bad_length", "Content-Length is negative")
        if n > limit:
            raise Rejection(413, "too_large", f"body over {limit} bytes")
        return n

    @staticmethod
    def _rate_limited(ep: IncomingEndpoint, wait: float) -> Rejection:
        return Rejection(
            429,
            "rate_limited",
            f"over {ep.rate_limit_per_minute} deliveries per minute",
            {"Retry-After": retry_after_header(wait)},
        )

    # -- other routes --------------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        proxied = any(h in request.headers for h in FORWARDED_HEADERS)
        if not (self.protected or proxied):
            return True
        if not self.token:
            return False
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())

    async def healthz(self, _request: Request) -> Response:
        alive = self.writer.alive
        body: dict[str, Any] = {"inbox_writer": alive}
        task = self._dispatch_task
        if task is not None:
            body["dispatcher"] = not task.done()
            alive = alive and not task.done()
        return JSONResponse({"status": "ok" if alive else "degraded", **body})

    async def metrics_route(self, request: Request) -> Response:
        if not self.authorized(request):
            return _error(
                401, "unauthorized", "bearer token required", {"WWW-Authenticate": "Bearer"}
            )
        try:
            stats = await anyio.to_thread.run_sync(inbox_stats, self.engine)
            depth, oldest = stats["depth"], stats["oldest_age_s"]
        except Exception:  # the store is down: say so with NaN, do not fail the scrape
            depth, oldest = None, None
        d = self.dispatcher
        text = self.metrics.render(
            depth,
            oldest,
            d.last_lag if d else None,
            d.dispatched if d else 0,
            d.errors if d else 0,
        )
        if self.extra_metrics is not None:
            try:
                text += await anyio.to_thread.run_sync(self.extra_metrics, self.engine)
            except StoreUnavailable as exc:  # the platform's families need the store: 503
                return PlainTextResponse(f"{exc}\n", status_code=503)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def _report_dispatcher_end(task: asyncio.Task[None]) -> None:
    """A dispatcher that ends on its own has crashed: say so when it happens, not at exit
    (the receiver keeps storing deliveries; /healthz reports it degraded)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("the dispatcher crashed: %s", exc, exc_info=exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    error = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    detail = exc.detail if isinstance(exc, HTTPException) else "not found"
    return _error(status, error, str(detail))


def create_app(
    cfg: IntegrationsConfig | None = None,
    *,
    engine: Engine | None = None,
    secrets: Mapping[str, WebhookSecret] | None = None,
    clock: Callable[[], float] = time.time,
    dispatcher_factory: Callable[[], Any] | None = None,
    extra_metrics: Callable[[Engine], str] | None = None,
    extra_routes: Sequence[Route] = (),
    listen_host: str | None = None,
    freeze_heap: bool = False,
) -> Starlette:
    """The receiver's ASGI app. Tests inject `secrets` (endpoint name -> block) and a `clock`.

    Whoever serves it hands it the rest (`nura.platform.receiver_app`): a `dispatcher_factory` whose
    dispatcher runs in the app's event loop, `extra_metrics` appended to `/metrics`, and
    `extra_routes` (the SES feedback endpoint). `freeze_heap` (set by the app's own
    process) moves the startup heap out of the garbage collector's reach once started.
    """
    from nura.core.runtime import get_config, store_url
    from nura.core.stores.db import get_engine

    cfg = cfg or get_config()
    engine = engine or get_engine(store_url(cfg))
    receiver = Receiver(
        cfg,
        engine,
        secrets=secrets,
        clock=clock,
        dispatcher_factory=dispatcher_factory,
        extra_metrics=extra_metrics,
        listen_host=listen_host,
        freeze_heap=freeze_heap,
    )
    routes = [
        Route("/healthz", receiver.healthz, methods=["GET"]),
        Route("/metrics", receiver.metrics_route, methods=["GET"]),
        *extra_routes,
        Route("/webhooks/{rest:path}", receiver.webhook, methods=["POST"]),
    ]
    routed = frozenset(r.path for r in routes if "{" not in r.path)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(WebhookFastPath, receiver=receiver, skip=routed)],
        lifespan=receiver.lifespan,
        exception_handlers={HTTPException: _http_error, 404: _http_error},
    )
    app.state.receiver = receiver
    return app
