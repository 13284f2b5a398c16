"""SLA evaluation over check results and call records; status per service.

    report = build_report(latest, now=now)      # figures aggregated in the database
    report["overall"], report["services"][i]["status"], report["windows"]

    report = evaluate(checks_df, calls_df, latest, breakers, thresholds, now=now,
                      status_window_s=900)      # the same from rows in memory (pandas)

`build_report` never loads samples: `nura.health.aggregate` computes every window's
figures in SQL, so a run's memory does not grow with the history. `evaluate` /
`window_figures` compute the same figures with pandas from rows given to them: the
reference the SQL is tested against, and the benchmark's baseline.

Figures per service and window (1 h, 24 h, 7 d and the status window; a window is
`(now - length, now]`):
- p50/p95/p99 latency (ms) over check latencies and traffic latencies (calls rejected by
  the breaker never reached the service and carry no latency);
- error rate (%): traffic calls that did not succeed (error, fallback, rejected) over all
  traffic calls (health checks excluded: they have availability);
- availability (%): successful checks over checks;
- fallback rate (%): traffic calls answered by a fallback over traffic calls.

Status rules (README, "Health monitoring"), tested in this order so "unhealthy" is reachable (seed
defect 7 tested "degraded" first):
  unhealthy  the latest check failed, or the breaker is open, or the traffic error rate over
             the status window is >= 2 x the error threshold, or the check's own verdict is
             unhealthy (e.g. dead-letter backlog)
  degraded   p95 over the status window > response threshold, or error rate > threshold,
             or availability over the status window < threshold, or the breaker is
             half-open, or a fallback answered, or the check's own verdict is degraded
             (rate limited, quota nearly spent, backlog, slow database)
  healthy    otherwise; unknown when nothing was measured (no check, no traffic).
The error- and fallback-rate rules apply from `alert_thresholds.min_calls` traffic calls
in the status window: below it one failure in three calls is a figure shown, not a status.
Overall status = the worst service status (unknown is ignored).

Maintenance (`nura.health.maintenance`): a service's samples inside its maintenance
windows count in no window's figures. Each service says how much time was left out of
the status window (`maintenance_excluded_s`) and each SLA row of its window
(`maintenance_excluded_min`), and
`report["maintenance"]` lists the windows in effect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from nura.config.sections.health import AlertThresholds

WINDOWS: dict[str, float] = {"1h": 3600.0, "24h": 86400.0, "7d": 604800.0}
STATUS_RANK = {"unknown": -1, "healthy": 0, "degraded": 1, "unhealthy": 2}
CHECK_COLUMNS = ["ts", "service", "ok", "latency_ms"]
CALL_COLUMNS = ["ts", "service", "operation", "outcome", "latency_ms", "fallback"]


def _frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for col in columns:
        if col not in df.columns:
            df[col] = pd.Series(dtype="float64")
    return df[columns]


Spans = Mapping[str, list[tuple[float, float]]]


def _outside(df: pd.DataFrame, exclude: Spans | None) -> pd.Series:
    """Rows not inside their service's excluded spans (`start <= ts < end`)."""
    keep = pd.Series(True, index=df.index)
    for service, spans in (exclude or {}).items():
        for lo, hi in spans:
            keep &= ~((df["service"] == service) & (df["ts"] >= lo) & (df["ts"] < hi))
    return keep


def window_figures(
    checks: pd.DataFrame,
    calls: pd.DataFrame,
    *,
    now: float,
    seconds: float,
    exclude: Spans | None = None,
) -> pd.DataFrame:
    """Per-service figures over `(now - seconds, now]`; index = service. `exclude`: per
    service, spans whose samples are left out (maintenance)."""
    c = checks[(checks["ts"] > now - seconds) & (checks["ts"] <= now)]
    t = calls[(calls["ts"] > now - seconds) & (calls["ts"] <= now)]
    c, t = c[_outside(c, exclude)], t[_outside(t, exclude)]
    reached = t[t["outcome"] != "rejected"]
    latencies = pd.concat(
        [c[["service", "latency_ms"]], reached[["service", "latency_ms"]]], ignore_index=True
    ).dropna()
    latencies["latency_ms"] = latencies["latency_ms"].astype(float)
    grouped = latencies.groupby("service")["latency_ms"]
    out = pd.DataFrame(
        {
            "p50_ms": grouped.quantile(0.50),
            "p95_ms": grouped.quantile(0.95),
            "p99_ms": grouped.quantile(0.99),
        }
    )
    checks_by = c.assign(ok=c["ok"].astype(bool)).groupby("service")["ok"]
    out = out.join(
        pd.DataFrame({"checks": checks_by.size(), "availability_pct": checks_by.mean() * 100}),
        how="outer",
    )
    traffic = t.assign(
        failed=t["outcome"] != "ok",
        fb=(t["outcome"] == "fallback") | t["fallback"].fillna(False).astype(bool),
    ).groupby("service")
    out = out.join(
        pd.DataFrame(
            {
                "calls": traffic.size(),
                "error_rate_pct": traffic["failed"].mean() * 100,
                "fallback_rate_pct": traffic["fb"].mean() * 100,
            }
        ),
        how="outer",
    )
    out[["checks", "calls"]] = out[["checks", "calls"]].fillna(0).astype(int)
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else round(f, 3)


