"""Fixtures: the Confluence test server over real HTTP, a call layer for client tests, and a
configured environment (moto S3, Prefect server) for flow runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.sandbox.confluence_server import ConfluenceServer

EMAIL, TOKEN = "bot@example.com", "sandbox-token"


@pytest.fixture
def confluence() -> Iterator[ConfluenceServer]:
    server = ConfluenceServer(email=EMAIL, api_token=TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


class Sleeps(list[float]):
    """An injected `sleep`: records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(tmp_path: Path, sleeps: Sleeps):
    """Factory: a ConfluenceClient on its own call layer (no Prefect: NoLimiter)."""
    from nura.config import IntegrationsConfig
    from nura.confluence.client import ConfluenceClient
    from nura.core.breaker import CircuitBreakers
    from nura.core.layer import CallLayer
    from nura.core.ratelimit import NoLimiter
    from nura.core.stores.db import get_engine

    def make(
        server: ConfluenceServer,
        auth: httpx.Auth | None = None,
        gateway: dict[str, Any] | None = None,
        base_url: str | None = None,
    ) -> ConfluenceClient:
        cfg = IntegrationsConfig.model_validate(
            {
                "api_gateway": {"backoff_base_seconds": 0.01, **(gateway or {})},
                "external_services": {"confluence": {"base_url": server.url}},
            }
        )
        layer = CallLayer(
            cfg.policies(),
            breakers=CircuitBreakers(get_engine(f"sqlite:///{tmp_path / 'breakers.db'}")),
            limiter=NoLimiter(),
            sleep=sleeps,
        )
        # `base_url`: e.g. `server.gateway_url`, where OAuth 2.0 tokens are accepted
        auth = auth or httpx.BasicAuth(EMAIL, TOKEN)
        return ConfluenceClient(base_url or server.url, auth, layer=layer)

    return make


@pytest.fixture
def sync_env(
    confluence: ConfluenceServer,
    moto_reset: str,
    prefect_server: Any,
    nura_config: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    """Config for flow runs: the test server, moto S3, fast retries, our own rates."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("CONFLUENCE_EMAIL", EMAIL)
    monkeypatch.setenv("CONFLUENCE_API_TOKEN", TOKEN)

    def make(**confluence_settings: Any):
        settings = {
            "base_url": confluence.url,
            "rate_limit_per_minute": 60000,
            "spaces": ["TECH", "DOCS"],
            "credentials_block": "nura-test-no-such-block",
            "retry_attempts": 2,
            "checkpoint_pages": 10,
            "process_pool_min_pages": 10_000,
            **confluence_settings,
        }
        cfg = nura_config(
            {
                "api_gateway": {
                    "backoff_base_seconds": 0.01,
                    "backoff_max_seconds": 0.05,
                    "retry_after_max_seconds": 0.05,
                },
                "external_services": {
                    "aws": {
                        "endpoint_url": moto_reset,
                        "s3": {"bucket_name": "nura-kb-test", "rate_limit_per_minute": 60000},
                    },
                    "confluence": settings,
                },
            }
        )
        # The limiter leases from a background thread, which does not see
        # `temporary_settings` (a context variable): build its Prefect client here.
        from nura import get_call_layer

        get_call_layer().limiter.client  # type: ignore[attr-defined]  # noqa: B018
        return cfg

    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        yield make
