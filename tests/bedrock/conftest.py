"""Fixtures: the Bedrock stand-in (real HTTP) and a configuration pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deployments.sandbox.bedrock_server import BedrockStandIn

# The shipped chain: live models (two Claude inference profiles, one on-demand Nova).
SONNET = "global.anthropic.claude-sonnet-4-6"
HAIKU = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA = "amazon.nova-pro-v1:0"
TITAN = NOVA  # the third model of the chain (Titan Text is past end of life)


@pytest.fixture(scope="session")
def standin_server() -> Iterator[BedrockStandIn]:
    server = BedrockStandIn().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def standin(standin_server: BedrockStandIn) -> BedrockStandIn:
    standin_server.reset()
    return standin_server


def bedrock_section(endpoint: str, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "endpoint_url": endpoint,
        "rate_limit_per_minute": 60000,
        "timeout_seconds": 5,
        "circuit_breaker_threshold": 5,
        "retry_attempts": 1,
        "limit_wait_seconds": 2.0,
        "model_limits": {
            SONNET: {"requests_per_minute": 60000, "tokens_per_minute": 10_000_000},
            HAIKU: {"requests_per_minute": 60000, "tokens_per_minute": 10_000_000},
            TITAN: {
                "requests_per_minute": 60000,
                "tokens_per_minute": 10_000_000,
                "max_input_tokens": 8192,
                "max_output_tokens": 8192,
            },
        },
    }
    section.update(overrides)
    return section


@pytest.fixture
def bedrock_config(nura_config, standin: BedrockStandIn):  # type: ignore[no-untyped-def]
    """Factory: a config whose Bedrock points at the stand-in (overrides merge in)."""
    from nura.bedrock.invoke import reset_invokers
    from nura.bedrock.limits import reset_token_leaser

    def make(store: str | None = None, **overrides: Any):  # type: ignore[no-untyped-def]
        reset_invokers()
        reset_token_leaser()
        return nura_config(
            {
                "api_gateway": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
                "external_services": {
                    "aws": {"bedrock": bedrock_section(standin.url, **overrides)}
                },
            },
            store=store,
        )

    yield make
    reset_invokers()
    reset_token_leaser()


@pytest.fixture(scope="session")
def prefect_server(prefect_server):  # type: ignore[no-untyped-def]
    """The shared server, also in Prefect's settings context (and the global one).

    Prefect snapshots its settings when a settings context is entered, so PREFECT_API_URL
    set by the root fixture is not seen by clients made later; the token leaser's refill
    threads read the process-global context, hence both (as in tests/outgoing).
    """
    from tests.support.prefect_settings import prefect_settings

    # Tests call the invoker outside flows too; its nested `notify` task logs then.
    with prefect_settings(prefect_server.api_url, quiet_task_logs=True):
        yield prefect_server
