"""Fixtures: the Bedrock stand-in with embeddings (real HTTP) and a configuration that
embeds through it into an index under the test's directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"


@pytest.fixture(scope="session")
def embed_server() -> Iterator[BedrockStandIn]:
    server = BedrockStandIn().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def embed_standin(embed_server: BedrockStandIn) -> BedrockStandIn:
    embed_server.reset()
    return embed_server


@pytest.fixture(scope="session")
def prefect_server(prefect_server):  # type: ignore[no-untyped-def]
    """The shared Prefect server (rate limits are its global concurrency limits), also in
    the process-global settings context that the token leaser's threads read."""
    from tests.support.prefect_settings import prefect_settings

    with prefect_settings(prefect_server.api_url, quiet_task_logs=True):
        yield prefect_server


def kb_config_data(
    endpoint: str,
    index_dir: Path,
    bedrock: dict[str, Any] | None = None,
    aws: dict[str, Any] | None = None,
    **kb: Any,
) -> dict[str, Any]:
    """A configuration dict: Bedrock at the stand-in, the index in `index_dir`; `aws`:
    more of `external_services.aws` (e.g. moto's endpoint and a bucket)."""
    section: dict[str, Any] = {
        "endpoint_url": endpoint,
        "rate_limit_per_minute": 60000,
        "timeout_seconds": 5,
        "circuit_breaker_threshold": 5,
        "retry_attempts": 2,
        "lifecycle_check": False,
    }
    section.update(bedrock or {})
    return {
        "api_gateway": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
        "external_services": {"aws": {**(aws or {}), "bedrock": section}},
        "kb": {"enabled": True, "index_uri": str(index_dir), "dimensions": 256, **kb},
    }


@pytest.fixture
def kb_config(nura_config, embed_standin: BedrockStandIn, tmp_path: Path, prefect_server):  # type: ignore[no-untyped-def]
    """Factory: kb_config(store=None, bedrock={...}, aws={...}, **kb) -> IntegrationsConfig."""
    from nura.bedrock.invoke import reset_invokers
    from nura.kb.index import reset_indexes

    def make(  # type: ignore[no-untyped-def]
        store: str | None = None,
        bedrock: dict[str, Any] | None = None,
        aws: dict[str, Any] | None = None,
        **kb: Any,
    ):
        reset_invokers()
        reset_indexes()
        data = kb_config_data(embed_standin.url, tmp_path / "kb-index", bedrock, aws, **kb)
        return nura_config(data, store=store)

    yield make
    reset_invokers()
    reset_indexes()
