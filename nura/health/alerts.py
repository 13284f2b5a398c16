"""Alerts from the health report: durable state, notifications by severity, Prefect events.

    changes = update_alerts.fn(report, now=now)       # opened / escalated / reminder / ...
    deliver_alert.fn(change)                           # notify + event (+ CloudWatch Logs)

Severity: unhealthy -> high, degraded -> medium (rate limited, quota, backlog included).
Only transitions reach people: an alert that persists is repeated at most every
`reminder_interval_minutes`; it resolves with a recovery message. Each transition also
emits a Prefect event `nura.health.<degraded|unhealthy|recovered>` on the resource
`nura.service.<name>`, so Prefect automations can act on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from nura import get_config, store_url
from nura.core.stores.alerts import AlertChange, apply_status
from nura.core.stores.db import get_engine

logger = logging.getLogger("nura.health.alerts")

SEVERITY = {"unhealthy": "high", "degraded": "medium", "healthy": "low"}
Notifier = Callable[..., Any]


def event_name(change: AlertChange) -> str:
    return "nura.health.recovered" if change.kind == "resolved" else f"nura.health.{change.level}"


def apply_report(
    report: Mapping[str, Any], *, now: float, reminder_seconds: float, engine: Any
) -> list[AlertChange]:
    """Move every service's alert according to its status in `report`."""
    changes: list[AlertChange] = []
    for svc in report["services"]:
        status = svc["status"]
        change = apply_status(
            engine,
            svc["service"],
            status,
            svc.get("reason") or ("recovered" if status == "healthy" else status),
            severity=SEVERITY.get(status, "low"),
            now=now,
            reminder_seconds=reminder_seconds,
        )
        if change is not None:
            changes.append(change)
    return changes


def update_alerts(report: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
    """Apply this report to the durable alert state; returns the changes as dicts."""
    cfg = get_config()
    changes = apply_report(
        report,
        now=time.time() if now is None else now,
        reminder_seconds=cfg.health_monitoring.reminder_interval_minutes * 60,
        engine=get_engine(store_url(cfg)),
    )
    return [c.as_dict() for c in changes]


def message(change: Mapping[str, Any], affects: list[str]) -> tuple[str, str]:
    """Title and body an on-call engineer reads (no secrets: reasons come from typed errors)."""
    svc, kind = change["key"], change["kind"]
    minutes = change["duration_s"] / 60
    if kind == "resolved":
        title = f"RECOVERED {svc} is healthy again"
        body = f"{svc} recovered after {minutes:.0f} min ({change['previous_level']} before)."
    else:
        prefix = {"reminder": "STILL ", "escalated": "WORSE "}.get(kind, "")
        title = f"{prefix}{change['level'].upper()} {svc}"
        body = f"{svc} is {change['level']}: {change['reason']}"
        if kind == "reminder":
            body += f" (for {minutes:.0f} min)"
    if affects:
        body += "\nAffects: " + ", ".join(affects)
    return title, body


def _default_notifier() -> Notifier:
    from nura.notify.dispatch import notify

    return notify


def _emit(change: Mapping[str, Any], title: str) -> None:
    from prefect.events import emit_event

    emit_event(
        event=event_name(AlertChange(**{k: change[k] for k in AlertChange.__dataclass_fields__})),
        resource={
            "prefect.resource.id": f"nura.service.{change['key']}",
            "prefect.resource.name": str(change["key"]),
        },
        payload={
            "kind": change["kind"],
            "level": change["level"],
            "previous_level": change["previous_level"],
            "severity": change["severity"],
            "reason": change["reason"],
            "alert_id": change["alert_id"],
            "title": title,
        },
    )


def _cloudwatch_log(change: Mapping[str, Any], title: str) -> None:
    group = get_config().health_monitoring.cloudwatch_log_group
    if not group:
        return
    from nura.health.cloudwatch import put_audit_log

    put_audit_log(group, {**dict(change), "title": title})


def deliver_alert(change: dict[str, Any], notifier: Notifier | None = None) -> dict[str, Any]:
    """Event for every change; notification for opened/escalated/reminder/resolved."""
    affects = list(get_config().health_monitoring.dependency_map.get(change["key"], []))
    title, body = message(change, affects)
    _emit(change, title)
    delivered: Any = None
    if change.get("notify"):
        send = notifier or _default_notifier()
        try:
            delivered = send(
                title,
                body,
                change["severity"],
                event=event_name(
                    AlertChange(**{k: change[k] for k in AlertChange.__dataclass_fields__})
                ),
                details={
                    "service": change["key"],
                    "alert_id": change["alert_id"],
                    "affects": ", ".join(affects) or "-",
                },
            )
        except Exception as exc:  # delivery trouble is logged, never fatal to the monitor
            logger.warning("alert %s not delivered: %s", change["alert_id"], exc)
    try:
        _cloudwatch_log(change, title)
    except Exception as exc:
        logger.warning("alert audit to CloudWatch Logs failed: %s", exc)
    notified = bool(getattr(delivered, "notified", delivered is not None))
    return {"title": title, "body": body, "notified": notified}
