"""Prometheus text exposition of health and call metrics, read from the shared store.

    from nura.platform.metrics import render_metrics, CONTENT_TYPE
    body = render_metrics()      # served by the receiver's GET /metrics and `nura metrics serve`

Series (all gauges except the `_total` counters):
  nura_health_status{service}              0 healthy, 1 degraded, 2 unhealthy, -1 unknown
  nura_health_overall_status               worst service status
  nura_health_latency_ms{service,quantile} p50/p95/p99 over the status window
  nura_health_error_rate_percent{service}, nura_health_availability_percent{service},
  nura_health_fallback_rate_percent{service}, nura_health_last_check_timestamp{service}
  nura_breaker_state{service}              0 closed, 1 half-open, 2 open
  nura_calls_total{service,outcome}        every call record (ok/error/fallback/rejected)
  nura_call_latency_ms_sum{service}        with nura_calls_total: mean latency
  nura_bedrock_cost_usd_total{model}       the Bedrock cost ledger (when installed)
  nura_alerts_open{severity}               open alerts
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, func, select

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUS_VALUE = {"unknown": -1, "healthy": 0, "degraded": 1, "unhealthy": 2}
BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._declared: set[str] = set()

    def metric(self, name: str, kind: str, help_text: str) -> None:
        if name not in self._declared:
            self._declared.add(name)
            self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float | None, **labels: str) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        self.lines.append(f"{name}{_labels(labels)} {float(value):g}")


def _health(w: _Writer, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    w.metric("nura_health_status", "gauge", "0 healthy, 1 degraded, 2 unhealthy, -1 unknown")
    worst = -1
    for r in rows:
        value = STATUS_VALUE.get(r["status"], -1)
        worst = max(worst, value)
        w.sample("nura_health_status", value, service=r["service"])
    w.metric("nura_health_overall_status", "gauge", "Worst service status")
    w.sample("nura_health_overall_status", worst)
    w.metric("nura_health_latency_ms", "gauge", "Latency quantiles over the status window")
    for r in rows:
        for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms")):
            w.sample("nura_health_latency_ms", r.get(key), service=r["service"], quantile=q)
    for name, key, text in (
        ("nura_health_error_rate_percent", "error_rate_pct", "Traffic error rate"),
        ("nura_health_availability_percent", "availability_pct", "Successful checks"),
        ("nura_health_fallback_rate_percent", "fallback_rate_pct", "Calls answered by fallback"),
        ("nura_health_last_check_timestamp", "updated_at", "Last evaluation (epoch s)"),
    ):
        w.metric(name, "gauge", text)
        for r in rows:
            w.sample(name, r.get(key), service=r["service"])


def _calls(w: _Writer, engine: Engine) -> None:
    from nura.core.stores.tables import breakers, call_records

    c = call_records.c
    with engine.connect() as conn:
        counts = conn.execute(
            select(c.service, c.outcome, func.count(), func.sum(c.latency_ms)).group_by(
                c.service, c.outcome
            )
        ).all()
        states = conn.execute(select(breakers.c.service, breakers.c.state)).all()
    w.metric("nura_calls_total", "counter", "Outbound calls by outcome")
    for service, outcome, n, _ in counts:
        w.sample("nura_calls_total", n, service=service, outcome=outcome)
    w.metric("nura_call_latency_ms_sum", "counter", "Sum of call latencies")
    sums: dict[str, float] = {}
    for service, _, _, total in counts:
        sums[service] = sums.get(service, 0.0) + float(total or 0)
    for service, total in sums.items():
        w.sample("nura_call_latency_ms_sum", total, service=service)
    w.metric("nura_breaker_state", "gauge", "0 closed, 1 half-open, 2 open")
    for service, state in states:
        w.sample("nura_breaker_state", BREAKER_VALUE.get(state, 0), service=service)


def _costs(w: _Writer, engine: Engine) -> None:
    try:
        from nura.core.stores.ledger import ledger
    except ImportError:
        return  # the cost ledger (issue 6) is not installed
    with engine.connect() as conn:
        rows = conn.execute(
            select(ledger.c.model_id, func.sum(ledger.c.cost_pusd)).group_by(ledger.c.model_id)
        ).all()
    w.metric("nura_bedrock_cost_usd_total", "counter", "Bedrock spend by model (USD)")
    for model, pusd in rows:
        w.sample("nura_bedrock_cost_usd_total", float(pusd or 0) / 1e12, model=model)


def _alerts(w: _Writer, engine: Engine) -> None:
    from nura.core.stores.alerts import open_alerts

    counts = {"high": 0, "medium": 0, "low": 0}
    for a in open_alerts(engine):
        counts[a["severity"]] = counts.get(a["severity"], 0) + 1
    w.metric("nura_alerts_open", "gauge", "Open health alerts by severity")
    for severity, n in counts.items():
        w.sample("nura_alerts_open", n, severity=severity)


def render_metrics(engine: Engine | None = None) -> str:
    """The whole exposition; `engine` defaults to the configured store."""
    from nura.core.stores.health import latest_status

    if engine is None:
        from nura import get_config, store_url
        from nura.core.stores.db import get_engine

        engine = get_engine(store_url(get_config()))
    w = _Writer()
    _health(w, latest_status(engine))
    _calls(w, engine)
    _costs(w, engine)
    _alerts(w, engine)
    return "\n".join(w.lines) + "\n"


def serve(host: str = "127.0.0.1", port: int = 9464) -> Any:
    """A minimal HTTP server for `GET /metrics` (blocking; returns the server on stop)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = render_metrics().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return ThreadingHTTPServer((host, port), Handler)
