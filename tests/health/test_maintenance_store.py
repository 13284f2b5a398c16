"""Maintenance windows and their notices in the store; start / end / active with the
configuration's windows; the spans the SLA leaves out. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nura.core.stores import maintenance as store
from nura.core.stores.db import get_engine
from nura.health import maintenance

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@pytest.fixture
def cfg(nura_config, store_url: str) -> Any:
    return nura_config(
        {
            "external_services": {"partners": {"alpha": {"base_url": "http://127.0.0.1:9"}}},
            "health_monitoring": {
                "maintenance_windows": [
                    {
                        "service": "confluence",
                        "start": _iso(T0 + 3600),
                        "end": _iso(T0 + 7200),
                        "reason": "Atlassian upgrade",
                    }
                ]
            },
        },
        store=store_url,
    )


def test_store_windows_active_end_and_overlap(store_url: str) -> None:
    engine = get_engine(store_url)
    row = store.add_window(
        engine, "alpha", starts_at=T0, ends_at=T0 + 600, reason="r", actor="ana", now=T0
    )
    assert store.active_windows(engine, T0)[0]["id"] == row["id"]  # start inclusive
    assert store.active_windows(engine, T0 + 600) == []  # end exclusive
    assert [w["id"] for w in store.windows_between(engine, T0 - 60, T0 + 1)] == [row["id"]]
    assert store.windows_between(engine, T0 + 600, T0 + 900) == []

    ended = store.end_window(engine, row["id"], actor="bob", now=T0 + 120)
    assert ended is not None and ended["ended_at"] == T0 + 120 and ended["ended_by"] == "bob"
    assert store.end_window(engine, row["id"], actor="bob", now=T0 + 130) is None  # once
    assert store.active_windows(engine, T0 + 200) == []
    # the effective end is the early one
    assert store.windows_between(engine, T0 + 121, T0 + 500) == []


def test_a_notice_is_claimed_once(store_url: str) -> None:
    engine = get_engine(store_url)
    assert store.claim_notice(engine, "store:1", "started", service="alpha", now=T0)
    assert not store.claim_notice(engine, "store:1", "started", service="alpha", now=T0 + 1)
    assert store.claim_notice(engine, "store:1", "ended", service="alpha", now=T0 + 2)
    assert [n["kind"] for n in store.notices(engine, "alpha")] == ["started", "ended"]
    assert store.notice_sent(engine, "store:1", "ended")


def test_start_end_active_with_configured_windows(cfg, store_url: str) -> None:
    engine = get_engine(store_url)
    window = maintenance.start(engine, "alpha", 1800, "db upgrade", "cli:ana", now=T0, notify=False)
    assert window["service"] == "alpha" and window["ends_at"] == T0 + 1800
    assert window["source"] == "store" and window["actor"] == "cli:ana"
    with pytest.raises(maintenance.MaintenanceActive):
        maintenance.start(engine, "alpha", 60, "again", "cli:ana", now=T0 + 1, notify=False)

    # the configured confluence window joins the store's while it is in effect
    assert [w["service"] for w in maintenance.active(engine, T0 + 60)] == ["alpha"]
    inside = maintenance.active(engine, T0 + 3700)
    assert [(w["service"], w["source"]) for w in inside] == [("confluence", "config")]
    assert inside[0]["reason"] == "Atlassian upgrade"

    ended = maintenance.end(engine, "alpha", "cli:bob", now=T0 + 900, notify=False)
    assert ended["ends_at"] == T0 + 900 and ended["ended_by"] == "cli:bob"
    with pytest.raises(maintenance.NoActiveMaintenance):
        maintenance.end(engine, "alpha", "cli:bob", now=T0 + 901)
    # a configured window is ended in the configuration, and the error says so
    with pytest.raises(maintenance.NoActiveMaintenance, match="declared in the configuration"):
        maintenance.end(engine, "confluence", "cli:bob", now=T0 + 3700)


def test_unknown_service_and_bad_duration_are_typed_errors(cfg, store_url: str) -> None:
    engine = get_engine(store_url)
    with pytest.raises(maintenance.UnknownMaintenanceService) as err:
        maintenance.start(engine, "nope", 60, "r", "ana", now=T0)
    assert "alpha" in err.value.known and "database" in err.value.known
    assert isinstance(err.value, ValueError)
    with pytest.raises(maintenance.UnknownMaintenanceService):
        maintenance.end(engine, "nope", "ana", now=T0)
    for seconds in (0, -5, 8 * 86400):
        with pytest.raises(maintenance.InvalidMaintenance):
            maintenance.start(engine, "alpha", seconds, "r", "ana", now=T0)


def test_intervals_merge_and_clip(cfg, store_url: str) -> None:
    engine = get_engine(store_url)
    maintenance.start(engine, "alpha", 600, "a", "ana", now=T0, notify=False)
    maintenance.end(engine, "alpha", "ana", now=T0 + 300, notify=False)
    maintenance.start(engine, "alpha", 600, "b", "ana", now=T0 + 300, notify=False)
    spans = maintenance.intervals(engine, T0 - 3600, T0 + 7200)
    # [T0, T0+300) and [T0+300, T0+900) merge; the config window is confluence's
    assert spans == {"alpha": [(T0, T0 + 900)], "confluence": [(T0 + 3600, T0 + 7200)]}
    clipped = maintenance.intervals(engine, T0 + 500, T0 + 4000)
    assert clipped == {"alpha": [(T0 + 500, T0 + 900)], "confluence": [(T0 + 3600, T0 + 4000)]}
    assert maintenance.excluded_seconds(spans["alpha"], T0 + 800, T0 + 1000) == 100


def test_metrics_show_windows_in_effect_and_excluded_time(cfg, store_url: str) -> None:
    import time

    from nura.platform.metrics import render_metrics

    engine = get_engine(store_url)
    now = time.time()  # /metrics reads the wall clock at scrape time
    maintenance.start(engine, "alpha", 3600, "upgrade", "ana", now=now - 600, notify=False)
    text = render_metrics(engine)
    assert 'nura_maintenance_active{service="alpha"} 1.0' in text
    hour = next(
        line
        for line in text.splitlines()
        if line.startswith('nura_maintenance_excluded_seconds{service="alpha",window="1h"}')
    )
    assert 599 <= float(hour.rsplit(" ", 1)[1]) <= 700  # ~600 s so far, scrape time apart
