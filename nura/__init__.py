"""Nura's core: the resilient call layer and the shared stores.

from nura import get_call_layer
result = get_call_layer().request("confluence", "GET", "/wiki/api/v2/pages", auth=auth)
result.value.json(), result.fallback_used
"""

from nura.core.breaker import BreakerState, CircuitBreakers
from nura.core.errors import (
    CircuitOpen,
    ClientError,
    IntegrationError,
    RateLimited,
    ServerError,
    ServiceTimeout,
    ServiceUnavailable,
    UnknownService,
)
from nura.core.layer import CallLayer, CallResult
from nura.core.runtime import get_call_layer, get_config, reset_runtime, store_url

__all__ = [
    "BreakerState",
    "CallLayer",
    "CallResult",
    "CircuitBreakers",
    "CircuitOpen",
    "ClientError",
    "IntegrationError",
    "RateLimited",
    "ServerError",
    "ServiceTimeout",
    "ServiceUnavailable",
    "UnknownService",
    "get_call_layer",
    "get_config",
    "reset_runtime",
    "store_url",
]
