"""The `retention` deployment: declared in prefect.yaml on the configured daily schedule,
and its flow run against the real Prefect server (artifact, report, rows gone)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nura.core.stores.db import get_engine
from nura.core.stores.tables import call_records
from tests.retention.test_sweep import _call_record, rows

PROJECT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_declares_the_daily_retention_deployment(monkeypatch) -> None:
    from nura.config.schema import IntegrationsConfig
    from nura.platform.bootstrap import load_specs

    monkeypatch.setenv("NURA_PROJECT", str(PROJECT))
    declared = yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    (entry,) = [d for d in declared if d["name"] == "retention"]
    assert entry["entrypoint"] == "flows/retention.py:retention"
    assert entry["schedules"] == [{"interval": 86400}]
    specs = {s.name: s for s in load_specs(IntegrationsConfig(), PROJECT / "prefect.yaml")}
    assert specs["retention"].interval_seconds == 24 * 3600  # the config default, in step
    hourly = IntegrationsConfig.model_validate({"retention": {"interval_hours": 1}})
    assert {s.name: s for s in load_specs(hourly)}["retention"].interval_seconds == 3600


@pytest.mark.integration
def test_flow_run_sweeps_and_publishes_its_table(prefect_server: Any, nura_config: Any) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.retention import RetentionParams, retention

    nura_config({"retention": {"call_records_days": 30}})
    from nura import store_url

    engine = get_engine(store_url())
    _call_record(engine, time.time() - 60 * 86_400)
    _call_record(engine, time.time())

    dry = retention(RetentionParams(dry_run=True))
    assert dry["dry_run"] and dry["total"] >= 1 and rows(engine, call_records) == 2
    report = retention()
    assert not report["dry_run"]
    assert {r["store"]: r["rows"] for r in report["results"]}["call_records"] == 1
    assert rows(engine, call_records) == 1

    async def artifacts() -> list[Any]:
        async with get_client() as client:
            found = ArtifactFilter(key=ArtifactFilterKey(any_=["retention"]))
            return await client.read_artifacts(artifact_filter=found)

    tables = asyncio.run(artifacts())
    assert tables and any('"call_records"' in str(a.data) for a in tables)
