"""The store collector: a real latency histogram and families parsed by prometheus_client."""

from __future__ import annotations

import math
import sys

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from nura.core.call_records import CallRecord, CallRecorder
from nura.core.stores.db import get_engine
from nura.core.stores.ledger import ledger
from nura.platform.metrics import LATENCY_BUCKETS_MS, render_metrics

# (service, outcome, latency_ms): bounds hit exactly, between bounds, beyond the last one.
CALLS = [
    ("alpha", "ok", 1.0),
    ("alpha", "ok", 5.0),
    ("alpha", "ok", 5.5),
    ("alpha", "error", 250.0),
    ("alpha", "fallback", 999.9),
    ("alpha", "rejected", 0.0),
    ("beta", "ok", 12_000.0),
    ("beta", "error", 42.0),
]


def record(engine, calls) -> None:
    recorder = CallRecorder(engine)
    for service, outcome, latency in calls:
        recorder.record(CallRecord(service, "op", outcome, latency, 1))
    recorder.close()


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def histogram(fams: dict, service: str) -> tuple[list[tuple[float, float]], float, float]:
    """(sorted (le, cumulative count) pairs, _sum, _count) of one service's histogram."""
    samples = [s for s in fams["nura_call_latency_ms"].samples if s.labels["service"] == service]
    buckets = sorted(
        (float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")
    )
    (total,) = [s.value for s in samples if s.name.endswith("_sum")]
    (count,) = [s.value for s in samples if s.name.endswith("_count")]
    return buckets, total, count


def test_latency_histogram_is_cumulative_and_counts_every_call(store_url: str) -> None:
    engine = get_engine(store_url)
    record(engine, CALLS)
    fams = families(render_metrics(engine))
    assert fams["nura_call_latency_ms"].type == "histogram"
    for service in ("alpha", "beta"):
        mine = [latency for s, _, latency in CALLS if s == service]
        buckets, total, count = histogram(fams, service)
        assert [le for le, _ in buckets] == [*LATENCY_BUCKETS_MS, math.inf]
        values = [n for _, n in buckets]
        assert values == sorted(values), "buckets must be cumulative"
        for le, n in buckets:
            assert n == sum(1 for latency in mine if latency <= le), le
        assert count == len(mine) == buckets[-1][1]
        assert total == pytest.approx(sum(mine))
        calls = [s.value for s in fams["nura_calls"].samples if s.labels["service"] == service]
        assert sum(calls) == count


def test_histogram_grows_with_new_records_between_scrapes(store_url: str) -> None:
    engine = get_engine(store_url)
    record(engine, CALLS[:3])
    first = histogram(families(render_metrics(engine)), "alpha")
    record(engine, CALLS[3:6])
    second = histogram(families(render_metrics(engine)), "alpha")
    assert (first[2], second[2]) == (3.0, 6.0)
    assert all(b >= a for (_, a), (_, b) in zip(first[0], second[0], strict=True))


def test_empty_store_still_declares_the_families(store_url: str) -> None:
    fams = families(render_metrics(get_engine(store_url)))
    assert fams["nura_call_latency_ms"].samples == []
    assert fams["nura_calls"].type == "counter"
    assert fams["nura_health_overall_status"].samples[0].value == -1.0


def test_costs_come_from_the_ledger(store_url: str) -> None:
    engine = get_engine(store_url)
    row = {
        "ts": 1.0,
        "invocation_id": "i",
        "scope": "default",
        "api": "converse",
        "input_tokens": 10,
        "output_tokens": 5,
        "latency_ms": 3.0,
    }
    with engine.begin() as conn:
        conn.execute(
            insert(ledger),
            [
                {**row, "model_id": "m-1", "cost_pusd": 1_500_000_000_000},
                {**row, "model_id": "m-1", "cost_pusd": 250_000_000_000},
                {**row, "model_id": "m-2", "cost_pusd": 1},
            ],
        )
    fams = families(render_metrics(engine))
    assert fams["nura_bedrock_cost_usd"].type == "counter"
    cost = {s.labels["model"]: s.value for s in fams["nura_bedrock_cost_usd"].samples}
    assert cost == {"m-1": pytest.approx(1.75), "m-2": pytest.approx(1e-12)}


def test_a_broken_ledger_import_fails_the_render(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nura.core.stores.ledger", None)
    with pytest.raises(ImportError):
        render_metrics(get_engine(store_url))


def test_the_global_registry_is_left_alone(store_url: str) -> None:
    engine = get_engine(store_url)
    record(engine, CALLS)
    render_metrics(engine)
    assert b"nura_" not in generate_latest(REGISTRY)
