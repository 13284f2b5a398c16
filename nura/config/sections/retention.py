"""`retention` section: how long each store keeps its rows (docs/retention.md).

A period of 0 keeps the rows forever. Dead letters that were delivered or purged follow
`webhooks.outgoing.dead_letters.retention_days` (one setting, also used by the redrive).
"""

from __future__ import annotations

from pydantic import Field

from nura.config.sections.common import Section

# The health monitor's SLA reads 7 days of checks (plus an hour): a shorter period would
# change its figures, so the sweep never goes below it.
HEALTH_WINDOW_DAYS = 7 + 1 / 24


class RetentionSettings(Section):
    interval_hours: float = Field(
        default=24, gt=0, description="Schedule of the `retention` deployment."
    )
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Rows deleted (or emptied) per transaction: a big table is worked off "
        "in short transactions instead of one long lock.",
    )
    call_records_days: float = Field(
        default=30, ge=0, description="Call-layer records (`nura_call_records`) kept this long."
    )
    inbox_body_days: float = Field(
        default=7,
        ge=0,
        description="Webhook inbox bodies are emptied this long after dispatch (the row, "
        "its ids and status stay for dedupe and audit).",
    )
    inbox_rows_days: float = Field(
        default=90,
        ge=0,
        description="Finished webhook inbox rows (done / failed) are deleted this long after "
        "they finished.",
    )
    dead_letters_exhausted_days: float = Field(
        default=90,
        ge=0,
        description="Dead letters that used up their redrives, deleted this long after "
        "their last attempt.",
    )
    health_checks_days: float = Field(
        default=30,
        ge=0,
        description="Health check results kept this long; at least 7 days and an hour (the "
        "SLA window). The health monitor also trims to that window on every round.",
    )
    alert_history_days: float = Field(
        default=180, ge=0, description="Alert openings, escalations and resolutions kept."
    )
    notifications_days: float = Field(
        default=90,
        ge=0,
        description="Sent-notification log, settled outbox rows and SES feedback (which "
        "holds recipient addresses) kept this long.",
    )
    ledger_items_days: float = Field(
        default=90,
        ge=0,
        description="Bedrock ledger line items kept this long; removed items are added to "
        "per-day totals first, so budgets and `nura costs` stay right.",
    )
    audit_log_days: float = Field(
        default=365, ge=0, description="Audit log rows (operator actions, erasures) kept."
    )
    security_events_days: float = Field(
        default=30,
        ge=0,
        description="Security events (signature failures, replays, SSRF and budget refusals) "
        "kept; security alerts look back minutes, their history is in the alert history. "
        "Finished maintenance windows and old configuration snapshots follow "
        "`alert_history_days`.",
    )

    def health_days(self) -> float:
        """The health-check period the sweep applies (never inside the SLA window)."""
        if self.health_checks_days == 0:
            return 0
        return max(self.health_checks_days, HEALTH_WINDOW_DAYS)
