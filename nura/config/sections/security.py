"""`health_monitoring.security_alerts`: when refusals and failed logins become a high alert.

Each kind of security event has a rule: `threshold` events for one subject (an endpoint,
a target, a budget scope, a service) within `window_minutes` open one high alert; it
resolves once a whole window passes without an event of that kind for that subject.
"""

from __future__ import annotations

from pydantic import Field

from nura.config.sections.common import Section


class SecurityRule(Section):
    """How many events of one kind, for one subject, within how long, make a burst."""

    threshold: int = Field(
        ge=1,
        description="Events for one subject within `window_minutes` that open an alert.",
    )
    window_minutes: float = Field(
        gt=0,
        le=1440,
        description="The window the events are counted over; the open alert resolves "
        "after a whole window without an event.",
    )


def _rule(threshold: int, window_minutes: float) -> SecurityRule:
    return SecurityRule(threshold=threshold, window_minutes=window_minutes)


class SecurityAlertSettings(Section):
    """Security alerts (severity high), evaluated by every health-monitor run."""

    enabled: bool = Field(default=True, description="Evaluate security alerts at all.")
    reminder_minutes: float = Field(
        default=0,
        ge=0,
        description="Repeat an open security alert this often while its burst goes on "
        "(0: one notification per burst, and one when it resolves).",
    )
    signature_failure: SecurityRule = Field(
        default_factory=lambda: _rule(10, 10),
        description="Incoming webhooks refused for a bad or missing signature, per endpoint.",
    )
    stale_delivery: SecurityRule = Field(
        default_factory=lambda: _rule(5, 10),
        description="Signed incoming webhooks refused for a timestamp outside the "
        "tolerance (or unreadable), per endpoint.",
    )
    replayed_delivery: SecurityRule = Field(
        default_factory=lambda: _rule(20, 10),
        description="Incoming webhooks answered as duplicates (a delivery id or body seen "
        "before), per endpoint. Senders retry, so only a burst counts.",
    )
    ssrf_refusal: SecurityRule = Field(
        default_factory=lambda: _rule(3, 60),
        description="Outgoing deliveries refused by the SSRF guard, per target.",
    )
    budget_refusal: SecurityRule = Field(
        default_factory=lambda: _rule(5, 60),
        description="Bedrock calls refused by a hard budget, per budget scope.",
    )
    auth_failure: SecurityRule = Field(
        default_factory=lambda: _rule(5, 15),
        description="Calls a service answered 401 (a revoked or wrong credential), per "
        "service, counted from the call records.",
    )

    def rules(self) -> dict[str, SecurityRule]:
        """Every kind of security event and its rule."""
        return {
            name: getattr(self, name)
            for name, field in type(self).model_fields.items()
            if field.annotation is SecurityRule
        }
