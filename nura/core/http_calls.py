"""Generic HTTP calls to any configured service (partners, internal APIs) as Prefect tasks."""

from __future__ import annotations

from typing import Any

from nura import get_call_layer
from nura.core.errors import IntegrationError


def http_call(
    service: str, method: str = "GET", path: str = "/", *, json: Any = None
) -> dict[str, Any]:
    """One call through the resilient call layer; returns a summary, never the secrets.

    Retries are the layer's (backoff, Retry-After, breaker), not Prefect's task retries:
    a task retry would re-run the whole layer and multiply attempts.
    """
    try:
        res = get_call_layer().request(service, method, path, json=json)
    except IntegrationError as exc:
        return {
            "service": service,
            "path": path,
            "outcome": type(exc).__name__,
            "status": exc.status,
            "attempts": exc.attempts,
            "fallback": False,
            "latency_ms": None,
        }
    value = res.value
    status = value.status_code if hasattr(value, "status_code") else None
    return {
        "service": service,
        "path": path,
        "outcome": "fallback" if res.fallback_used else "ok",
        "status": status,
        "attempts": res.attempts,
        "fallback": res.fallback_used,
        "latency_ms": round(res.latency_ms, 2),
    }
