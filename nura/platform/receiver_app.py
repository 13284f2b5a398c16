"""The webhook receiver as a process serves it: the receiver app (`nura.webhooks.receiver`)
handed its dispatcher, the SES feedback endpoint and any extra metrics.

    nura webhooks serve            # the CLI adds the platform's /metrics families
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.routing import Route

from nura.config import IntegrationsConfig
from nura.core.http import TLS_VERSIONS
from nura.webhooks import receiver, sns
from nura.webhooks.blocks import WebhookSecret
from nura.webhooks.dispatcher import Dispatcher


def create_app(
    cfg: IntegrationsConfig | None = None,
    *,
    engine: Engine | None = None,
    secrets: Mapping[str, WebhookSecret] | None = None,
    clock: Callable[[], float] = time.time,
    run_dispatcher: bool | None = None,
    listen_host: str | None = None,
    api_url: str | None = None,
    freeze_heap: bool = False,
    extra_metrics: Callable[[Engine], str] | None = None,
) -> Starlette:
    """The receiver with its dispatcher in the same event loop when `run_dispatcher` (default:
    `webhooks.dispatcher.run_in_receiver`), and `POST /webhooks/ses-events` for SES feedback."""
    from nura.core.runtime import get_config, store_url
    from nura.core.stores.db import get_engine

    cfg = cfg or get_config()
    engine = engine or get_engine(store_url(cfg))
    run = cfg.webhooks.dispatcher.run_in_receiver if run_dispatcher is None else run_dispatcher
    served_cfg, served_engine = cfg, engine

    def dispatcher() -> Any:
        return Dispatcher(served_engine, served_cfg, api_url=api_url)

    from nura.admin.api import admin_routes
    from nura.admin.gate import EndpointFlags, EndpointGate

    flags = EndpointFlags(cfg, engine)  # operator endpoint flags; admin API if enabled
    app = receiver.create_app(
        cfg,
        engine=engine,
        secrets=secrets,
        clock=clock,
        dispatcher_factory=dispatcher if run else None,
        extra_metrics=extra_metrics,
        extra_routes=[
            Route("/webhooks/ses-events", sns.sns_endpoint, methods=["POST"]),
            *admin_routes(cfg, engine, flags),
        ],
        listen_host=listen_host,
        freeze_heap=freeze_heap,
    )
    app.add_middleware(EndpointGate, flags=flags, observe=app.state.receiver.metrics.observe)
    return app


def server_config(
    app: Starlette, cfg: IntegrationsConfig, host: str, port: int, log_level: str = "warning"
) -> Any:
    """The uvicorn settings the receiver is served with (tests serve it with these too).

    Limits that belong to the server: `limit_concurrency` (open connections plus requests
    in progress; beyond it uvicorn answers 503) and, when uvicorn runs h11, the size of an
    incomplete request head. httptools has no header limit: the app enforces
    `max_header_count`/`max_header_bytes` (431) itself, and the body's size, pace (408)
    and the bytes buffered across requests (503).

    HTTPS when `tls_certfile`/`tls_keyfile` are set, refusing clients below
    `platform.tls_min_version` (uvicorn's own context, its minimum raised).
    """
    import uvicorn

    limits = cfg.webhooks.receiver
    tls: dict[str, Any] = {}
    if limits.tls_certfile and limits.tls_keyfile:
        minimum = TLS_VERSIONS[cfg.platform.tls_min_version]

        def tls_context(_config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            ctx = default()
            ctx.minimum_version = minimum
            return ctx

        tls = {
            "ssl_certfile": limits.tls_certfile,
            "ssl_keyfile": limits.tls_keyfile,
            "ssl_context_factory": tls_context,
        }
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        access_log=False,
        server_header=False,
        # Nothing here reads the client address; X-Forwarded-* parsing is per-request work.
        proxy_headers=False,
        timeout_keep_alive=30,
        limit_concurrency=limits.max_concurrency,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        **tls,
    )


def serve(
    host: str | None = None,
    port: int | None = None,
    log_level: str = "warning",
    *,
    extra_metrics: Callable[[Engine], str] | None = None,
) -> None:
    """Run the receiver with uvicorn (uvloop/httptools when installed)."""
    import uvicorn

    from nura.core.runtime import get_config

    cfg = get_config()
    host = host or cfg.webhooks.receiver.host
    port = port or cfg.webhooks.receiver.port
    app = create_app(cfg, listen_host=host, freeze_heap=True, extra_metrics=extra_metrics)
    uvicorn.Server(server_config(app, cfg, host, port, log_level)).run()
