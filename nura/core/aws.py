"""boto3 through the call layer: clients with botocore's own retries off, errors typed.

botocore retries on its own by default; two retry loops would multiply attempts and hide
Retry-After from the breaker, so clients made here have `max_attempts=1` and the call
layer decides. Clients are cached per (credentials, service, endpoint, region, timeout):
boto3 clients are thread-safe and pool their connections.
"""

from __future__ import annotations

import threading
from typing import Any

from nura.core.errors import (
    ClientError,
    IntegrationError,
    RateLimited,
    ServerError,
    ServiceTimeout,
    ServiceUnavailable,
)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
    }
)
SERVER_CODES = frozenset(
    {
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "ServiceException",
    }
)

_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def classify_boto_error(
    service: str, operation: str, exc: BaseException, attempts: int
) -> IntegrationError | None:
    """Typed error for a botocore exception; None for anything that is not botocore's."""
    from botocore import exceptions as bex

    kw: dict[str, Any] = {"service": service, "operation": operation, "attempts": attempts}
    if isinstance(exc, bex.ConnectTimeoutError | bex.ReadTimeoutError):
        return ServiceTimeout(f"timed out: {type(exc).__name__}", **kw)
    if isinstance(
        exc, bex.EndpointConnectionError | bex.ConnectionClosedError | bex.HTTPClientError
    ):
        return ServiceUnavailable(f"transport failure: {type(exc).__name__}", **kw)
    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(err.get("Message", ""))[:300] or code
        if code in THROTTLING_CODES or status == 429:
            return RateLimited(message, code=code, status=status, **kw)
        if status == 408 or code in ("ModelTimeoutException", "RequestTimeout"):
            # the service timed out on its side (Bedrock's ModelTimeoutException is a 408):
            # a timeout, retryable and counted by the breaker, not a refusal
            return ServiceTimeout(message, code=code, status=status, **kw)
        if code in SERVER_CODES or (status is not None and status >= 500):
            if status == 503 or "Unavailable" in code:
                return ServiceUnavailable(message, code=code, status=status, **kw)
            return ServerError(message, code=code, status=status, **kw)
        return ClientError(message, code=code, status=status, **kw)
    if isinstance(exc, bex.BotoCoreError):
        return ServiceUnavailable(f"{type(exc).__name__}", **kw)
    return None


def boto_client(
    service_name: str,
    *,
    credentials: Any = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    timeout: float = 30.0,
) -> Any:
    """A cached boto3 client with retries off, from a prefect-aws `AwsCredentials` block.

    `credentials` None means the default chain (env vars, instance profile); prefect-aws
    builds the session so block rotation is picked up when the block is loaded anew.
    """
    from botocore.config import Config

    # Keyed on the block's contents, not the object: aws_client() loads the block anew on
    # every call, and keyed on id() each load built a new client and grew the cache. A
    # block that assumes a role is not cached: its session holds the role's temporary
    # credentials, which expire (prefect-aws does not refresh them).
    cacheable = not getattr(credentials, "assume_role_arn", None)
    key = (service_name, _fingerprint(credentials), region, endpoint_url, timeout)
    with _lock:
        client = _clients.get(key) if cacheable else None
        if client is not None:
            return client
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=min(timeout, 10.0),
            read_timeout=timeout,
            max_pool_connections=50,
        )
        if credentials is not None:
            session = credentials.get_boto3_session()
        else:
            import boto3

            session = boto3.session.Session()
        client = session.client(
            service_name,
            region_name=region or (getattr(credentials, "region_name", None)) or "us-east-1",
            endpoint_url=endpoint_url,
            config=config,
        )
        if cacheable:
            _clients[key] = client
        return client


def _fingerprint(credentials: Any) -> str | None:
    """A digest of every setting of the block, secrets included: equal blocks share a
    client, and a rotated key (or any other changed setting) gets a new one."""
    if credentials is None:
        return None
    import hashlib
    import json

    from pydantic import SecretBytes, SecretStr

    def reveal(value: Any) -> Any:
        if isinstance(value, SecretStr | SecretBytes):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [reveal(v) for v in value]
        return value

    settings = reveal(credentials.model_dump(mode="python"))
    raw = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()
