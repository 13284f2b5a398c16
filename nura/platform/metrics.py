"""Prometheus exposition of health and call metrics, read from the shared store at scrape time.

    from nura.platform.metrics import render_metrics, CONTENT_TYPE
    body = render_metrics()      # served by the receiver's GET /metrics and `nura metrics serve`

`StoreCollector` is a `prometheus_client` custom collector: every `collect()` reads the
store, so several processes (workers, the receiver, `nura metrics serve`) expose the same
figures without sharing in-process counters. `render_metrics` registers it on a private
`CollectorRegistry` (never the global one, which belongs to whoever embeds us).

Series (all gauges except the counters and the histogram):
  nura_health_status{service}              0 healthy, 1 degraded, 2 unhealthy, -1 unknown
  nura_health_overall_status               worst service status
  nura_health_latency_ms{service,quantile} p50/p95/p99 over the status window
  nura_health_error_rate_percent{service}, nura_health_availability_percent{service},
  nura_health_fallback_rate_percent{service}, nura_health_last_check_timestamp{service}
  nura_breaker_state{service}              0 closed, 1 half-open, 2 open
  nura_calls_total{service,outcome}        counter: every call record (ok/error/fallback/rejected)
  nura_call_latency_ms{service}            histogram (_bucket{le}, _sum, _count) of all calls
  nura_bedrock_cost_usd_total{model}       counter: the Bedrock cost ledger
  nura_alerts_open{severity}               open alerts
  nura_security_events_total{kind,subject} counter: security events (nura.health.security)
  nura_security_alerts_open{kind}          open security alerts
  nura_maintenance_active{service}         1 while a maintenance window is in effect
  nura_maintenance_excluded_seconds{service,window}  time the 1h/24h/7d SLA windows leave out
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import Engine, case, func, select
from sqlalchemy.exc import SQLAlchemyError

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
STATUS_VALUE = {"unknown": -1, "healthy": 0, "degraded": 1, "unhealthy": 2}
BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}
# Upper bounds (ms) of the call latency histogram; +Inf is added by the collector.
LATENCY_BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _health(rows: Iterable[dict[str, Any]]) -> Iterator[Metric]:
    rows = list(rows)
    status = GaugeMetricFamily(
        "nura_health_status", "0 healthy, 1 degraded, 2 unhealthy, -1 unknown", labels=["service"]
    )
    worst = -1
    for r in rows:
        value = STATUS_VALUE.get(r["status"], -1)
        worst = max(worst, value)
        status.add_metric([r["service"]], value)
    yield status
    yield GaugeMetricFamily("nura_health_overall_status", "Worst service status", value=worst)
    latency = GaugeMetricFamily(
        "nura_health_latency_ms",
        "Latency quantiles over the status window",
        labels=["service", "quantile"],
    )
    for r in rows:
        for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms")):
            if _present(r.get(key)):
                latency.add_metric([r["service"], q], r[key])
    yield latency
    for name, key, text in (
        ("nura_health_error_rate_percent", "error_rate_pct", "Traffic error rate"),
        ("nura_health_availability_percent", "availability_pct", "Successful checks"),
        ("nura_health_fallback_rate_percent", "fallback_rate_pct", "Calls answered by fallback"),
        ("nura_health_last_check_timestamp", "updated_at", "Last evaluation (epoch s)"),
    ):
        family = GaugeMetricFamily(name, text, labels=["service"])
        for r in rows:
            if _present(r.get(key)):
                family.add_metric([r["service"]], r[key])
        yield family


def _calls(engine: Engine) -> Iterator[Metric]:
    from nura.core.stores.tables import breakers, call_records

    c = call_records.c
    # One scan: per (service, outcome) the count, the latency sum and, per bucket, the
    # number of calls at or under its bound (already cumulative, as Prometheus wants).
    le_counts = [func.sum(case((c.latency_ms <= le, 1), else_=0)) for le in LATENCY_BUCKETS_MS]
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.service, c.outcome, func.count(), func.sum(c.latency_ms), *le_counts)
            .group_by(c.service, c.outcome)
            .order_by(c.service, c.outcome)
        ).all()
        states = conn.execute(
            select(breakers.c.service, breakers.c.state).order_by(breakers.c.service)
        ).all()

    calls = CounterMetricFamily(
        "nura_calls", "Outbound calls by outcome", labels=["service", "outcome"]
    )
    per_service: dict[str, list[float]] = {}  # service -> [count, sum, *bucket counts]
    for service, outcome, n, total, *buckets in rows:
        calls.add_metric([service, outcome], int(n))
        acc = per_service.setdefault(service, [0.0] * (2 + len(LATENCY_BUCKETS_MS)))
        for i, v in enumerate((n, total, *buckets)):
            acc[i] += float(v or 0)
    yield calls

    latency = HistogramMetricFamily(
        "nura_call_latency_ms", "Outbound call latency (ms)", labels=["service"]
    )
    for service, (count, total, *buckets) in per_service.items():
        latency.add_metric(
            [service],
            [(floatToGoString(le), n) for le, n in zip(LATENCY_BUCKETS_MS, buckets, strict=True)]
            + [("+Inf", count)],
            sum_value=total,
        )
    yield latency

    breaker = GaugeMetricFamily(
        "nura_breaker_state", "0 closed, 1 half-open, 2 open", labels=["service"]
    )
    for service, state in states:
        breaker.add_metric([service], BREAKER_VALUE.get(state, 0))
    yield breaker


def _costs(engine: Engine) -> Iterator[Metric]:
    from nura.core.stores.ledger import ledger

    with engine.connect() as conn:
        rows = conn.execute(
            select(ledger.c.model_id, func.sum(ledger.c.cost_pusd))
            .group_by(ledger.c.model_id)
            .order_by(ledger.c.model_id)
        ).all()
    cost = CounterMetricFamily(
        "nura_bedrock_cost_usd", "Bedrock spend by model (USD)", labels=["model"]
    )
    for model, pusd in rows:
        cost.add_metric([model], float(pusd or 0) / 1e12)
    yield cost


def _alerts(engine: Engine) -> Iterator[Metric]:
    from nura.core.stores.alerts import open_alerts

    counts = {"high": 0, "medium": 0, "low": 0}
    for a in open_alerts(engine):
        counts[a["severity"]] = counts.get(a["severity"], 0) + 1
    family = GaugeMetricFamily(
        "nura_alerts_open", "Open health alerts by severity", labels=["severity"]
    )
    for severity, n in counts.items():
        family.add_metric([severity], n)
    yield family


def _security(engine: Engine) -> Iterator[Metric]:
    from nura.config.sections.security import SecurityAlertSettings
    from nura.core.stores.alerts import open_alerts
    from nura.core.stores.security import ALERT_PREFIX, totals

    events = CounterMetricFamily(
        "nura_security_events",
        "Security events (refusals) by kind and subject",
        labels=["kind", "subject"],
    )
    for (kind, subject), n in sorted(totals(engine).items()):
        events.add_metric([kind, subject], n)
    yield events
    open_by_kind = dict.fromkeys(SecurityAlertSettings().rules(), 0)
    for a in open_alerts(engine):
        if a["key"].startswith(ALERT_PREFIX):
            kind = a["key"][len(ALERT_PREFIX) :].split(".", 1)[0]
            open_by_kind[kind] = open_by_kind.get(kind, 0) + 1
    alerts = GaugeMetricFamily(
        "nura_security_alerts_open", "Open security alerts by kind", labels=["kind"]
    )
    for kind, n in open_by_kind.items():
        alerts.add_metric([kind], n)
    yield alerts


def _maintenance(engine: Engine) -> Iterator[Metric]:
    """Services in maintenance and the time each SLA window leaves out."""
    import time

    from nura.health import maintenance
    from nura.health.sla import WINDOWS

    now = time.time()
    active = GaugeMetricFamily(
        "nura_maintenance_active", "1 while the service is in maintenance", labels=["service"]
    )
    for service in sorted({w["service"] for w in maintenance.active(engine, now)}):
        active.add_metric([service], 1)
    yield active
    spans = maintenance.intervals(engine, now - max(WINDOWS.values()), now)
    excluded = GaugeMetricFamily(
        "nura_maintenance_excluded_seconds",
        "Maintenance time left out of each SLA window",
        labels=["service", "window"],
    )
    for service, found in sorted(spans.items()):
        for name, secs in WINDOWS.items():
            left_out = maintenance.excluded_seconds(found, now - secs, now)
            excluded.add_metric([service, name], left_out)
    yield excluded


class StoreCollector(Collector):
    """A `prometheus_client` collector that reads every family from the store per scrape.

    registry = CollectorRegistry()
    registry.register(StoreCollector(engine))
    text = generate_latest(registry)
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        from nura.core.stores.health import latest_status

        yield from _health(latest_status(self.engine))
        yield from _calls(self.engine)
        yield from _costs(self.engine)
        yield from _alerts(self.engine)
        yield from _security(self.engine)
        yield from _maintenance(self.engine)


def render_metrics(engine: Engine | None = None) -> str:
    """The whole exposition; `engine` defaults to the configured store.

    Raises `StoreUnavailable` when the store cannot be read: the servers answer 503 (a
    scrape that fails loudly), never a partial exposition or a dropped connection."""
    from nura.core.stores.inbox import StoreUnavailable

    try:
        if engine is None:
            from nura import get_config, store_url
            from nura.core.stores.db import get_engine

            engine = get_engine(store_url(get_config()))
        # No describe(): registering must not query the store; collect() runs once, at render.
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(engine))
        return generate_latest(registry).decode("utf-8")
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"metrics: the store cannot be read ({type(exc).__name__})") from exc


def serve(host: str = "127.0.0.1", port: int = 9464) -> Any:
    """A minimal HTTP server for `GET /metrics` (blocking; returns the server on stop)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:
            from nura.core.stores.inbox import StoreUnavailable

            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            try:
                body = render_metrics().encode()
            except StoreUnavailable as exc:
                body = f"{exc}\n".encode()
                self.send_response(503)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return ThreadingHTTPServer((host, port), Handler)
