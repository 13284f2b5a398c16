"""The webhooks room's errors: one branch of nura's `IntegrationError` tree.

`SSRFRefused` (nura.webhooks.ssrf) is one of them too.
"""

from __future__ import annotations

from nura.core.errors import IntegrationError, InvalidInput


class WebhookError(IntegrationError):
    """Base of the incoming and outgoing webhook errors."""

    default_service = "webhooks"


class UnknownTarget(WebhookError, InvalidInput):
    """The target name is not in `webhooks.outgoing.targets`."""


class EventNotAccepted(WebhookError, InvalidInput):
    """The target's `event_types` does not include this event type."""


class InvalidPayload(WebhookError, InvalidInput):
    """A stored delivery's payload cannot become a flow run's parameters."""


class SnsVerificationError(WebhookError):
    """The message is not provably from AWS SNS."""

    default_service = "sns"


class ApiDown(WebhookError):
    """The Prefect API did not answer (connection refused, timeout, 5xx)."""

    default_service = "prefect"


__all__ = [
    "ApiDown",
    "EventNotAccepted",
    "InvalidPayload",
    "SnsVerificationError",
    "UnknownTarget",
    "WebhookError",
]
