"""Fixtures of the outgoing-webhook and notification tests: the sink and a config factory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deployments.sandbox.webhook_sink import SANDBOX_SECRET, WebhookSink

PARTNER_SECRET = "whsec_" + "cGFydG5lci10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm"  # test key


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    server = WebhookSink(secrets={"partner": PARTNER_SECRET}).start()
    try:
        yield server
    finally:
        server.stop()


def outgoing_config(sink_url: str, **overrides: Any) -> dict[str, Any]:
    """A config with a `sandbox` and a `partner` target on the sink, 127.0.0.1 allowed."""
    outgoing: dict[str, Any] = {
        "retry_attempts": 2,
        "timeout_seconds": 5,
        "allow_list": ["127.0.0.1"],
        "targets": {
            "sandbox": {"url": f"{sink_url}/hooks/sandbox", "secret": SANDBOX_SECRET},
            "partner": {
                "url": f"{sink_url}/hooks/partner",
                "secret": PARTNER_SECRET,
                "x_signature": True,
            },
        },
        "dead_letters": {"redrive_base_minutes": 5, "max_redrives": 5},
    }
    outgoing.update(overrides)
    return {
        "api_gateway": {
            "backoff_base_seconds": 0.01,
            "backoff_max_seconds": 0.05,
            "retry_after_max_seconds": 2,
            "circuit_breaker_cooldown_seconds": 0.5,
        },
        "webhooks": {"outgoing": outgoing},
    }