def service_status(
    figures: Mapping[str, Any],
    latest: Mapping[str, Any] | None,
    breaker: str | None,
    th: AlertThresholds,
) -> tuple[str, list[str]]:
    """(status, reasons) by the rules of the module docstring: unhealthy is tested first."""
    response_ms = th.response_time_seconds * 1000
    err, p95 = _num(figures.get("error_rate_pct")), _num(figures.get("p95_ms"))
    avail, fallback = _num(figures.get("availability_pct")), _num(figures.get("fallback_rate_pct"))
    own = (latest or {}).get("level")
    if int(figures.get("calls") or 0) < th.min_calls:
        err = fallback = None  # too few calls for a rate to mean anything: shown, not judged
    bad: list[str] = []
    if latest is not None and not latest.get("ok", True):
        bad.append(f"check failed: {latest.get('error_type')} {latest.get('detail') or ''}".strip())
    if breaker == "open":
        bad.append("circuit breaker open")
    if err is not None and err >= 2 * th.error_rate_percentage:
        bad.append(f"error rate {err:.1f} % >= {2 * th.error_rate_percentage:g} %")
    if own == "unhealthy":
        bad.append(str(latest.get("detail") if latest else "check verdict unhealthy"))
    if bad:
        return "unhealthy", bad
    warn: list[str] = []
    if p95 is not None and p95 > response_ms:
        warn.append(f"p95 {p95:.0f} ms > {response_ms:.0f} ms")
    if err is not None and err > th.error_rate_percentage:
        warn.append(f"error rate {err:.1f} % > {th.error_rate_percentage:g} %")
    if avail is not None and avail < th.availability_percentage:
        warn.append(f"availability {avail:.1f} % < {th.availability_percentage:g} %")
    if breaker == "half_open":
        warn.append("circuit breaker half-open")
    if fallback:
        warn.append(f"fallback answered {fallback:.1f} % of calls")
    if own == "degraded":
        warn.append(str(latest.get("detail") if latest else "check verdict degraded"))
    if warn:
        return "degraded", warn
    measured = (
        latest is not None or int(figures.get("checks") or 0) or int(figures.get("calls") or 0)
    )
    return ("healthy", []) if measured else ("unknown", ["nothing measured"])


