"""The audit log store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from nura.core.stores import audit
from nura.core.stores.db import get_engine


def test_records_are_appended_and_read_newest_first(store_url: str) -> None:
    engine = get_engine(store_url)
    first = audit.record(
        engine,
        actor="token:ops",
        role="operator",
        action="breaker.reset",
        target="webhooks.partner",
        outcome="ok",
        detail={"previous": "open"},
        now=100.0,
    )
    second = audit.record(engine, actor="cli:root", action="erase", outcome="denied", now=200.0)
    assert second > first
    rows = audit.entries(engine)
    assert [r["id"] for r in rows[:2]] == [second, first]
    assert rows[1]["detail"] == {"previous": "open"} and rows[0]["detail"] == {}
    assert [r["id"] for r in audit.entries(engine, action="erase")] == [second]
    assert [r["id"] for r in audit.entries(engine, since=150.0)] == [second]
    assert [r["id"] for r in audit.entries(engine, actor="token:ops")] == [first]


def test_unknown_outcome_is_refused(store_url: str) -> None:
    with pytest.raises(ValueError, match="outcome"):
        audit.record(get_engine(store_url), actor="x", action="y", outcome="success")
