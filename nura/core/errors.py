"""The call layer's exception tree. Every error carries service, status and attempt count.

IntegrationError
├── UnknownService        call to a service that is not in the configuration
├── RateLimited           the service (429) or our own limiter said no
├── CircuitOpen           the breaker is open; the network was not touched
├── ServiceTimeout        connect/read timeout (not the builtin TimeoutError: seed defect 11)
│   └── DeadlineExceeded  the call's total deadline (attempts, backoff, slow bodies) ran out
├── ClientError           4xx (and 3xx): the request itself is wrong; never retried
├── ServerError           5xx after the retries were spent
├── ResponseTooLarge      the answer is bigger than the service's `max_response_bytes`
└── ServiceUnavailable    connection refused/reset, DNS, TLS, or any transport failure
    └── UnexpectedError   anything else raised inside a call (a bug, an unclassified
                          library error): logged with its traceback, never retried

└── InvalidInput          an argument or payload is invalid; nothing was sent (also a
                          ValueError, as pydantic and argument checks expect)

Each system's room adds its branch: `ConfluenceError` (nura.confluence.client),
`GitPushError` (nura.git.ingest), `WebhookError` with `SSRFRefused`, `UnknownTarget`,
`EventNotAccepted`, `SnsVerificationError` (nura.webhooks.errors), `BedrockError`
(nura.bedrock.models). A caller catches `IntegrationError` and no more.

Errors that are not about an integration derive from `NuraError`, the root of everything
this package raises on purpose:

NuraError
├── IntegrationError      (above)
├── ConfigError           integrations.yaml is missing or invalid (nura.config.loader)
├── ProjectNotFound       no project directory (its `prefect.yaml`) where nura looked
├── StoreUnavailable      a store could not commit (nura.core.stores.inbox)
└── StackError, BootstrapError   `nura up` / `nura bootstrap` could not do their job
"""

from __future__ import annotations

from nura.errors import NuraError, ProjectNotFound


class IntegrationError(NuraError):
    """Base of every error raised by an integration (the call layer and each system).

    A system's own errors set `default_service`, so they can be raised with a message only.
    """

    retryable = False
    default_service = ""
    # What the service said, when the caller gave the layer a reader for its error bodies
    # (`CallLayer.request(error_detail=...)`): at most 300 characters, never a secret.
    detail = ""

    def __init__(
        self,
        message: str,
        *,
        service: str | None = None,
        status: int | None = None,
        attempts: int = 0,
        operation: str = "",
        code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.service = self.default_service if service is None else service
        self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.status = status
        self.attempts = attempts
        self.operation = operation
        super().__init__(message)

    def __str__(self) -> str:
        bits = [f"service={self.service}"]
        if self.operation:
            bits.append(f"operation={self.operation}")
        if self.status is not None:
            bits.append(f"status={self.status}")
        if self.code:
            bits.append(f"code={self.code}")
        bits.append(f"attempts={self.attempts}")
        return f"{self.args[0]} ({', '.join(bits)})"

    def __reduce__(self):  # keep errors picklable across Prefect's process boundaries
        return (
            _rebuild,
            (
                type(self),
                self.args[0],
                self.service,
                self.status,
                self.attempts,
                self.operation,
                self.code,
                self.retryable,
            ),
            self.__dict__,  # a subclass's own attributes (page_id, url, reason...)
        )


def _rebuild(cls, message, service, status, attempts, operation, code, retryable):  # type: ignore[no-untyped-def]
    err = cls.__new__(cls)
    IntegrationError.__init__(
        err,
        message,
        service=service,
        status=status,
        attempts=attempts,
        operation=operation,
        code=code,
        retryable=retryable,
    )
    if isinstance(err, RateLimited):
        err.retry_after = None
    return err


class UnknownService(IntegrationError):
    pass


class RateLimited(IntegrationError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(message, **kw)
        self.retry_after = retry_after


class CircuitOpen(IntegrationError):
    pass


class ServiceTimeout(IntegrationError):
    retryable = True


class DeadlineExceeded(ServiceTimeout):
    """The call's total deadline passed (a slow or dripping answer, or retries and waits).

    Retryable for the caller (a later run may succeed); the layer itself stops here.
    """


class ResponseTooLarge(IntegrationError):
    """The answer exceeded the service's response size cap; reading stopped there."""


class ClientError(IntegrationError):
    pass


class ServerError(IntegrationError):
    retryable = True


class ServiceUnavailable(IntegrationError):
    retryable = True
    retry_after: float | None = None  # a 503's Retry-After, when the service sent one


class UnexpectedError(ServiceUnavailable):
    """An exception the layer could not classify; the original is its `__cause__`."""

    retryable = False


class TlsRefused(IntegrationError):
    """No TLS connection could be agreed with the service (its version is below
    `platform.tls_min_version`, or its certificate does not verify). Not retried: the same
    server answers the same way, and the minimum is never lowered to get through."""


class InvalidInput(IntegrationError, ValueError):
    """The caller's argument or payload is invalid: nothing was sent, retrying cannot help."""


__all__ = [
    "CircuitOpen",
    "ClientError",
    "DeadlineExceeded",
    "IntegrationError",
    "InvalidInput",
    "NuraError",
    "ProjectNotFound",
    "RateLimited",
    "ResponseTooLarge",
    "ServerError",
    "ServiceTimeout",
    "ServiceUnavailable",
    "TlsRefused",
    "UnexpectedError",
    "UnknownService",
]
