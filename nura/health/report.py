"""Dashboards in the Prefect UI: a markdown report and SLA tables under stable keys.

The keys (`health-report`, `health-sla`, `health-sla-latency`) stay the same from run to
run, so the UI's Artifacts page shows each one's history.

Width: the UI clips an artifact at ~1400 px and does not scroll it. So no table is wide:
the report's per-service table holds short figures only (each service's reason is a list
item under it), and the SLA figures are two tables, rates and latencies, of at most seven
short columns each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

REPORT_KEY = "health-report"
SLA_KEY = "health-sla"  # per service and window: checks, calls and the rates
SLA_LATENCY_KEY = "health-sla-latency"  # per service and window: p50 / p95 / p99
SLA_RATE_COLUMNS = ("checks", "calls", "availability_pct", "error_rate_pct", "fallback_rate_pct")
# maintenance_excluded_min: minutes of the window left out (maintenance), 0 when none
SLA_LATENCY_COLUMNS = ("p50_ms", "p95_ms", "p99_ms", "maintenance_excluded_min")
ICON = {"healthy": "🟢", "degraded": "🟠", "unhealthy": "🔴", "unknown": "⚪"}


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}{unit}"
    return f"{value}{unit}"


def _cell(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")[:200]


def render_markdown(
    report: Mapping[str, Any],
    open_alerts: Sequence[Mapping[str, Any]],
    undelivered: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Overall status, the per-service table and why, open alerts, notifications not
    delivered yet (per channel, with the last error), what each outage affects."""
    when = datetime.fromtimestamp(report["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    overall = report["overall"]
    lines = [
        f"# Health: {ICON.get(overall, '')} {overall.upper()}",
        "",
        f"Checked {when}. Status window figures; 1 h / 24 h / 7 d in `{SLA_KEY}` and "
        f"`{SLA_LATENCY_KEY}`.",
        "",
        "| service | status | latency | p95 | errors | availability | fallback | breaker |",
        "|---|---|---|---|---|---|---|---|",
    ]
    reasons = []
    for s in report["services"]:
        held = " 🔧" if s.get("maintenance") else ""
        lines.append(
            f"| {s['service']} | {ICON.get(s['status'], '')} {s['status']}{held} "
            f"| {_fmt(s.get('latency_ms'), ' ms')} | {_fmt(s.get('p95_ms'), ' ms')} "
            f"| {_fmt(s.get('error_rate_pct'), ' %')} | {_fmt(s.get('availability_pct'), ' %')} "
            f"| {_fmt(s.get('fallback_rate_pct'), ' %')} | {s.get('breaker') or '–'} |"
        )
        reason = _cell(s.get("reason") or s.get("detail"))
        if reason:  # a list item, not a column: long reasons made the table too wide
            reasons.append(f"- **{s['service']}**: {reason}")
    if reasons:
        lines += ["", "## Why", "", *reasons]
    lines += _maintenance_lines(report)
    lines += ["", f"## Open alerts ({len(open_alerts)})", ""]
    if not open_alerts:
        lines.append("None.")
    for a in open_alerts:
        since = datetime.fromtimestamp(a["opened_at"], UTC).strftime("%H:%M UTC")
        lines.append(
            f"- **{a['severity']}** {a['key']} {a['level']} since {since}: {_cell(a['reason'])}"
        )
    if undelivered:
        lines += ["", f"## Notifications not delivered yet ({len(undelivered)})", ""]
        for n in undelivered:
            lines.append(
                f"- {n['channel']}: {_cell(n['title'])} ({n['attempts']} attempts): "
                f"{_cell(n.get('last_error') or 'queued')}"
            )
    impacted = [s for s in report["services"] if s["status"] in ("degraded", "unhealthy")]
    if impacted:
        lines += ["", "## What this affects", ""]
        for s in impacted:
            lines.append(f"- {s['service']}: {', '.join(s.get('affects') or []) or 'not mapped'}")
    return "\n".join(lines) + "\n"


def _maintenance_lines(report: Mapping[str, Any]) -> list[str]:
    """Windows in effect (🔧 in the table) and, per service, the time each SLA window
    left out; nothing when no maintenance touched the report."""
    windows = (report.get("maintenance") or {}).get("windows") or []
    excluded: dict[str, list[str]] = {}
    for w in report["windows"]:
        if w.get("maintenance_excluded_min"):
            excluded.setdefault(w["service"], []).append(
                f"{w['window']} {w['maintenance_excluded_min']:g}m"
            )
    if not windows and not excluded:
        return []
    lines = ["", "## Maintenance", ""]
    for m in windows:
        until = datetime.fromtimestamp(m["ends_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(
            f"- 🔧 **{m['service']}** until {until} ({m['source']}, {_cell(m['actor'])}): "
            f"{_cell(m['reason']) or 'no reason given'}; alerts held"
        )
    for service, parts in sorted(excluded.items()):
        lines.append(f"- {service}: maintenance excluded: {', '.join(parts)}")
    return lines


def _sla_rows(report: Mapping[str, Any], columns: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"service": w["service"], "window": w["window"], **{c: w.get(c) for c in columns}}
        for w in report["windows"]
    ]


def sla_table(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per service and window: checks, calls, availability, error and fallback rates."""
    return _sla_rows(report, SLA_RATE_COLUMNS)


def sla_latency_table(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per service and window: the latency percentiles."""
    return _sla_rows(report, SLA_LATENCY_COLUMNS)


def publish_artifacts(report: dict[str, Any]) -> dict[str, str]:
    """Markdown report + SLA table artifacts; returns their ids."""
    from nura import get_config, store_url
    from nura.core.stores.alerts import open_alerts
    from nura.core.stores.db import get_engine
    from nura.core.stores.notifications import pending
    from nura.health.security import security_section

    cfg = get_config()
    engine = get_engine(store_url(cfg))
    alerts = open_alerts(engine)
    security = security_section(engine, cfg.health_monitoring.security_alerts, now=report["ts"])
    md = create_markdown_artifact(
        key=REPORT_KEY,
        markdown=render_markdown(report, alerts, pending(engine)) + security,
        description=f"Health: {report['overall']}",
    )
    table = create_table_artifact(
        key=SLA_KEY,
        table=sla_table(report),
        description="SLA per service and window: checks, calls, availability, error and "
        f"fallback rates (latencies in {SLA_LATENCY_KEY})",
    )
    latency = create_table_artifact(
        key=SLA_LATENCY_KEY,
        table=sla_latency_table(report),
        description=f"Latency percentiles per service and window (rates in {SLA_KEY})",
    )
    return {REPORT_KEY: str(md), SLA_KEY: str(table), SLA_LATENCY_KEY: str(latency)}