def evaluate(
    checks: Iterable[Mapping[str, Any]] | pd.DataFrame,
    calls: Iterable[Mapping[str, Any]] | pd.DataFrame,
    latest: Iterable[Mapping[str, Any]],
    breakers: Mapping[str, str],
    thresholds: AlertThresholds,
    *,
    now: float,
    status_window_s: float,
    dependency_map: Mapping[str, list[str]] | None = None,
    exclude: Spans | None = None,
    maintenance: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The health report from rows in memory (pandas): the reference implementation.
    `exclude`: maintenance spans per service; `maintenance`: the windows in effect."""
    checks_df = _frame(checks, CHECK_COLUMNS)
    calls_df = _frame(calls, CALL_COLUMNS)
    # Health checks also leave call records; their samples are counted once, as checks.
    calls_df = calls_df[calls_df["operation"].astype(str) != "health.check"]
    figures = {
        name: _as_dicts(window_figures(checks_df, calls_df, now=now, seconds=secs, exclude=exclude))
        for name, secs in {STATUS: status_window_s, **WINDOWS}.items()
    }
    report = assemble(figures, latest, breakers, thresholds, now=now, dependency_map=dependency_map)
    return mark_maintenance(report, exclude or {}, maintenance, status_window_s=status_window_s)


def mark_maintenance(
    report: dict[str, Any],
    exclude: Spans,
    in_effect: Iterable[Mapping[str, Any]],
    *,
    status_window_s: float,
) -> dict[str, Any]:
    """Say in `report` what maintenance changed: per service the window in effect (or
    None) and the seconds left out of the status window; per SLA row the seconds left
    out of that window (minutes); `report["maintenance"]` = {active: [service], windows: [...]}."""
    from nura.health.maintenance import excluded_seconds

    now = report["ts"]
    windows = [dict(w) for w in in_effect]
    by_service = {w["service"]: w for w in windows}
    for svc in report["services"]:
        name = svc["service"]
        svc["maintenance"] = by_service.get(name)
        svc["maintenance_excluded_s"] = round(
            excluded_seconds(exclude.get(name, []), now - status_window_s, now), 3
        )
    for row in report["windows"]:
        secs = WINDOWS[row["window"]]
        left_out = excluded_seconds(exclude.get(row["service"], []), now - secs, now)
        row["maintenance_excluded_min"] = round(left_out / 60, 1)
    report["maintenance"] = {"active": sorted(by_service), "windows": windows}
    return report


STATUS = "status"  # the key of the status window's figures


def _as_dicts(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {str(k): v for k, v in df.to_dict(orient="index").items()}


def assemble(
    figures: Mapping[str, Mapping[str, Mapping[str, Any]]],
    latest: Iterable[Mapping[str, Any]],
    breakers: Mapping[str, str],
    thresholds: AlertThresholds,
    *,
    now: float,
    dependency_map: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The report from per-window figures (window -> service -> figures; `STATUS` is the
    status window): per-service status, per-window SLA table, overall."""
    latest_by = {r["service"]: dict(r) for r in latest}
    status_fig = figures[STATUS]
    names = sorted(set(latest_by) | set(status_fig) | set(figures["1h"]) | set(breakers))
    services: list[dict[str, Any]] = []
    for name in names:
        latest_row = latest_by.get(name)
        if latest_row is not None and not latest_row.get("configured", True):
            latest_row = None
        figs = dict(status_fig.get(name, {}))
        status, reasons = service_status(figs, latest_row, breakers.get(name), thresholds)
        services.append(
            {
                "service": name,
                "status": status,
                "reason": "; ".join(reasons),
                "latency_ms": _num((latest_row or {}).get("latency_ms")),
                "p50_ms": _num(figs.get("p50_ms")),
                "p95_ms": _num(figs.get("p95_ms")),
                "p99_ms": _num(figs.get("p99_ms")),
                "error_rate_pct": _num(figs.get("error_rate_pct")),
                "availability_pct": _num(figs.get("availability_pct")),
                "fallback_rate_pct": _num(figs.get("fallback_rate_pct")),
                "calls": int(figs.get("calls") or 0),
                "breaker": breakers.get(name),
                "detail": (latest_by.get(name) or {}).get("detail"),
                "configured": latest_by.get(name, {}).get("configured", True),
                "affects": list((dependency_map or {}).get(name, [])),
            }
        )
    windows: list[dict[str, Any]] = []
    for wname in WINDOWS:
        for name in sorted(figures[wname]):
            row = figures[wname][name]
            windows.append(
                {
                    "service": name,
                    "window": wname,
                    "checks": int(row.get("checks") or 0),
                    "calls": int(row.get("calls") or 0),
                    **{
                        k: _num(row.get(k))
                        for k in (
                            "p50_ms",
                            "p95_ms",
                            "p99_ms",
                            "error_rate_pct",
                            "availability_pct",
                            "fallback_rate_pct",
                        )
                    },
                }
            )
    return {
        "ts": now,
        "overall": overall_status(s["status"] for s in services),
        "services": services,
        "windows": windows,
    }


def overall_status(statuses: Iterable[str]) -> str:
    """The worst known status; "unknown" when nothing at all was measured."""
    worst = "unknown"
    for s in statuses:
        if STATUS_RANK.get(s, -1) > STATUS_RANK[worst]:
            worst = s
    return worst


def build_report(
    latest: list[dict[str, Any]], *, now: float | None = None, save: bool = True
) -> dict[str, Any]:
    """Aggregate the windows in the store (`nura.health.aggregate`) and evaluate them."""
    from nura import get_call_layer, get_config, store_url
    from nura.core.stores.db import get_engine
    from nura.core.stores.health import save_status
    from nura.health.aggregate import window_figures_sql

    cfg = get_config()
    hm = cfg.health_monitoring
    now = time.time() if now is None else now
    engine = get_engine(store_url(cfg))
    layer = get_call_layer()
    if layer.recorder is not None:
        layer.recorder.flush()  # this round's traffic records are in the store before we read
    from nura.health.maintenance import active, intervals

    lengths = {STATUS: hm.status_window_minutes * 60, **WINDOWS}
    spans = intervals(engine, now - max(lengths.values()), now, cfg)
    figures = window_figures_sql(engine, now=now, windows=lengths, exclude=spans)
    breakers = {b.service: b.state.value for b in layer.breakers.all()}
    report = assemble(
        figures,
        latest,
        breakers,
        hm.alert_thresholds,
        now=now,
        dependency_map=hm.dependency_map,
    )
    mark_maintenance(report, spans, active(engine, now, cfg), status_window_s=lengths[STATUS])
    if save:
        save_status(
            engine,
            [
                {**s, "updated_at": now}
                for s in report["services"]
                if s["configured"] or s["status"] != "unknown"
            ],
        )
    return report


def evaluate_sla(latest: list[dict[str, Any]], now: float | None = None) -> dict[str, Any]:
    """SLA figures and status per service for this round's check results."""
    return build_report(latest, now=now)
