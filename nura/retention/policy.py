"""What each store keeps and for how long, resolved from the `retention` config section.

    for rule in retention_rules(cfg):
        rule.store, rule.days, rule.action   # "call_records", 30.0, "delete"

A rule of 0 days keeps its rows forever (the sweep skips it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nura.config.schema import IntegrationsConfig

Action = Literal["delete", "empty_body", "roll_up"]
DAY = 86_400.0


@dataclass(frozen=True)
class Rule:
    store: str  # the name reports and the audit row use
    days: float  # 0 = keep forever
    action: Action
    what: str  # one line for people: which rows, counted from when

    def cutoff(self, now: float) -> float:
        """Rows older than this (by the rule's clock column) are past retention."""
        return now - self.days * DAY


def retention_rules(cfg: IntegrationsConfig) -> list[Rule]:
    """Every store's rule, in the order the sweep applies them."""
    r = cfg.retention
    settled = cfg.webhooks.outgoing.dead_letters.retention_days
    return [
        Rule("call_records", r.call_records_days, "delete", "call-layer records, by call time"),
        Rule("inbox_bodies", r.inbox_body_days, "empty_body", "inbox bodies, after dispatch"),
        Rule("inbox_rows", r.inbox_rows_days, "delete", "done/failed inbox rows, after finish"),
        Rule("dead_letters_settled", settled, "delete", "delivered/purged dead letters"),
        Rule(
            "dead_letters_exhausted",
            r.dead_letters_exhausted_days,
            "delete",
            "exhausted dead letters, after the last attempt",
        ),
        Rule("health_checks", r.health_days(), "delete", "health check results"),
        Rule("alert_history", r.alert_history_days, "delete", "alert history"),
        Rule("notifications", r.notifications_days, "delete", "sent-notification log"),
        Rule("notification_outbox", r.notifications_days, "delete", "settled outbox rows"),
        Rule("email_feedback", r.notifications_days, "delete", "SES feedback (addresses)"),
        Rule("ledger_items", r.ledger_items_days, "roll_up", "Bedrock ledger line items"),
        Rule("audit_log", r.audit_log_days, "delete", "audit log"),
        Rule("security_events", r.security_events_days, "delete", "security events, by time"),
        Rule("maintenance", r.alert_history_days, "delete", "finished maintenance windows"),
        Rule("maintenance_notices", r.alert_history_days, "delete", "maintenance notices"),
        Rule(
            "config_snapshots",
            r.alert_history_days,
            "delete",
            "configuration snapshots (the latest is always kept)",
        ),
    ]
