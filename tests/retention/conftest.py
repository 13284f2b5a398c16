"""Fixtures of the erasure tests: a knowledge base in moto S3 filled by the project's own
Confluence sync (test server over HTTP) and Git ingest (GitHub stand-in)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

CONFLUENCE_EMAIL, CONFLUENCE_TOKEN = "bot@example.com", "sandbox-token"
BUCKET = "kb-erase"


@pytest.fixture(scope="session")
def prefect_server(prefect_server):  # type: ignore[no-untyped-def]
    """The session server, also in Prefect's global settings: the call layer's rate-limit
    leases run in threads, which read the process-global context."""
    from tests.support.prefect_settings import prefect_settings

    with prefect_settings(prefect_server.api_url):
        yield prefect_server


@pytest.fixture
def confluence() -> Iterator[Any]:
    from deployments.sandbox.confluence_server import ConfluenceServer

    server = ConfluenceServer(email=CONFLUENCE_EMAIL, api_token=CONFLUENCE_TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_github() -> Iterator[Any]:
    from deployments.sandbox.github_server import FakeGitHub

    server = FakeGitHub().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kb_env(
    confluence: Any,
    fake_github: Any,
    moto_reset: str,
    prefect_server: Any,
    nura_config: Callable[..., Any],
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Any]:
    """Configure Confluence (space TECH), Git (octo/docs, main and dev), moto S3 and the
    store; create the bucket (versioned on request); returns the config."""
    monkeypatch.setenv("CONFLUENCE_EMAIL", CONFLUENCE_EMAIL)
    monkeypatch.setenv("CONFLUENCE_API_TOKEN", CONFLUENCE_TOKEN)

    def make(versioned: bool = False, **extra: Any) -> Any:
        fast = {"rate_limit_per_minute": 60000, "retry_attempts": 1}
        cfg = nura_config(
            {
                "api_gateway": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
                "external_services": {
                    "aws": {
                        "endpoint_url": moto_reset,
                        "s3": {"bucket_name": BUCKET, **fast},
                    },
                    "confluence": {
                        "base_url": confluence.url,
                        "spaces": ["TECH"],
                        "credentials_block": "nura-test-no-such-block",
                        "process_pool_min_pages": 10_000,
                        **fast,
                    },
                    "git": {
                        "base_url": fake_github.url,
                        "repositories": ["octo/docs"],
                        "branches": ["main", "dev"],
                        **fast,
                    },
                },
                **extra,
            },
            store=store_url,
        )
        from nura.core.aws_clients import aws_client
        from nura.kb.s3 import ensure_bucket

        ensure_bucket()
        if versioned:
            aws_client("s3").put_bucket_versioning(
                Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
            )
        return cfg

    return make
