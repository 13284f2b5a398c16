"""Alerts from the health report: durable state, notifications by severity, Prefect events.

    changes = update_alerts.fn(report, now=now)       # opened / escalated / reminder / ...
    deliver_alert.fn(change)                           # notify + event (+ CloudWatch Logs)

Severity: unhealthy -> high, degraded -> medium (rate limited, quota, backlog included).
Only confirmed transitions reach people (`failure_threshold` bad evaluations in a row
open an alert, `success_threshold` healthy ones resolve it; a level already notified for
the alert is not notified again); an alert that persists is repeated at most every
`reminder_interval_minutes`; it resolves with a recovery message at the highest severity
it notified, so it reaches the channels that were paged. Each transition also emits a
Prefect event `nura.health.<degraded|unhealthy|recovered>` on the resource
`nura.service.<name>`, so Prefect automations can act on it. Delivery is durable: what
a channel did not take is retried by later runs (`nura.notify.dispatch`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nura import get_config, store_url
from nura.core.stores.alerts import SEVERITY, AlertChange, apply_status
from nura.core.stores.db import get_engine

logger = logging.getLogger("nura.health.alerts")

__all__ = ["SEVERITY", "apply_report", "deliver_alert", "message", "update_alerts"]
Notifier = Callable[..., Any]


def event_name(change: AlertChange) -> str:
    return "nura.health.recovered" if change.kind == "resolved" else f"nura.health.{change.level}"


def _event_of(change: Mapping[str, Any]) -> str:
    """The change's own event (security alerts carry one), else the health event."""
    if change.get("event"):
        return str(change["event"])
    return event_name(AlertChange(**{k: change[k] for k in AlertChange.__dataclass_fields__}))


def apply_report(
    report: Mapping[str, Any],
    *,
    now: float,
    reminder_seconds: float,
    engine: Any,
    failure_threshold: int = 1,
    success_threshold: int = 1,
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
            failure_threshold=failure_threshold,
            success_threshold=success_threshold,
        )
        if change is not None:
            changes.append(change)
    return changes


def update_alerts(report: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
    """Apply this report to the durable alert state; returns the changes as dicts."""
    cfg = get_config()
    hm = cfg.health_monitoring
    changes = apply_report(
        report,
        now=time.time() if now is None else now,
        reminder_seconds=hm.reminder_interval_minutes * 60,
        engine=get_engine(store_url(cfg)),
        failure_threshold=hm.failure_threshold,
        success_threshold=hm.success_threshold,
    )
    # Services in maintenance: recorded and emitted, not sent (nura.health.maintenance).
    in_maintenance = report.get("maintenance", {}).get("active", [])
    return hold([c.as_dict() for c in changes], in_maintenance)


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
    from nura.notify.dispatch import send_notification

    return send_notification


def _emit(change: Mapping[str, Any], title: str) -> None:
    from prefect.events import emit_event

    emit_event(
        event=_event_of(change),
        resource={
            "prefect.resource.id": change.get("resource") or f"nura.service.{change['key']}",
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
            "maintenance": bool(change.get("maintenance")),
        },
    )


def _cloudwatch_log(change: Mapping[str, Any], title: str) -> None:
    group = get_config().health_monitoring.cloudwatch_log_group
    if not group:
        return
    from nura.health.cloudwatch import put_audit_log

    put_audit_log(group, {**dict(change), "title": title})


def deliver_alert(
    change: dict[str, Any], notifier: Notifier | None = None, now: float | None = None
) -> dict[str, Any]:
    """Event for every change; a notification for those that go to people.

    Returns {title, body, notified, channels, failed}: `notified` is True only when every
    routed channel took it; `failed` names each channel that did not (yet) and why. Those
    stay in the durable outbox and are retried by later runs."""
    affects = list(get_config().health_monitoring.dependency_map.get(change["key"], []))
    if change.get("title"):  # a change that brings its own words (nura.health.security)
        title, body = str(change["title"]), str(change["body"])
    else:
        title, body = message(change, affects)
    _emit(change, title)
    notified, channels, failed = False, {}, {}
    if change.get("notify"):
        send = notifier or _default_notifier()
        kwargs: dict[str, Any] = {
            "event": _event_of(change),
            "details": {
                "service": change["key"],
                "alert_id": change["alert_id"],
                "affects": ", ".join(affects) or "-",
            },
            # The same change delivered twice (a retried task) is queued once.
            "dedupe_key": f"alert:{change['alert_id']}:{change['kind']}:{change['ts']!r}",
        }
        if now is not None:
            kwargs["now"] = now
        try:
            result = send(title, body, change["severity"], **kwargs)
        except Exception as exc:  # delivery trouble is reported, never fatal to the monitor
            logger.warning("alert %s not delivered: %s", change["alert_id"], exc)
            failed = {"*": f"{type(exc).__name__}: {exc}"}
        else:
            notified = bool(getattr(result, "delivered", False))
            channels = {k: v.status for k, v in getattr(result, "channels", {}).items()}
            failed = dict(getattr(result, "failed_channels", {}))
            if failed:
                logger.warning("alert %r not delivered to %s", title, failed)
    try:
        _cloudwatch_log(change, title)
    except Exception as exc:
        logger.warning("alert audit to CloudWatch Logs failed: %s", exc)
    return {
        "title": title,
        "body": body,
        "notified": notified,
        "channels": channels,
        "failed": failed,
    }


def hold(changes: list[dict[str, Any]], in_maintenance: Iterable[str]) -> list[dict[str, Any]]:
    """Mark the alert changes of services in maintenance: recorded and emitted as events,
    never sent to people (`notify` False, `maintenance` True). Changes `changes` in place."""
    services = set(in_maintenance)
    for change in changes:
        if change["key"] in services:
            change["held"] = bool(change.get("notify"))
            change["notify"] = False
            change["maintenance"] = True
    return changes
