"""Prometheus exposition (parsed by prometheus_client) and the Grafana dashboard JSON."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from nura.core.breaker import CircuitBreakers
from nura.core.call_records import CallRecord, CallRecorder
from nura.core.stores.alerts import apply_status
from nura.core.stores.db import get_engine
from nura.core.stores.health import save_status
from nura.platform.metrics import render_metrics, serve

DASHBOARD = Path(__file__).parents[2] / "deployments" / "grafana" / "nura-dashboard.json"


def seed(engine) -> None:
    save_status(
        engine,
        [
            {
                "service": "alpha",
                "status": "degraded",
                "p50_ms": 10.0,
                "p95_ms": 900.0,
                "p99_ms": 950.0,
                "error_rate_pct": 1.5,
                "availability_pct": 100.0,
                "fallback_rate_pct": 0.0,
                "breaker": "closed",
                "updated_at": 1.0,
            },
            {"service": "beta", "status": "unhealthy", "updated_at": 1.0},
        ],
    )
    recorder = CallRecorder(engine)
    for outcome in ("ok", "ok", "error"):
        recorder.record(CallRecord("alpha", "op", outcome, 12.5, 1))
    recorder.close()
    CircuitBreakers(engine).record_failure("beta", threshold=1)
    apply_status(engine, "beta", "unhealthy", "down", severity="high", now=1.0, reminder_seconds=0)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_exposition_parses_and_carries_the_figures(store_url: str) -> None:
    engine = get_engine(store_url)
    seed(engine)
    fams = families(render_metrics(engine))
    status = {s.labels["service"]: s.value for s in fams["nura_health_status"].samples}
    assert status == {"alpha": 1.0, "beta": 2.0}
    assert fams["nura_health_overall_status"].samples[0].value == 2.0
    p95 = [s for s in fams["nura_health_latency_ms"].samples if s.labels["quantile"] == "0.95"]
    assert p95[0].value == 900.0
    calls = {(s.labels["outcome"]): s.value for s in fams["nura_calls"].samples}
    assert calls == {"ok": 2.0, "error": 1.0}
    assert {s.labels["service"]: s.value for s in fams["nura_breaker_state"].samples} == {
        "beta": 2.0
    }
    alerts = {s.labels["severity"]: s.value for s in fams["nura_alerts_open"].samples}
    assert alerts["high"] == 1.0


def test_metrics_server_serves_the_exposition(nura_config, tmp_path) -> None:
    nura_config({})
    server = serve("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        response = httpx.get(f"{url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "nura_calls_total" in response.text
        assert httpx.get(f"{url}/other").status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_grafana_dashboard_is_valid_and_uses_exported_metrics(store_url: str) -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and isinstance(dash["schemaVersion"], int) and dash["title"]
    assert isinstance(dash["panels"], list) and len(dash["panels"]) >= 6
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    fams = families(render_metrics(_seeded(store_url)))
    # Family names plus every sample name (`_total`, a histogram's `_bucket`/`_sum`/`_count`).
    exported = set(fams) | {s.name for f in fams.values() for s in f.samples}
    exported |= {f"{name}_total" for name in fams if fams[name].type == "counter"}
    used: set[str] = set()
    for p in dash["panels"]:
        assert p["type"] and {"x", "y", "w", "h"} <= set(p["gridPos"])
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["refId"] and t["expr"]
            used |= set(re.findall(r"\bnura_[a-z_]+", t["expr"]))
    assert used <= exported, used - exported
    assert "nura_call_latency_ms_bucket" in used  # latency quantiles from the histogram
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("status", "latency", "error rate", "breaker", "cost"):
        assert topic in titles


def _seeded(store_url: str):
    engine = get_engine(store_url)
    seed(engine)
    return engine


def _unreachable_store() -> str:
    from tests.support.servers import free_port

    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nura"  # nothing listens


def test_metrics_server_answers_503_when_the_store_is_down(nura_config) -> None:
    nura_config({}, store=_unreachable_store())
    server = serve("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_address[1]}/metrics")
        assert response.status_code == 503
        assert "store cannot be read" in response.text and "postgres@" not in response.text
    finally:
        server.shutdown()
        server.server_close()


def test_receiver_metrics_answer_503_when_the_platform_store_is_down(
    nura_config, store_url: str
) -> None:
    from sqlalchemy import create_engine
    from starlette.testclient import TestClient

    from nura.platform.receiver_app import create_app

    cfg = nura_config({}, store=store_url)
    down = create_engine(_unreachable_store())
    app = create_app(cfg, run_dispatcher=False, extra_metrics=lambda _engine: render_metrics(down))
    with TestClient(app) as client:
        response = client.get("/metrics")
    assert response.status_code == 503
    assert "store cannot be read" in response.text
