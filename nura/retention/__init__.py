"""Retention and erasure (docs/retention.md): how long each store keeps its rows, and the
removal of a document or an email address with everything derived from it.

    from nura.retention import apply_retention, erase
    apply_retention(engine, cfg, now=time.time(), dry_run=True)  # -> RetentionReport
    erase(engine, cfg, confluence_page="123456", actor="cli:ana")  # -> ErasureReport
"""

from nura.retention.erasure import ErasureReport, erase
from nura.retention.policy import Rule, retention_rules
from nura.retention.subject import InvalidSubject, Subject
from nura.retention.sweep import RetentionReport, StoreResult, apply_retention

__all__ = [
    "ErasureReport",
    "InvalidSubject",
    "RetentionReport",
    "Rule",
    "StoreResult",
    "Subject",
    "apply_retention",
    "erase",
    "retention_rules",
]
