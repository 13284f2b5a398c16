"""Security alerts (severity high): bursts of refusals and failed logins, one alert a burst.

    changes = update_security_alerts(now=now)   # evaluated by every health-monitor run
    for change in changes:
        deliver_alert(change)                   # the same Slack/email/Prefect-event path

Per kind of security event (`health_monitoring.security_alerts`: signature_failure,
stale_delivery, replayed_delivery, ssrf_refusal, budget_refusal, auth_failure) and per
subject (endpoint, target, budget scope, service), the events of the kind's
`window_minutes` are counted: `threshold` or more open the alert `security.<kind>.
<subject>`; while it is open, more events change nothing (one notification a burst,
unless `reminder_minutes` asks for reminders); a whole window without an event resolves
it, with a recovery notice to whoever was paged. Alert state, dedupe and history are the
health alerts' own (`nura.core.stores.alerts.apply_status`).

Events come from the receiver (signature, stale and replayed deliveries), outgoing
delivery (SSRF refusals) and the Bedrock budget guard (hard-budget refusals), through
`nura.core.security_events`; 401s are counted from the call records.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sqlalchemy import Engine

from nura.config.sections.security import SecurityAlertSettings, SecurityRule
from nura.core.stores import security as store
from nura.core.stores.alerts import AlertChange, apply_status, open_alerts

PREFIX = store.ALERT_PREFIX
DAY = 86400.0
# What an on-call engineer reads for each kind: (the events, what the subject is).
KINDS: dict[str, tuple[str, str]] = {
    "signature_failure": ("webhook signature failures", "endpoint"),
    "stale_delivery": ("stale webhook timestamps", "endpoint"),
    "replayed_delivery": ("replayed webhook deliveries", "endpoint"),
    "ssrf_refusal": ("SSRF refusals", "target"),
    "budget_refusal": ("hard-budget refusals", "budget scope"),
    "auth_failure": ("401 answers (credential refused)", "service"),
}


def alert_key(kind: str, subject: str) -> str:
    return f"{PREFIX}{kind}.{subject}"[:100]


def observed(engine: Engine, kind: str, *, since: float, until: float) -> dict[str, int]:
    """Events of `kind` per subject with `since <= ts <= until`."""
    if kind == "auth_failure":
        return store.auth_failures(engine, since=since, until=until)
    return store.counts(engine, kind, since=since, until=until)


def _open_subjects(engine: Engine, kind: str) -> dict[str, str]:
    """Alert key -> subject of the open alerts of `kind`."""
    prefix = f"{PREFIX}{kind}."
    return {
        a["key"]: a["key"][len(prefix) :]
        for a in open_alerts(engine)
        if a["key"].startswith(prefix)
    }


def _summary(engine: Engine, kind: str, subject: str, since: float, now: float) -> str:
    """Refusal codes and client addresses seen, from the stored details (never secrets)."""
    errors: Counter[str] = Counter()
    clients: set[str] = set()
    for detail in store.details(engine, kind, subject, since=since, until=now):
        errors.update({k: int(v) for k, v in (detail.get("errors") or {}).items()})
        clients.update(detail.get("clients") or [])
        if detail.get("reason"):
            errors[str(detail["reason"])] += 1
        if detail.get("period"):
            errors[f"{detail['period']} budget"] += 1
    parts = []
    if errors:
        parts.append(", ".join(f"{k} x{n}" for k, n in errors.most_common(5)))
    if clients:
        parts.append("from " + ", ".join(sorted(clients)[:5]))
    return "; ".join(parts)


def _reason(engine: Engine, kind: str, subject: str, n: int, rule: SecurityRule, now: float) -> str:
    what, role = KINDS.get(kind, (kind, "subject"))
    window = f"{rule.window_minutes:g} min"
    if n == 0:
        return f"no {what} on {role} {subject} for {window}"
    text = f"{n} {what} on {role} {subject} in {window} (threshold {rule.threshold})"
    extra = _summary(engine, kind, subject, now - rule.window_minutes * 60, now)
    return f"{text}: {extra}" if extra else text


def present(change: AlertChange, kind: str, subject: str) -> dict[str, Any]:
    """The change as `deliver_alert` takes it, with its own title, body, event and resource."""
    what, role = KINDS.get(kind, (kind, "subject"))
    data = change.as_dict()
    if change.kind == "resolved":
        title = f"RESOLVED security: {what} on {role} {subject}"
        body = f"Quiet again after {change.duration_s / 60:.0f} min: {change.reason}."
        event = "nura.security.resolved"
    else:
        prefix = "STILL " if change.kind == "reminder" else ""
        title = f"{prefix}SECURITY {what} on {role} {subject}"
        body = (
            f"{change.reason}.\nAlert {change.alert_id}: resolves by itself after a quiet "
            f"window; see docs/health.md, Security alerts."
        )
        event = f"nura.security.{kind}"
    data.update(
        title=title,
        body=body,
        event=event,
        resource=f"nura.security.{kind}.{subject}",
        security_kind=kind,
        subject=subject,
    )
    return data


def evaluate(
    engine: Engine, settings: SecurityAlertSettings, *, now: float
) -> list[dict[str, Any]]:
    """Move every security alert according to the events of its window ending at `now`."""
    if not settings.enabled:
        return []
    changes: list[dict[str, Any]] = []
    for kind, rule in settings.rules().items():
        seen = observed(engine, kind, since=now - rule.window_minutes * 60, until=now)
        subjects = {alert_key(kind, s): s for s in seen}
        opened = _open_subjects(engine, kind)
        for key, subject in opened.items():
            subjects.setdefault(key, subject)
        for key, subject in sorted(subjects.items()):
            n = seen.get(subject, 0)
            burst = n >= rule.threshold or (key in opened and n > 0)
            change = apply_status(
                engine,
                key,
                "unhealthy" if burst else "healthy",
                _reason(engine, kind, subject, n, rule, now),
                severity="high",
                now=now,
                reminder_seconds=settings.reminder_minutes * 60,
            )
            if change is not None:
                changes.append(present(change, kind, subject))
    return changes


def update_security_alerts(now: float | None = None) -> list[dict[str, Any]]:
    """`evaluate` with the configured store and rules (what the health monitor runs)."""
    from nura import get_config, store_url
    from nura.core.stores.db import get_engine

    cfg = get_config()
    return evaluate(
        get_engine(store_url(cfg)),
        cfg.health_monitoring.security_alerts,
        now=time.time() if now is None else now,
    )


def security_section(engine: Engine, settings: SecurityAlertSettings, *, now: float) -> str:
    """The health report's "Security" part: events of the last 24 h per kind and subject,
    and whether each has an open alert (markdown, appended to the report artifact)."""
    open_keys = {a["key"] for a in open_alerts(engine) if a["key"].startswith(PREFIX)}
    lines = ["", "## Security (last 24 h)", ""]
    rows = []
    for kind, rule in settings.rules().items():
        what, role = KINDS.get(kind, (kind, "subject"))
        for subject, n in sorted(observed(engine, kind, since=now - DAY, until=now).items()):
            alert = "🔴 open" if alert_key(kind, subject) in open_keys else "–"
            burst = f"{rule.threshold} in {rule.window_minutes:g} min"
            rows.append(f"| {what} | {role} {subject} | {n} | {burst} | {alert} |")
    if not rows:
        lines.append("No security events.")
    else:
        lines += ["| events | on | 24 h | alert from | alert |", "|---|---|---|---|---|", *rows]
    return "\n".join(lines) + "\n"
